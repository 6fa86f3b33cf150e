//! Rate limits with time passed in, so they are tested without clocks.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

/// Tokens refill continuously at `rate` per second, up to one second's worth. A rate of 0 never limits.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_second: u32, now: Instant) -> Self {
        TokenBucket { rate: rate_per_second as f64, tokens: rate_per_second as f64, refilled_at: now }
    }

    pub fn unlimited(&self) -> bool {
        self.rate == 0.0
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
        self.refilled_at = now;
    }

    pub fn has_token(&mut self, now: Instant) -> bool {
        if self.unlimited() {
            return true;
        }
        self.refill(now);
        self.tokens >= 1.0
    }

    pub fn take(&mut self, now: Instant) -> bool {
        if !self.has_token(now) {
            return false;
        }
        if !self.unlimited() {
            self.tokens -= 1.0;
        }
        true
    }

    /// How long until the next token, when there is none now.
    pub fn wait_time(&mut self, now: Instant) -> Duration {
        if self.has_token(now) {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
    }
}

/// Counts events in a sliding window.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    window: Duration,
    events: VecDeque<Instant>,
}

impl SlidingWindow {
    pub fn new(window: Duration) -> Self {
        SlidingWindow { window, events: VecDeque::new() }
    }

    /// Records an event and returns how many fell in the window, this one included.
    pub fn record(&mut self, now: Instant) -> usize {
        self.prune(now);
        self.events.push_back(now);
        self.events.len()
    }

    /// How many events fell in the window up to `now`.
    pub fn count(&mut self, now: Instant) -> usize {
        self.prune(now);
        self.events.len()
    }

    fn prune(&mut self, now: Instant) {
        while self.events.front().is_some_and(|t| now.saturating_duration_since(*t) >= self.window) {
            self.events.pop_front();
        }
    }
}

/// Counts per second over the last minute, in 60 buckets: O(1) memory whatever the rate.
#[derive(Debug, Clone)]
pub struct PerMinute {
    buckets: [u64; 60],
    stamps: [u64; 60],
}

impl Default for PerMinute {
    fn default() -> Self {
        PerMinute { buckets: [0; 60], stamps: [0; 60] }
    }
}

impl PerMinute {
    pub fn add(&mut self, second: u64, n: u64) {
        let i = (second % 60) as usize;
        if self.stamps[i] != second {
            self.stamps[i] = second;
            self.buckets[i] = 0;
        }
        self.buckets[i] += n;
    }

    pub fn total(&self, second: u64) -> u64 {
        (0..60).filter(|&i| second.saturating_sub(self.stamps[i]) < 60 && self.stamps[i] <= second).map(|i| self.buckets[i]).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_one_second_of_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, t0);
        assert_eq!((0..20).filter(|_| bucket.take(t0)).count(), 10);
        assert_eq!(bucket.wait_time(t0), Duration::from_millis(100));
        let later = t0 + Duration::from_millis(250);
        assert_eq!((0..20).filter(|_| bucket.take(later)).count(), 2);
    }

    #[test]
    fn zero_rate_never_limits() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0, t0);
        assert!((0..100_000).all(|_| bucket.take(t0)));
    }

    #[test]
    fn window_forgets_old_events() {
        let t0 = Instant::now();
        let mut window = SlidingWindow::new(Duration::from_secs(60));
        for i in 0..5 {
            window.record(t0 + Duration::from_secs(i));
        }
        assert_eq!(window.record(t0 + Duration::from_secs(60)), 5, "the event at 0 s left the window");
        assert_eq!(window.count(t0 + Duration::from_secs(61)), 4, "counting records nothing");
        assert_eq!(window.record(t0 + Duration::from_secs(200)), 1);
    }

    #[test]
    fn per_minute_sums_the_last_sixty_seconds() {
        let mut m = PerMinute::default();
        m.add(100, 5);
        m.add(130, 7);
        assert_eq!(m.total(130), 12);
        assert_eq!(m.total(160), 7);
        assert_eq!(m.total(300), 0);
    }
}
