//! Worker benchmark against the emulator (ignored by default; run it on a release build):
//!
//! ```text
//! cargo build --release -p iotsub-worker -p iotsub-emulator
//! cargo test --release -p iotsub-tests --test worker_bench -- --ignored --nocapture
//! ```
//!
//! The worker runs pinned to one core (`taskset`, the last CPU) with the log sink writing to
//! /dev/null; the emulator is pinned to another core with its push-rate limits off. Figures:
//! throughput with 1 and 4 connections, CPU time per 1 000 messages, latency from the emulator's
//! send (`x-opt-sent-at-us`) to the acknowledgement at 1 000 msg/s (from the worker's
//! `iotsub_worker_ack_latency_seconds` histogram, interpolated within buckets), RSS idle and peak.
//! The table is printed and written to `target/bench/worker.md`. `worker_http_sink_benchmark` does the
//! same with the http sink against a local receiver (`target/bench/worker-http.md`).

use std::time::{Duration, Instant};

use iotsub_tests::{
    Emulator,
    http_receiver::HttpReceiver,
    wait_until,
    worker::{GROUP, TOPIC, Worker, WorkerOptions, parse_metric},
};
use serde_json::json;

const PAYLOAD: &str = r#"{"iotId":"4z819VQHk6VSLmmBJfrf00107ee200","productKey":"a1b2c3d4e5f","deviceName":"dev-0001","gmtCreate":1510799670074,"items":{"Temperature":{"value":23.5,"time":1510799670074},"Humidity":{"value":41,"time":1510799670074}}}"#;

fn pin(pid: u32, cpu: usize) {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("taskset");
    assert!(status.success(), "taskset failed");
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat; after the comm they are at 11 and 12.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// VmRSS and VmHWM in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| -> f64 {
        status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse::<f64>().unwrap()
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

struct Throughput {
    rate: f64,
    cpu_ms_per_1000: f64,
}

/// Publishes `n` messages and measures the worker's acknowledgement rate between 10% and 90%.
async fn throughput(emulator: &Emulator, worker: &Worker, n: u64) -> anyhow::Result<Throughput> {
    let pid = worker.process.child.id();
    let acked = || async { worker.metric("iotsub_worker_messages_acknowledged_total").await.unwrap_or(0.0) as u64 };
    let base = acked().await;
    let cpu_before = cpu_seconds(pid);
    let publisher = {
        let body = json!({"instanceId": "", "consumerGroupId": GROUP, "topic": TOPIC, "payload": PAYLOAD, "count": 10_000});
        let (url, client) = (emulator.api_url("/admin/messages"), emulator.http_client());
        tokio::spawn(async move {
            for _ in 0..n / 10_000 {
                client.post(&url).json(&body).send().await?.error_for_status()?;
            }
            anyhow::Ok(())
        })
    };
    let (mut t10, mut t90) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = acked().await - base;
        let now = Instant::now();
        if t10.is_none() && done >= n / 10 {
            t10 = Some((now, done));
        }
        if t90.is_none() && done >= n * 9 / 10 {
            t90 = Some((now, done));
        }
        if done >= n {
            break;
        }
        anyhow::ensure!(now < deadline, "only {done} of {n} acknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    publisher.await??;
    let cpu = cpu_seconds(pid) - cpu_before;
    let ((a, na), (b, nb)) = (t10.unwrap(), t90.unwrap());
    Ok(Throughput { rate: (nb - na) as f64 / (b - a).as_secs_f64(), cpu_ms_per_1000: cpu * 1000.0 / (n as f64 / 1000.0) })
}

/// Quantile `q` from cumulative Prometheus buckets `(le, count)`, interpolated linearly.
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    let rank = q * total;
    let (mut prev_le, mut prev_count) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            let within = if count > prev_count { (rank - prev_count) / (count - prev_count) } else { 0.0 };
            return if le.is_finite() { prev_le + within * (le - prev_le) } else { prev_le };
        }
        (prev_le, prev_count) = (le, count);
    }
    f64::NAN
}

fn buckets(metrics: &str, family: &str) -> Vec<(f64, f64)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{family}_bucket{{le=\"")))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

async fn start_pinned(emulator: &Emulator, dir: &std::path::Path, connections: u32, cpu: usize) -> anyhow::Result<Worker> {
    start_pinned_with(emulator, dir, connections, cpu, |o| o).await
}

async fn start_pinned_with(
    emulator: &Emulator,
    dir: &std::path::Path,
    connections: u32,
    cpu: usize,
    configure: impl FnOnce(WorkerOptions) -> WorkerOptions,
) -> anyhow::Result<Worker> {
    let mut options = configure(WorkerOptions::for_emulator(emulator, "bench").connections(connections).arg("--credit", 500));
    options.stdout_null = true;
    let worker = Worker::start(dir, &options).await?;
    pin(worker.process.child.id(), cpu);
    worker.wait_ready(Duration::from_secs(20)).await?;
    Ok(worker)
}

/// The emulator with its rate limits off (the worker is what is measured), pinned to `cpu`.
async fn unlimited_emulator(cpu: usize) -> anyhow::Result<Emulator> {
    let emulator =
        Emulator::start("[limits]\nrealtime_rate_per_connection = 0\nstacked_rate_per_group = 0\nack_timeout_ms = 120000\n").await?;
    pin(emulator.process.child.id(), cpu);
    Ok(emulator)
}

/// A benchmark's lines, printed as they come and kept for target/bench.
#[derive(Default)]
struct Report(String);

impl Report {
    fn line(&mut self, s: &str) {
        println!("{s}");
        self.0.push_str(s);
        self.0.push('\n');
    }

    fn save(&self, name: &str) -> anyhow::Result<()> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench");
        std::fs::create_dir_all(dir)?;
        std::fs::write(format!("{dir}/{name}"), &self.0)?;
        Ok(())
    }
}

#[tokio::test]
#[ignore = "a benchmark: run on a release build with --ignored --nocapture"]
async fn worker_benchmark() -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism()?.get();
    let (emulator_cpu, worker_cpu) = (0, cpus - 1);
    let emulator = unlimited_emulator(emulator_cpu).await?;
    let dir = tempfile::tempdir()?;
    let mut report = Report::default();
    report.line(&format!(
        "cpus: {cpus} (emulator on cpu {emulator_cpu}, worker on cpu {worker_cpu}); load average before: {}",
        std::fs::read_to_string("/proc/loadavg")?.trim()
    ));

    // One connection.
    let worker = start_pinned(&emulator, &dir.path().join("one"), 1, worker_cpu).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_rss, _) = rss_mib(worker.process.child.id());
    throughput(&emulator, &worker, 10_000).await?; // warm-up
    let one = throughput(&emulator, &worker, 50_000).await?;
    let (_, one_peak) = rss_mib(worker.process.child.id());
    report.line(&format!(
        "1 connection: {:.0} msg/s, {:.1} ms CPU per 1000 messages, RSS idle {idle_rss:.1} MiB, peak {one_peak:.1} MiB",
        one.rate, one.cpu_ms_per_1000
    ));
    drop(worker);

    // Four connections in one pod.
    let worker = start_pinned(&emulator, &dir.path().join("four"), 4, worker_cpu).await?;
    throughput(&emulator, &worker, 10_000).await?;
    let four = throughput(&emulator, &worker, 100_000).await?;
    let (_, four_peak) = rss_mib(worker.process.child.id());
    report.line(&format!(
        "4 connections: {:.0} msg/s per pod ({:.0} per connection), {:.1} ms CPU per 1000 messages, RSS peak {four_peak:.1} MiB",
        four.rate,
        four.rate / 4.0,
        four.cpu_ms_per_1000
    ));
    drop(worker);

    // Latency at 1 000 msg/s, one connection, the platform's real-time shape.
    let worker = start_pinned(&emulator, &dir.path().join("latency"), 1, worker_cpu).await?;
    let (p50, p99) = latency_at_1000(&emulator, &worker, 20).await?;
    let (load_rss, _) = rss_mib(worker.process.child.id());
    report.line(&format!(
        "latency at 1000 msg/s (send → acknowledgement): p50 {p50:.2} ms, p99 {p99:.2} ms; RSS under this load {load_rss:.1} MiB"
    ));
    drop(worker);

    report.save("worker.md")?;
    Ok(())
}

/// Acknowledgement latency (p50, p99 in ms) of `seconds` of the emulator's traffic at 1 000 msg/s.
async fn latency_at_1000(emulator: &Emulator, worker: &Worker, seconds: u64) -> anyhow::Result<(f64, f64)> {
    let before = buckets(&worker.get("/metrics").await?.1, "iotsub_worker_ack_latency_seconds");
    let base = parse_metric(&worker.get("/metrics").await?.1, "iotsub_worker_ack_latency_seconds_count").unwrap_or(0.0);
    emulator
        .post(
            "/admin/traffic",
            json!({"instanceId": "", "consumerGroupId": GROUP, "ratePerSecond": 1000, "devices": 20, "seconds": seconds}),
        )
        .await?;
    let target = base + (seconds * 1000) as f64;
    let text = wait_until("the traffic to be acknowledged", Duration::from_secs(seconds + 30), || async {
        let text = worker.get("/metrics").await.ok()?.1;
        (parse_metric(&text, "iotsub_worker_ack_latency_seconds_count")? >= target).then_some(text)
    })
    .await?;
    let after = buckets(&text, "iotsub_worker_ack_latency_seconds");
    let delta: Vec<(f64, f64)> = after.iter().map(|&(le, c)| (le, c - before.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1))).collect();
    Ok((quantile(&delta, 0.50) * 1000.0, quantile(&delta, 0.99) * 1000.0))
}

/// The worker with the http sink against a local receiver (a real HTTP server in this process
/// answering 200 at once): the cost of a POST per message and of the delivery bookkeeping
/// (outcome classification, circuit breaker, delivery counts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run on a release build with --ignored --nocapture"]
async fn worker_http_sink_benchmark() -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism()?.get();
    let (emulator_cpu, worker_cpu) = (0, cpus - 1);
    let emulator = unlimited_emulator(emulator_cpu).await?;
    let receiver = HttpReceiver::start().await?;
    let dir = tempfile::tempdir()?;
    let mut report = Report::default();
    report.line(&format!(
        "cpus: {cpus} (emulator on cpu {emulator_cpu}, worker on cpu {worker_cpu}, the receiver unpinned); load average before: {}",
        std::fs::read_to_string("/proc/loadavg")?.trim()
    ));
    for connections in [1, 4] {
        let worker = start_pinned_with(&emulator, &dir.path().join(format!("http-{connections}")), connections, worker_cpu, |o| {
            o.http_sink(&receiver.url)
        })
        .await?;
        throughput(&emulator, &worker, 10_000).await?; // warm-up
        let n = 50_000 * u64::from(connections.min(2));
        let run = throughput(&emulator, &worker, n).await?;
        let (_, peak) = rss_mib(worker.process.child.id());
        report.line(&format!(
            "http sink, {connections} connection(s): {:.0} msg/s per pod, {:.1} ms worker CPU per 1000 messages, RSS peak {peak:.1} MiB",
            run.rate, run.cpu_ms_per_1000
        ));
    }
    let worker = start_pinned_with(&emulator, &dir.path().join("http-latency"), 1, worker_cpu, |o| o.http_sink(&receiver.url)).await?;
    let (p50, p99) = latency_at_1000(&emulator, &worker, 20).await?;
    report.line(&format!("http sink, latency at 1000 msg/s (send → acknowledgement, the POST included): p50 {p50:.2} ms, p99 {p99:.2} ms"));
    drop(worker);
    report.save("worker-http.md")?;
    Ok(())
}

#[test]
fn quantiles_interpolate_within_buckets() {
    let b = [(0.001, 50.0), (0.002, 90.0), (0.005, 100.0), (f64::INFINITY, 100.0)];
    assert!((quantile(&b, 0.5) - 0.001).abs() < 1e-12);
    assert!((quantile(&b, 0.7) - 0.0015).abs() < 1e-12);
    assert!((quantile(&b, 0.99) - 0.0047).abs() < 1e-9);
}
