//! What `GET /admin/consumer-groups` shows of a group: queues, counters, rates, latency, clients.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

use super::GroupState;
use crate::admin::{ConnectionAttempts, GroupKey, GroupSnapshot, LatencySummary};

/// The last acknowledgements' push-to-accept latencies, for benchmarks of any client.
#[derive(Debug, Default)]
pub(super) struct LatencyWindow {
    micros: VecDeque<u32>,
    /// Acknowledgements timed by the delivery task because the wire clock did not see them.
    pub(super) task_clocked: u64,
}

const LATENCIES_KEPT: usize = 10_000;

impl LatencyWindow {
    pub(super) fn record(&mut self, latency: Duration) {
        if self.micros.len() == LATENCIES_KEPT {
            self.micros.pop_front();
        }
        self.micros.push_back(latency.as_micros().min(u32::MAX as u128) as u32);
    }

    fn summary(&self) -> Option<LatencySummary> {
        if self.micros.is_empty() {
            return None;
        }
        let mut sorted: Vec<u32> = self.micros.iter().copied().collect();
        sorted.sort_unstable();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        Some(LatencySummary {
            samples: sorted.len(),
            p50_us: at(0.5),
            p90_us: at(0.9),
            p99_us: at(0.99),
            max_us: at(1.0),
            task_clocked: self.task_clocked,
        })
    }
}

impl GroupState {
    /// `second` is the current epoch second, for the per-minute rates.
    pub(super) fn snapshot(&mut self, key: &GroupKey, now: Instant, second: u64) -> GroupSnapshot {
        let realtime = self.consumed_realtime.total(second);
        let stacked = self.consumed_stacked.total(second);
        GroupSnapshot {
            key: key.clone(),
            backlog: self.backlog(),
            stacked: self.stacked.len() as u64,
            in_flight: self.in_flight,
            paused: self.paused,
            refusing_logins: self.refuse_logins,
            counters: self.counters,
            consumed_per_minute: realtime + stacked,
            realtime_consumed_per_minute: realtime,
            stacked_consumed_per_minute: stacked,
            last_consumed_at: self.last_consumed_ms,
            ack_latency: self.ack_latency.summary(),
            max_deliveries_per_message: self.max_deliveries_per_message,
            connection_attempts: ConnectionAttempts { total: self.attempts_total, last_minute: self.attempts.count(now) as u64 },
            clients: self.clients.values().map(|c| c.snapshot(second)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_come_from_the_last_acknowledgements() {
        let mut window = LatencyWindow::default();
        for us in 1..=100 {
            window.record(Duration::from_micros(us));
        }
        assert_eq!(
            window.summary(),
            Some(LatencySummary { samples: 100, p50_us: 51, p90_us: 90, p99_us: 99, max_us: 100, task_clocked: 0 })
        );
        for _ in 0..LATENCIES_KEPT {
            window.record(Duration::from_micros(7));
        }
        assert_eq!(window.summary().map(|s| (s.samples, s.max_us)), Some((LATENCIES_KEPT, 7)));
    }
}
