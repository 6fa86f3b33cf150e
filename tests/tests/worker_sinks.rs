//! The http sink (CloudEvents), poison answers, and the duplicate window.

use std::{collections::HashSet, time::Duration};

use iotsub_tests::{
    wait_until,
    worker::{Fixture, SinkServer, delivered_counts},
};

#[tokio::test]
async fn http_sink_posts_a_binary_mode_cloudevent_and_acknowledges_after_2xx() -> anyhow::Result<()> {
    let sink = SinkServer::start().await?;
    let fx = Fixture::start("", "h", |o| o.arg("--sink", "http").env("IOTSUB_SINK_URL", &sink.url)).await?;

    let payload = r#"{"items":{"Power":{"value":"on"}}}"#;
    let ids = fx.publish(payload, 5).await?;
    fx.wait_group("5 acknowledgements", Duration::from_secs(15), |g| g.counters.acknowledged == 5).await?;
    let requests = sink.requests();
    assert_eq!(requests.len(), 5);
    assert_eq!(sink.accepted_ids(), ids.iter().cloned().collect::<HashSet<_>>());
    for r in &requests {
        let h = &r.headers;
        assert_eq!(h["ce-specversion"], "1.0");
        assert_eq!(h["ce-subject"], iotsub_tests::worker::TOPIC);
        assert_eq!(h["ce-source"], "/aliyun/iot//DEFAULT_GROUP");
        assert!(!h["ce-type"].is_empty());
        assert!(time::OffsetDateTime::parse(&h["ce-time"], &time::format_description::well_known::Rfc3339).is_ok(), "{h:?}");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(&r.body[..], payload.as_bytes());
    }
    Ok(())
}

#[tokio::test]
async fn poison_answers_are_logged_counted_and_acknowledged_once() -> anyhow::Result<()> {
    let sink = SinkServer::start().await?;
    sink.answer(422);
    let fx = Fixture::start("", "p", |o| o.http_sink(&sink.url)).await?;
    let worker = &fx.worker;

    let ids = fx.publish("{}", 2).await?;
    fx.wait_group("2 acknowledgements", Duration::from_secs(15), |g| g.counters.acknowledged == 2 && g.in_flight == 0).await?;
    assert_eq!(sink.requests().len(), 2, "a poison message is not retried");
    assert_eq!(worker.metric("iotsub_worker_messages_poison_total").await?, 2.0);
    let stderr = worker.stderr();
    for id in &ids {
        assert!(stderr.lines().any(|l| l.contains("poison") && l.contains(id.as_str())), "no poison log line names {id}:\n{stderr}");
    }
    // 429 is not poison: retried until it succeeds.
    sink.answer(429);
    let more = fx.publish("{}", 1).await?;
    wait_until("a few 429 retries", Duration::from_secs(15), || async { (sink.requests().len() >= 4).then_some(()) }).await?;
    assert_eq!(fx.group().await?.counters.acknowledged, 2, "nothing acknowledged on 429");
    sink.answer(200);
    fx.wait_group("the retried message to be acknowledged", Duration::from_secs(15), |g| g.counters.acknowledged == 3).await?;
    assert!(sink.accepted_ids().contains(&more[0]));
    Ok(())
}

#[tokio::test]
async fn duplicates_are_acknowledged_without_a_second_delivery() -> anyhow::Result<()> {
    // The emulator re-pushes half of the acknowledged messages with the same messageId.
    let fx = Fixture::start("[limits]\nduplicate_probability = 0.5\n", "d", |o| o.connections(2)).await?;
    let (worker, dir) = (&fx.worker, &fx.dir);

    let ids = fx.publish("{\"n\":1}", 300).await?;
    let g = fx
        .wait_group("every copy acknowledged", Duration::from_secs(30), |g| {
            g.backlog == 0 && g.in_flight == 0 && g.counters.acknowledged == 300 + g.counters.duplicates_injected
        })
        .await?;
    let injected = g.counters.duplicates_injected;
    assert!(injected > 50, "the emulator injected only {injected} duplicates");
    let counts = delivered_counts(dir.path());
    assert_eq!(counts.len(), 300);
    let twice: Vec<_> = ids.iter().filter(|id| counts.get(*id) != Some(&1)).take(10).collect();
    assert!(
        twice.is_empty(),
        "messages not delivered exactly once, e.g. {:?}",
        twice.iter().map(|id| (id, counts.get(*id))).collect::<Vec<_>>()
    );
    assert_eq!(worker.metric("iotsub_worker_messages_duplicate_total").await?, injected as f64);
    Ok(())
}
