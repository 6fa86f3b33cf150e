//! The sink's circuit breaker (pure, time passed in).
//!
//! After `threshold` consecutive failed attempts the circuit opens: the worker grants no new link
//! credit, so the platform stacks the messages instead of redelivering them in a loop. After a
//! backoff (1 s doubling to 30 s, jittered) it turns half-open: one message per connection is let
//! through as a probe. A success closes the circuit (credit flows again); a failure opens it for the
//! next, longer, backoff. Answers that show a working sink (2xx, and the 4xx that reject one message)
//! count as successes.

use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::Backoff;

pub use iotsub_common::sink::BreakerState;

pub const PROBE_FIRST: Duration = Duration::from_secs(1);
pub const PROBE_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    state: BreakerState,
    consecutive_failures: u32,
    probe_backoff: Backoff,
    /// While open: when to let a probe through.
    probe_at: Option<Instant>,
}

impl Breaker {
    pub fn new(threshold: u32) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            state: BreakerState::Ok,
            consecutive_failures: 0,
            probe_backoff: Backoff::new(PROBE_FIRST, PROBE_MAX),
            probe_at: None,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub fn probe_at(&self) -> Option<Instant> {
        self.probe_at
    }

    /// A working answer. Returns the new state when it changed.
    pub fn success(&mut self) -> Option<BreakerState> {
        self.consecutive_failures = 0;
        self.probe_backoff.reset();
        self.probe_at = None;
        self.transition(BreakerState::Ok)
    }

    /// A failed attempt at `now`; `unit` ∈ [0, 1) jitters the probe delay.
    pub fn failure(&mut self, now: Instant, unit: f64) -> Option<BreakerState> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let opens = match self.state {
            BreakerState::Ok => self.consecutive_failures >= self.threshold,
            // A failed probe opens again; a failure of a message sent before the circuit opened
            // changes nothing while it is open.
            BreakerState::HalfOpen => true,
            BreakerState::Open => false,
        };
        if !opens {
            return None;
        }
        self.probe_at = Some(now + self.probe_backoff.next_delay(unit));
        self.transition(BreakerState::Open)
    }

    /// Open → half-open once the probe time has come.
    pub fn poll(&mut self, now: Instant) -> Option<BreakerState> {
        match (self.state, self.probe_at) {
            (BreakerState::Open, Some(at)) if now >= at => {
                self.probe_at = None;
                self.transition(BreakerState::HalfOpen)
            }
            _ => None,
        }
    }

    fn transition(&mut self, to: BreakerState) -> Option<BreakerState> {
        (self.state != to).then(|| {
            self.state = to;
            to
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Event {
        Ok,
        Fail,
        /// Time passes (ms).
        Wait(u64),
    }
    use Event::{Fail, Ok, Wait};

    /// Runs `events` on a breaker with `threshold`; returns the state after each.
    fn run(threshold: u32, events: &[Event]) -> Vec<BreakerState> {
        let mut breaker = Breaker::new(threshold);
        let mut now = Instant::now();
        events
            .iter()
            .map(|event| {
                match event {
                    Ok => {
                        breaker.success();
                    }
                    // unit 0.999… : the whole delay, so the table reads 1 s, 2 s, 4 s …
                    Fail => {
                        breaker.failure(now, 0.999_999);
                    }
                    Wait(ms) => now += Duration::from_millis(*ms),
                }
                breaker.poll(now);
                breaker.state()
            })
            .collect()
    }

    #[test]
    fn the_circuit_follows_the_table() {
        use BreakerState::{HalfOpen as H, Ok as K, Open as O};
        /// name, threshold, events, the state after each
        type Row<'a> = (&'a str, u32, &'a [Event], &'a [BreakerState]);
        let table: &[Row<'_>] = &[
            ("failures below the threshold keep it closed", 3, &[Fail, Fail, Ok, Fail, Fail], &[K, K, K, K, K]),
            ("the threshold opens it", 3, &[Fail, Fail, Fail], &[K, K, O]),
            ("open until the first probe delay passed", 1, &[Fail, Wait(500), Wait(499), Wait(1)], &[O, O, O, H]),
            ("a successful probe closes it", 1, &[Fail, Wait(1000), Ok], &[O, H, K]),
            ("a failed probe opens it for twice as long", 1, &[Fail, Wait(1000), Fail, Wait(1999), Wait(1)], &[O, H, O, O, H]),
            ("late failures while open change nothing", 2, &[Fail, Fail, Fail, Fail, Wait(1000)], &[K, O, O, O, H]),
            (
                "after closing, the next opening starts at 1 s again",
                1,
                &[Fail, Wait(1000), Fail, Wait(2000), Ok, Fail, Wait(1000)],
                &[O, H, O, H, K, O, H],
            ),
        ];
        for (name, threshold, events, states) in table {
            assert_eq!(run(*threshold, events), states.to_vec(), "{name}");
        }
    }

    #[test]
    fn probe_delays_are_capped_at_30_s() {
        let mut breaker = Breaker::new(1);
        let start = Instant::now();
        let mut now = start;
        for _ in 0..10 {
            breaker.failure(now, 0.999_999);
            now = breaker.probe_at().unwrap();
            assert_eq!(breaker.poll(now), Some(BreakerState::HalfOpen));
        }
        breaker.failure(now, 0.999_999);
        assert!(breaker.probe_at().unwrap() - now <= PROBE_MAX);
        assert_eq!(breaker.consecutive_failures(), 11);
    }
}
