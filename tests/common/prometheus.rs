//! Debian's `prometheus` as a plain process on a loopback port, and its
//! HTTP API (tests/dashboard.rs).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::http;

/// A free loopback port (bound and let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `application/x-www-form-urlencoded` of one value.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Debian's `prometheus` as a plain process on a free loopback port, with
/// its storage in a temporary directory; stopped on drop.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(config: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("this test needs prometheus (apt-get install prometheus): {e}")
            });
        let mut prometheus = Prometheus { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !prometheus.ready() {
            if let Some(status) = prometheus.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", prometheus.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus is not ready:\n{}",
                prometheus.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    fn ready(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && http(self.port, "GET", "/-/ready", &[], b"").status == 200
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// A request to the HTTP API with `form` (`POST`: in the body, `GET`:
    /// in the URL); its `data`, after `status` success.
    pub fn api(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Value {
        let encoded: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect();
        let encoded = encoded.join("&");
        let (target, body) = match method {
            "GET" => (format!("{path}?{encoded}"), String::new()),
            _ => (path.to_string(), encoded),
        };
        let content_type = [("Content-Type", "application/x-www-form-urlencoded")];
        let response = http(self.port, method, &target, &content_type, body.as_bytes());
        assert_eq!(response.status, 200, "{target}: {}", response.body);
        let answer = response.json();
        assert_eq!(
            answer["status"], "success",
            "{target} {form:?}: {}",
            response.body
        );
        answer["data"].clone()
    }

    /// An instant query's result: (labels, value) of each series.
    pub fn query(&self, expr: &str) -> Vec<(Value, f64)> {
        let data = self.api("POST", "/api/v1/query", &[("query", expr)]);
        assert_eq!(data["resultType"], "vector", "{expr}: {data}");
        let result = data["result"].as_array().unwrap();
        result
            .iter()
            .map(|s| {
                (
                    s["metric"].clone(),
                    s["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    /// Names of the alerts pending or firing now.
    pub fn active_alerts(&self) -> Vec<String> {
        let response = http(self.port, "GET", "/api/v1/alerts", &[], b"");
        let alerts = response.json()["data"]["alerts"].clone();
        let alerts = alerts.as_array().unwrap();
        alerts
            .iter()
            .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
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
