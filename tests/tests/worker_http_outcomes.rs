//! The http sink against a real HTTP server answering every class: each answer has one defined
//! outcome, asserted from the emulator's counters, the receiver's record and the worker's dead letters.

use std::{collections::HashMap, time::Duration};

use iotsub_tests::{
    http_receiver::HttpReceiver,
    wait_until,
    worker::{Fixture, GROUP, tail},
};
use serde_json::Value;

/// Released messages come back fast (the platform's stacked queue pauses a minute after a refusal).
const FAST_REDELIVERY: &str = "[limits]\nstacked_rate_per_group = 20000\nstacked_retry_after_ms = 200\n";

/// What the worker must do with a message the sink answers with `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Acknowledged after one request.
    Taken,
    /// One request, a dead letter (reason `rejected`, the status), acknowledged.
    DeadLetter,
    /// Retried, never acknowledged, never a dead letter; a redirect is never followed.
    RetriedThenReleased,
}

#[tokio::test]
async fn every_answer_class_has_its_exact_outcome() -> anyhow::Result<()> {
    use Expect::{DeadLetter, RetriedThenReleased, Taken};
    let table: &[(u16, Expect)] = &[
        (200, Taken),
        (202, Taken),
        (204, Taken),
        (301, RetriedThenReleased),
        (302, RetriedThenReleased),
        (303, RetriedThenReleased),
        (307, RetriedThenReleased),
        (308, RetriedThenReleased),
        (400, DeadLetter),
        (401, RetriedThenReleased),
        (403, RetriedThenReleased),
        (404, RetriedThenReleased),
        (405, RetriedThenReleased),
        (410, RetriedThenReleased),
        (413, DeadLetter),
        (415, DeadLetter),
        (422, DeadLetter),
        (429, RetriedThenReleased),
        (500, RetriedThenReleased),
        (503, RetriedThenReleased),
    ];
    let receiver = HttpReceiver::start().await?;
    receiver.retry_after("1");
    // A circuit that never opens, so every message meets its own answer; a 4 s acknowledgement window.
    let fx = Fixture::start(FAST_REDELIVERY, "o", |o| {
        o.http_sink(&receiver.url).arg("--ack-window-ms", 4_000).arg("--sink-failure-threshold", 100_000).arg("--max-deliveries", 1_000)
    })
    .await?;
    fx.emulator.fault("pause-delivery", GROUP).await?;
    let ids = fx.publish("{\"n\":1}", table.len() as u32).await?;
    let expect: HashMap<&str, (u16, Expect)> = ids.iter().map(String::as_str).zip(table.iter().copied()).collect();
    for (id, (status, _)) in &expect {
        receiver.answer_for(id, *status);
    }
    fx.emulator.fault("resume", GROUP).await?;

    let taken = table.iter().filter(|(_, e)| *e != RetriedThenReleased).count() as u64;
    let failing: Vec<&str> = expect.iter().filter(|(_, (_, e))| *e == RetriedThenReleased).map(|(id, _)| *id).collect();
    // Every failing message is released at least twice (retried within each window, then handed back).
    wait_until("every failing message released twice", Duration::from_secs(40), || async {
        let stderr = fx.worker.stderr();
        let released = |id: &str| stderr.lines().filter(|l| l.contains("releasing the message") && l.contains(id)).count();
        failing.iter().all(|id| released(id) >= 2).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", tail(&fx.worker.stderr(), 30)))?;
    let g = fx
        .wait_group("the taken and dead-lettered messages acknowledged", Duration::from_secs(10), |g| g.counters.acknowledged == taken)
        .await?;
    assert!(g.counters.refused_by_client >= 2 * failing.len() as u64, "released by the worker: {g:?}");
    assert!(g.counters.redelivered >= 2 * failing.len() as u64, "and redelivered by the platform: {g:?}");

    let letters = fx.dead_letters();
    for (id, (status, outcome)) in &expect {
        let requests = receiver.requests_for(id);
        let letters: Vec<&Value> = letters.iter().filter(|l| l["messageId"] == *id).collect();
        match outcome {
            Taken => {
                assert_eq!(requests.len(), 1, "{status}: one request");
                assert!(letters.is_empty(), "{status}: no dead letter");
            }
            DeadLetter => {
                assert_eq!(requests.len(), 1, "{status}: not retried");
                assert_eq!(letters.len(), 1, "{status}: one dead letter");
                assert_eq!(letters[0]["reason"], "rejected");
                assert_eq!(letters[0]["lastStatus"], *status);
                assert_eq!(letters[0]["payloadBase64"], "eyJuIjoxfQ==", "the whole payload, base64");
            }
            RetriedThenReleased => {
                assert!(requests.len() >= 2, "{status}: retried, saw {} requests", requests.len());
                assert!(requests.iter().all(|r| r.method == "POST"), "{status}: only POSTs");
                assert!(letters.is_empty(), "{status}: never a dead letter");
            }
        }
    }
    assert!(receiver.landing_requests().is_empty(), "a redirect was followed: {:?}", receiver.landing_requests());
    let stderr = fx.worker.stderr();
    assert!(stderr.contains("Location: /landing"), "redirects are logged with their Location");
    // 429 with Retry-After: 1 — the retries of that message are at least a second apart.
    let id_429 = expect.iter().find(|(_, (s, _))| *s == 429).map(|(id, _)| *id).unwrap();
    let times: Vec<_> = receiver.requests_for(id_429).iter().map(|r| r.at).collect();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().any(|g| *g >= Duration::from_millis(950)), "Retry-After not honoured: {gaps:?}");
    // Nothing was ever acknowledged for a failing message.
    assert_eq!(fx.worker.metric("iotsub_worker_messages_acknowledged_total").await? as u64, taken);
    assert_eq!(fx.worker.metric("iotsub_worker_messages_poison_total").await?, 4.0);
    Ok(())
}

#[tokio::test]
async fn a_closed_port_and_a_slow_sink_are_retried_then_released_never_dead_letters() -> anyhow::Result<()> {
    for (name, slow) in [("closed port", false), ("slow answer past the timeout", true)] {
        let (receiver, url) = HttpReceiver::slow_or_closed(slow).await?;
        let fx = Fixture::start(FAST_REDELIVERY, "c", |o| {
            o.http_sink(&url).arg("--ack-window-ms", 4_000).arg("--sink-timeout-ms", 300).arg("--sink-failure-threshold", 100_000)
        })
        .await?;
        fx.publish("{}", 2).await?;
        wait_until(name, Duration::from_secs(20), || async {
            (fx.worker.metric("iotsub_worker_messages_released_total").await.ok()? >= 2.0).then_some(())
        })
        .await?;
        let g = fx.group().await?;
        assert_eq!(g.counters.acknowledged, 0, "{name}: {g:?}");
        assert!(fx.dead_letters().is_empty(), "{name}: no dead letter");
        assert!(fx.worker.metric("iotsub_worker_sink_errors_total").await? >= 4.0, "{name}: retried");
        if slow {
            assert!(receiver.requests().len() >= 2, "{name}: the slow sink saw the attempts");
        }
        let status = fx.worker.status().await?;
        let last_error = status["sink"]["lastError"].as_str().unwrap_or("");
        let want = if slow { "timed out" } else { "could not connect" };
        assert!(last_error.contains(want), "{name}: {last_error}");
    }
    Ok(())
}
