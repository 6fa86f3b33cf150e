//! Exponential backoff with jitter, pure: the caller supplies the random number
//! (`iotsub_common::jitter::unit()`) so tests are exact.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max: max.max(initial), attempt: 0 }
    }

    /// The next delay: `initial · 2^attempt`, capped at `max`, scaled by a jitter factor in
    /// [0.5, 1.0) taken from `unit` ∈ [0, 1) — "equal jitter", so a herd of pods spreads out but
    /// no delay collapses to zero.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let exp = self.initial.saturating_mul(1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX));
        let capped = exp.min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        iotsub_common::jitter::equal(capped, unit)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..6).map(|_| b.next_delay(0.999_999).as_millis()).collect();
        assert_eq!(delays, vec![99, 199, 399, 799, 999, 999]);
    }

    #[test]
    fn jitter_keeps_at_least_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.next_delay(0.0), Duration::from_millis(50));
        assert_eq!(b.next_delay(0.0), Duration::from_millis(100));
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(Duration::from_secs(15), Duration::from_secs(300));
        for _ in 0..40 {
            b.next_delay(0.5);
        }
        assert_eq!(b.next_delay(0.0), Duration::from_secs(150));
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(7500));
    }
}
