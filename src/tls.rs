//! TLS for every listener, with rustls: server certificates, and mutual TLS when a
//! client CA is configured (a client without a certificate signed by it is refused
//! during the handshake).

use crate::config::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

/// The PEM contents for tonic, which builds its own rustls config.
pub fn tonic_config(files: &TlsFiles) -> Result<tonic::transport::ServerTlsConfig, String> {
    // Parse with rustls first, so a bad file fails at start-up with a clear message.
    rustls_config(files, &[])?;
    let identity = tonic::transport::Identity::from_pem(
        read(&files.cert_file, "certificate")?,
        read(&files.key_file, "private key")?,
    );
    let mut cfg = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca_file {
        cfg = cfg
            .client_ca_root(tonic::transport::Certificate::from_pem(read(
                ca,
                "client CA",
            )?))
            .client_auth_optional(false);
    }
    Ok(cfg)
}

pub fn rustls_config(
    files: &TlsFiles,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read(&files.cert_file, "certificate")?)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("invalid certificate {}: {e}", files.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", files.cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key_file, "private key")?)
        .map_err(|e| format!("invalid private key {}: {e}", files.key_file.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    let builder = match &files.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&read(ca, "client CA")?) {
                let c = c.map_err(|e| format!("invalid client CA {}: {e}", ca.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("invalid client CA {}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "certificate and key {} do not fit: {e}",
            files.cert_file.display()
        )
    })?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// Serves an axum router over TLS until `stop` is cancelled. Handshake failures (a
/// client without a valid certificate, plain HTTP on a TLS port) are logged at debug
/// level and cost only that connection.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    cfg: Arc<rustls::ServerConfig>,
    stop: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "Accepting a connection failed.");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed.");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out.");
                    return;
                }
            };
            // The client address, as the plain listener gives it, for the rate limit.
            let router = tower::ServiceExt::map_request(router, move |mut r: http::Request<_>| {
                r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                r
            });
            let svc = hyper_util::service::TowerToHyperService::new(router);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { tracing::debug!(%peer, error = %e, "Connection ended with an error."); },
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}
