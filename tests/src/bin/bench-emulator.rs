//! Emulator benchmark: messages/s pushed to 1 and to 8 fe2o3 consumers on loopback with the rate
//! limits lifted, and emulator memory per 1 000 idle connections.
//!
//! `make bench-emulator` (release build). The consumers run in this process on the same 2 cores, so
//! the figures are what the emulator sustains while sharing the machine with its clients; the
//! emulator's CPU time over a run (utime + stime from /proc) divided into its messages gives what
//! one emulator core sustains. `BENCH_RECEIVERS=8` runs one receiver count only;
//! `IOTSUB_BIN_DIR` picks the emulator binary (to compare builds); `BENCH_PIN=1` gives the emulator
//! CPU 0 and this process (the consumers) CPU 1 (`taskset`), so neither waits for the other's core.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use fe2o3_amqp::types::{messaging::Body, primitives::Value};
use iotsub_tests::{
    Emulator,
    amqp_client::{ClientOptions, consumer},
    wait_until,
};

const CONFIG: &str = "[limits]
realtime_rate_per_connection = 0
stacked_rate_per_group = 0
client_cap_per_group = 5000
connection_cap_per_instance = 5000
connection_attempts_per_minute = 1000000
";

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

async fn throughput(emulator: &Emulator, receivers: usize, messages: u32) -> anyhow::Result<(f64, f64)> {
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..receivers {
        let mut options = ClientOptions::demo(&format!("bench-{receivers}-{i}"));
        options.credit = 500;
        let (client, mut receiver) = consumer(emulator, &options).await?;
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let _client = client;
            while let Ok(delivery) = receiver.recv::<Body<Value>>().await {
                if receiver.accept(&delivery).await.is_err() {
                    break;
                }
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    wait_until("receivers attached", Duration::from_secs(10), || async {
        let g = emulator.group_snapshot("DEFAULT_GROUP").await.ok()?;
        (g.attached_clients() == receivers).then_some(())
    })
    .await?;
    let pid = emulator.process.child.id();
    let cpu_before = cpu_seconds(pid)?;
    let started = Instant::now();
    let batch = 50_000;
    let mut published = 0;
    while published < messages {
        let n = batch.min(messages - published);
        emulator
            .publish("DEFAULT_GROUP", "/a1bench/dev/thing/event/property/post", r#"{"items":{"Temperature":{"value":21.5}}}"#, n)
            .await?;
        published += n;
    }
    let target = messages as u64;
    let counter = received.clone();
    wait_until("every message acknowledged", Duration::from_secs(300), || {
        let counter = counter.clone();
        async move { (counter.load(Ordering::Relaxed) >= target).then_some(()) }
    })
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid)? - cpu_before;
    for task in tasks {
        task.abort();
    }
    wait_until("receivers gone", Duration::from_secs(10), || async {
        let g = emulator.group_snapshot("DEFAULT_GROUP").await.ok()?;
        g.clients.is_empty().then_some(())
    })
    .await?;
    Ok((messages as f64 / elapsed, cpu * 1_000_000.0 / messages as f64))
}

/// Every thread of `pid` onto `cpu` (util-linux's `taskset`).
fn pin(pid: u32, cpu: usize) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "taskset could not pin process {pid} to CPU {cpu}: {status}");
    Ok(())
}

async fn idle_memory(emulator: &Emulator, connections: usize) -> anyhow::Result<f64> {
    let pid = emulator.process.child.id();
    let before = rss_kib(pid)?;
    let mut held = Vec::new();
    for i in 0..connections {
        held.push(consumer(emulator, &ClientOptions::demo(&format!("idle-{i}"))).await?);
    }
    wait_until("idle connections attached", Duration::from_secs(30), || async {
        let g = emulator.group_snapshot("DEFAULT_GROUP").await.ok()?;
        (g.attached_clients() == connections).then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid)?;
    drop(held);
    Ok((after.saturating_sub(before)) as f64 * 1000.0 / connections as f64)
}

fn main() -> anyhow::Result<()> {
    let pinned = std::env::var("BENCH_PIN").is_ok_and(|v| v == "1");
    if pinned {
        // Before the runtime starts, so that it sizes itself for the one CPU it has.
        pin(std::process::id(), 1)?;
    }
    tokio::runtime::Runtime::new()?.block_on(bench(pinned))
}

async fn bench(pinned: bool) -> anyhow::Result<()> {
    let messages: u32 = std::env::var("BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let idle: usize = std::env::var("BENCH_IDLE_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let emulator = Emulator::start(CONFIG).await?;
    if pinned {
        pin(emulator.process.child.id(), 0)?;
        println!("pinned: the emulator to CPU 0, the consumers to CPU 1");
    }
    println!("emulator benchmark: {messages} messages of 40 bytes per run, release build, consumers in the same machine");
    let receiver_counts: Vec<usize> =
        std::env::var("BENCH_RECEIVERS").ok().map_or_else(|| vec![1, 8], |v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    for receivers in receiver_counts {
        // A warm-up run, then three measured ones: the median, and the spread the shared cores cause.
        throughput(&emulator, receivers, messages / 10).await?;
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(throughput(&emulator, receivers, messages).await?);
        }
        let mut cpu: Vec<f64> = runs.iter().map(|r| r.1).collect();
        cpu.sort_by(f64::total_cmp);
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Per emulator core: the messages one CPU-second of the emulator's process pushes and settles.
        println!(
            "{receivers} receiver(s): {:.0} messages/s (median of 3; {:.0}..{:.0}), emulator CPU {:.1} µs per message (median; {:.1}..{:.1}) = {:.0} messages/s per emulator core",
            runs[1].0,
            runs[0].0,
            runs[2].0,
            cpu[1],
            cpu[0],
            cpu[2],
            1e6 / cpu[1]
        );
    }
    let kib = idle_memory(&emulator, idle).await?;
    println!("idle connections: {idle} attached, emulator RSS +{:.1} MiB per 1000 connections", kib / 1024.0);
    Ok(())
}
