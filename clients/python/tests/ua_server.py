"""A real `ua serve` process for tests: its own key, state directory and port.

Needs a Docker daemon and the offline base image `ua-busybox:latest`; when
either is missing the tests FAIL (they never skip), saying what to run.
Everything the server makes in Docker carries `ua.state-dir=<its state dir>`,
and `stop()` removes those containers and images.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from contextlib import ExitStack
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parents[3]  # clients/python/tests -> repo root
ASSIGNMENTS = REPO / "templates"
BASE_IMAGE = "ua-busybox:latest"


def ua_binary() -> str:
    """UA_BIN, else the repo's debug build, else the helper build."""
    env = os.environ.get("UA_BIN")
    if env:
        return env
    for candidate in (REPO / "target" / "debug" / "ua", Path("/tmp/ua-helper/ua")):
        if candidate.exists():
            return str(candidate)
    pytest.fail("no ua binary: set UA_BIN, or run `cargo build` so target/debug/ua exists", pytrace=False)


_AGENT: list = []


def agent_binary() -> str:
    """UA_AGENT, else the static agent scripts/build-agent makes (once)."""
    if not _AGENT:
        env = os.environ.get("UA_AGENT")
        if not env:
            built = subprocess.run([str(REPO / "scripts" / "build-agent")], capture_output=True, text=True)
            if built.returncode != 0:
                pytest.fail(f"scripts/build-agent failed: {built.stderr}", pytrace=False)
            env = built.stdout.strip()
        _AGENT.append(env)
    return _AGENT[0]


def run_ua(*args: str, input: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run([ua_binary(), *args], input=input, capture_output=True, text=True, timeout=60)


def new_key_file(directory: Path, name: str = "key") -> tuple:
    """Writes a fresh key file (mode 0600); returns (path, key line)."""
    result = run_ua("keygen")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    path = directory / name
    path.write_text(f"# test key\n{line}\n")
    path.chmod(0o600)
    return path, line


_docker_checked = False


def require_docker() -> None:
    """Fails the calling test unless Docker answers and the base image exists."""
    global _docker_checked
    if _docker_checked:
        return
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is missing: run scripts/ensure-docker (these tests need a real Docker)", pytrace=False)
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        pytest.fail(
            "Docker does not answer (`docker info` failed): run scripts/ensure-docker\n" + info.stderr[-2000:],
            pytrace=False,
        )
    image = subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True, text=True, timeout=60)
    if image.returncode != 0:
        build = subprocess.run([str(REPO / "scripts" / "build-busybox-base")], capture_output=True, text=True, timeout=600)
        if build.returncode != 0:
            pytest.fail(
                f"the base image {BASE_IMAGE} is missing and scripts/build-busybox-base failed:\n{build.stderr[-2000:]}",
                pytrace=False,
            )
    _docker_checked = True


class UaServer:
    """One `ua serve` on 127.0.0.1 with a fresh key and state directory."""

    def __init__(self, extra_args: Optional[List[str]] = None, assignments: Optional[Path] = None) -> None:
        require_docker()
        self.assignments = assignments or ASSIGNMENTS
        self.dir = Path(tempfile.mkdtemp(prefix="uassign-test-"))
        self.state_dir = self.dir / "state"
        self.state_dir.mkdir()
        self.key_file, self.key_line = new_key_file(self.dir)
        self.extra_args = list(extra_args or [])
        self.port: Optional[int] = None
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.dir / "server.log"
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: Optional[int] = None) -> None:
        """Starts the server (again), on `port` or a free one."""
        listen = f"127.0.0.1:{port or 0}"
        log = open(self.log_path, "a")
        log.write(f"--- start {listen}\n")
        log.flush()
        self.proc = subprocess.Popen(
            [
                ua_binary(), "serve",
                "--key-file", str(self.key_file),
                "--assignments", str(self.assignments),
                "--state-dir", str(self.state_dir),
                "--listen", listen,
                *self.extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**os.environ, "UA_AGENT": agent_binary()},
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace").split("--- start")[-1]
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
            if match:
                self.port = int(match.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop_process()
        pytest.fail(f"ua serve did not start:\n{self.log_tail()}", pytrace=False)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop_process(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def remove_docker_objects(self) -> None:
        label = f"label=ua.state-dir={self.state_dir}"
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        ids = subprocess.run(["docker", "images", "-q", "--filter", label], capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rmi", "-f", *sorted(set(ids))], capture_output=True)

    def stop(self) -> None:
        self.stop_process()
        self.remove_docker_objects()
        shutil.rmtree(self.dir, ignore_errors=True)


def http_get(url: str) -> tuple:
    """(status, decoded JSON body or None) of a plain GET."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


class Terminal:
    """A terminado client over a real websocket."""

    def __init__(self, url: str, timeout: float = 60) -> None:
        self._stack = ExitStack()
        self.ws = self._stack.enter_context(connect(url, open_timeout=timeout, close_timeout=5, max_size=2**22))
        self.output = ""
        self.messages = []
        self.close_code: Optional[int] = None
        first = self.recv(timeout)
        assert first == ["setup", {}], f"first message was {first!r}, not setup"

    def recv(self, timeout: float):
        try:
            frame = self.ws.recv(timeout=timeout)
        except ConnectionClosed as e:
            self.close_code = e.rcvd.code if e.rcvd is not None else 1006
            return None
        message = json.loads(frame)
        self.messages.append(message)
        if message[0] == "stdout":
            self.output += message[1]
        return message

    def stdin(self, text: str) -> None:
        self.ws.send(json.dumps(["stdin", text]))

    def read_until(self, needle: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen in {timeout} s; output so far: {self.output[-500:]!r}")
            try:
                message = self.recv(left)
            except TimeoutError:
                continue
            if message is None:
                raise AssertionError(
                    f"socket closed ({self.close_code}) before {needle!r}; output: {self.output[-500:]!r}"
                )
        return self.output

    def wait_closed(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.close_code is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"socket not closed within {timeout} s")
            try:
                self.recv(left)
            except TimeoutError:
                continue
        return self.close_code

    def close(self) -> None:
        self._stack.close()
