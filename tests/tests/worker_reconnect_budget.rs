//! Reconnects stay inside the consumer group's budget of connection attempts (the platform allows 100
//! per minute per group, for all its clients): 16 clients whose connections are dropped three times
//! in a minute wait their turn instead of being refused, and lose nothing.

use iotsub_emulator::admin::GroupSnapshot;
use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use iotsub_tests::{
    Emulator, wait_until,
    worker::{GROUP, TOPIC, Worker, WorkerOptions, delivered_counts, tail},
};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_dropped_three_times_in_a_minute_stay_inside_the_attempt_budget_and_lose_nothing() -> anyhow::Result<()> {
    // A group budget of 40 attempts per minute (the platform's 100, scaled so the test binds it):
    // 4 pods of 4 connections, each pod's share 40 / 4 = 10, as the operator would set it.
    let group_budget = 40;
    let emulator = Emulator::start(&format!(
        "[limits]\nconnection_attempts_per_minute = {group_budget}\nstacked_rate_per_group = 20000\nstacked_retry_after_ms = 200\n"
    ))
    .await?;
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir()).collect::<Result<_, _>>()?;
    let mut workers = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let options = WorkerOptions::for_emulator(&emulator, &format!("pod{i}")).connections(4).arg("--reconnect-attempts-per-minute", 10);
        workers.push(Worker::start(dir.path(), &options).await?);
    }
    for worker in &workers {
        worker.wait_ready(Duration::from_secs(20)).await?;
    }

    // The emulator's count of the group's attempts in the last minute, sampled throughout.
    let most = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (most, url, http) =
            (most.clone(), emulator.api_url(&format!("/admin/consumer-groups/{GROUP}?instanceId=")), emulator.http_client());
        tokio::spawn(async move {
            loop {
                if let Ok(g) = http.get(&url).send().await?.json::<GroupSnapshot>().await {
                    most.fetch_max(g.connection_attempts.last_minute, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            #[allow(unreachable_code)]
            anyhow::Ok(())
        })
    };

    let mut ids = Vec::new();
    for round in 0..3 {
        ids.extend(emulator.publish(GROUP, TOPIC, "{}", 500).await?);
        let dropped: Value = emulator.fault("drop-connections", GROUP).await?;
        assert!(dropped["dropped"].as_u64().unwrap_or(0) >= 1, "round {round}: {dropped}");
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
    ids.extend(emulator.publish(GROUP, TOPIC, "{}", 500).await?);
    for worker in &workers {
        worker.wait_ready(Duration::from_secs(90)).await.map_err(|e| anyhow::anyhow!("{e}\n{}", tail(&worker.stderr(), 10)))?;
    }
    wait_until("every messageId in a sink", Duration::from_secs(60), || async {
        let delivered: HashSet<String> = dirs.iter().flat_map(|d| delivered_counts(d.path()).into_keys()).collect();
        ids.iter().all(|id| delivered.contains(id)).then_some(())
    })
    .await?;
    sampler.abort();

    let g = emulator.group_snapshot(GROUP).await?;
    let most = most.load(Ordering::SeqCst);
    assert!(most <= group_budget, "{most} attempts in one minute, over the group's {group_budget}");
    assert!(g.connection_attempts.total >= 16 + 16, "the drops were reconnected: {g:?}");
    let refused: Vec<_> = emulator.refusals_typed().await?.into_iter().filter(|r| r.reason.contains("attempt")).collect();
    assert!(refused.is_empty(), "attempts refused by the platform's limit: {refused:?}");
    // The budget held some connections back, and every reconnect waited at least a second.
    let logs: String = workers.iter().map(Worker::stderr).collect();
    assert!(logs.contains("connection attempts for this minute are used up"), "the budget never bound");
    let delays: Vec<u64> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "connection lost or failed")
        .filter_map(|v| v["fields"]["retry_in_ms"].as_u64())
        .collect();
    assert!(delays.len() >= 16, "{delays:?}");
    assert!(delays.iter().all(|d| *d >= 1_000), "a reconnect sooner than 1 s: {delays:?}");
    Ok(())
}
