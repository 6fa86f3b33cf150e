use std::time::Duration;

use clap::Parser;
use iotsub_standin::{Config, Standin, server};
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    iotsub_common::telemetry::init();
    let config = Config::parse();
    let standin = Standin::new(&config)?;
    let listener = TcpListener::bind(config.listen).await.map_err(|e| anyhow::anyhow!("listening on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    if let Some(path) = &config.addr_file {
        // Written whole, then renamed: a reader never sees half an address.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, addr.to_string()).map_err(|e| anyhow::anyhow!("writing {}: {e}", partial.display()))?;
        std::fs::rename(&partial, path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    tracing::info!(%addr, service_time_ms = config.service_time_ms, concurrency = config.concurrency, ids_file = ?config.ids_file, "listening");
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        () = server::serve(listener, standin.clone()) => {}
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    standin.drain_ids(Duration::from_secs(5)).await;
    tracing::info!(stats = ?standin.stats(), "stopped");
    Ok(())
}
