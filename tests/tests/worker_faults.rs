//! Faults with real processes and real signals: SIGKILL, dropped connections, refused logins, a
//! failing sink, SIGTERM under load.

use std::{collections::HashSet, time::Duration};

use iotsub_emulator::admin::{GroupSnapshot, Stage};
use iotsub_tests::{
    Emulator, wait_until,
    worker::{Fixture, GROUP, SinkServer, TOPIC, Worker, WorkerOptions, delivered_counts, group},
};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Limits that keep redelivery fast enough for a test: released or cut-off messages go to the
/// stacked queue, which the platform pushes at 200/s and blocks for a minute after a refusal.
const FAST_REDELIVERY: &str = "[limits]\nstacked_rate_per_group = 20000\nstacked_retry_after_ms = 200\n";

async fn settled(emulator: &Emulator) -> Option<GroupSnapshot> {
    let g = group(emulator).await.ok()?;
    (g.backlog == 0 && g.in_flight == 0).then_some(g)
}

#[tokio::test]
async fn sigkill_while_10000_messages_flow_loses_nothing() -> anyhow::Result<()> {
    let emulator = Emulator::start(FAST_REDELIVERY).await?;
    let dir = tempfile::tempdir()?;
    let options = WorkerOptions::for_emulator(&emulator, "k").connections(4);
    let worker = Worker::start(dir.path(), &options).await?;
    worker.wait_ready(Duration::from_secs(20)).await?;

    let ids = emulator.publish(GROUP, TOPIC, r#"{"items":{"t":{"value":21.5}}}"#, 10_000).await?;
    wait_until("2000 messages through the sink", Duration::from_secs(60), || async {
        (delivered_counts(dir.path()).len() >= 2_000).then_some(())
    })
    .await?;
    worker.process.signal(Signal::SIGKILL)?;
    let mut worker = worker;
    worker.process.wait_exit(Duration::from_secs(5)).await?;
    let before = delivered_counts(dir.path()).len();
    assert!(before < 10_000, "the kill came too late to test anything ({before} delivered)");

    let worker = Worker::start(dir.path(), &options).await?;
    wait_until("every published messageId in the sink", Duration::from_secs(120), || async {
        let counts = delivered_counts(dir.path());
        ids.iter().all(|id| counts.contains_key(id)).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {} of 10000 after restart\n{}", delivered_counts(dir.path()).len(), worker.stderr()))?;
    let g = wait_until("the emulator to settle", Duration::from_secs(30), || settled(&emulator)).await?;
    assert!(g.counters.acknowledged >= 10_000, "{g:?}");
    Ok(())
}

#[tokio::test]
async fn dropped_connections_reconnect_with_jitter_and_lose_nothing() -> anyhow::Result<()> {
    let fx = Fixture::start(FAST_REDELIVERY, "r", |o| o.connections(2)).await?;
    let (emulator, worker, dir) = (&fx.emulator, &fx.worker, &fx.dir);

    let mut ids = Vec::new();
    for round in 0..3 {
        ids.extend(emulator.publish(GROUP, TOPIC, "{}", 1_000).await?);
        let dropped = emulator.inject("drop-connections", GROUP).await?;
        assert_eq!(dropped.dropped, Some(2), "round {round}: {dropped:?}");
        wait_until("both connections back", Duration::from_secs(20), || async {
            let total = worker.metric_sum("iotsub_worker_reconnects_total{").await.ok()?;
            (total >= 2.0 * (round + 1) as f64 && worker.ready().await).then_some(())
        })
        .await?;
    }
    wait_until("every messageId in the sink", Duration::from_secs(60), || async {
        let counts = delivered_counts(dir.path());
        ids.iter().all(|id| counts.contains_key(id)).then_some(())
    })
    .await?;
    wait_until("the emulator to settle", Duration::from_secs(30), || settled(emulator)).await?;

    // Each reconnect waited a jittered delay: the logged delays are not all alike.
    let delays: Vec<u64> = worker
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "connection lost or failed")
        .filter_map(|v| v["fields"]["retry_in_ms"].as_u64())
        .collect();
    assert!(delays.len() >= 6, "expected a reconnect per connection and drop: {delays:?}");
    assert!(delays.iter().collect::<HashSet<_>>().len() > 1, "no jitter: {delays:?}");
    assert!(delays.iter().all(|d| *d >= 50), "{delays:?}");
    assert!(worker.metric_sum("iotsub_worker_reconnects_total{client_id=\"r-0\"").await? >= 3.0);
    Ok(())
}

#[tokio::test]
async fn refused_logins_back_off_long_and_say_why() -> anyhow::Result<()> {
    let fx = Fixture::start("", "x", |o| o).await?;
    let (emulator, worker) = (&fx.emulator, &fx.worker);

    emulator.fault("refuse-logins", GROUP).await?;
    emulator.fault("drop-connections", GROUP).await?;
    let status = wait_until("the worker to report the refusal", Duration::from_secs(15), || async {
        let s = worker.status().await.ok()?;
        (s["connections"][0]["state"] == "login-refused").then_some(s)
    })
    .await?;
    let error = status["connections"][0]["lastError"].as_str().unwrap_or("");
    assert!(error.contains("login refused") && error.contains("credentials"), "{error}");
    let (code, body) = worker.get("/readyz").await?;
    assert_eq!(code, 503);
    assert!(body.contains("login-refused"), "{body}");

    // No hot loop: over the next 5 s, no second attempt (the login backoff starts at 15 s, jittered to ≥ 7.5 s).
    let sasl_refusals = || async { anyhow::Ok(emulator.refusals_typed().await?.into_iter().filter(|r| r.stage == Stage::Sasl).count()) };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(sasl_refusals().await?, 1, "the worker retried a refused login within 5 s");
    assert!(!worker.ready().await);
    let logged = worker.stderr();
    let line = logged.lines().find(|l| l.contains("connection refused")).expect("a refusal log line");
    let v: Value = serde_json::from_str(line)?;
    assert_eq!(v["fields"]["kind"], "login_refused");
    assert!(v["fields"]["retry_in_ms"].as_u64().unwrap() >= 7_500, "{line}");

    // Logins accepted again: the worker recovers by itself after its backoff.
    emulator.fault("resume", GROUP).await?;
    worker.wait_ready(Duration::from_secs(40)).await?;
    assert!(worker.metric("iotsub_worker_login_refusals_total{client_id=\"x\"}").await? >= 1.0);
    Ok(())
}

#[tokio::test]
async fn failing_http_sink_acknowledges_nothing_before_success_and_loses_nothing() -> anyhow::Result<()> {
    let emulator = Emulator::start(FAST_REDELIVERY).await?;
    let sink = SinkServer::start().await?;
    sink.answer(503);
    let dir = tempfile::tempdir()?;
    // A 4 s acknowledgement window, so the worker's release-before-the-window shows within the test;
    // a circuit breaker that does not open, so every message is retried inside its window (the
    // breaker's own behaviour is worker_backpressure's).
    let options = WorkerOptions::for_emulator(&emulator, "s")
        .http_sink(&sink.url)
        .arg("--ack-window-ms", 4_000)
        .arg("--sink-failure-threshold", 100_000);
    let worker = Worker::start(dir.path(), &options).await?;
    worker.wait_ready(Duration::from_secs(20)).await?;

    let ids = emulator.publish(GROUP, TOPIC, "{\"v\":1}", 20).await?;
    wait_until("the worker to release after retrying", Duration::from_secs(20), || async {
        (worker.metric("iotsub_worker_messages_released_total").await.ok()? >= 20.0).then_some(())
    })
    .await?;
    let g = group(&emulator).await?;
    assert_eq!(g.counters.acknowledged, 0, "acknowledged while the sink failed: {g:?}");
    assert!(g.counters.refused_by_client >= 20, "{g:?}");
    let attempts = sink.requests().len();
    assert!(attempts >= 40, "expected retries inside the window, saw {attempts} requests for 20 messages");
    assert!(sink.accepted_ids().is_empty());

    sink.answer(200);
    wait_until("every message accepted by the sink", Duration::from_secs(30), || async {
        let accepted = sink.accepted_ids();
        ids.iter().all(|id| accepted.contains(id)).then_some(())
    })
    .await?;
    let g = wait_until("the emulator to settle", Duration::from_secs(30), || settled(&emulator)).await?;
    assert!(g.counters.acknowledged >= 20, "{g:?}");
    // Each acknowledgement followed a 2xx: never more acknowledgements than accepted requests.
    let accepted_requests = sink.requests().iter().filter(|r| r.status == 200).count() as u64;
    assert!(g.counters.acknowledged <= accepted_requests, "{g:?} vs {accepted_requests} accepted requests");
    assert_eq!(worker.metric("iotsub_worker_messages_acknowledged_total").await? as u64, g.counters.acknowledged);
    Ok(())
}

#[tokio::test]
async fn sigterm_under_load_finishes_in_flight_and_exits_0() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let sink = SinkServer::start().await?;
    // A slow application keeps many messages in flight when SIGTERM comes.
    sink.delay(Duration::from_millis(300));
    let dir = tempfile::tempdir()?;
    let options =
        WorkerOptions::for_emulator(&emulator, "t").connections(2).arg("--sink", "http").arg("--sink-url", &sink.url).arg("--credit", 50);
    let mut worker = Worker::start(dir.path(), &options).await?;
    worker.wait_ready(Duration::from_secs(20)).await?;

    emulator.publish(GROUP, TOPIC, "{}", 3_000).await?;
    wait_until("a full window in flight", Duration::from_secs(20), || async {
        let g = group(&emulator).await.ok()?;
        (g.in_flight >= 80 && g.counters.acknowledged >= 100).then_some(())
    })
    .await?;
    worker.process.signal(Signal::SIGTERM)?;
    let started = std::time::Instant::now();
    let status = worker.process.wait_exit(Duration::from_secs(15)).await?;
    assert!(status.success(), "exit status {status}\n{}", worker.stderr());
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());

    // The emulator notices the closed connections on its own schedule.
    let g = wait_until("the emulator to drop the closed clients", Duration::from_secs(5), || async {
        let g = group(&emulator).await.ok()?;
        g.clients.is_empty().then_some(g)
    })
    .await?;
    assert_eq!(g.in_flight, 0, "{g:?}");
    assert_eq!(g.counters.returned_on_disconnect, 0, "deliveries were cut off by the close: {g:?}");
    assert_eq!(g.counters.redelivered, 0, "{g:?}");
    // Everything the emulator delivered was finished by the sink and acknowledged.
    assert_eq!(g.counters.delivered, g.counters.acknowledged, "{g:?}");
    assert_eq!(sink.accepted_ids().len() as u64, g.counters.acknowledged, "{g:?}");
    assert!(g.backlog > 0, "the load should not have finished by itself: {g:?}");
    Ok(())
}

#[tokio::test]
async fn a_connection_over_the_client_cap_backs_off_long_and_names_the_limit() -> anyhow::Result<()> {
    let emulator = Emulator::start("[limits]\nclient_cap_per_group = 1\n").await?;
    let dir = tempfile::tempdir()?;
    let worker = Worker::start(dir.path(), &WorkerOptions::for_emulator(&emulator, "cap").connections(2)).await?;
    let status = wait_until("one attached, one refused", Duration::from_secs(20), || async {
        let s = worker.status().await.ok()?;
        let states: Vec<&str> = s["connections"].as_array()?.iter().filter_map(|c| c["state"].as_str()).collect();
        (states.contains(&"attached") && states.contains(&"login-refused")).then_some(s)
    })
    .await?;
    let refused = status["connections"].as_array().unwrap().iter().find(|c| c["state"] == "login-refused").unwrap();
    let error = refused["lastError"].as_str().unwrap_or("");
    assert!(error.contains("resource-limit-exceeded") && error.contains("clients"), "{error}");
    assert_eq!(worker.get("/readyz").await?.0, 503);
    let attempts = refused["attempts"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = worker.status().await?;
    let same = again["connections"].as_array().unwrap().iter().find(|c| c["clientId"] == refused["clientId"]).unwrap().clone();
    assert_eq!(same["attempts"].as_u64().unwrap(), attempts, "retried within 3 s of a refusal: {again}");
    Ok(())
}
