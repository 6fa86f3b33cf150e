//! The http sink's batched mode against every outcome the outside world can produce, as
//! worker_http_outcomes and worker_faults do for the binary mode: each answer class for a batch of
//! several events, a closed port and a sink slower than the timeout, SIGTERM with batches in
//! flight, and HTTP/2 failures. Each test asserts what was acknowledged (the emulator's counters and
//! ids), what the sink took, and what was released or dead-lettered (the worker's log and metrics).

use std::{collections::HashSet, path::Path, time::Duration};

use iotsub_emulator::admin::{AcknowledgedIds, GroupSnapshot};
use iotsub_tests::{
    Emulator,
    http_receiver::{HttpReceiver, Speaks},
    wait_until,
    worker::{Fixture, GROUP, TOPIC, Worker, WorkerOptions, dead_letters, tail},
};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Released messages come back fast (the platform's stacked queue pauses a minute after a refusal).
const FAST_REDELIVERY: &str = "[limits]\nstacked_rate_per_group = 20000\nstacked_retry_after_ms = 200\n";

/// The payload of every message, and its base64 in a dead letter.
const PAYLOAD: &str = "{\"n\":1}";
const PAYLOAD_BASE64: &str = "eyJuIjoxfQ==";

/// Batched mode with room for 8 events per POST, and a linger that gathers a burst into one batch.
fn batched(o: WorkerOptions, url: &str) -> WorkerOptions {
    o.http_sink(url).arg("--sink-mode", "batch").arg("--sink-batch-max-events", 8).arg("--sink-batch-linger-ms", 200)
}

/// How many times the worker logged releasing `id`.
fn releases(stderr: &str, id: &str) -> usize {
    stderr.lines().filter(|l| l.contains("releasing the message") && l.contains(id)).count()
}

/// Publishes `count` messages to `group` while its delivery is paused, lets `before_delivery` see
/// their ids (to set the sink's answers), then resumes: they reach the worker as one burst.
async fn publish_burst(
    emulator: &Emulator,
    group: &str,
    count: u32,
    before_delivery: impl FnOnce(&[String]),
) -> anyhow::Result<Vec<String>> {
    emulator.fault("pause-delivery", group).await?;
    let ids = emulator.publish(group, TOPIC, PAYLOAD, count).await?;
    before_delivery(&ids);
    emulator.fault("resume", group).await?;
    Ok(ids)
}

/// What the worker must do with each message of a batch the sink answers with a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Acknowledged after its batch's one request.
    Taken,
    /// Rejected in the batch, then rejected alone: a dead letter (`rejected`), acknowledged.
    DeadLetter,
    /// The sink is misconfigured or down: retried, released, redelivered, never counted against the
    /// message (so never a dead letter, whatever `--max-deliveries` says), never acknowledged.
    ReleasedEveryTime,
    /// Failing for now: retried (after `Retry-After` when given), released, and once failed
    /// `--max-deliveries` (2) times a dead letter (`max-deliveries`, the last status), acknowledged.
    DeadLetterAfterMaxDeliveries,
}

/// Every row of the sink's table (worker/README.md, "What each answer means").
const TABLE: &[(u16, Expect)] = {
    use Expect::{DeadLetter, DeadLetterAfterMaxDeliveries as Failing, ReleasedEveryTime as SinkDown, Taken};
    &[
        (200, Taken),
        (204, Taken),
        (301, SinkDown),
        (303, SinkDown),
        (307, SinkDown),
        (400, DeadLetter),
        (401, SinkDown),
        (403, SinkDown),
        (404, SinkDown),
        (405, SinkDown),
        (410, SinkDown),
        (413, DeadLetter),
        (415, DeadLetter),
        (422, DeadLetter),
        (408, Failing),
        (409, Failing),
        (429, Failing),
        (500, Failing),
        (503, Failing),
    ]
};

/// Events per batch in the table test.
const EVENTS: usize = 4;
/// `--max-deliveries` in the table test.
const MAX_DELIVERIES: usize = 2;

/// One row of the table: its own consumer group and worker, so every batch its worker sends holds
/// only messages the sink answers alike.
struct Row {
    status: u16,
    expect: Expect,
    group: String,
    worker: Worker,
    ids: Vec<String>,
}

fn groups_config() -> String {
    let groups: Vec<String> = TABLE.iter().map(|(status, _)| format!("\"S{status}\"")).collect();
    format!("{FAST_REDELIVERY}\n[[instances]]\nid = \"\"\nconsumer_groups = [{}]\n", groups.join(", "))
}

async fn start_row(emulator: &Emulator, dir: &Path, sink_url: &str, (status, expect): (u16, Expect)) -> anyhow::Result<Row> {
    let group = format!("S{status}");
    // A 2.5 s acknowledgement window (2.25 s to settle: room for a retry after `Retry-After: 1`)
    // and a circuit that never opens, so every message meets its own answer in every delivery.
    let options = batched(WorkerOptions::for_emulator(emulator, &format!("b{status}")), sink_url)
        .env("IOTSUB_CONSUMER_GROUP_ID", &group)
        .arg("--ack-window-ms", 2_500)
        .arg("--sink-failure-threshold", 100_000)
        .arg("--max-deliveries", MAX_DELIVERIES);
    let worker = Worker::start(&dir.join(&group), &options).await?;
    worker.wait_ready(Duration::from_secs(30)).await?;
    Ok(Row { status, expect, group, worker, ids: Vec::new() })
}

/// How many times the row's worker released each of its messages.
fn releases_of(row: &Row) -> Vec<usize> {
    let stderr = row.worker.stderr();
    row.ids.iter().map(|id| releases(&stderr, id)).collect()
}

/// Whether `row` reached its end state: acknowledged, or released more often than
/// `--max-deliveries` would allow if its failures counted.
async fn row_done(row: &Row, emulator: &Emulator) -> Option<()> {
    let done = match row.expect {
        Expect::ReleasedEveryTime => {
            let stderr = row.worker.stderr();
            row.ids.iter().all(|id| releases(&stderr, id) > MAX_DELIVERIES)
        }
        _ => {
            let g = emulator.group_snapshot(&row.group).await.ok()?;
            g.counters.acknowledged == EVENTS as u64 && g.in_flight == 0
        }
    };
    done.then_some(())
}

#[tokio::test]
async fn every_answer_class_has_its_exact_outcome_for_each_message_of_a_batch() -> anyhow::Result<()> {
    let emulator = Emulator::start(&groups_config()).await?;
    let receiver = HttpReceiver::start().await?;
    receiver.retry_after("1");
    let dir = tempfile::tempdir()?;
    let starts = TABLE.iter().map(|row| start_row(&emulator, dir.path(), &receiver.url, *row));
    let mut rows = futures::future::try_join_all(starts).await?;
    for row in &mut rows {
        row.ids = publish_burst(&emulator, &row.group, EVENTS as u32, |ids| {
            for id in ids {
                receiver.answer_for(id, row.status);
            }
        })
        .await?;
    }

    wait_until("every row at its end state", Duration::from_secs(40), || async {
        for row in &rows {
            row_done(row, &emulator).await?;
        }
        Some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {:?}", rows.iter().map(|r| (r.status, releases_of(r))).collect::<Vec<_>>()))?;

    for row in &rows {
        let g = emulator.group_snapshot(&row.group).await?;
        let sink = row.worker.status().await?["sink"].clone();
        let context = format!("{} ({:?}): {g:?}\n{sink}\n{}", row.status, row.expect, tail(&row.worker.stderr(), 10));
        assert_first_batch_held_the_burst(row, &receiver, &context);
        match row.expect {
            Expect::Taken => assert_taken(row, &receiver, &g, &sink, &context).await?,
            Expect::DeadLetter => assert_rejected(row, &receiver, &g, &sink, &context).await?,
            Expect::ReleasedEveryTime => assert_released_every_time(row, &receiver, &g, &sink, &context).await?,
            Expect::DeadLetterAfterMaxDeliveries => assert_dead_letter_after_max_deliveries(row, &receiver, &g, &context).await?,
        }
    }
    assert!(receiver.landing_requests().is_empty(), "a redirect was followed: {:?}", receiver.landing_requests());
    Ok(())
}

/// The burst went as one batch: the row's first request carries all of its events.
fn assert_first_batch_held_the_burst(row: &Row, receiver: &HttpReceiver, context: &str) {
    let first = &receiver.requests_for(&row.ids[0])[0];
    let ids: HashSet<&String> = first.ids.iter().collect();
    assert_eq!(ids, row.ids.iter().collect(), "the first POST is the whole burst: {context}");
    assert_eq!(first.status, row.status, "{context}");
}

async fn assert_taken(row: &Row, receiver: &HttpReceiver, g: &GroupSnapshot, sink: &Value, context: &str) -> anyhow::Result<()> {
    assert_eq!((g.counters.acknowledged, g.counters.refused_by_client), (EVENTS as u64, 0), "{context}");
    for id in &row.ids {
        assert_eq!(receiver.requests_for(id).len(), 1, "one request: {context}");
        assert!(receiver.answered_ids().contains(id), "{context}");
    }
    assert!(dead_letters(&row.worker.stderr()).is_empty(), "{context}");
    assert_eq!(row.worker.metric("iotsub_worker_messages_acknowledged_total").await?, EVENTS as f64, "{context}");
    assert_eq!((sink["state"].as_str(), sink["consecutiveFailures"].as_u64()), (Some("ok"), Some(0)), "{context}");
    Ok(())
}

async fn assert_rejected(row: &Row, receiver: &HttpReceiver, g: &GroupSnapshot, sink: &Value, context: &str) -> anyhow::Result<()> {
    assert_eq!((g.counters.acknowledged, g.counters.refused_by_client), (EVENTS as u64, 0), "{context}");
    let letters = dead_letters(&row.worker.stderr());
    assert_eq!(letters.len(), EVENTS, "{context}");
    for id in &row.ids {
        let sizes: Vec<usize> = receiver.requests_for(id).iter().map(|r| r.ids.len()).collect();
        assert_eq!(sizes, [EVENTS, 1], "rejected in the batch, then once alone: {context}");
        let letter = letters.iter().find(|l| l["messageId"] == id.as_str()).expect("a dead letter for each");
        assert_eq!(letter["reason"], "rejected", "{context}");
        assert_eq!(letter["lastStatus"], row.status, "{context}");
        assert_eq!(letter["payloadBase64"], PAYLOAD_BASE64, "the whole payload: {context}");
    }
    let metric = |name: &'static str| row.worker.metric(name);
    assert_eq!(metric("iotsub_worker_messages_poison_total").await?, EVENTS as f64, "{context}");
    assert_eq!(metric("iotsub_worker_dead_letters_total{reason=\"rejected\"}").await?, EVENTS as f64, "{context}");
    // A receiver that rejects messages works: the breaker counts no failure.
    assert_eq!((sink["state"].as_str(), sink["consecutiveFailures"].as_u64()), (Some("ok"), Some(0)), "{context}");
    Ok(())
}

async fn assert_released_every_time(
    row: &Row,
    receiver: &HttpReceiver,
    g: &GroupSnapshot,
    sink: &Value,
    context: &str,
) -> anyhow::Result<()> {
    let deliveries = (MAX_DELIVERIES + 1) * EVENTS;
    assert_eq!(g.counters.acknowledged, 0, "{context}");
    assert!(g.counters.refused_by_client >= deliveries as u64, "released by the worker: {context}");
    assert!(g.counters.redelivered >= deliveries as u64, "and redelivered by the platform: {context}");
    let stderr = row.worker.stderr();
    assert!(dead_letters(&stderr).is_empty(), "never a dead letter: {context}");
    for id in &row.ids {
        let requests = receiver.requests_for(id);
        let released = releases(&stderr, id);
        assert!(requests.len() >= 2 * released, "retried in each of {released} deliveries: {} requests, {context}", requests.len());
        assert!(requests.iter().all(|r| r.method == "POST" && r.status == row.status), "{context}");
    }
    assert_eq!(row.worker.metric("iotsub_worker_messages_acknowledged_total").await?, 0.0, "{context}");
    // Each failure fed the breaker, with the answer as its last error.
    assert!(sink["consecutiveFailures"].as_u64().unwrap_or(0) > 0, "{context}");
    let last_error = sink["lastError"].as_str().unwrap_or_default();
    assert!(last_error.contains(&format!("answered {}", row.status)), "{context}");
    if (300..400).contains(&row.status) {
        assert!(last_error.contains("Location: /landing") && stderr.contains("Location: /landing"), "{context}");
    }
    Ok(())
}

async fn assert_dead_letter_after_max_deliveries(
    row: &Row,
    receiver: &HttpReceiver,
    g: &GroupSnapshot,
    context: &str,
) -> anyhow::Result<()> {
    // Released once (the first delivery), then the second delivery's failure made the dead letter.
    let stderr = row.worker.stderr();
    let released: Vec<&str> = stderr.lines().filter(|l| l.contains("releasing the message")).collect();
    assert_eq!((g.counters.acknowledged, g.counters.refused_by_client), (EVENTS as u64, EVENTS as u64), "{context}\n{released:#?}");
    let letters = dead_letters(&stderr);
    assert_eq!(letters.len(), EVENTS, "{context}");
    for id in &row.ids {
        let requests = receiver.requests_for(id);
        assert!(requests.len() >= 2 * MAX_DELIVERIES, "retried in each delivery: {} requests, {context}", requests.len());
        assert!(requests.iter().all(|r| r.status == row.status), "{context}");
        assert!(!receiver.answered_ids().contains(id), "{context}");
        let letter = letters.iter().find(|l| l["messageId"] == id.as_str()).expect("a dead letter for each");
        assert_eq!(letter["reason"], "max-deliveries", "{context}");
        assert_eq!(letter["lastStatus"], row.status, "{context}");
        assert_eq!(letter["deliveryCount"], MAX_DELIVERIES, "{context}");
        assert_eq!(letter["payloadBase64"], PAYLOAD_BASE64, "{context}");
        // `Retry-After: 1` (on 408, 429, 503; longer than the first backoff): the second try waited for it.
        let gap = requests[1].at - requests[0].at;
        let retry_after = matches!(row.status, 408 | 429 | 503);
        assert_eq!(gap >= Duration::from_millis(950), retry_after, "the first retry came after {gap:?}: {context}");
    }
    let metric = |name: &'static str| row.worker.metric(name);
    assert_eq!(metric("iotsub_worker_dead_letters_total{reason=\"max-deliveries\"}").await?, EVENTS as f64, "{context}");
    assert_eq!(metric("iotsub_worker_messages_poison_total").await?, 0.0, "{context}");
    Ok(())
}

#[tokio::test]
async fn a_failing_batch_feeds_the_breaker_once_per_message_and_a_probe_of_one_closes_it() -> anyhow::Result<()> {
    let sink = HttpReceiver::start().await?;
    sink.answer(503);
    // Threshold 5: one failing batch of 8 is 8 failed attempts, one per message, and opens it.
    let fx = Fixture::start(FAST_REDELIVERY, "cb", |o| batched(o, &sink.url).arg("--sink-failure-threshold", 5)).await?;
    let ids = publish_burst(&fx.emulator, GROUP, 8, |_| {}).await?;
    let status = wait_until("the circuit to open", Duration::from_secs(10), || async {
        let s = fx.worker.status().await.ok()?;
        (s["sink"]["state"] == "open").then_some(s)
    })
    .await?;
    let first = &sink.requests()[0];
    assert_eq!((first.ids.len(), first.status), (8, 503), "one batch of the whole burst");
    assert!(status["sink"]["consecutiveFailures"].as_u64().unwrap_or(0) >= 8, "each message's failure counted: {status}");
    let (code, body) = fx.worker.get("/readyz").await?;
    assert_eq!(code, 503);
    assert!(body.contains(&format!("sink http {} (batches)", sink.url)) && body.contains("503"), "{body}");
    wait_until("the held messages released", Duration::from_secs(10), || async {
        let stderr = fx.worker.stderr();
        ids.iter()
            .all(|id| stderr.lines().any(|l| l.contains("releasing") && l.contains(id.as_str()) && l.contains("circuit is open")))
            .then_some(())
    })
    .await?;
    assert_eq!(fx.group().await?.counters.acknowledged, 0);

    sink.answer(200);
    fx.wait_group("every message acknowledged once the circuit closed", Duration::from_secs(20), |g| {
        g.counters.acknowledged == 8 && g.in_flight == 0
    })
    .await?;
    assert_eq!(fx.worker.status().await?["sink"]["state"], "ok");
    let probe = sink.requests().into_iter().find(|r| r.status == 200).expect("a request taken");
    assert_eq!(probe.ids.len(), 1, "the half-open circuit's probe is one message");
    assert_eq!(sink.answered_ids(), ids.iter().cloned().collect());
    assert!(fx.worker.metric("iotsub_worker_sink_circuit_opens_total").await? >= 1.0);
    assert!(fx.dead_letters().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_closed_port_and_a_slow_sink_are_retried_then_released_never_dead_letters() -> anyhow::Result<()> {
    for (name, slow) in [("closed port", false), ("slow answer past the timeout", true)] {
        let (receiver, url) = HttpReceiver::slow_or_closed(slow).await?;
        // `--max-deliveries 1`: a failure counted against the messages would make dead letters at once.
        let fx = Fixture::start(FAST_REDELIVERY, "c", |o| {
            batched(o, &url)
                .arg("--ack-window-ms", 2_000)
                .arg("--sink-timeout-ms", 600)
                .arg("--sink-failure-threshold", 100_000)
                .arg("--max-deliveries", 1)
        })
        .await?;
        let ids = publish_burst(&fx.emulator, GROUP, EVENTS as u32, |_| {}).await?;
        wait_until(name, Duration::from_secs(20), || async {
            let stderr = fx.worker.stderr();
            ids.iter().all(|id| releases(&stderr, id) >= 2).then_some(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", tail(&fx.worker.stderr(), 20)))?;
        let g = fx.group().await?;
        assert_eq!(g.counters.acknowledged, 0, "{name}: {g:?}");
        assert!(g.counters.refused_by_client >= 2 * EVENTS as u64, "{name}: released to the platform: {g:?}");
        assert!(fx.dead_letters().is_empty(), "{name}: no dead letter");
        let status = fx.worker.status().await?;
        let last_error = status["sink"]["lastError"].as_str().unwrap_or("");
        let want = if slow { "timed out" } else { "could not connect" };
        assert!(last_error.contains(want), "{name}: {last_error}");
        if slow {
            // The sink had the batch and would have said 200, but after the timeout: not taken.
            let first = &receiver.requests()[0];
            assert_eq!(first.ids.len(), EVENTS, "{name}: the burst went as one batch");
            assert!(ids.iter().all(|id| receiver.requests_for(id).len() >= 2), "{name}: retried");
            assert_eq!(receiver.accepted_ids(), ids.iter().cloned().collect(), "{name}");

            receiver.delay(Duration::ZERO);
            fx.wait_group("every message taken once the sink answers in time", Duration::from_secs(20), |g| {
                g.counters.acknowledged == EVENTS as u64 && g.in_flight == 0
            })
            .await?;
            assert!(ids.iter().all(|id| receiver.answered_ids().contains(id)), "{name}");
            assert!(fx.dead_letters().is_empty(), "{name}");
        }
    }
    Ok(())
}

/// The acknowledged messageIds the emulator recorded (`record_acknowledged_ids = true`), in order.
async fn acknowledged_ids(emulator: &Emulator) -> anyhow::Result<Vec<String>> {
    let page: AcknowledgedIds = emulator.get_json(&format!("/admin/consumer-groups/{GROUP}/acknowledged-ids")).await?;
    anyhow::ensure!(page.ids.len() == page.total, "more than one page of acknowledged ids: {}", page.total);
    Ok(page.ids)
}

/// Waits until the emulator dropped the stopped worker's clients; returns the group then.
async fn clients_gone(emulator: &Emulator) -> anyhow::Result<GroupSnapshot> {
    wait_until("the emulator to drop the closed clients", Duration::from_secs(5), || async {
        let g = emulator.group_snapshot(GROUP).await.ok()?;
        g.clients.is_empty().then_some(g)
    })
    .await
}

/// A worker in batched mode with two connections and 40 credit each: with a slow sink, many
/// batches are in flight at once.
fn loaded(emulator: &Emulator, sink_url: &str) -> WorkerOptions {
    batched(WorkerOptions::for_emulator(emulator, "t").connections(2), sink_url).arg("--credit", 40)
}

/// After a restart with a fast sink, every published message is acknowledged and taken.
async fn nothing_lost_after_restart(
    emulator: &Emulator,
    sink: &HttpReceiver,
    dir: &Path,
    options: &WorkerOptions,
    ids: &[String],
) -> anyhow::Result<()> {
    sink.delay(Duration::ZERO);
    let worker = Worker::start(dir, options).await?;
    wait_until("every published message acknowledged after the restart", Duration::from_secs(30), || async {
        let acked: HashSet<String> = acknowledged_ids(emulator).await.ok()?.into_iter().collect();
        ids.iter().all(|id| acked.contains(id)).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", tail(&worker.stderr(), 20)))?;
    let answered = sink.answered_ids();
    assert!(ids.iter().all(|id| answered.contains(id)), "acknowledged but not taken by the sink");
    Ok(())
}

#[tokio::test]
async fn sigterm_with_batches_in_flight_finishes_them_exits_0_and_acknowledges_only_what_the_sink_took() -> anyhow::Result<()> {
    let emulator = Emulator::start("[limits]\nrecord_acknowledged_ids = true\n").await?;
    let sink = HttpReceiver::start().await?;
    // A service time keeps batches in flight when SIGTERM comes.
    sink.delay(Duration::from_millis(500));
    let dir = tempfile::tempdir()?;
    let options = loaded(&emulator, &sink.url);
    let mut worker = Worker::start(dir.path(), &options).await?;
    worker.wait_ready(Duration::from_secs(20)).await?;

    let ids = emulator.publish(GROUP, TOPIC, PAYLOAD, 1_000).await?;
    wait_until("batches in flight", Duration::from_secs(20), || async {
        let g = emulator.group_snapshot(GROUP).await.ok()?;
        (g.in_flight >= 60 && g.counters.acknowledged >= 40).then_some(())
    })
    .await?;
    worker.process.signal(Signal::SIGTERM)?;
    let status = worker.process.wait_exit(Duration::from_secs(15)).await?;
    assert!(status.success(), "exit status {status}\n{}", tail(&worker.stderr(), 20));

    let g = clients_gone(&emulator).await?;
    assert_eq!(g.in_flight, 0, "{g:?}");
    assert_eq!(g.counters.returned_on_disconnect, 0, "batches were cut off by the close: {g:?}");
    assert_eq!(g.counters.delivered, g.counters.acknowledged, "every batch in flight finished and was taken: {g:?}");
    assert!(g.backlog > 0, "the load should not have finished by itself: {g:?}");
    let acked = acknowledged_ids(&emulator).await?;
    let acked_set: HashSet<String> = acked.iter().cloned().collect();
    assert_eq!(acked_set.len(), acked.len(), "a message acknowledged twice");
    assert_eq!(acked_set, sink.answered_ids(), "acknowledged exactly what the sink took");
    assert!(dead_letters(&worker.stderr()).is_empty());

    nothing_lost_after_restart(&emulator, &sink, dir.path(), &options, &ids).await
}

#[tokio::test]
async fn sigterm_past_the_shutdown_timeout_leaves_unanswered_batches_to_the_platform_and_exits_0() -> anyhow::Result<()> {
    let emulator =
        Emulator::start("[limits]\nrecord_acknowledged_ids = true\nstacked_rate_per_group = 20000\nstacked_retry_after_ms = 200\n").await?;
    let sink = HttpReceiver::start().await?;
    // The sink answers after the shutdown timeout: the batches in flight cannot finish.
    sink.delay(Duration::from_secs(3));
    let dir = tempfile::tempdir()?;
    let options = loaded(&emulator, &sink.url).arg("--shutdown-timeout-ms", 500);
    let mut worker = Worker::start(dir.path(), &options).await?;
    worker.wait_ready(Duration::from_secs(20)).await?;

    let ids = emulator.publish(GROUP, TOPIC, PAYLOAD, 200).await?;
    wait_until("batches with the sink", Duration::from_secs(20), || async {
        let g = emulator.group_snapshot(GROUP).await.ok()?;
        (g.in_flight >= 60 && sink.request_count() >= 4).then_some(())
    })
    .await?;
    worker.process.signal(Signal::SIGTERM)?;
    let status = worker.process.wait_exit(Duration::from_secs(10)).await?;
    assert!(status.success(), "exit status {status}\n{}", tail(&worker.stderr(), 20));
    assert!(worker.stderr().contains("shutdown timeout"), "{}", tail(&worker.stderr(), 20));

    let g = clients_gone(&emulator).await?;
    assert_eq!(g.counters.acknowledged, 0, "acknowledged before the sink answered: {g:?}");
    assert!(g.counters.returned_on_disconnect + g.counters.refused_by_client >= 60, "handed back to the platform: {g:?}");
    assert!(acknowledged_ids(&emulator).await?.is_empty());

    nothing_lost_after_restart(&emulator, &sink, dir.path(), &options, &ids).await
}

/// A worker in batched mode over HTTP/2 whose circuit never opens.
fn batched_http2(o: WorkerOptions, url: &str) -> WorkerOptions {
    batched(o, url).arg("--sink-protocol", "http2").arg("--sink-failure-threshold", 100_000)
}

#[tokio::test]
async fn an_http2_sink_that_goes_away_mid_stream_gets_every_message_again_once_back() -> anyhow::Result<()> {
    let sink = HttpReceiver::start().await?;
    let fx = Fixture::start(FAST_REDELIVERY, "g", |o| batched_http2(o, &sink.url)).await?;
    // The server works first: its HTTP/2 connection is up and answering.
    let before = fx.publish(PAYLOAD, 2).await?;
    fx.wait_group("the first messages acknowledged", Duration::from_secs(10), |g| g.counters.acknowledged == 2).await?;

    // The next batch's stream is open, its answer not yet sent, when the server goes away.
    sink.delay(Duration::from_secs(3));
    let ids = publish_burst(&fx.emulator, GROUP, 6, |_| {}).await?;
    wait_until("the batch on its stream", Duration::from_secs(10), || async { (!sink.requests_for(&ids[0]).is_empty()).then_some(()) })
        .await?;
    sink.go_away().await;
    let failed = wait_until("the worker to log the lost stream", Duration::from_secs(10), || async {
        let stderr = fx.worker.stderr();
        stderr.lines().find(|l| l.contains("sink failed; retrying") && l.contains(ids[0].as_str())).map(str::to_owned)
    })
    .await?;
    assert!(failed.contains(&format!("POST {}", sink.url)) && failed.contains("connection reset"), "{failed}");
    assert!(!failed.contains("HTTP/1.1"), "it answered over HTTP/2 before: no doubt about the protocol: {failed}");
    assert_eq!(fx.group().await?.counters.acknowledged, 2, "acknowledged without an answer");

    sink.delay(Duration::ZERO);
    sink.come_back(Speaks::Http1AndHttp2).await?;
    fx.wait_group("every message acknowledged once the server is back", Duration::from_secs(30), |g| {
        g.counters.acknowledged == 8 && g.in_flight == 0
    })
    .await?;
    assert_eq!(sink.answered_ids(), before.iter().chain(&ids).cloned().collect());
    let requests = sink.requests();
    assert!(requests.iter().all(|r| r.version == "HTTP/2.0"), "{:?}", requests.iter().map(|r| &r.version).collect::<Vec<_>>());
    assert!(fx.dead_letters().is_empty());
    Ok(())
}

#[tokio::test]
async fn an_http1_only_sink_asked_for_http2_takes_nothing_names_the_protocol_and_an_http2_server_gets_everything() -> anyhow::Result<()> {
    let sink = HttpReceiver::start_http1_only().await?;
    let fx = Fixture::start(FAST_REDELIVERY, "p", |o| batched_http2(o, &sink.url).arg("--ack-window-ms", 2_000).arg("--max-deliveries", 1))
        .await?;
    let ids = publish_burst(&fx.emulator, GROUP, EVENTS as u32, |_| {}).await?;
    wait_until("every message released", Duration::from_secs(20), || async {
        let stderr = fx.worker.stderr();
        ids.iter().all(|id| releases(&stderr, id) >= 1).then_some(())
    })
    .await?;
    assert_eq!(fx.group().await?.counters.acknowledged, 0);
    assert!(fx.dead_letters().is_empty(), "not the messages' fault");
    assert_eq!(sink.request_count(), 0, "an HTTP/1.1 server sees no request in an HTTP/2 preface");
    let last_error = fx.worker.status().await?["sink"]["lastError"].as_str().unwrap_or_default().to_owned();
    assert!(last_error.contains(&format!("POST {}", sink.url)), "{last_error}");
    assert!(last_error.contains("no HTTP/2 answer") && last_error.contains("only HTTP/1.1"), "the protocol is named: {last_error}");
    assert!(fx.worker.stderr().contains("no HTTP/2 answer from this sink yet"), "and logged");

    sink.come_back(Speaks::Http1AndHttp2).await?;
    fx.wait_group("every message acknowledged by an HTTP/2 server", Duration::from_secs(20), |g| {
        g.counters.acknowledged == EVENTS as u64 && g.in_flight == 0
    })
    .await?;
    assert_eq!(sink.answered_ids(), ids.iter().cloned().collect());
    assert!(sink.requests().iter().all(|r| r.version == "HTTP/2.0"));
    Ok(())
}
