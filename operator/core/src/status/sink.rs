//! SinkAvailable: no worker reports its sink failing.
//!
//! Only pods that run but are not ready are asked (a worker whose circuit breaker is open is not
//! ready), so a ready pod counts as taking. False as soon as one pod's breaker is open or
//! half-open; Unknown when pods are not ready and none of them could be read (they may be
//! starting, or failing for another reason); True otherwise.

use iotsub_crds::conditions::reason;

use super::plural;
use crate::{
    conditions::Condition,
    observed::{PodSink, SinkReading},
};

/// `readings` are the answers of the pods that were asked; `running` the running pods.
pub(super) fn condition(readings: &[SinkReading], running: usize) -> Condition {
    let failing: Vec<(&str, &PodSink)> =
        readings.iter().filter_map(|r| r.sink.as_ref().filter(|s| s.is_failing()).map(|s| (r.pod.as_str(), s))).collect();
    if let Some((_, first)) = failing.first() {
        let pods: Vec<String> = failing.iter().map(|(pod, sink)| describe(pod, sink)).collect();
        return Condition::fails(
            reason::SINK_FAILING,
            format!(
                "the {} sink {} of {} of {} fails: {}",
                first.kind,
                first.target,
                failing.len(),
                plural(running.max(failing.len()), "pod"),
                pods.join("; ")
            ),
        );
    }
    let unread: Vec<&str> = readings.iter().filter(|r| r.sink.is_none()).map(|r| r.pod.as_str()).collect();
    if !readings.is_empty() && unread.len() == readings.len() {
        return Condition::unknown(
            reason::SINK_UNKNOWN,
            format!("{} not ready and /status could not be read: {}", plural(unread.len(), "pod"), unread.join(", ")),
        );
    }
    Condition::holds(reason::SINK_TAKING, "no worker reports a failing sink")
}

/// `telemetry-abc (HTTP 503 Service Unavailable, 12 consecutive failures, circuit open since …)`.
fn describe(pod: &str, sink: &PodSink) -> String {
    format!(
        "{pod} ({}, {}, circuit {} since {})",
        sink.last_error.as_deref().unwrap_or("no error recorded"),
        plural(sink.consecutive_failures as usize, "consecutive failure"),
        sink.state.as_str(),
        sink.since
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{conditions::ConditionStatus, observed::BreakerState};

    fn reading(pod: &str, state: Option<BreakerState>) -> SinkReading {
        SinkReading {
            pod: pod.into(),
            sink: state.map(|state| PodSink {
                kind: "http".into(),
                target: "http://sink.team:8080/in".into(),
                state,
                consecutive_failures: if state == BreakerState::Ok { 0 } else { 12 },
                last_error: (state != BreakerState::Ok).then(|| "HTTP 503 Service Unavailable".into()),
                since: "2026-01-02T03:00:00Z".into(),
            }),
        }
    }

    /// What is read, the running pods, and the condition expected.
    type Case = (&'static str, Vec<SinkReading>, usize, ConditionStatus, &'static str, &'static str);

    #[test]
    fn the_condition_follows_what_the_pods_report() {
        use BreakerState::{HalfOpen, Ok, Open};
        let cases: &[Case] = &[
            ("all ready: nothing asked", vec![], 3, ConditionStatus::True, "SinkTaking", "no worker reports a failing sink"),
            (
                "two of three open or half-open",
                vec![reading("orders-a", Some(Open)), reading("orders-b", Some(HalfOpen))],
                3,
                ConditionStatus::False,
                "SinkFailing",
                "the http sink http://sink.team:8080/in of 2 of 3 pods fails: \
                 orders-a (HTTP 503 Service Unavailable, 12 consecutive failures, circuit open since 2026-01-02T03:00:00Z); \
                 orders-b (HTTP 503 Service Unavailable, 12 consecutive failures, circuit half-open since 2026-01-02T03:00:00Z)",
            ),
            (
                "one failing among unreadable ones still fails",
                vec![reading("orders-a", None), reading("orders-b", Some(Open))],
                2,
                ConditionStatus::False,
                "SinkFailing",
                "the http sink http://sink.team:8080/in of 1 of 2 pods fails: \
                 orders-b (HTTP 503 Service Unavailable, 12 consecutive failures, circuit open since 2026-01-02T03:00:00Z)",
            ),
            (
                "nothing could be read",
                vec![reading("orders-a", None), reading("orders-b", None)],
                2,
                ConditionStatus::Unknown,
                "SinkUnknown",
                "2 pods not ready and /status could not be read: orders-a, orders-b",
            ),
            (
                "unready for another reason, sink ok",
                vec![reading("orders-a", Some(Ok)), reading("orders-b", None)],
                2,
                ConditionStatus::True,
                "SinkTaking",
                "no worker reports a failing sink",
            ),
        ];
        for (case, readings, running, status, reason, message) in cases {
            let c = condition(readings, *running);
            assert_eq!((c.status, c.reason, c.message.as_str()), (*status, *reason, *message), "{case}");
        }
    }
}
