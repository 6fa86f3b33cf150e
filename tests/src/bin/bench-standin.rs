//! Stand-in benchmark: requests/s the business-server stand-in answers to N keep-alive HTTP/1.1
//! clients, each with one request in flight, and the stand-in's CPU per request.
//!
//! `cargo build --release -p iotsub-standin -p iotsub-tests --bin bench-standin`, then
//! `target/release/bench-standin`. `BENCH_CONNECTIONS` (default `1,8,64`), `BENCH_SECONDS` (per run,
//! default 5), `BENCH_SERVICE_TIME_MS` (default 0) and `BENCH_CONCURRENCY` (default 0: no limit)
//! change the setup. The clients run in this process on the same machine.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, client::conn::http1};
use hyper_util::rt::TokioIo;
use iotsub_tests::standin::Standin;
use tokio::net::TcpStream;

const BODY: &str = r#"{"items":{"Temperature":{"value":21.5}}}"#;

fn env<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(text) => text.trim().parse().map_err(|_| anyhow::anyhow!("{name}={text:?} is not valid")),
        Err(_) => Ok(default),
    }
}

fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

/// One keep-alive connection posting events back to back until `stop`; counts the 200s.
async fn client(addr: String, index: usize, stop: Arc<AtomicBool>, answered: Arc<AtomicU64>) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(&addr).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let request = Request::post(format!("http://{addr}/events"))
            .header("host", &addr)
            .header("content-type", "application/json")
            .header("ce-specversion", "1.0")
            .header("ce-id", format!("c{index}-{n}"))
            .body(Full::new(Bytes::from_static(BODY.as_bytes())))?;
        let response = sender.send_request(request).await?;
        anyhow::ensure!(response.status() == 200, "the stand-in answered {}", response.status());
        response.into_body().collect().await?;
        answered.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

async fn run(standin: &Standin, connections: usize, seconds: f64) -> anyhow::Result<(f64, f64)> {
    let addr = standin.url.trim_start_matches("http://").to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..connections).map(|i| tokio::spawn(client(addr.clone(), i, stop.clone(), answered.clone()))).collect();
    // Warm-up: every connection open and busy.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = standin.process.child.id();
    let (count_before, cpu_before, started) = (answered.load(Ordering::Relaxed), cpu_seconds(pid)?, Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let (count, cpu, elapsed) =
        (answered.load(Ordering::Relaxed) - count_before, cpu_seconds(pid)? - cpu_before, started.elapsed().as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await??;
    }
    Ok((count as f64 / elapsed, cpu * 1_000_000.0 / count.max(1) as f64))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let connections: String = env("BENCH_CONNECTIONS", "1,8,64".to_owned())?;
    let connections: Vec<usize> = connections
        .split(',')
        .map(|n| n.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("BENCH_CONNECTIONS: {e}"))?;
    let seconds: f64 = env("BENCH_SECONDS", 5.0)?;
    let service_ms: f64 = env("BENCH_SERVICE_TIME_MS", 0.0)?;
    let concurrency: usize = env("BENCH_CONCURRENCY", 0)?;
    let standin = Standin::start(&["--service-time-ms", &service_ms.to_string(), "--concurrency", &concurrency.to_string()]).await?;
    println!(
        "stand-in benchmark: service time {service_ms} ms, concurrency limit {concurrency} (0: none), {seconds} s per run, ids recorded to a file, clients in the same machine"
    );
    for n in connections {
        let (rate, cpu_us) = run(&standin, n, seconds).await?;
        println!(
            "{n} keep-alive connection(s): {rate:.0} requests/s, stand-in CPU {cpu_us:.1} µs per request = {:.0} requests per stand-in CPU-second",
            1_000_000.0 / cpu_us
        );
    }
    let stats = standin.stats().await?;
    println!("stand-in counted {} requests answered 200, {} ids flushed to its file", stats.answered_ok, stats.ids_flushed);
    Ok(())
}
