//! `/metrics` (Prometheus text) and `/healthz` on `--http-addr`.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};

use crate::metrics::Metrics;

pub struct Server {
    pub local_addr: SocketAddr,
}

pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<Server> {
    let app = Router::new().route("/healthz", get(|| async { "ok" })).route("/metrics", get(metrics_text)).with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "http server stopped");
        }
    });
    Ok(Server { local_addr })
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.encode())
}
