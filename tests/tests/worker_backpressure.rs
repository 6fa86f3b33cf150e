//! Back-pressure: while the sink keeps failing the circuit opens, credit stops, `/readyz` names the
//! sink, and the platform stacks the messages instead of redelivering them in a loop; the first
//! success lets them flow again, and nothing is lost.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use iotsub_tests::{
    http_receiver::HttpReceiver,
    wait::holds_for,
    wait_until,
    worker::{Fixture, tail},
};

const FAST_REDELIVERY: &str = "[limits]\nstacked_rate_per_group = 20000\nstacked_retry_after_ms = 200\n";

#[tokio::test]
async fn an_open_circuit_stops_credit_names_the_sink_and_closes_on_the_first_success() -> anyhow::Result<()> {
    let sink = HttpReceiver::start().await?;
    sink.answer(503);
    let fx =
        Fixture::start(FAST_REDELIVERY, "bp", |o| o.http_sink(&sink.url).arg("--sink-failure-threshold", 3).arg("--credit", 20)).await?;
    let ids = fx.publish("{\"v\":1}", 300).await?;

    let status = wait_until("the sink's circuit to open", Duration::from_secs(20), || async {
        let s = fx.worker.status().await.ok()?;
        (s["sink"]["state"] != "ok").then_some(s)
    })
    .await?;
    assert!(status["sink"]["consecutiveFailures"].as_u64().unwrap() >= 3, "{status}");
    assert!(status["sink"]["lastError"].as_str().unwrap().contains("503"), "{status}");
    assert_eq!(status["ready"], false);
    let (code, body) = fx.worker.get("/readyz").await?;
    assert_eq!(code, 503);
    assert!(body.contains(&format!("sink http {}", sink.url)) && body.contains("503"), "{body}");
    assert!(fx.worker.metric("iotsub_worker_sink_circuit_opens_total").await? >= 1.0);

    // No delivery loop: over 6 s, only the probes (after 1 s, 2 s, 4 s; one message each) reach the sink.
    let before = sink.requests().len();
    let delivered_before = fx.group().await?.counters.delivered;
    holds_for("the sink sees only probes", Duration::from_secs(6), || async { (sink.requests().len() <= before + 6).then_some(()) })
        .await?;
    let g = fx.group().await?;
    assert!(g.counters.delivered - delivered_before <= 8, "delivered while the circuit was open: {g:?}");
    assert!(g.backlog >= 250, "the platform keeps the messages: {g:?}");
    assert_eq!(g.counters.acknowledged, 0, "{g:?}");
    // Opening the circuit while transfers were on the wire did not cost the connection.
    assert_eq!(g.connection_attempts.total, 1, "the connection was lost when the circuit opened: {g:?}\n{}", tail(&fx.worker.stderr(), 20));

    sink.answer(200);
    wait_until("every message in the sink", Duration::from_secs(60), || async {
        let accepted = sink.accepted_ids();
        ids.iter().all(|id| accepted.contains(id)).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", tail(&fx.worker.stderr(), 20)))?;
    fx.worker.wait_ready(Duration::from_secs(5)).await?;
    assert_eq!(fx.worker.status().await?["sink"]["state"], "ok");
    assert_eq!(fx.worker.metric("iotsub_worker_sink_circuit_state{state=\"ok\"}").await?, 1.0);
    Ok(())
}

// Several threads: the receiver answers 1 000 requests/s while the test polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_60_s_sink_outage_under_1000_messages_per_second_stops_credit_and_loses_nothing() -> anyhow::Result<()> {
    let sink = HttpReceiver::start().await?;
    let fx = Fixture::start(FAST_REDELIVERY, "out", |o| o.connections(2).http_sink(&sink.url)).await?;
    let ids = Arc::new(Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    // 100 messages every 100 ms for 80 s: 1 000 msg/s, 80 000 messages.
    let publisher = {
        let (ids, api, client) = (ids.clone(), fx.emulator.api_url("/admin/messages"), fx.emulator.http_client());
        tokio::spawn(async move {
            let body = serde_json::json!({"instanceId": "", "consumerGroupId": "DEFAULT_GROUP", "topic": "/pk/dn/thing/event/property/post", "payload": "{\"t\":1}", "count": 100});
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while started.elapsed() < Duration::from_secs(80) {
                tick.tick().await;
                let reply: serde_json::Value = client.post(&api).json(&body).send().await?.json().await?;
                let batch: Vec<String> = serde_json::from_value(reply["messageIds"].clone())?;
                ids.lock().unwrap().extend(batch);
            }
            anyhow::Ok(())
        })
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    sink.answer(503);
    let outage = Instant::now();
    wait_until("the circuit to open", Duration::from_secs(10), || async { (fx.worker.get("/readyz").await.ok()?.0 == 503).then_some(()) })
        .await?;
    // Credit stopped: while the sink is down, the platform delivers next to nothing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let d0 = fx.group().await?.counters.delivered;
    let requests0 = sink.request_count();
    tokio::time::sleep(Duration::from_secs(40)).await;
    let g = fx.group().await?;
    let delivered_during = g.counters.delivered - d0;
    let requests_during = sink.request_count() - requests0;
    assert!(delivered_during <= 100, "{delivered_during} deliveries in 40 s of outage (probes only expected): {g:?}");
    assert!(requests_during <= 100, "{requests_during} requests in 40 s of outage");
    assert!(g.backlog > 30_000, "the platform stacks the messages: {g:?}");
    let (code, body) = fx.worker.get("/readyz").await?;
    assert!(code == 503 && body.contains("sink http"), "{code} {body}");
    // The circuit opened at 1 000 msg/s with transfers on the wire; neither connection was lost.
    assert_eq!(g.connection_attempts.total, 2, "a connection was lost when the circuit opened: {g:?}\n{}", tail(&fx.worker.stderr(), 20));

    tokio::time::sleep(Duration::from_secs(60).saturating_sub(outage.elapsed())).await;
    sink.answer(200);
    publisher.await??;
    let ids = ids.lock().unwrap().clone();
    assert!(ids.len() >= 70_000, "published {}", ids.len());
    wait_until("every published messageId in the sink", Duration::from_secs(240), || async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        (sink.missing(&ids) == 0).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {} of {} missing\n{}", sink.missing(&ids), ids.len(), tail(&fx.worker.stderr(), 20)))?;
    let counts = sink.counts();
    let most = counts.values().copied().max().unwrap_or(0);
    assert!(most <= 10, "a message was delivered {most} times: a delivery loop");
    assert!(fx.dead_letters().is_empty(), "an outage of the sink is not the messages' fault");
    fx.worker.wait_ready(Duration::from_secs(10)).await?;
    Ok(())
}
