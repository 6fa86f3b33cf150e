//! Interop with a broker nobody here wrote: Apache ActiveMQ Artemis (embedded, tests/interop/artemis)
//! with an AMQP 1.0 TLS acceptor and SASL PLAIN. Its security manager verifies the IoT Platform's
//! signed logins independently (Java's HMAC), so the worker's TLS, SASL, receiver and acknowledgements
//! all meet a third-party implementation. `scripts/artemis-broker.sh` builds and starts the broker;
//! the first run downloads Artemis with Maven.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use fe2o3_amqp::{
    Connection, Sender, Session,
    sasl_profile::SaslProfile,
    types::{
        messaging::{ApplicationProperties, Message},
        primitives::Binary,
    },
};
use iotsub_tests::{
    Process, wait_until,
    worker::{Worker, WorkerOptions, delivered_counts},
};
use nix::sys::signal::Signal;
use serde_json::Value;

const QUEUE: &str = "iot.messages";
const ACCESS_KEY_ID: &str = "interop-key";
const ACCESS_KEY_SECRET: &str = "interop-secret";
const PUBLISHER_PASSWORD: &str = "publisher-pass";

struct Artemis {
    _process: Process,
    dir: PathBuf,
    port: u16,
}

impl Artemis {
    async fn start(dir: &Path) -> anyhow::Result<Artemis> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/artemis-broker.sh");
        let mut command = Command::new("bash");
        command
            .arg(&script)
            .arg(dir)
            .env("ARTEMIS_QUEUE", QUEUE)
            .env("ARTEMIS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("ARTEMIS_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET)
            .env("ARTEMIS_PUBLISHER_PASSWORD", PUBLISHER_PASSWORD)
            .stdout(std::fs::File::create(dir.join("artemis.out"))?)
            .stderr(std::fs::File::create(dir.join("artemis.err"))?);
        let mut process = Process::spawn("artemis-broker.sh", command)?;
        let endpoint = dir.join("endpoint.json");
        // The first run builds the Maven project (downloads included).
        let end = std::time::Instant::now() + Duration::from_secs(600);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&endpoint)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v["amqp"].as_str()?.rsplit_once(':')?.1.parse().ok())
            {
                break port;
            }
            if let Some(status) = process.child.try_wait()? {
                anyhow::bail!(
                    "the broker script exited ({status}):\n{}",
                    std::fs::read_to_string(dir.join("artemis.err")).unwrap_or_default()
                );
            }
            anyhow::ensure!(std::time::Instant::now() < end, "Artemis did not start within 10 minutes");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Ok(Artemis { _process: process, dir: dir.to_owned(), port })
    }

    fn stats(&self) -> Value {
        std::fs::read_to_string(self.dir.join("stats.json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
    }

    fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Puts `count` platform-shaped messages on the queue (as the plain publisher account); returns their ids.
    async fn publish(&self, count: usize) -> anyhow::Result<Vec<String>> {
        let pem = std::fs::read(self.ca_pem())?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert?)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let stream =
            tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(rustls::pki_types::ServerName::try_from("localhost")?, tcp).await?;
        let mut connection = Connection::builder()
            .container_id("interop-publisher")
            .scheme("amqp")
            .sasl_profile(SaslProfile::Plain { username: "publisher".into(), password: PUBLISHER_PASSWORD.into() })
            .open_with_stream(stream)
            .await?;
        let mut session = Session::begin(&mut connection).await?;
        let mut sender = Sender::attach(&mut session, "interop-publisher-link", QUEUE).await?;
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            let id = format!("artemis-{}-{i}", uuid::Uuid::new_v4().simple());
            let message = Message::builder()
                .application_properties(
                    ApplicationProperties::builder()
                        .insert("topic", "/pk/dev1/thing/event/property/post")
                        .insert("messageId", id.as_str())
                        .insert("generateTime", now_ms)
                        .build(),
                )
                .data(Binary::from(format!("{{\"n\":{i}}}").into_bytes()))
                .build();
            let outcome = sender.send(message).await?;
            anyhow::ensure!(outcome.is_accepted(), "the broker did not accept message {i}: {outcome:?}");
            ids.push(id);
        }
        sender.close().await?;
        session.end().await?;
        connection.close().await?;
        Ok(ids)
    }
}

fn worker_options(artemis: &Artemis, client_id: &str, secret: &str) -> WorkerOptions {
    WorkerOptions {
        host: "127.0.0.1".into(),
        port: artemis.port,
        ca_file: Some(artemis.ca_pem()),
        client_id: client_id.into(),
        connections: 1,
        args: vec!["--source-address".into(), QUEUE.into()],
        env: vec![
            ("IOTSUB_CONSUMER_GROUP_ID".into(), "interop-group".into()),
            ("IOTSUB_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into()),
            ("IOTSUB_ACCESS_KEY_SECRET".into(), secret.into()),
        ],
        stdout_null: false,
    }
}

#[tokio::test]
async fn worker_consumes_an_artemis_queue_over_tls_with_signed_sasl_plain() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let artemis = Artemis::start(dir.path()).await?;
    let ids = artemis.publish(300).await?;
    wait_until("300 messages on the queue", Duration::from_secs(10), || async { (artemis.stats()["messageCount"] == 300).then_some(()) })
        .await?;

    // A wrong secret is refused by the broker's own check of the signature.
    let wrong_dir = dir.path().join("wrong");
    let wrong = Worker::start(&wrong_dir, &worker_options(&artemis, "artemis-wrong", "not-the-secret")).await?;
    let status = wait_until("the refusal", Duration::from_secs(20), || async {
        let s = wrong.status().await.ok()?;
        (s["connections"][0]["state"] == "login-refused").then_some(s)
    })
    .await?;
    assert!(status["connections"][0]["lastError"].as_str().unwrap_or("").contains("login refused"), "{status}");
    assert!(!wrong.ready().await);
    drop(wrong);
    assert_eq!(artemis.stats()["messageCount"], 300, "a refused worker consumed something");

    // The right one consumes and acknowledges everything.
    let worker_dir = dir.path().join("worker");
    let mut worker = Worker::start(&worker_dir, &worker_options(&artemis, "artemis-w", ACCESS_KEY_SECRET)).await?;
    worker.wait_ready(Duration::from_secs(20)).await?;
    wait_until("every message in the sink and acknowledged", Duration::from_secs(30), || async {
        let s = artemis.stats();
        let settled = s["messagesAcknowledged"] == 300 && s["messageCount"] == 0 && s["deliveringCount"] == 0;
        settled.then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {}\n{}", artemis.stats(), worker.stderr()))?;
    let counts = delivered_counts(&worker_dir);
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), ids.iter().cloned().collect::<HashSet<_>>());
    let line = &worker.lines()[0];
    assert_eq!(line["topic"], "/pk/dev1/thing/event/property/post");
    assert_eq!(line["clientId"], "artemis-w");
    assert!(line["payload"].as_str().unwrap_or("").starts_with("{\"n\":"), "{line}");
    let accepted: Vec<Value> = artemis.stats()["acceptedClientIds"].as_array().cloned().unwrap_or_default();
    assert!(accepted.contains(&Value::from("artemis-w")) && !accepted.contains(&Value::from("artemis-wrong")), "{accepted:?}");

    worker.process.signal(Signal::SIGTERM)?;
    let exit = worker.process.wait_exit(Duration::from_secs(15)).await?;
    assert!(exit.success(), "{exit}\n{}", worker.stderr());
    wait_until("the consumer to detach", Duration::from_secs(10), || async { (artemis.stats()["consumerCount"] == 0).then_some(()) })
        .await?;
    Ok(())
}
