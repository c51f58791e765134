//! Any request line and headers, sent over a real TCP connection to an
//! in-process server, get an HTTP answer or a clean close: never a panic
//! (libFuzzer's panic hook aborts on one, in any thread) and never a 500.
#![no_main]
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio_util::sync::CancellationToken;
use ua::config::ServeConfig;
use ua::transport::Listener;
use ua::crypto::seal::Keyring;
use ua::instance::store::Store;

const METHODS: [&str; 6] = ["GET", "POST", "OPTIONS", "PUT", "DELETE", "HEAD"];

/// A server that lives as long as the fuzzing process (held in a static, so
/// that the leak checker sees it is still in use).
struct Server {
    port: u16,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn server() -> u16 {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        // No Docker: routes that need it fail fast instead of waiting.
        std::env::set_var("DOCKER_HOST", "unix:///nonexistent/docker.sock");
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::parse(&ua::crypto::seal::keygen()).unwrap();
        let state = dir.path().join("state");
        let config = ServeConfig::from_args(&[
            "--state-dir",
            state.to_str().unwrap(),
            "--assignments",
            dir.path().to_str().unwrap(),
            "--browser-terminal",
            "false",
        ])
        .unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let store = Store::open(&config.state_dir).unwrap();
        runtime.spawn(ua::server::serve(
            vec![Listener::Tcp(listener)],
            config,
            keys,
            store,
            CancellationToken::new(),
        ));
        Server {
            port,
            _runtime: runtime,
            _dir: dir,
        }
    })
    .port
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let method = METHODS[pick as usize % METHODS.len()];
    let path = lines.next().unwrap_or("/").replace(['\r', ' '], "");
    let mut request = format!("{method} /{path} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n");
    for header in lines.take(8) {
        if let Some((name, value)) = header.split_once(':') {
            let name: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
            let value = value.replace(['\r', '\n'], "");
            if !name.is_empty() && !name.eq_ignore_ascii_case("content-length") {
                request.push_str(&format!("{name}:{value}\r\n"));
            }
        }
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    let mut stream = TcpStream::connect(("127.0.0.1", server())).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.starts_with("HTTP/1.1 500"),
        "{request:?} answered {answer}"
    );
});
