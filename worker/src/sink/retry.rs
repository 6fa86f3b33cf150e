//! Retrying a sink inside the acknowledgement window.
//!
//! The platform redelivers what is not acknowledged within 30 s anyway, so retrying past that only
//! risks a double delivery; the worker stops in time to *release* the message, which hands it back
//! at once instead of after the timeout. A `Retry-After` longer than the backoff is honoured. On
//! shutdown, and once the sink's circuit is open, a failing message is released right away.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    Sink,
    health::SinkHealth,
    outcome::{Attempt, Class},
};
use crate::{backoff::Backoff, breaker::BreakerState, message::IotMessage};

const GUARD: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// One attempt's limit (the http sink's timeout).
    pub attempt_timeout: Duration,
}

/// What becomes of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    Taken,
    /// The receiver says the message is bad: a dead letter, then acknowledged.
    Rejected(Attempt),
    /// Hand it back to the platform. `last` is the last failed attempt (none when none was made).
    Release {
        reason: String,
        last: Option<Attempt>,
    },
}

impl Final {
    /// Whether this delivery counts towards `--max-deliveries`: the sink answered, and kept failing
    /// for this message. A sink that is down or misconfigured is not the message's fault.
    pub fn counts_against_the_message(&self) -> bool {
        matches!(self, Final::Release { last: Some(Attempt { class: Class::Transient, .. }), .. })
    }
}

/// The time by which a delivery received at `received` must be settled: the acknowledgement window
/// less a margin (a tenth of it, at most 2 s) for the disposition to travel.
pub fn settle_deadline(received: Instant, ack_window: Duration) -> Instant {
    let margin = (ack_window / 10).min(Duration::from_secs(2));
    received + ack_window.saturating_sub(margin)
}

/// The least time a retry must have left after its pause: a tenth of one attempt's limit. An
/// attempt squeezed into the window's last milliseconds times out however the sink answers, and
/// that timeout (the worker's own cut) would stand as the sink's last error and keep a failing
/// delivery from counting towards `--max-deliveries`.
pub fn least_attempt(attempt_timeout: Duration) -> Duration {
    attempt_timeout / 10
}

/// The next pause (the backoff, or the sink's `Retry-After` when longer), or `None` when waiting it
/// and trying once more for at least `least` would not fit before `deadline`.
pub fn next_pause(
    backoff: &mut Backoff,
    unit: f64,
    retry_after: Option<Duration>,
    now: Instant,
    deadline: Instant,
    least: Duration,
) -> Option<Duration> {
    let pause = backoff.next_delay(unit).max(retry_after.unwrap_or_default());
    (now + pause + least < deadline).then_some(pause)
}

pub struct Delivery<'a> {
    pub sink: &'a Sink,
    pub health: &'a Arc<SinkHealth>,
    pub policy: &'a RetryPolicy,
    pub stop: &'a CancellationToken,
}

impl Delivery<'_> {
    pub async fn run(&self, message: &IotMessage, client_id: &str, deadline: Instant, mut on_failure: impl FnMut(&Attempt, u32)) -> Final {
        let mut backoff = Backoff::new(self.policy.first_delay, self.policy.max_delay);
        let mut state = self.health.subscribe();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let now = Instant::now();
            if now >= deadline {
                return Final::Release {
                    reason: format!("no success within the acknowledgement window after {} attempts", attempt - 1),
                    last: None,
                };
            }
            let timeout = self.policy.attempt_timeout.min(deadline - now);
            // The sink's own timeout answers first; this one guards a sink without one.
            let result = match tokio::time::timeout(timeout + GUARD, self.sink.deliver(message, client_id, timeout)).await {
                Ok(result) => result,
                Err(_) => Attempt::unreachable(format!("the {} sink timed out: no answer within {timeout:?}", self.sink.kind())),
            };
            self.health.record(&result);
            match result.class {
                Class::Taken => return Final::Taken,
                Class::Rejected => return Final::Rejected(result),
                Class::SinkDown | Class::Transient => {}
            }
            on_failure(&result, attempt);
            let release = |reason: &str| Final::Release { reason: format!("{reason}: {}", result.detail), last: Some(result.clone()) };
            if self.stop.is_cancelled() {
                return release("shutting down");
            }
            if self.health.state() != BreakerState::Ok {
                return release("the sink's circuit is open");
            }
            let least = least_attempt(self.policy.attempt_timeout);
            let Some(pause) = next_pause(&mut backoff, iotsub_common::jitter::unit(), result.retry_after, Instant::now(), deadline, least)
            else {
                return release("giving up before the acknowledgement window closes");
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.stop.cancelled() => return release("shutting down"),
                _ = state.wait_for(|s| *s == BreakerState::Open) => return release("the sink's circuit is open"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_keeps_a_margin() {
        let t = Instant::now();
        assert_eq!(settle_deadline(t, Duration::from_secs(30)) - t, Duration::from_secs(28));
        assert_eq!(settle_deadline(t, Duration::from_secs(5)) - t, Duration::from_millis(4500));
    }

    #[test]
    fn pauses_stop_before_the_deadline() {
        let t = Instant::now();
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let deadline = t + Duration::from_millis(500);
        let ms = |p: Option<Duration>| p.map(|d| d.as_millis());
        assert_eq!(ms(next_pause(&mut b, 0.999_999, None, t, deadline, Duration::ZERO)), Some(99));
        assert_eq!(ms(next_pause(&mut b, 0.999_999, None, t, deadline, Duration::ZERO)), Some(199));
        assert_eq!(ms(next_pause(&mut b, 0.999_999, None, t, deadline, Duration::ZERO)), Some(399));
        assert_eq!(next_pause(&mut b, 0.999_999, None, t, deadline, Duration::ZERO), None);
    }

    #[test]
    fn a_retry_is_made_only_with_a_tenth_of_the_attempt_timeout_left() {
        let t = Instant::now();
        let least = least_attempt(Duration::from_secs(5));
        assert_eq!(least, Duration::from_millis(500));
        let deadline = t + Duration::from_millis(650);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        assert!(next_pause(&mut b, 0.999_999, None, t, deadline, least).is_some(), "99 ms, then 551 ms for the attempt");
        assert_eq!(next_pause(&mut b, 0.999_999, None, t, deadline, least), None, "199 ms would leave 451 ms");
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let _ = next_pause(&mut b, 0.999_999, None, t, deadline, Duration::ZERO);
        assert!(next_pause(&mut b, 0.999_999, None, t, deadline, Duration::ZERO).is_some(), "without the floor it would retry");
    }

    #[test]
    fn retry_after_lengthens_the_pause_or_releases() {
        let t = Instant::now();
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let deadline = t + Duration::from_secs(10);
        let least = Duration::from_millis(500);
        assert_eq!(next_pause(&mut b, 0.999_999, Some(Duration::from_secs(2)), t, deadline, least), Some(Duration::from_secs(2)));
        assert_eq!(next_pause(&mut b, 0.999_999, Some(Duration::from_secs(60)), t, deadline, least), None, "past the window: release now");
    }

    #[test]
    fn only_a_failing_answer_counts_against_the_message() {
        let release = |class| Final::Release {
            reason: String::new(),
            last: Some(Attempt { class, status: Some(500), detail: String::new(), retry_after: None }),
        };
        assert!(release(Class::Transient).counts_against_the_message());
        assert!(!release(Class::SinkDown).counts_against_the_message());
        assert!(!Final::Release { reason: String::new(), last: None }.counts_against_the_message());
        assert!(!Final::Taken.counts_against_the_message());
    }
}
