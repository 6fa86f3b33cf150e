//! The worker as a real process, the shared setup of its component tests ([`Fixture`]), and an HTTP
//! sink the tests control.
//!
//! The worker is started with `--http-addr 127.0.0.1:0 --http-addr-file <dir>/http.addr`; it writes
//! the bound address there once it listens, and [`Worker::start`] waits for that file. Its stdout
//! (the log sink's JSON lines) is appended to `<dir>/stdout.jsonl` across restarts, its stderr to
//! `<dir>/stderr.log`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;

use crate::{Emulator, Process, binary, wait_until};
use iotsub_emulator::admin::GroupSnapshot;

pub const GROUP: &str = "DEFAULT_GROUP";
pub const TOPIC: &str = "/pk/dn/thing/event/property/post";

/// How to start a worker; [`WorkerOptions::for_emulator`] fills in the emulator's endpoint and account.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub host: String,
    pub port: u16,
    pub ca_file: Option<PathBuf>,
    pub client_id: String,
    pub connections: u32,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Send the log sink's lines to /dev/null (benchmarks) instead of `<dir>/stdout.jsonl`.
    pub stdout_null: bool,
}

impl WorkerOptions {
    pub fn for_emulator(emulator: &Emulator, client_id: &str) -> WorkerOptions {
        WorkerOptions {
            host: "127.0.0.1".into(),
            port: emulator.amqp_addr.port(),
            ca_file: Some(emulator.ca_pem.clone()),
            client_id: client_id.into(),
            connections: 1,
            args: vec![],
            env: vec![
                ("IOTSUB_CONSUMER_GROUP_ID".into(), GROUP.into()),
                ("IOTSUB_ACCESS_KEY_ID".into(), "demo".into()),
                ("IOTSUB_ACCESS_KEY_SECRET".into(), "demo-secret".into()),
            ],
            stdout_null: false,
        }
    }

    /// Credentials from `dir` (`--credentials-dir`, a mounted Secret) instead of the environment.
    pub fn credentials_dir(mut self, dir: &std::path::Path) -> Self {
        self.env.retain(|(name, _)| !name.starts_with("IOTSUB_ACCESS_KEY"));
        self.arg("--credentials-dir", dir.display())
    }

    /// RRSA instead of an AccessKey: the role, the provider, the token file and the STS endpoint.
    pub fn rrsa(mut self, token_file: &std::path::Path, sts_endpoint: &str) -> Self {
        self.env.retain(|(name, _)| !name.starts_with("IOTSUB_ACCESS_KEY"));
        for (flag, value) in crate::oidc::rrsa_args(token_file, sts_endpoint) {
            self = self.arg(&flag, value);
        }
        self
    }

    pub fn connections(mut self, n: u32) -> Self {
        self.connections = n;
        self
    }

    // By value, so flags read as on a command line: `.arg("--credit", 50)`.
    #[allow(clippy::needless_pass_by_value)]
    pub fn arg(mut self, flag: &str, value: impl ToString) -> Self {
        self.args.push(flag.into());
        self.args.push(value.to_string());
        self
    }

    /// The http sink, POSTing to `url`.
    pub fn http_sink(self, url: &str) -> Self {
        self.arg("--sink", "http").arg("--sink-url", url)
    }

    #[allow(clippy::needless_pass_by_value)]
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.to_string()));
        self
    }
}

pub struct Worker {
    pub process: Process,
    pub http_addr: SocketAddr,
    pub dir: PathBuf,
    http: reqwest::Client,
}

impl Worker {
    /// Starts `iotsub-worker` with its files under `dir` and waits until its HTTP server listens.
    pub async fn start(dir: &Path, options: &WorkerOptions) -> anyhow::Result<Worker> {
        std::fs::create_dir_all(dir)?;
        let addr_file = dir.join("http.addr");
        let _ = std::fs::remove_file(&addr_file);
        let append = |name: &str| std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name));
        let mut command = Command::new(binary("iotsub-worker"));
        command
            .args(["--host", &options.host, "--port", &options.port.to_string()])
            .args(["--client-id", &options.client_id, "--connections", &options.connections.to_string()])
            .args(["--http-addr", "127.0.0.1:0", "--http-addr-file"])
            .arg(&addr_file)
            .args(&options.args)
            .env("RUST_LOG", std::env::var("WORKER_LOG").unwrap_or_else(|_| "info".into()))
            .env_remove("POD_NAME")
            .stdout(if options.stdout_null { std::fs::File::create("/dev/null")? } else { append("stdout.jsonl")? })
            .stderr(append("stderr.log")?);
        // Only what the test sets: an IOTSUB_* variable of the developer's shell must not leak in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("IOTSUB_") {
                command.env_remove(key);
            }
        }
        if let Some(ca) = &options.ca_file {
            command.arg("--ca-file").arg(ca);
        }
        for (k, v) in &options.env {
            command.env(k, v);
        }
        let mut process = Process::spawn("iotsub-worker", command)?;
        let http_addr: SocketAddr = {
            let end = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(addr) = std::fs::read_to_string(&addr_file).ok().and_then(|t| t.trim().parse().ok()) {
                    break addr;
                }
                if let Some(status) = process.child.try_wait()? {
                    anyhow::bail!("the worker exited ({status}) before listening:\n{}", read(&dir.join("stderr.log")));
                }
                anyhow::ensure!(std::time::Instant::now() < end, "the worker wrote no {}", addr_file.display());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        Ok(Worker { process, http_addr, dir: dir.to_owned(), http: reqwest::Client::new() })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let response = self.http.get(format!("http://{}{}", self.http_addr, path)).send().await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    pub async fn status(&self) -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&self.get("/status").await?.1)?)
    }

    pub async fn ready(&self) -> bool {
        matches!(self.get("/readyz").await, Ok((200, _)))
    }

    pub async fn wait_ready(&self, deadline: Duration) -> anyhow::Result<()> {
        wait_until("the worker's /readyz", deadline, || async { self.ready().await.then_some(()) })
            .await
            .map_err(|e| anyhow::anyhow!("{e}\nworker stderr:\n{}", self.stderr()))
    }

    /// The value of a metric sample (exact name with labels, e.g. `iotsub_worker_messages_received_total`).
    pub async fn metric(&self, sample: &str) -> anyhow::Result<f64> {
        let text = self.get("/metrics").await?.1;
        Ok(parse_metric(&text, sample).unwrap_or(0.0))
    }

    /// The sum of every sample whose name and labels start with `prefix`
    /// (e.g. `iotsub_worker_reconnects_total{client_id="w-0"` for every reason).
    pub async fn metric_sum(&self, prefix: &str) -> anyhow::Result<f64> {
        let text = self.get("/metrics").await?.1;
        Ok(text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok())).sum())
    }

    pub fn stderr(&self) -> String {
        read(&self.dir.join("stderr.log"))
    }

    /// Every log-sink line written so far (across restarts in the same directory).
    pub fn lines(&self) -> Vec<Value> {
        sink_lines(&self.dir)
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The JSON lines of `<dir>/stdout.jsonl`; a torn last line (a killed writer) is skipped.
pub fn sink_lines(dir: &Path) -> Vec<Value> {
    read(&dir.join("stdout.jsonl")).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// messageId → how many times it reached the log sink.
pub fn delivered_counts(dir: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in sink_lines(dir) {
        if let Some(id) = line["messageId"].as_str() {
            *counts.entry(id.to_owned()).or_default() += 1;
        }
    }
    counts
}

pub fn parse_metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// The emulator's view of the consumer group.
/// The emulator's view of the tests' consumer group, typed.
pub async fn group(emulator: &Emulator) -> anyhow::Result<GroupSnapshot> {
    emulator.group_snapshot(GROUP).await
}

/// The http sink the tests control (the same real HTTP server as [`HttpReceiver`]).
pub use crate::http_receiver::HttpReceiver as SinkServer;

/// An emulator, a temporary directory and a worker attached to it: the setup of most component tests.
pub struct Fixture {
    pub emulator: Emulator,
    pub worker: Worker,
    pub options: WorkerOptions,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// Starts the emulator with `emulator_config` (TOML, empty for the defaults) and a worker named
    /// `client_id` with the options `configure` makes, then waits until the worker is ready.
    pub async fn start(
        emulator_config: &str,
        client_id: &str,
        configure: impl FnOnce(WorkerOptions) -> WorkerOptions,
    ) -> anyhow::Result<Fixture> {
        let fixture = Fixture::start_unready(emulator_config, client_id, configure).await?;
        fixture.worker.wait_ready(Duration::from_secs(20)).await?;
        Ok(fixture)
    }

    /// As [`Fixture::start`], without waiting for readiness.
    pub async fn start_unready(
        emulator_config: &str,
        client_id: &str,
        configure: impl FnOnce(WorkerOptions) -> WorkerOptions,
    ) -> anyhow::Result<Fixture> {
        let emulator = Emulator::start(emulator_config).await?;
        let dir = tempfile::tempdir()?;
        let options = configure(WorkerOptions::for_emulator(&emulator, client_id));
        let worker = Worker::start(dir.path(), &options).await?;
        Ok(Fixture { emulator, worker, options, dir })
    }

    /// Publishes `count` messages on [`TOPIC`]; returns their messageIds.
    pub async fn publish(&self, payload: &str, count: u32) -> anyhow::Result<Vec<String>> {
        self.emulator.publish(GROUP, TOPIC, payload, count).await
    }

    pub async fn group(&self) -> anyhow::Result<GroupSnapshot> {
        group(&self.emulator).await
    }

    /// Waits until the emulator's view of the group satisfies `check`; returns that view.
    pub async fn wait_group(
        &self,
        what: &str,
        deadline: Duration,
        check: impl Fn(&GroupSnapshot) -> bool,
    ) -> anyhow::Result<GroupSnapshot> {
        wait_until(what, deadline, || async {
            let g = self.group().await.ok()?;
            check(&g).then_some(g)
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}\nworker stderr (tail):\n{}", tail(&self.worker.stderr(), 40)))
    }

    /// The dead letters the worker logged (JSON lines on stderr with `"deadLetter":true`).
    pub fn dead_letters(&self) -> Vec<Value> {
        dead_letters(&self.worker.stderr())
    }
}

/// The dead-letter records among the lines of a worker's stderr.
pub fn dead_letters(stderr: &str) -> Vec<Value> {
    stderr.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["deadLetter"] == true).collect()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
