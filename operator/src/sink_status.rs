//! The workers' sinks: `GET http://<podIP>:<port>/status` of the pods that run but are not ready
//! (`core::observed::sink_suspects`), concurrently, each within [`TIMEOUT`]. A pod that cannot be
//! read is unknown, not failing.

use std::{net::SocketAddr, time::Duration};

use iotsub_operator_core::observed::{PodSink, SinkReading};
use serde::Deserialize;
use tracing::debug;

/// A worker answers `/status` from memory; one that takes longer is as good as unreachable.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTP client for the workers' `/status`: no redirects, no proxy, a short timeout.
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder().timeout(TIMEOUT).redirect(reqwest::redirect::Policy::none()).no_proxy().build()
}

#[derive(Deserialize)]
struct WorkerStatus {
    sink: PodSink,
}

/// One reading per suspect (name, pod IP), in order; no call when there is none.
pub async fn read(http: &reqwest::Client, suspects: Vec<(String, String)>, port: u16) -> Vec<SinkReading> {
    let reads = suspects.into_iter().map(|(pod, ip)| async move {
        let sink = match ip.parse() {
            Ok(ip) => ask(http, SocketAddr::new(ip, port))
                .await
                .map_err(|error| debug!(pod, %error, "the worker's /status could not be read"))
                .ok(),
            Err(_) => None,
        };
        SinkReading { pod, sink }
    });
    futures::future::join_all(reads).await
}

async fn ask(http: &reqwest::Client, address: SocketAddr) -> reqwest::Result<PodSink> {
    let status: WorkerStatus = http.get(format!("http://{address}/status")).send().await?.error_for_status()?.json().await?;
    Ok(status.sink)
}
