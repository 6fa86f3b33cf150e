//! HTTP on `--http-addr`: `/healthz`, `/readyz`, `/metrics`, `/status`.
//!
//! With port 0 the bound address is logged (`"http listening"`, field `addr`) and, with
//! `--http-addr-file`, written to that file once the server accepts connections.

use std::{net::SocketAddr, path::Path, sync::Arc};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{breaker::BreakerState, error::Error, metrics::Metrics, sink::health::SinkHealth, status::StatusBoard};

#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub status: Arc<StatusBoard>,
    pub consumer_group_id: String,
    pub instance_id: String,
    /// `log` or `http`.
    pub sink: &'static str,
    pub sink_health: Arc<SinkHealth>,
    /// Where dead letters go, as shown.
    pub dead_letter: String,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(state)
}

/// Ready when every connection is attached and the sink's circuit is not open.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut reasons: Vec<String> = state
        .status
        .snapshot()
        .into_iter()
        .filter(|c| c.state != crate::status::ConnectionState::Attached)
        .map(|c| format!("{}: {}", c.client_id, c.state.as_str()))
        .collect();
    let sink = state.sink_health.snapshot();
    if sink.state != BreakerState::Ok {
        reasons.push(format!(
            "sink {} failing (circuit {} since {}, {} consecutive failures; last error: {})",
            state.sink_health.name,
            sink.state.as_str(),
            sink.since,
            sink.consecutive_failures,
            sink.last_error.as_deref().unwrap_or("none")
        ));
    }
    if reasons.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", reasons.join(", ")))
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
}

async fn status(State(state): State<AppState>) -> impl IntoResponse {
    let connections = state.status.snapshot();
    let sink = state.sink_health.snapshot();
    let ready = state.status.ready() && sink.state == BreakerState::Ok;
    Json(json!({
        "consumerGroupId": state.consumer_group_id,
        "instanceId": state.instance_id,
        "sink": {
            "type": state.sink,
            "target": state.sink_health.name,
            "deadLetter": state.dead_letter,
            "state": sink.state,
            "consecutiveFailures": sink.consecutive_failures,
            "lastError": sink.last_error,
            "since": sink.since,
        },
        "ready": ready,
        "clientIds": connections.iter().map(|c| c.client_id.clone()).collect::<Vec<_>>(),
        "connections": connections,
    }))
}

/// Binds, reports the bound address, and serves until `stop`.
pub async fn serve(
    addr: SocketAddr,
    addr_file: Option<&Path>,
    state: AppState,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let listener = TcpListener::bind(addr).await.map_err(|e| Error::HttpServer { addr: addr.to_string(), detail: e.to_string() })?;
    let bound = listener.local_addr().map_err(|e| Error::HttpServer { addr: addr.to_string(), detail: e.to_string() })?;
    if let Some(path) = addr_file {
        // Written atomically so a reader never sees half an address.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{bound}\n"))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| Error::HttpServer { addr: bound.to_string(), detail: format!("writing {}: {e}", path.display()) })?;
    }
    tracing::info!(addr = %bound, "http listening");
    let app = router(state);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "http server stopped");
        }
    }))
}
