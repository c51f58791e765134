from __future__ import annotations

import pytest

from ua_server import UaServer


@pytest.fixture(scope="session")
def ua():
    """One real ua server for the whole session (fails when Docker is missing)."""
    server = UaServer()
    yield server
    server.stop()
