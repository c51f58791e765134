//! TLS for ua's clients (`ua connect`, `ua bench`) talking to a server behind
//! an https reverse proxy: rustls with ring, trusting the system's roots
//! (Debian: /etc/ssl/certs, or `SSL_CERT_FILE`/`SSL_CERT_DIR`) plus the
//! certificates of a `--ca-file` (a private or throw-away CA).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// The client configuration for https and wss: system roots, then every
/// certificate in `ca_file`. HTTP/1.1 only (the websocket upgrade needs it).
pub fn config(ca_file: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    // A missing or partly unreadable system store is not fatal: a private CA
    // may be all the client needs. Unparsable system certificates are skipped.
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("cannot read the CA file {}", path.display()))?;
        if certs.is_empty() {
            bail!("the CA file {} holds no PEM certificate", path.display());
        }
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("a certificate in {} is unusable", path.display()))?;
        }
    }
    if roots.is_empty() {
        bail!("no trusted certificates: the system has none (install ca-certificates) and no --ca-file was given");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no safe protocol version")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name to verify the server's certificate against: the URL's host, an
/// IPv6 literal without its brackets.
pub fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_string())
        .with_context(|| format!("{host:?} is not a host name or IP address"))
}
