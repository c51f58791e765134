//! The client side of the API, for `ua connect` and `ua bench`: a server
//! base URL, `POST /spec`, `POST /spec/clean` and the terminal websocket.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::seal::Keyring;

/// A client's websocket to a ua server.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A ua server's base URL (plain HTTP; TLS belongs to a reverse proxy).
#[derive(Clone, Debug)]
pub struct Server {
    authority: String,
    base_path: String,
}

impl Server {
    /// Parses an `http://host:port[/base]` URL.
    pub fn parse(url: &str) -> anyhow::Result<Server> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("the server must be an http:// URL (for https, put ua behind a TLS proxy and use a browser)");
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        Ok(Server {
            authority: authority.to_string(),
            base_path: format!("/{}", path.trim_end_matches('/'))
                .trim_end_matches('/')
                .to_string(),
        })
    }

    /// Posts a body; returns the status and the JSON answer.
    async fn post(
        &self,
        path: &str,
        body: &str,
    ) -> anyhow::Result<(hyper::StatusCode, serde_json::Value)> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot reach the ua server at {}", self.authority))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = hyper::Request::post(format!("{}{path}", self.base_path))
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "text/plain")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let response = sender.send_request(request).await?;
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
    /// key: the route token (`crate::route`) lets a load balancer pick the
    /// spec's node, and a failed build's or setup's sealed output is opened
    /// and shown in the error.
    pub async fn open_instance_as_author(
        &self,
        sealed: &str,
        keys: &Keyring,
        spec_id: &str,
    ) -> anyhow::Result<String> {
        let path = format!("/spec?route={}", crate::route::token(keys, spec_id));
        self.post_spec(&path, sealed, Some(keys)).await
    }

    async fn post_spec(
        &self,
        path: &str,
        sealed: &str,
        keys: Option<&Keyring>,
    ) -> anyhow::Result<String> {
        let (status, json) = self.post(path, sealed).await?;
        if !status.is_success() {
            let error = json["error"].as_str().unwrap_or("no explanation given");
            let output = json["sealedOutput"]
                .as_str()
                .zip(keys)
                .and_then(|(output, keys)| keys.open(output).ok())
                .map(|text| String::from_utf8_lossy(&text).into_owned());
            match output {
                Some(output) => bail!("the server refused the spec ({status}): {error}\n{output}"),
                None => bail!("the server refused the spec ({status}): {error}"),
            }
        }
        json["instanceID"]
            .as_str()
            .map(str::to_string)
            .context("the server's answer has no instanceID")
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
    pub async fn terminal(&self, instance_id: &str) -> anyhow::Result<Socket> {
        let url = format!(
            "ws://{}{}/instance/{instance_id}/ws",
            self.authority, self.base_path
        );
        let (socket, _) = tokio_tungstenite::connect_async(&url)
            .await
            .with_context(|| format!("cannot open the terminal at {url}"))?;
        Ok(socket)
    }
}
