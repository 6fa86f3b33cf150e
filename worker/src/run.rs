//! Wiring: trust roots, sink, dead letters, metrics, HTTP server, one task per connection, and the shutdown.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    attempt_budget::AttemptBudget,
    config::{Config, DeadLetterConfig, SinkConfig},
    connection,
    credentials::Credentials,
    dead_letter::DeadLetterSink,
    dedup::DedupWindow,
    delivery_count::DeliveryCounts,
    error::Error,
    metrics::Metrics,
    server::{self, AppState},
    shared::Shared,
    sink::{
        Sink,
        batch::BatchSink,
        headers::HeaderFiles,
        health::SinkHealth,
        http::{HttpSink, ce_source},
        log::LogSink,
        retry::RetryPolicy,
    },
    status::StatusBoard,
    tls,
};

/// Messageids whose failed deliveries are remembered for `--max-deliveries`.
const DELIVERY_COUNT_CAPACITY: usize = 100_000;

/// Runs until SIGTERM/SIGINT (through `stop`) and every connection has drained.
pub async fn run(config: Config, stop: CancellationToken) -> Result<(), Error> {
    let config = Arc::new(config);
    info!(
        client_ids = ?config.client_ids,
        host = %config.host,
        port = config.port,
        consumer_group_id = %config.consumer_group_id,
        sink = ?config.sink,
        dead_letter = ?config.dead_letter,
        "starting"
    );
    let tls = tls::Trust::new(config.ca_file.clone(), config.extra_ca_pem.clone())?;
    let credentials = Credentials::new(config.credentials.clone(), config.extra_ca_pem.as_deref())?;
    let source = ce_source(&config.instance_id, &config.consumer_group_id);
    let metrics = Arc::new(Metrics::new());
    let (sink, attempt_timeout) = match &config.sink {
        SinkConfig::Log => (Sink::Log(LogSink::start_fd(std::io::stdout())), Duration::from_secs(10)),
        SinkConfig::Http { url, timeout, headers_dir, protocol, batch } => {
            let headers = headers_dir.as_deref().map(HeaderFiles::load).transpose()?;
            let http = HttpSink::new(url, *protocol, source.clone(), headers)?;
            let sink = match batch {
                Some(limits) => Sink::HttpBatch(Box::new(BatchSink::start(http, *limits, metrics.clone()))),
                None => Sink::Http(Box::new(http)),
            };
            (sink, *timeout)
        }
    };
    let dead_letters = match &config.dead_letter {
        DeadLetterConfig::Log => DeadLetterSink::log(),
        DeadLetterConfig::Http { url } => DeadLetterSink::http(url, source, attempt_timeout)?,
    };
    let sink_health = SinkHealth::new(config.sink_failure_threshold, metrics.clone(), sink.describe());
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
            sink: sink.kind(),
            sink_health: sink_health.clone(),
            dead_letter: dead_letters.describe(),
        },
        http_stop.clone(),
    )
    .await?;
    let shared = Arc::new(Shared {
        config: config.clone(),
        credentials,
        tls,
        sink,
        sink_health,
        dead_letters,
        dedup: Mutex::new(DedupWindow::new(config.dedup_window)),
        delivery_counts: Mutex::new(DeliveryCounts::new(DELIVERY_COUNT_CAPACITY)),
        attempts: Mutex::new(AttemptBudget::new(config.reconnect_attempts_per_minute)),
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
