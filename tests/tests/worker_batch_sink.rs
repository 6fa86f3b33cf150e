//! The http sink's batched mode (`application/cloudevents-batch+json`) and HTTP/2, against a real
//! HTTP server and the emulator over TLS.

use std::{collections::HashSet, time::Duration};

use iotsub_tests::{
    http_receiver::BATCH_CONTENT_TYPE,
    wait_until,
    worker::{Fixture, GROUP, SinkServer, TOPIC, WorkerOptions, tail},
};

/// Batched mode with room for 8 events per POST, and a linger long enough that a burst fills them.
fn batched(o: WorkerOptions, url: &str) -> WorkerOptions {
    o.http_sink(url).arg("--sink-mode", "batch").arg("--sink-batch-max-events", 8).arg("--sink-batch-linger-ms", 300)
}

#[tokio::test]
async fn batches_carry_cloudevents_and_each_message_is_acknowledged_after_its_batchs_2xx() -> anyhow::Result<()> {
    let sink = SinkServer::start().await?;
    let fx = Fixture::start("", "b", |o| batched(o, &sink.url)).await?;
    fx.emulator.fault("pause-delivery", GROUP).await?;
    let payload = r#"{"items":{"Power":{"value":"on"}}}"#;
    let ids = fx.publish(payload, 20).await?;
    fx.emulator.fault("resume", GROUP).await?;

    fx.wait_group("20 acknowledgements", Duration::from_secs(20), |g| g.counters.acknowledged == 20 && g.in_flight == 0).await?;
    let requests = sink.requests();
    let mut seen = Vec::new();
    for r in &requests {
        assert_eq!(r.headers["content-type"], BATCH_CONTENT_TYPE);
        assert_eq!(r.version, "HTTP/1.1");
        let events = r.batch_events();
        assert!((1..=8).contains(&events.len()), "{} events in one POST", events.len());
        for e in events {
            assert_eq!(e["specversion"], "1.0");
            assert_eq!(e["source"], "/aliyun/iot//DEFAULT_GROUP");
            assert_eq!(e["subject"], TOPIC);
            assert_eq!(e["datacontenttype"], "application/json");
            assert_eq!(e["data"], serde_json::from_str::<serde_json::Value>(payload)?);
            let time = e["time"].as_str().unwrap_or_default();
            assert!(time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).is_ok(), "{e}");
            seen.push(e["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(seen.len(), 20, "each message in exactly one batch: {seen:?}");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), ids.iter().cloned().collect::<HashSet<_>>());
    assert!(
        requests.iter().any(|r| r.ids.len() == 8),
        "a burst fills a batch: {:?}",
        requests.iter().map(|r| r.ids.len()).collect::<Vec<_>>()
    );
    assert_eq!(fx.worker.metric("iotsub_worker_sink_batch_events_count").await?, requests.len() as f64, "one observation per POST");
    assert_eq!(fx.worker.metric("iotsub_worker_sink_batch_events_sum").await?, 20.0);
    Ok(())
}

#[tokio::test]
async fn nothing_in_a_batch_is_acknowledged_while_the_sink_answers_503() -> anyhow::Result<()> {
    let sink = SinkServer::start().await?;
    sink.answer(503);
    let fx = Fixture::start("", "f", |o| batched(o, &sink.url).arg("--sink-failure-threshold", 100_000)).await?;
    let ids = fx.publish("{}", 10).await?;
    wait_until("batches answered 503 twice", Duration::from_secs(20), || async {
        (sink.requests().iter().filter(|r| r.status == 503).count() >= 2).then_some(())
    })
    .await?;
    assert_eq!(fx.group().await?.counters.acknowledged, 0, "acknowledged on a 503");
    assert!(sink.accepted_ids().is_empty());

    sink.answer(200);
    fx.wait_group("every message acknowledged once the sink is back", Duration::from_secs(40), |g| {
        g.counters.acknowledged == 10 && g.in_flight == 0
    })
    .await?;
    assert_eq!(sink.accepted_ids(), ids.into_iter().collect::<HashSet<_>>());
    assert!(fx.dead_letters().is_empty(), "a 503 makes no dead letter");
    Ok(())
}

#[tokio::test]
async fn a_rejected_batch_is_split_and_only_the_event_still_rejected_becomes_a_dead_letter() -> anyhow::Result<()> {
    let sink = SinkServer::start().await?;
    let fx = Fixture::start("", "r", |o| batched(o, &sink.url)).await?;
    fx.emulator.fault("pause-delivery", GROUP).await?;
    let ids = fx.publish("{\"n\":1}", 6).await?;
    let bad = &ids[2];
    sink.answer_for(bad, 400);
    fx.emulator.fault("resume", GROUP).await?;

    fx.wait_group("all 6 acknowledged", Duration::from_secs(20), |g| g.counters.acknowledged == 6 && g.in_flight == 0).await?;
    let letters = fx.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}\n{}", tail(&fx.worker.stderr(), 20));
    assert_eq!(letters[0]["messageId"], bad.as_str());
    assert_eq!(letters[0]["lastStatus"], 400);
    let good: HashSet<String> = ids.iter().filter(|id| *id != bad).cloned().collect();
    assert_eq!(sink.accepted_ids(), good, "the others were taken");
    let requests = sink.requests();
    let first = &requests[0];
    assert_eq!((first.ids.len(), first.status), (6, 400), "the burst went as one batch, rejected as a whole");
    for id in &ids {
        let alone = sink.requests_for(id).into_iter().filter(|r| r.ids.len() == 1).count();
        assert_eq!(alone, 1, "{id} sent again alone, once");
    }
    Ok(())
}

#[tokio::test]
async fn http2_sends_every_message_on_streams_of_one_connection() -> anyhow::Result<()> {
    let sink = SinkServer::start().await?;
    let fx = Fixture::start("", "h2", |o| o.http_sink(&sink.url).arg("--sink-protocol", "http2")).await?;
    let ids = fx.publish("{}", 10).await?;
    fx.wait_group("10 acknowledgements", Duration::from_secs(20), |g| g.counters.acknowledged == 10 && g.in_flight == 0).await?;
    let requests = sink.requests();
    assert_eq!(requests.len(), 10);
    assert!(requests.iter().all(|r| r.version == "HTTP/2.0"), "{:?}", requests.iter().map(|r| &r.version).collect::<Vec<_>>());
    let connections: HashSet<_> = requests.iter().map(|r| r.peer).collect();
    assert_eq!(connections.len(), 1, "one connection: {connections:?}");
    assert_eq!(sink.accepted_ids(), ids.into_iter().collect::<HashSet<_>>());
    Ok(())
}

#[tokio::test]
async fn a_linger_longer_than_the_sink_timeout_still_delivers_a_lone_message() -> anyhow::Result<()> {
    let sink = SinkServer::start().await?;
    // Nothing else arrives to fill the batch: the linger alone would hold it past the POST's time.
    let fx = Fixture::start("", "l", |o| {
        o.http_sink(&sink.url).arg("--sink-mode", "batch").arg("--sink-batch-linger-ms", 3_000).arg("--sink-timeout-ms", 1_000)
    })
    .await?;
    let ids = fx.publish("{}", 1).await?;
    fx.wait_group("the lone message acknowledged", Duration::from_secs(10), |g| g.counters.acknowledged == 1).await?;
    assert_eq!(sink.accepted_ids(), ids.into_iter().collect::<HashSet<_>>());
    assert_eq!(fx.worker.metric("iotsub_worker_sink_errors_total").await?, 0.0, "{}", tail(&fx.worker.stderr(), 10));
    Ok(())
}
