//! Leader election with the Lease `iotsub-operator`: one replica reconciles, the others stand by.

use std::{future::Future, sync::Arc};

use kube_lease_manager::LeaseManagerBuilder;
use tracing::{error, info};

use crate::metrics::Metrics;

pub const LEASE_NAME: &str = "iotsub-operator";

/// `$POD_NAME`, else `<hostname>-<pid>`: unique per replica.
pub fn identity() -> String {
    std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "host".into());
        format!("{}-{}", host.trim(), std::process::id())
    })
}

/// Waits for the Lease, then runs `work` while holding it. Losing the Lease ends the process with an
/// error rather than risk two active replicas; a signal releases it so a standby takes over at once.
pub async fn run_while_leader(
    client: kube::Client,
    namespace: &str,
    identity: &str,
    lease_seconds: u64,
    metrics: Arc<Metrics>,
    work: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let lease_seconds = lease_seconds.max(3);
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(lease_seconds)
        .with_grace((lease_seconds / 3).max(1))
        .build()
        .await?;
    let (mut leading, task) = manager.watch().await;
    info!(identity, namespace, lease = LEASE_NAME, "waiting for the Lease");
    let became_leader = tokio::select! {
        changed = leading.wait_for(|is_leader| *is_leader) => { changed.map(|_| true)? }
        _ = shutdown_signal() => false,
    };
    if !became_leader {
        drop(leading);
        let _ = task.await;
        return Ok(());
    }
    // The `leader` metric turns 1 once the caches are filled (crate::controller).
    info!(identity, "holding the Lease: reconciling");
    let outcome = tokio::select! {
        _ = work => Ok(()),
        lost = leading.wait_for(|is_leader| !*is_leader) => {
            error!(identity, "lost the Lease: stopping");
            let _ = lost;
            Err(anyhow::anyhow!("lost the Lease"))
        }
    };
    metrics.leader.set(0);
    drop(leading); // the manager releases the Lease when its channel closes
    let _ = task.await;
    outcome
}

pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
