//! `/metrics` (Prometheus text) and `/healthz` (the controller's heartbeat, [`crate::health`]) on
//! `--http-addr`.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};

use crate::{
    health::{Health, verdict},
    metrics::Metrics,
};

pub struct Server {
    pub local_addr: SocketAddr,
}

pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, health: Arc<Health>) -> anyhow::Result<Server> {
    let app = Router::new().route("/healthz", get(healthz).with_state(health)).route("/metrics", get(metrics_text).with_state(metrics));
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

async fn healthz(State(health): State<Arc<Health>>) -> (StatusCode, String) {
    match verdict(&health.snapshot(Instant::now())) {
        Ok(()) => (StatusCode::OK, "ok".into()),
        Err(stuck) => {
            tracing::error!(stuck, "liveness failing: the controller makes no progress");
            (StatusCode::SERVICE_UNAVAILABLE, stuck)
        }
    }
}
