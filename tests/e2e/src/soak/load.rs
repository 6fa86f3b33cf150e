//! Device traffic: a steady rate per group, published a tenth of a second at a time, and bursts;
//! every messageId kept with when it was published, as the emulator answered it.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use iotsub_tests::Emulator;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{setup::TOPIC, verdict::Published};

pub const STEADY_PER_SECOND: u32 = 500;
pub const BURST: u32 = 20_000;
const TICK: Duration = Duration::from_millis(100);
const PAYLOAD: &str = r#"{"id":"1","version":"1.0","params":{"power":{"value":"on"},"voltage":220.5}}"#;

/// What one group was sent.
#[derive(Default)]
pub struct Sent {
    pub messages: Vec<Published>,
    /// Publish calls the emulator refused or did not answer (their messages do not exist).
    pub failures: u64,
}

pub type Log = Arc<Mutex<Sent>>;

/// The steady load into `group` until `stop`.
pub fn steady(emulator: Arc<Emulator>, group: &'static str, log: Log, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let per_tick = STEADY_PER_SECOND / (1000 / TICK.as_millis() as u32);
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        while !stop.is_cancelled() {
            tokio::select! {
                _ = ticks.tick() => publish(&emulator, group, per_tick, &log).await,
                () = stop.cancelled() => break,
            }
        }
    })
}

/// `count` messages into `group` at once.
pub async fn publish(emulator: &Emulator, group: &str, count: u32, log: &Log) {
    let at_ms = now_ms();
    match emulator.publish(group, TOPIC, PAYLOAD, count).await {
        Ok(ids) => log.lock().unwrap().messages.extend(ids.into_iter().map(|id| Published { id, at_ms })),
        Err(e) => {
            eprintln!("soak: publishing {count} to {group} failed: {e:#}");
            log.lock().unwrap().failures += 1;
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
