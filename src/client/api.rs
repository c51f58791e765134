//! The client side of the API, for `ua connect` and `ua bench`: a server
//! base URL (`http://` or `https://`), `POST /spec`, `POST /spec/clean` and
//! the terminal websocket (`ws://` or `wss://`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::client::tls as client_tls;
use crate::crypto::seal::{Keyring, Purpose};

/// A client's websocket to a ua server.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A ua server's base URL: plain HTTP, or HTTPS through a TLS proxy.
#[derive(Clone, Debug)]
pub struct Server {
    /// `host[:port]` as written in the URL: the `Host` header.
    authority: String,
    /// The host, an IPv6 literal in brackets.
    host: String,
    port: u16,
    base_path: String,
    /// Present for `https://`.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Server {
    /// Parses an `http://` or `https://host[:port][/base]` URL; https trusts
    /// the system's certificate authorities.
    pub fn parse(url: &str) -> anyhow::Result<Server> {
        Server::parse_with_ca(url, None)
    }

    /// Like [`Server::parse`]; https also trusts the certificates in
    /// `ca_file` (PEM), for a private CA.
    pub fn parse_with_ca(url: &str, ca_file: Option<&Path>) -> anyhow::Result<Server> {
        let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("http://") {
            (rest, None, 80)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (rest, Some(client_tls::config(ca_file)?), 443)
        } else {
            bail!("the server must be an http:// or https:// URL, not {url:?}");
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = split_authority(authority, default_port)
            .with_context(|| format!("{url:?} has no usable host and port"))?;
        Ok(Server {
            authority: authority.to_string(),
            host,
            port,
            base_path: format!("/{}", path.trim_end_matches('/'))
                .trim_end_matches('/')
                .to_string(),
            tls,
        })
    }

    /// Posts a body; returns the status and the JSON answer.
    async fn post(
        &self,
        path: &str,
        body: &str,
    ) -> anyhow::Result<(hyper::StatusCode, serde_json::Value)> {
        let body = Bytes::from(body.to_string());
        self.call(hyper::Method::POST, path, body).await
    }

    /// Sends `method` on `path` with `body`; returns the status and the
    /// JSON answer.
    async fn call(
        &self,
        method: hyper::Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<(hyper::StatusCode, serde_json::Value)> {
        let address = (
            self.host.trim_start_matches('[').trim_end_matches(']'),
            self.port,
        );
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .with_context(|| format!("cannot reach the ua server at {}", self.authority))?;
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_path))
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "text/plain")
            .body(Full::new(body))?;
        let response = match &self.tls {
            None => send(stream, request).await?,
            Some(config) => {
                let name = client_tls::server_name(&self.host)?;
                let stream = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, stream)
                    .await
                    .with_context(|| format!("TLS with {} failed", self.authority))?;
                send(stream, request).await?
            }
        };
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
    }

    /// `GET /health`: the JSON answer, whatever its status.
    pub async fn health(&self) -> anyhow::Result<serde_json::Value> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot reach the ua server at {}", self.authority))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = hyper::Request::get(format!("{}/health", self.base_path))
            .header(hyper::header::HOST, &self.authority)
            .body(Full::new(Bytes::new()))?;
        let body = sender.send_request(request).await?.into_body();
        Ok(serde_json::from_slice(&body.collect().await?.to_bytes())?)
    }

    /// `POST /spec`: the instance ID, or the server's reason in the error.
    pub async fn open_instance(&self, sealed: &str) -> anyhow::Result<String> {
        self.post_spec("/spec", sealed, None).await
    }

    /// `POST /spec?route=<token>` for the assignment's author, who holds the
    /// key: the route token (`crate::crypto::route`) lets a load balancer pick the
    /// spec's node, and a failed build's or setup's sealed output is opened
    /// and shown in the error.
    pub async fn open_instance_as_author(
        &self,
        sealed: &str,
        keys: &Keyring,
        spec_id: &str,
    ) -> anyhow::Result<String> {
        let path = format!(
            "/spec?route={}&progress",
            crate::crypto::route::token(keys, spec_id)
        );
        self.post_spec(&path, sealed, Some(keys)).await
    }

    async fn post_spec(
        &self,
        path: &str,
        sealed: &str,
        keys: Option<&Keyring>,
    ) -> anyhow::Result<String> {
        let mut shown = serde_json::Value::Null;
        let (status, json) = loop {
            let (status, json) = self.post(path, sealed).await?;
            // `?progress`: 202 with the phase while the create goes on.
            if status != hyper::StatusCode::ACCEPTED {
                break (status, json);
            }
            if json != shown {
                eprintln!("[ua: {}]\r", crate::telemetry::progress::describe(&json));
                shown = json;
            }
        };
        if !status.is_success() {
            let error = json["error"].as_str().unwrap_or("no explanation given");
            let output = json["sealedOutput"]
                .as_str()
                .zip(keys)
                .and_then(|(output, keys)| open_output(keys, output))
                .map(|text| crate::telemetry::logging::for_terminal(&text));
            match output {
                Some(output) => bail!("the server refused the spec ({status}): {error}\n{output}"),
                None => bail!("the server refused the spec ({status}): {error}"),
            }
        }
        // Settings the server capped: worth knowing while trying an assignment.
        for capped in json["capped"].as_array().into_iter().flatten() {
            if let Some(sentence) = capped.as_str() {
                eprintln!(
                    "[ua: {}]\r",
                    crate::telemetry::logging::for_terminal(sentence.as_bytes())
                );
            }
        }
        json["instanceID"]
            .as_str()
            .map(str::to_string)
            .context("the server's answer has no instanceID")
    }

    /// `POST /instance/{id}/check`: the status and the JSON answer.
    pub async fn check(
        &self,
        instance_id: &str,
    ) -> anyhow::Result<(hyper::StatusCode, serde_json::Value)> {
        self.post(&format!("/instance/{instance_id}/check"), "")
            .await
    }

    /// `PUT /instance/{id}/files?path=P[&mode=M]`: writes `content` as the student.
    pub async fn put_file(
        &self,
        instance_id: &str,
        path: &str,
        mode: Option<&str>,
        content: Vec<u8>,
    ) -> anyhow::Result<(hyper::StatusCode, serde_json::Value)> {
        let mut query = format!("path={}", url_encode(path));
        if let Some(mode) = mode {
            query.push_str(&format!("&mode={}", url_encode(mode)));
        }
        let target = format!("/instance/{instance_id}/files?{query}");
        self.call(hyper::Method::PUT, &target, Bytes::from(content))
            .await
    }

    /// `GET /instance/{id}/files?path=P`: the answer of graded files.
    pub async fn get_file(
        &self,
        instance_id: &str,
        path: &str,
    ) -> anyhow::Result<(hyper::StatusCode, serde_json::Value)> {
        let target = format!("/instance/{instance_id}/files?path={}", url_encode(path));
        self.call(hyper::Method::GET, &target, Bytes::new()).await
    }

    /// `POST /spec/clean?async=false`.
    pub async fn clean(&self, sealed: &str) -> anyhow::Result<()> {
        let (status, json) = self.post("/spec/clean?async=false", sealed).await?;
        if !status.is_success() {
            bail!("clean failed ({status}): {}", json["error"]);
        }
        Ok(())
    }

    /// Opens the terminal websocket of an instance.
    pub async fn terminal(&self, instance_id: &str, name: &str) -> anyhow::Result<Socket> {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let url = format!(
            "{scheme}://{}{}/instance/{instance_id}/ws?terminal={name}",
            self.authority, self.base_path
        );
        let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        let connected =
            tokio_tungstenite::connect_async_tls_with_config(&url, None, false, connector).await;
        // The URL holds the instance ID, the terminal's credential: never said.
        match connected {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let said = response
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_default();
                anyhow::bail!(
                    "the server refused terminal {name}: {} {said}",
                    response.status()
                )
            }
            Err(e) => {
                Err(e).with_context(|| format!("cannot open the terminal at {}", self.authority))
            }
        }
    }
}

/// A `sealedOutput` opened with the `output` subkey, or with the key itself
/// as servers before the subkeys sealed it (docs/API.md, "Subkeys").
pub(crate) fn open_output(keys: &Keyring, sealed: &str) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    keys.open_as(Purpose::Output, sealed)
        .or_else(|_| keys.open(sealed))
        .ok()
}

/// One request on a new HTTP/1.1 connection over `io`.
async fn send<I>(
    io: I,
    request: hyper::Request<Full<Bytes>>,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    tokio::spawn(connection);
    Ok(sender.send_request(request).await?)
}

/// `host[:port]` into the host and the port (`default_port` when absent).
fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal without a port: the colon is inside the brackets.
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (authority, default_port),
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// `text` percent-encoded for a query value (unreserved characters kept).
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_base_path() {
        let s = Server::parse("http://127.0.0.1:8000/ua/").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.base_path.as_str()),
            ("127.0.0.1", 8000, "/ua")
        );
        let s = Server::parse("https://ua.example.edu").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.base_path.as_str()),
            ("ua.example.edu", 443, "")
        );
        assert!(s.tls.is_some());
        let s = Server::parse("http://[::1]:9000").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("[::1]", 9000));
        let s = Server::parse("https://[::1]").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("[::1]", 443));
        assert!(Server::parse("ftp://x").is_err());
        assert!(Server::parse("http://host:notaport").is_err());
        assert!(Server::parse("https:///path").is_err());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = Server::parse_with_ca("https://localhost", Some(&empty)).unwrap_err();
        assert!(
            format!("{error:#}").contains("no PEM certificate"),
            "{error:#}"
        );
        let missing = dir.path().join("missing.pem");
        let error = Server::parse_with_ca("https://localhost", Some(&missing)).unwrap_err();
        assert!(
            format!("{error:#}").contains("cannot read the CA file"),
            "{error:#}"
        );
    }
}
