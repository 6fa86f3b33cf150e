//! The worker connects as the platform demands, and reports itself over HTTP.

use std::{collections::BTreeSet, process::Command, time::Duration};

use iotsub_emulator::admin::GroupSnapshot;
use iotsub_tests::{
    Emulator, binary, wait_until,
    worker::{Fixture, GROUP, TOPIC, Worker, WorkerOptions, group},
};
use serde_json::json;

#[tokio::test]
async fn connects_with_tls_fresh_signatures_idle_timeout_and_numbered_clients() -> anyhow::Result<()> {
    // A tight clock-skew rule: a login signed for an earlier attempt is refused, so the reconnect
    // below succeeds only if the worker signs afresh.
    let fx = Fixture::start("[limits]\nmax_timestamp_skew_ms = 1500\n", "w", |o| o.connections(2).arg("--idle-timeout-ms", 45_000)).await?;
    let (emulator, worker) = (&fx.emulator, &fx.worker);

    let clients = |g: &GroupSnapshot| -> BTreeSet<(String, Option<u32>, bool)> {
        g.clients.iter().map(|c| (c.client_id.clone(), c.idle_timeout_ms, c.attached)).collect()
    };
    let expected: BTreeSet<_> = [("w-0".to_owned(), Some(45_000), true), ("w-1".to_owned(), Some(45_000), true)].into();
    assert_eq!(clients(&group(emulator).await?), expected, "the emulator's view of the clients");

    // /status and /healthz
    let status = worker.status().await?;
    assert_eq!(status["clientIds"], json!(["w-0", "w-1"]));
    assert_eq!(status["connections"][0]["state"], "attached");
    assert_eq!(status["connections"][1]["state"], "attached");
    assert_eq!(worker.get("/healthz").await?.0, 200);

    // Age the first signatures past the skew rule, then force a reconnect.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    emulator.fault("drop-connections", GROUP).await?;
    wait_until("both connections to reconnect", Duration::from_secs(20), || async {
        let reconnects = worker.metric_sum("iotsub_worker_reconnects_total{").await.ok()?;
        (reconnects >= 2.0 && worker.ready().await).then_some(())
    })
    .await?;
    assert_eq!(clients(&group(emulator).await?), expected, "both clients back, with the same idle-time-out");
    let refusals = emulator.refusals_typed().await?;
    let stale = refusals.iter().filter(|r| r.reason.contains("timestamp")).count();
    assert_eq!(stale, 0, "a reconnect reused an old signature: {refusals:?}");

    // /metrics carries every family the design names.
    let metrics = worker.get("/metrics").await?.1;
    for family in [
        "iotsub_worker_messages_received_total",
        "iotsub_worker_messages_acknowledged_total",
        "iotsub_worker_messages_released_total",
        "iotsub_worker_messages_duplicate_total",
        "iotsub_worker_messages_poison_total",
        "iotsub_worker_sink_latency_seconds_bucket",
        "iotsub_worker_connection_state{client_id=\"w-1\",state=\"attached\"} 1",
        "iotsub_worker_reconnects_total",
    ] {
        assert!(metrics.contains(family), "/metrics lacks {family}:\n{metrics}");
    }

    // No secret anywhere the worker writes.
    let everything = format!("{}{}{}{}", worker.stderr(), status, metrics, worker.status().await?);
    assert!(!everything.contains("demo-secret"), "the secret leaked");
    Ok(())
}

#[tokio::test]
async fn log_sink_writes_one_json_line_per_message_then_acknowledges() -> anyhow::Result<()> {
    let fx = Fixture::start("", "solo", |o| o).await?;
    let (emulator, worker) = (&fx.emulator, &fx.worker);

    let payload = r#"{"items":{"Power":{"value":"on"}},"note":"é"}"#;
    let ids = emulator.publish(GROUP, TOPIC, payload, 3).await?;
    let lines = wait_until("three sink lines", Duration::from_secs(15), || async {
        let lines = worker.lines();
        (lines.len() >= 3).then_some(lines)
    })
    .await?;
    let mut seen = BTreeSet::new();
    for line in &lines {
        let object = line.as_object().expect("a JSON object");
        let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["messageId", "topic", "generateTime", "clientId", "payload"]), "{line}");
        assert_eq!(line["topic"], TOPIC);
        assert_eq!(line["clientId"], "solo");
        assert_eq!(line["payload"], payload);
        assert!(line["generateTime"].as_i64().is_some_and(|t| t > 1_600_000_000_000), "{line}");
        seen.insert(line["messageId"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ids.iter().cloned().collect());
    wait_until("the emulator to count 3 acknowledgements", Duration::from_secs(10), || async {
        let g = group(emulator).await.ok()?;
        (g.counters.acknowledged == 3 && g.in_flight == 0).then_some(())
    })
    .await?;
    assert_eq!(worker.metric("iotsub_worker_messages_acknowledged_total").await?, 3.0);
    Ok(())
}

#[tokio::test]
async fn help_and_errors_never_show_secret_values() -> anyhow::Result<()> {
    let output = Command::new(binary("iotsub-worker"))
        .arg("--help")
        .env("IOTSUB_ACCESS_KEY_SECRET", "super-secret-value")
        .env("IOTSUB_SECURITY_TOKEN", "STS.super-secret-token")
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("--access-key-secret") && text.contains("IOTSUB_ACCESS_KEY_SECRET"), "{text}");
    assert!(!text.contains("super-secret"), "--help printed a secret:\n{text}");

    // A configuration error (ststoken without a token is fine here: a bad idle-time-out) says what is wrong.
    let output = Command::new(binary("iotsub-worker"))
        .args(["--host", "h", "--consumer-group-id", "G", "--access-key-id", "a", "--idle-timeout-ms", "1000"])
        .env("IOTSUB_ACCESS_KEY_SECRET", "super-secret-value")
        .output()?;
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(text.contains("idle-timeout-ms"), "{text}");
    assert!(!text.contains("super-secret"), "{text}");
    Ok(())
}

#[tokio::test]
async fn ststoken_with_hmacmd5_on_a_named_instance() -> anyhow::Result<()> {
    let config = r#"
[[accounts]]
access_key_id = "ram-user"
access_key_secret = "ram-secret"
security_token = "STS.token-1"

[[instances]]
id = "iot-cn-test"
consumer_groups = ["G1"]
"#;
    let emulator = Emulator::start(config).await?;
    let dir = tempfile::tempdir()?;
    // The extra CA as PEM text in the environment (how a Secret reaches a pod), not as a file.
    let mut options = WorkerOptions::for_emulator(&emulator, "sts")
        .env("IOTSUB_CA_PEM", std::fs::read_to_string(&emulator.ca_pem)?)
        .env("IOTSUB_ACCESS_KEY_ID", "ram-user")
        .env("IOTSUB_ACCESS_KEY_SECRET", "ram-secret")
        .env("IOTSUB_SECURITY_TOKEN", "STS.token-1")
        .env("IOTSUB_CONSUMER_GROUP_ID", "G1")
        .env("IOTSUB_INSTANCE_ID", "iot-cn-test")
        .env("IOTSUB_AUTH_MODE", "ststoken")
        .env("IOTSUB_SIGN_METHOD", "hmacmd5");
    options.ca_file = None;
    let worker = Worker::start(dir.path(), &options).await?;
    worker.wait_ready(Duration::from_secs(20)).await?;
    let published = emulator
        .post("/admin/messages", json!({"instanceId": "iot-cn-test", "consumerGroupId": "G1", "topic": TOPIC, "payload": "x", "count": 2}))
        .await?;
    wait_until("2 acknowledgements on G1", Duration::from_secs(15), || async {
        let g = emulator.group_in("iot-cn-test", "G1").await.ok()?;
        (g.counters.acknowledged == 2).then_some(())
    })
    .await?;
    assert_eq!(worker.lines().len(), 2, "{published}");
    let leaked = format!("{}{}", worker.stderr(), worker.status().await?);
    assert!(!leaked.contains("STS.token-1") && !leaked.contains("ram-secret"), "a secret leaked");
    Ok(())
}

#[tokio::test]
async fn an_untrusted_server_certificate_is_refused() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let dir = tempfile::tempdir()?;
    let mut options = WorkerOptions::for_emulator(&emulator, "untrusting");
    options.ca_file = None; // system roots only: the emulator's private CA is not among them
    let worker = Worker::start(dir.path(), &options).await?;
    let status = wait_until("a TLS failure", Duration::from_secs(15), || async {
        let s = worker.status().await.ok()?;
        s["connections"][0]["lastError"].as_str().is_some_and(|e| e.contains("TLS")).then_some(s)
    })
    .await?;
    let error = status["connections"][0]["lastError"].as_str().unwrap();
    assert!(error.contains("certificate"), "{error}");
    assert!(!worker.ready().await);
    assert!(group(&emulator).await?.clients.is_empty());
    Ok(())
}
