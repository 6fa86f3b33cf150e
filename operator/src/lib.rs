//! The operator's I/O: watch caches and the platform's OpenAPI in (observe), the Deployment, the
//! status and Events out (apply). What to do in between is decided by the pure
//! `iotsub_operator_core::decide`.

mod apply;
pub mod cli;
mod context;
mod controller;
mod health;
mod http;
mod leader;
mod metrics;
mod observe;
mod platform;
mod reconcile;
mod rrsa;
mod secrets;
mod sink_status;

#[cfg(test)]
mod fixtures;

use std::sync::Arc;

use tracing::info;

/// Serves `/metrics` and `/healthz`, waits for the Lease (unless `--leader-election false`), then
/// runs the controller until a signal or a lost Lease.
pub async fn run(args: cli::Args) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(metrics::Metrics::default());
    let health = Arc::new(health::Health::default());
    let http = http::serve(args.http_addr, metrics.clone(), health.clone()).await?;
    info!(
        addr = %http.local_addr, watch_namespace = ?args.watch_namespace, worker_image = %args.worker_image,
        allowed_worker_images = ?args.allowed_worker_images, require_secret_label = args.require_secret_label,
        allow_worker_placement = args.allow_worker_placement, allow_worker_pod_annotations = args.allow_worker_pod_annotations,
        "operator starting"
    );
    let identity = leader::identity();
    let (stores, writers) = controller::stores();
    let ctx = Arc::new(context::Context::new(client.clone(), &args, &identity, metrics.clone(), health, stores)?);
    if args.leader_election {
        let namespace = args.lease_namespace();
        leader::run_while_leader(client, &namespace, &identity, args.lease_seconds, metrics, controller::run(ctx, writers)).await
    } else {
        controller::run(ctx, writers).await;
        Ok(())
    }
}
