//! What one answer of the HTTP sink means for the message (pure).
//!
//! | answer | class | what the worker does |
//! |---|---|---|
//! | 2xx | [`Class::Taken`] | acknowledge |
//! | 3xx (never followed) | [`Class::SinkDown`] | retry, then release; logged with its `Location` |
//! | 401, 403, 404, 405, 407, 410 | [`Class::SinkDown`] | retry, then release; never a dead letter |
//! | connection refused, TLS, timeout, reset | [`Class::SinkDown`] | retry, then release; never a dead letter |
//! | 400, 413, 415, 422 | [`Class::Rejected`] | dead letter, then acknowledge |
//! | 408, 429, 5xx | [`Class::Transient`] | retry with backoff (honouring `Retry-After`) inside the acknowledgement window, then release |
//! | any other code | [`Class::Transient`] | as 5xx |
//!
//! Knative's data-plane contract (knative/specs `specs/eventing/data-plane.md`, "Event Acknowledgement
//! and Delivery Retry") is the reference. Where ours differs, and why:
//! - 401, 403, 405, 410 (Knative: "other 4xx", an error not retried, so the event goes to the dead
//!   letter sink): here they mean the *sink* is misconfigured (an expired token, a wrong path), not that
//!   the message is bad; dropping the stream to dead letters until someone fixes a token loses nothing
//!   only if the dead-letter store holds it all. We keep the messages on the platform instead (it
//!   stacks them for a day) and stop pulling (the circuit breaker).
//! - 404: Knative retries it too ("endpoint does not exist"); we also never dead-letter it.
//! - 3xx: Knative leaves it unspecified (an error, not retried); we never follow it (a POST turned into
//!   a GET would make a landing page's 200 look like a delivery) and treat it as a sink failure.
//! - 408: Knative's "other 4xx" (not retried); a request timeout is the sink's condition, so we retry.
//! - 409: retried by Knative; here it is "any other code" and retried the same way.
//! - 413, 415, 422: Knative does not retry them either ("other 4xx"); like 400 they say the message
//!   itself cannot be taken, so it becomes a dead letter (Knative: the dead letter sink) and is acknowledged.
//! - Retries are bounded by the platform's 30 s acknowledgement window, not by a retry count: past
//!   it the platform redelivers anyway. A message that keeps failing is counted across redeliveries
//!   (`--max-deliveries`) and becomes a dead letter, the equivalent of Knative's `retry` limit.

use std::time::{Duration, SystemTime};

/// What an answer says about the message and the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The sink has the message.
    Taken,
    /// The receiver says this message is bad: a dead letter, then acknowledged.
    Rejected,
    /// The sink is down or misconfigured: not the message's fault; retry, then release.
    SinkDown,
    /// Overloaded or failing for now: retry with backoff, then release.
    Transient,
}

impl Class {
    /// Whether the answer shows a working sink (for the circuit breaker).
    pub fn sink_works(self) -> bool {
        matches!(self, Class::Taken | Class::Rejected)
    }
}

pub fn classify_status(status: u16) -> Class {
    match status {
        200..=299 => Class::Taken,
        300..=399 | 401 | 403 | 404 | 405 | 407 | 410 => Class::SinkDown,
        400 | 413 | 415 | 422 => Class::Rejected,
        _ => Class::Transient,
    }
}

/// The outcome of one attempt, with what the logs and the dead letter need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub class: Class,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// What went wrong, for logs, `/status` and dead letters; never a secret.
    pub detail: String,
    /// The sink's `Retry-After`, when it gave one.
    pub retry_after: Option<Duration>,
}

impl Attempt {
    pub fn taken() -> Attempt {
        Attempt { class: Class::Taken, status: None, detail: String::new(), retry_after: None }
    }

    /// A failure without an HTTP answer (refused, TLS, timeout): the sink is down.
    pub fn unreachable(detail: String) -> Attempt {
        Attempt { class: Class::SinkDown, status: None, detail, retry_after: None }
    }

    /// A failure that is worth retrying, without an HTTP answer (the log sink's pipe).
    pub fn transient(detail: String) -> Attempt {
        Attempt { class: Class::Transient, status: None, detail, retry_after: None }
    }
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 §10.2.3), seen from `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_class_has_its_outcome() {
        let table: &[(u16, Class)] = &[
            (200, Class::Taken),
            (201, Class::Taken),
            (202, Class::Taken),
            (204, Class::Taken),
            (301, Class::SinkDown),
            (302, Class::SinkDown),
            (303, Class::SinkDown),
            (307, Class::SinkDown),
            (308, Class::SinkDown),
            (400, Class::Rejected),
            (401, Class::SinkDown),
            (403, Class::SinkDown),
            (404, Class::SinkDown),
            (405, Class::SinkDown),
            (407, Class::SinkDown),
            (408, Class::Transient),
            (409, Class::Transient),
            (410, Class::SinkDown),
            (413, Class::Rejected),
            (415, Class::Rejected),
            (422, Class::Rejected),
            (429, Class::Transient),
            (500, Class::Transient),
            (502, Class::Transient),
            (503, Class::Transient),
            (504, Class::Transient),
            (599, Class::Transient),
            (102, Class::Transient),
        ];
        for (status, class) in table {
            assert_eq!(classify_status(*status), *class, "HTTP {status}");
        }
    }

    #[test]
    fn only_taken_and_rejected_show_a_working_sink() {
        assert!(Class::Taken.sink_works() && Class::Rejected.sink_works());
        assert!(!Class::SinkDown.sink_works() && !Class::Transient.sink_works());
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:05 GMT", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO), "a past date: at once");
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
