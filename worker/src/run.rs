//! Wiring: trust roots, sink, metrics, HTTP server, one task per connection, and the shutdown.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    config::{Config, SinkConfig},
    connection::{self, Shared},
    dedup::DedupWindow,
    error::Error,
    metrics::Metrics,
    server::{self, AppState},
    sink::{Sink, http::HttpSink, log::LogSink, retry::RetryPolicy},
    status::StatusBoard,
    tls,
};

/// Runs until SIGTERM/SIGINT (through `stop`) and every connection has drained.
pub async fn run(config: Config, stop: CancellationToken) -> Result<(), Error> {
    let config = Arc::new(config);
    info!(
        client_ids = ?config.client_ids,
        host = %config.host,
        port = config.port,
        consumer_group_id = %config.consumer_group_id,
        sink = ?config.sink,
        "starting"
    );
    let tls = TlsConnector::from(tls::client_config(config.extra_ca_pem.as_deref())?);
    let (sink, attempt_timeout) = match &config.sink {
        SinkConfig::Log => (Sink::Log(LogSink::start(std::io::stdout())), Duration::from_secs(10)),
        SinkConfig::Http { url, timeout } => (Sink::Http(HttpSink::new(url, &config.instance_id, &config.consumer_group_id)?), *timeout),
    };
    let metrics = Arc::new(Metrics::new());
    let status = Arc::new(StatusBoard::new(&config.client_ids));
    let http_stop = CancellationToken::new();
    let http = server::serve(
        config.http_addr,
        config.http_addr_file.as_deref(),
        AppState {
            metrics: metrics.clone(),
            status: status.clone(),
            consumer_group_id: config.consumer_group_id.clone(),
            instance_id: config.instance_id.clone(),
            sink: sink.name(),
        },
        http_stop.clone(),
    )
    .await?;
    let shared = Arc::new(Shared {
        config: config.clone(),
        tls,
        sink: Arc::new(sink),
        dedup: Arc::new(Mutex::new(DedupWindow::new(config.dedup_window))),
        metrics,
        status,
        retry: RetryPolicy { first_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5), attempt_timeout },
    });
    let tasks: Vec<_> =
        (0..config.client_ids.len()).map(|index| tokio::spawn(connection::run(index, shared.clone(), stop.clone()))).collect();
    for task in tasks {
        if let Err(e) = task.await {
            warn!(error = %e, "a connection task failed");
        }
    }
    http_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    info!("stopped");
    Ok(())
}
