//! Two operator replicas with leader election: one reconciles; kill it and the other takes over
//! within the Lease duration. Also `/healthz` and `/metrics`.

use std::time::{Duration, Instant};

use iotsub_e2e::{Cluster, Operator, holds_for, subscription};
use iotsub_tests::wait_until;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

const LEASE_SECONDS: u64 = 6;

/// The flags of a replica with leader election in `namespace`, the Lease lasting `lease` seconds.
fn replica_args<'a>(namespace: &'a str, lease: &'a str) -> [&'a str; 6] {
    ["--watch-namespace", namespace, "--lease-namespace", namespace, "--lease-seconds", lease]
}

/// A first replica, once it leads.
async fn leading(cluster: &Cluster, args: &[&str]) -> anyhow::Result<Operator> {
    let first = Operator::start(&cluster.kubeconfig, args).await?;
    wait_until("the first replica to lead", Duration::from_secs(30), || async {
        (first.metric("iotsub_operator_leader").await.ok()? == 1.0).then_some(())
    })
    .await?;
    Ok(first)
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_dies() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let emulator = iotsub_e2e::reach::emulator("").await?;
    let ns = cluster.namespace("e2e-leader").await?;
    let lease = LEASE_SECONDS.to_string();
    let args = replica_args(&ns.name, &lease);
    let mut first = leading(&cluster, &args).await?;
    // The standby logs its watches: if it ever fails to take over, its log says where it stood.
    let second = Operator::start_logging(&cluster.kubeconfig, &args, "info,kube_runtime=debug").await?;
    assert_eq!(second.get("/healthz").await?, (200, "ok".into()));
    holds_for("the standby stays passive while the leader renews", Duration::from_secs(LEASE_SECONDS + 2), || async {
        anyhow::ensure!(second.metric("iotsub_operator_leader").await? == 0.0, "two active replicas");
        anyhow::ensure!(first.metric("iotsub_operator_leader").await? == 1.0, "the leader let go");
        Ok(())
    })
    .await?;

    subscription::put_secrets(&ns, &emulator).await?;
    subscription::apply(&ns, &subscription::manifest("orders", &emulator, 0)).await?;
    let deployments: Api<Deployment> = ns.api();
    wait_until("the leader to create the Deployment", Duration::from_secs(30), || async {
        deployments.get_opt("orders").await.ok()?.map(|_| ())
    })
    .await?;
    assert!(first.metric("iotsub_operator_reconciles_total").await? >= 1.0);
    assert_eq!(second.metric("iotsub_operator_reconciles_total").await?, 0.0, "the standby reconciled nothing");

    first.process.signal(nix::sys::signal::Signal::SIGKILL)?;
    first.process.wait_exit(Duration::from_secs(10)).await?;
    let killed = Instant::now();
    wait_until("the standby to lead", Duration::from_secs(LEASE_SECONDS * 2 + 5), || async {
        (second.metric("iotsub_operator_leader").await.ok()? == 1.0).then_some(())
    })
    .await?;
    let takeover = killed.elapsed();
    println!("the standby took over {takeover:?} after the leader was killed (Lease {LEASE_SECONDS} s)");
    assert!(takeover <= Duration::from_secs(LEASE_SECONDS + 3), "took over after {takeover:?}");

    // The new leader reconciles: a new subscription gets its Deployment.
    subscription::apply(&ns, &subscription::manifest("second", &emulator, 0)).await?;
    wait_until("the new leader to create a Deployment", Duration::from_secs(30), || async {
        deployments.get_opt("second").await.ok()?.map(|_| ())
    })
    .await
    .map_err(|e| e.context(second.log_text()))?;
    Ok(())
}

/// The subscriptions whose series the operator exports (one per reconciled subscription).
async fn reconciled(operator: &Operator) -> anyhow::Result<usize> {
    let (_, text) = operator.get("/metrics").await?;
    Ok(text.lines().filter(|l| l.starts_with("iotsub_operator_desired_replicas{")).count())
}

#[tokio::test]
async fn a_standby_reconciles_all_20_subscriptions_within_the_lease_plus_5_s_of_the_leaders_death() -> anyhow::Result<()> {
    const SUBSCRIPTIONS: usize = 20;
    let cluster = Cluster::connect().await?;
    let emulator = iotsub_e2e::reach::emulator("").await?;
    let ns = cluster.namespace("e2e-failover").await?;
    let lease = LEASE_SECONDS.to_string();
    let args = replica_args(&ns.name, &lease);
    let mut first = leading(&cluster, &args).await?;
    let second = Operator::start(&cluster.kubeconfig, &args).await?;
    subscription::put_secrets(&ns, &emulator).await?;
    for i in 0..SUBSCRIPTIONS {
        subscription::apply(&ns, &subscription::manifest(&format!("s{i:02}"), &emulator, 0)).await?;
    }
    wait_until("the leader to reconcile all", Duration::from_secs(60), || async {
        (reconciled(&first).await.ok()? == SUBSCRIPTIONS).then_some(())
    })
    .await?;
    assert_eq!(reconciled(&second).await?, 0, "the standby reconciled");

    first.process.signal(nix::sys::signal::Signal::SIGKILL)?;
    first.process.wait_exit(Duration::from_secs(10)).await?;
    let killed = Instant::now();
    wait_until("the standby to reconcile all 20", Duration::from_secs(LEASE_SECONDS + 5), || async {
        (reconciled(&second).await.ok()? == SUBSCRIPTIONS).then_some(())
    })
    .await
    .map_err(|e| e.context(second.log_text()))?;
    println!(
        "the standby reconciled all {SUBSCRIPTIONS} subscriptions {:?} after the leader was killed (Lease {LEASE_SECONDS} s)",
        killed.elapsed()
    );
    let (_, text) = second.get("/metrics").await?;
    assert!(
        !text.lines().any(|l| l.starts_with("iotsub_operator_reconcile_errors_total{")),
        "reconcile errors after the failover:\n{text}"
    );
    assert_eq!(second.metric("iotsub_operator_leader").await?, 1.0);
    assert_eq!(second.get("/healthz").await?, (200, "ok".into()));
    Ok(())
}
