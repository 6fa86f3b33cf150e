//! The OpenAPI and admin API over TLS, with the same server certificate as the AMQP endpoint:
//! clients trust `<state-dir>/ca.pem`, as they would a private endpoint's CA. There is no plain
//! HTTP listener, so nothing can send a signed request in clear.

use std::{sync::Arc, time::Duration};

use axum::Router;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A client that never finishes its handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts until the listener fails; each connection is served on its own task.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: Router) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (stream, remote) = listener.accept().await?;
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return tracing::debug!(%remote, %error, "API TLS handshake failed"),
                Err(_) => return tracing::debug!(%remote, "API TLS handshake timed out"),
            };
            let service = TowerToHyperService::new(router);
            if let Err(error) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%remote, %error, "API connection ended with an error");
            }
        });
    }
}
