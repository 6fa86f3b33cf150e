//! Operator benchmark on the local control plane: time from a ConsumerGroupSubscription created to
//! its Deployment seen by a watch (p50/p99), and the operator's memory with N subscriptions.
//!
//! `cargo run -p iotsub-e2e --bin bench-operator -- [N]` (default 500) after `make build cluster-up`.
//! Subscriptions have `replicas: 0` so no worker runs: this measures the operator alone.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use iotsub_e2e::{Cluster, Operator, subscription};
use iotsub_tests::{Emulator, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, ResourceExt, runtime::watcher};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(500);
    let spaced = total.min(50);
    let cluster = Cluster::connect().await?;
    let emulator = Emulator::start("").await?;
    let ns = cluster.namespace("bench-op").await?;
    subscription::put_secrets(&ns, &emulator).await?;
    let operator = Operator::start(&cluster.kubeconfig, &["--watch-namespace", &ns.name, "--leader-election", "false"]).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = rss_kib(operator.process.child.id());

    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let deployments: Api<Deployment> = ns.api();
    let watch_seen = seen.clone();
    let watch = tokio::spawn(async move {
        let mut events = watcher::watcher(deployments, watcher::Config::default()).boxed();
        while let Some(Ok(event)) = events.next().await {
            if let watcher::Event::Apply(d) | watcher::Event::InitApply(d) = event {
                watch_seen.lock().unwrap().entry(d.name_any()).or_insert_with(Instant::now);
            }
        }
    });

    let mut created = HashMap::new();
    let started = Instant::now();
    for i in 0..total {
        let name = format!("cgs-{i:04}");
        created.insert(name.clone(), Instant::now());
        let mut manifest = subscription::manifest(&name, &emulator, 0);
        manifest["spec"]["autoscaling"]["pollIntervalSeconds"] = 15.into(); // the default
        subscription::apply(&ns, &manifest).await?;
        if i < spaced {
            tokio::time::sleep(Duration::from_millis(200)).await; // one at a time: latency unloaded
        }
    }
    let create_seconds = started.elapsed().as_secs_f64();
    wait_until("every Deployment", Duration::from_secs(300), || async { (seen.lock().unwrap().len() >= total).then_some(()) }).await?;
    let all_seen = started.elapsed().as_secs_f64();
    watch.abort();
    let seen = seen.lock().unwrap().clone();
    let latency = |range: std::ops::Range<usize>| -> Vec<f64> {
        let mut v: Vec<f64> =
            range.map(|i| format!("cgs-{i:04}")).map(|n| seen[&n].saturating_duration_since(created[&n]).as_secs_f64() * 1000.0).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let pct = |v: &[f64], p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    let unloaded = latency(0..spaced);
    let burst = latency(spaced..total);
    println!("subscriptions: {total} ({spaced} spaced 200 ms apart, then {} back to back in {create_seconds:.1} s total)", total - spaced);
    println!(
        "CR → Deployment, spaced: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct(&unloaded, 0.5),
        pct(&unloaded, 0.99),
        unloaded[unloaded.len() - 1]
    );
    if !burst.is_empty() {
        println!(
            "CR → Deployment, burst:  p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; all {total} seen {all_seen:.1} s after the first create",
            pct(&burst, 0.5),
            pct(&burst, 0.99),
            burst[burst.len() - 1]
        );
    }
    // Memory once every subscription went through a few poll intervals (status, platform calls).
    tokio::time::sleep(Duration::from_secs(45)).await;
    let rss = rss_kib(operator.process.child.id());
    println!(
        "operator RSS: {:.1} MiB idle, {:.1} MiB with {total} subscriptions (after 45 s of polling)",
        idle_rss as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    let reconciles = operator.metric("iotsub_operator_reconciles_total").await.unwrap_or(0.0);
    let cpu = cpu_seconds(operator.process.child.id());
    println!("reconciles: {reconciles:.0}; operator CPU time {cpu:.1} s over {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// utime + stime from /proc/<pid>/stat, in seconds (100 ticks/s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}
