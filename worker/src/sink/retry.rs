//! Retrying a sink inside the acknowledgement window.
//!
//! The platform redelivers what is not acknowledged within 30 s anyway, so retrying past that only
//! risks a double delivery; the worker stops in time to *release* the message, which hands it back
//! at once instead of after the timeout. On shutdown, a failing message is released right away.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Sink, SinkError, Taken};
use crate::{
    backoff::{Backoff, jitter},
    message::IotMessage,
};

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
    Acknowledge(Taken),
    Release(String),
}

/// The time by which a delivery received at `received` must be settled: the acknowledgement window
/// less a margin (a tenth of it, at most 2 s) for the disposition to travel.
pub fn settle_deadline(received: Instant, ack_window: Duration) -> Instant {
    let margin = (ack_window / 10).min(Duration::from_secs(2));
    received + ack_window.saturating_sub(margin)
}

/// The next pause, or `None` when waiting it (and trying once more) would not fit before `deadline`.
pub fn next_pause(backoff: &mut Backoff, unit: f64, now: Instant, deadline: Instant) -> Option<Duration> {
    let pause = backoff.next_delay(unit);
    (now + pause < deadline).then_some(pause)
}

pub async fn deliver_with_retry(
    sink: &Sink,
    message: &IotMessage,
    client_id: &str,
    deadline: Instant,
    policy: &RetryPolicy,
    stop: &CancellationToken,
    mut on_error: impl FnMut(&SinkError, u32),
) -> Final {
    let mut backoff = Backoff::new(policy.first_delay, policy.max_delay);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let now = Instant::now();
        if now >= deadline {
            return Final::Release(format!("no success within the acknowledgement window after {} attempts", attempt - 1));
        }
        let timeout = policy.attempt_timeout.min(deadline - now);
        let error = match tokio::time::timeout(timeout, sink.deliver(message, client_id, timeout)).await {
            Ok(Ok(taken)) => return Final::Acknowledge(taken),
            Ok(Err(e)) => e,
            Err(_) => SinkError(format!("the {} sink did not answer within {timeout:?}", sink.name())),
        };
        on_error(&error, attempt);
        if stop.is_cancelled() {
            return Final::Release(format!("shutting down after: {error}"));
        }
        let Some(pause) = next_pause(&mut backoff, jitter(), Instant::now(), deadline) else {
            return Final::Release(format!("giving up before the acknowledgement window closes: {error}"));
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => return Final::Release(format!("shutting down after: {error}")),
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
        assert_eq!(ms(next_pause(&mut b, 0.999_999, t, deadline)), Some(99));
        assert_eq!(ms(next_pause(&mut b, 0.999_999, t, deadline)), Some(199));
        assert_eq!(ms(next_pause(&mut b, 0.999_999, t, deadline)), Some(399));
        assert_eq!(next_pause(&mut b, 0.999_999, t, deadline), None);
    }
}
