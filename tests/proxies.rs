//! ua behind a real TLS proxy (issue 13 item 6): the shipped
//! packaging/examples/Caddyfile and nginx-ua.conf, run by Debian's `caddy`
//! and `nginx` as plain processes on loopback with a throw-away CA made by
//! openssl, in front of ua on a unix socket (`--listen unix:`, as
//! ua.socket's /run/ua/http.sock). Through each: `ua connect` over
//! https/wss (and refused without the CA), the browser terminal in Chromium
//! over https/wss, `/metrics` answered 404, and an access log without
//! instance IDs.

mod common;
#[path = "common/tmux.rs"]
mod tmux;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tmux::Tmux;

/// A throw-away CA and a certificate for `localhost` and 127.0.0.1.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// base64 SHA-256 of the server certificate's public key, for Chromium's
    /// --ignore-certificate-errors-spki-list.
    spki: String,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (Debian's openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_pki(dir: &Path) -> Pki {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut ca = vec!["req", "-x509", "-nodes", "-days", "2"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=ua test CA",
    ]);
    openssl(dir, &ca);
    let mut request = vec!["req", "-nodes"];
    request.extend(ec);
    request.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &request);
    write(
        &dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    let spki = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -in server.pem -pubkey -noout | openssl pkey -pubin -outform der \
             | openssl dgst -sha256 -binary | base64",
        )
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(spki.status.success());
    Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        spki: String::from_utf8(spki.stdout).unwrap().trim().to_string(),
    }
}

/// A free loopback port (bound and let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shipped example with each `(from, to)` replaced; every `from` must be
/// in it, so an edit of the example that these tests no longer match fails.
fn example(name: &str, replacements: &[(&str, String)]) -> String {
    let path = repo().join("packaging/examples").join(name);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "{} no longer has {from:?}",
            path.display()
        );
        text = text.replace(from, to);
    }
    text
}

/// A running proxy process; stopped on drop.
struct Proxy {
    child: Child,
    https_port: u16,
    http_port: u16,
    access_log: PathBuf,
    /// Its other logs, shown when something fails.
    logs: Vec<PathBuf>,
}

impl Proxy {
    fn base(&self) -> String {
        format!("https://localhost:{}", self.https_port)
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for path in self.logs.iter().chain([&self.access_log]) {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            text.push_str(&format!("--- {}\n{log}\n", path.display()));
        }
        text
    }

    /// Waits until the proxy accepts TLS connections on its https port.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.https_port)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the proxy exited ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not listen:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM: nginx's master stops its workers (SIGKILL would orphan
        // them); Caddy exits too. SIGKILL only if it does not.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_caddy(dir: &Path, pki: &Pki, ua_socket: &Path, https_port: u16) -> Proxy {
    let http_port = free_port();
    let access_log = dir.join("caddy-access.log");
    let site = example(
        "Caddyfile",
        &[
            // The throw-away certificate instead of ACME.
            (
                "ua.example.edu {",
                format!(
                    "https://localhost:{https_port} {{\n\ttls {} {}",
                    pki.cert.display(),
                    pki.key.display()
                ),
            ),
            (
                "reverse_proxy unix//run/ua/http.sock",
                format!("reverse_proxy unix/{}", ua_socket.display()),
            ),
            (
                "/var/log/caddy/ua-access.log",
                access_log.display().to_string(),
            ),
        ],
    );
    // Global options for a process on loopback: no admin endpoint, and the
    // http->https redirect on a free port instead of 80.
    let config = format!(
        "{{\n\tadmin off\n\thttp_port {http_port}\n\thttps_port {https_port}\n\
         \tstorage file_system {}\n}}\n\n{site}",
        dir.join("caddy-data").display()
    );
    let file = dir.join("Caddyfile");
    write(&file, &config);
    let stderr = dir.join("caddy.log");
    let child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("xdg-data"))
        .env("XDG_CONFIG_HOME", dir.join("xdg-config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("caddy runs (apt-get install caddy; scripts/test does)");
    let mut proxy = Proxy {
        child,
        https_port,
        http_port,
        access_log,
        logs: vec![stderr],
    };
    proxy.wait_ready();
    proxy
}

fn start_nginx(dir: &Path, pki: &Pki, ua_socket: &Path, https_port: u16) -> Proxy {
    let http_port = free_port();
    let access_log = dir.join("nginx-access.log");
    let site = example(
        "nginx-ua.conf",
        &[
            ("listen 80;", format!("listen 127.0.0.1:{http_port};")),
            ("listen [::]:80;", String::new()),
            (
                "listen 443 ssl;",
                format!("listen 127.0.0.1:{https_port} ssl;"),
            ),
            ("listen [::]:443 ssl;", String::new()),
            ("ua.example.edu;", "localhost;".into()),
            (
                "/etc/letsencrypt/live/ua.example.edu/fullchain.pem",
                pki.cert.display().to_string(),
            ),
            (
                "/etc/letsencrypt/live/ua.example.edu/privkey.pem",
                pki.key.display().to_string(),
            ),
            (
                "server unix:/run/ua/http.sock;",
                format!("server unix:{};", ua_socket.display()),
            ),
            (
                "/var/log/nginx/ua-access.log",
                access_log.display().to_string(),
            ),
        ],
    );
    write(&dir.join("ua-site.conf"), &site);
    // What Debian's /etc/nginx/nginx.conf gives a site, for a process of
    // its own: pid, logs and temporary files in the test's directory.
    let error_log = dir.join("nginx-error.log");
    let temp = dir.join("nginx-temp");
    std::fs::create_dir_all(&temp).unwrap();
    // As root, nginx's workers would run as nobody, who cannot enter the
    // test's private directory.
    let user = if nix::unistd::geteuid().is_root() {
        "user root root;\n"
    } else {
        ""
    };
    let config = format!(
        "{user}daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {error} info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
           client_body_temp_path {temp}/body;\n proxy_temp_path {temp}/proxy;\n\
           fastcgi_temp_path {temp}/fastcgi;\n uwsgi_temp_path {temp}/uwsgi;\n\
           scgi_temp_path {temp}/scgi;\n\
           access_log off;\n\
           include {dir}/ua-site.conf;\n\
         }}\n",
        dir = dir.display(),
        error = error_log.display(),
        temp = temp.display(),
    );
    let file = dir.join("nginx.conf");
    write(&file, &config);
    let child = Command::new("nginx")
        .arg("-e")
        .arg(&error_log)
        .arg("-c")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx runs (apt-get install nginx; scripts/test does)");
    let mut proxy = Proxy {
        child,
        https_port,
        http_port,
        access_log,
        logs: vec![error_log],
    };
    proxy.wait_ready();
    proxy
}

/// `curl` with the CA: the status and the body.
fn curl(pki: &Pki, url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--cacert"])
        .arg(&pki.ca)
        .args(["--write-out", "\n%{http_code}", url])
        .output()
        .expect("curl runs (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_string())
}

/// Everything the issue asks of a proxy, through `proxy` to `server`.
fn check_proxy(name: &str, proxy: &Proxy, server: &TestServer, ua_socket: &Path, pki: &Pki) {
    let base = proxy.base();

    // /metrics stays internal; the rest of ua is reachable.
    let (status, body) = curl(pki, &format!("{base}/health"));
    assert_eq!(status, 200, "{body}\n{}", proxy.logs());
    assert_eq!(
        http_unix(ua_socket, "GET", "/metrics", &[], b"").status,
        200
    );
    for path in [
        "/metrics",
        "/metrics?x=1",
        "//metrics",
        "/static/../metrics",
    ] {
        let (status, body) = curl(pki, &format!("{base}{path}"));
        assert_eq!(status, 404, "{path} through {name}: {body}");
        assert!(
            !body.contains("ua_"),
            "{path} through {name} shows metrics: {body}"
        );
    }
    // Plain http is redirected to https.
    let out = Command::new("curl")
        .args([
            "--silent",
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code} %{redirect_url}",
        ])
        .arg(format!("http://localhost:{}/health", proxy.http_port))
        .output()
        .unwrap();
    let redirect = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        redirect.starts_with("30") && redirect.contains("https://localhost"),
        "http through {name}: {redirect}"
    );

    // ua connect without the CA: the certificate is refused.
    let out = Command::new(BINARY)
        .args(["connect", "--key-file"])
        .arg(server.key_file())
        .args(["--server", &base, "--assignment", "demo.busybox"])
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env_remove("UA_CA_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");

    // ua connect with the CA: https for the spec, wss for the terminal.
    let command = format!(
        "{BINARY} connect --ca-file {} --key-file {} --server {base} --assignment demo.busybox \
         --data '{{\"greeting\": \"hello through {name}\"}}' --spec-id proxy-{name}; \
         echo exit=$?; sleep 60",
        pki.ca.display(),
        server.key_file().display()
    );
    let tmux = Tmux::start(&command);
    let screen = tmux.wait_for("~ $");
    let connect_id = screen
        .split("attached to instance ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no instance on the screen:\n{screen}"))
        .to_string();
    tmux.keys(&["echo via-$((6*7))", "Enter"]);
    tmux.wait_for("via-42");
    tmux.keys(&["exit", "Enter"]);
    let screen = tmux.wait_for("exit=0");
    assert!(screen.contains("[ua: the shell exited]"), "{screen}");

    // The browser terminal in Chromium: https page, wss terminal.
    let spec = server.demo_spec(&format!("proxy-browser-{name}"));
    let client = ua::client::api::Server::parse_with_ca(&base, Some(&pki.ca)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let browser_id = runtime.block_on(client.open_instance(&spec)).unwrap();
    let out = Command::new("node")
        .arg(repo().join("tests/browser/terminal.mjs"))
        .arg(&base)
        .arg(&browser_id)
        .env(
            "CHROMIUM_ARGS",
            format!("--ignore-certificate-errors-spki-list={}", pki.spki),
        )
        .output()
        .expect("node runs (Debian's nodejs)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser through {name} failed:\n{report}\n{}\nua's log:\n{}",
        proxy.logs(),
        server.log()
    );
    assert!(report.contains("page https: websockets wss:"), "{report}");

    // The access log saw the sessions, but no instance ID.
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = std::fs::read_to_string(&proxy.access_log).unwrap_or_default();
        // A websocket is logged when it closes.
        let sessions = log.matches("/instance/redacted/ws").count();
        if sessions >= 3 || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // ua connect's websocket, the browser's and the one after its reload.
    assert!(
        log.matches("/instance/redacted/ws").count() >= 3,
        "{name}'s access log lacks the websockets:\n{log}"
    );
    assert!(log.contains("/spec"), "{log}");
    for id in [&connect_id, &browser_id] {
        assert!(
            !log.contains(id.as_str()),
            "{name}'s access log has instance ID {id}:\n{log}"
        );
    }
}

fn ua_behind_proxy(name: &str, start: fn(&Path, &Pki, &Path, u16) -> Proxy) {
    let web = repo().join("target/web");
    assert!(
        web.join("index.html").is_file(),
        "{} is missing: run scripts/build-web (scripts/test does)",
        web.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    // The proxy's port is chosen first: it is part of ua's public origin.
    let https_port = free_port();
    let origin = format!("https://localhost:{https_port}");
    let ua_socket = dir.path().join("ua-http.sock");
    let listen = format!("unix:{}", ua_socket.display());
    let server = TestServer::start_with(&[
        "--listen",
        &listen,
        "--web-dir",
        &web.display().to_string(),
        // As for PrairieLearn: only the platform's origin, and ua's own pages.
        "--allowed-origins",
        "https://pl.example",
        "--public-origin",
        &origin,
    ]);
    let proxy = start(dir.path(), &pki, &ua_socket, https_port);
    check_proxy(name, &proxy, &server, &ua_socket, &pki);
}

#[test]
fn caddy_serves_ua_over_https_and_wss() {
    ua_behind_proxy("caddy", start_caddy);
}

#[test]
fn nginx_serves_ua_over_https_and_wss() {
    ua_behind_proxy("nginx", start_nginx);
}
