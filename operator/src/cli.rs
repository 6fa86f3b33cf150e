//! Flags; each also reads `IOTSUB_OPERATOR_<FLAG>`.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(name = "iotsub-operator", version, about = "Runs ConsumerGroupSubscriptions as Deployments of iotsub-worker")]
pub struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "IOTSUB_OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// The worker image when a subscription's spec.worker.image is empty.
    #[arg(long, env = "IOTSUB_OPERATOR_WORKER_IMAGE", default_value = "iotsub-worker")]
    pub worker_image: String,
    /// `/metrics` and `/healthz`.
    #[arg(long, env = "IOTSUB_OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Run only while holding the Lease `iotsub-operator`, so replicas stand by.
    #[arg(long, env = "IOTSUB_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Where the Lease lives (default: the watch namespace, else $POD_NAMESPACE, else `default`).
    #[arg(long, env = "IOTSUB_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Lease duration in seconds: how long a stopped leader blocks a standby.
    #[arg(long, env = "IOTSUB_OPERATOR_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,
}

impl Args {
    pub fn lease_namespace(&self) -> String {
        self.lease_namespace
            .clone()
            .or_else(|| self.watch_namespace.clone())
            .or_else(|| std::env::var("POD_NAMESPACE").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "default".into())
    }
}
