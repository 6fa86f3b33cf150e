//! Dead letters: to an HTTP endpoint as CloudEvents, to the log, after `--max-deliveries`, and never
//! an acknowledgement when the dead letter could not be written.

use std::time::Duration;

use iotsub_tests::{http_receiver::HttpReceiver, wait_until, worker::Fixture};

const FAST_REDELIVERY: &str = "[limits]\nstacked_rate_per_group = 20000\nstacked_retry_after_ms = 200\n";

#[tokio::test]
async fn a_rejected_message_goes_to_the_dead_letter_endpoint_as_a_cloudevent_then_is_acknowledged() -> anyhow::Result<()> {
    let sink = HttpReceiver::start().await?;
    let letters = HttpReceiver::start().await?;
    sink.answer(422);
    let fx =
        Fixture::start("", "dl", |o| o.http_sink(&sink.url).arg("--dead-letter", "http").arg("--dead-letter-url", &letters.url)).await?;
    let payload = r#"{"items":{"Power":{"value":"on"}}}"#;
    let ids = fx.publish(payload, 3).await?;
    fx.wait_group("3 acknowledgements", Duration::from_secs(15), |g| g.counters.acknowledged == 3 && g.in_flight == 0).await?;
    let received = letters.requests();
    assert_eq!(received.len(), 3, "one dead letter each");
    for id in &ids {
        let r = letters.requests_for(id);
        assert_eq!(r.len(), 1, "{id}");
        let h = &r[0].headers;
        assert_eq!(h["ce-specversion"], "1.0");
        assert_eq!(h["ce-deadletterreason"], "rejected");
        assert_eq!(h["ce-deadletterstatus"], "422");
        assert_eq!(h["ce-deliverycount"], "1");
        assert!(h["ce-deadletterdetail"].contains("422"), "{h:?}");
        assert_eq!(h["ce-source"], "/aliyun/iot//DEFAULT_GROUP");
        assert_eq!(&r[0].body[..], payload.as_bytes());
    }
    assert!(fx.dead_letters().is_empty(), "nothing in the log when dead letters go over HTTP");
    assert_eq!(fx.worker.metric("iotsub_worker_dead_letters_total{reason=\"rejected\"}").await?, 3.0);
    Ok(())
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_written_is_not_acknowledged() -> anyhow::Result<()> {
    let sink = HttpReceiver::start().await?;
    let letters = HttpReceiver::start().await?;
    sink.answer(400);
    letters.answer(503);
    let fx = Fixture::start(FAST_REDELIVERY, "dlf", |o| {
        o.http_sink(&sink.url).arg("--dead-letter", "http").arg("--dead-letter-url", &letters.url)
    })
    .await?;
    let ids = fx.publish("{}", 1).await?;
    wait_until("two failed dead letters", Duration::from_secs(20), || async {
        (fx.worker.metric("iotsub_worker_dead_letter_failures_total").await.ok()? >= 2.0).then_some(())
    })
    .await?;
    let g = fx.group().await?;
    assert_eq!(g.counters.acknowledged, 0, "acknowledged without a record: {g:?}");
    assert!(g.counters.refused_by_client >= 2, "released instead: {g:?}");

    // The dead-letter endpoint recovers: the next delivery is recorded and acknowledged.
    letters.answer(200);
    fx.wait_group("the acknowledgement", Duration::from_secs(20), |g| g.counters.acknowledged == 1).await?;
    assert!(!letters.accepted_ids().is_empty() && letters.accepted_ids().contains(&ids[0]));
    Ok(())
}

#[tokio::test]
async fn a_message_the_sink_never_takes_becomes_a_dead_letter_after_max_deliveries() -> anyhow::Result<()> {
    let sink = HttpReceiver::start().await?;
    let fx = Fixture::start(FAST_REDELIVERY, "md", |o| {
        o.http_sink(&sink.url).arg("--ack-window-ms", 2_000).arg("--max-deliveries", 3).arg("--sink-failure-threshold", 100_000)
    })
    .await?;
    fx.emulator.fault("pause-delivery", iotsub_tests::worker::GROUP).await?;
    let ids = fx.publish("{\"bad\":true}", 2).await?;
    sink.answer_for(&ids[0], 500);
    fx.emulator.fault("resume", iotsub_tests::worker::GROUP).await?;

    fx.wait_group("both acknowledged", Duration::from_secs(40), |g| g.counters.acknowledged == 2 && g.in_flight == 0).await?;
    let letters = fx.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter["messageId"], ids[0].as_str());
    assert_eq!(letter["reason"], "max-deliveries");
    assert_eq!(letter["deliveryCount"], 3);
    assert_eq!(letter["lastStatus"], 500);
    assert_eq!(letter["payloadBase64"], "eyJiYWQiOnRydWV9");
    // Three deliveries, each retried inside its window, and not one more after the dead letter.
    let released = fx.worker.stderr().lines().filter(|l| l.contains("releasing the message") && l.contains(ids[0].as_str())).count();
    assert_eq!(released, 2, "released twice, dead-lettered on the third delivery");
    assert!(sink.accepted_ids().contains(&ids[1]));
    Ok(())
}
