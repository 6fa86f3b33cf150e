//! The soak's plan (pure): which fault strikes when, and when a group gets a burst, drawn from one
//! seed so that any run can be replayed (`SOAK_SEED`).

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

/// Every kind of fault the soak injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// SIGKILL of a random worker pod's process (the kubelet restarts the container).
    WorkerKilled,
    /// `kubectl delete pod` of a random worker pod (SIGTERM, the grace period, a new pod).
    PodDeleted,
    /// SIGKILL of the operator pod holding the Lease.
    LeaderKilled,
    /// The platform drops every connection of a group.
    ConnectionsDropped,
    /// The platform refuses every login to a group for a while (its connections dropped first, so
    /// that the workers must log in again).
    LoginsRefused,
    /// The business server answers 503 to everything for a while.
    SinkUnavailable,
    /// The business server answers 401 to everything for a while.
    SinkUnauthorized,
    /// SIGKILL of kube-apiserver, then `tests/cluster/up.sh` starts it again.
    ApiServerRestarted,
    /// SIGKILL of etcd, then `tests/cluster/up.sh` starts it again.
    EtcdRestarted,
    /// The credentials Secret's content changes to another account's keys.
    CredentialsRotated,
    /// `kubectl scale` of the subscription without autoscaling.
    Scaled,
    /// A spec change the pods are made from (`connection.credit`): a paced rollout.
    CreditChanged,
    /// SIGKILL of the node agent (kubelet or lk-agent), then `tests/cluster/up.sh` starts it again.
    NodeAgentRestarted,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::WorkerKilled,
        Kind::PodDeleted,
        Kind::LeaderKilled,
        Kind::ConnectionsDropped,
        Kind::LoginsRefused,
        Kind::SinkUnavailable,
        Kind::SinkUnauthorized,
        Kind::ApiServerRestarted,
        Kind::EtcdRestarted,
        Kind::CredentialsRotated,
        Kind::Scaled,
        Kind::CreditChanged,
        Kind::NodeAgentRestarted,
    ];

    /// How long the fault lasts once injected (zero: over as soon as it is done).
    pub fn lasts(self) -> Duration {
        match self {
            Kind::LoginsRefused | Kind::SinkUnauthorized => Duration::from_secs(30),
            Kind::SinkUnavailable => Duration::from_secs(60),
            _ => Duration::ZERO,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::WorkerKilled => "worker SIGKILL",
            Kind::PodDeleted => "kubectl delete pod",
            Kind::LeaderKilled => "operator leader SIGKILL",
            Kind::ConnectionsDropped => "emulator drops connections",
            Kind::LoginsRefused => "emulator refuses logins 30 s",
            Kind::SinkUnavailable => "sink 503 for 60 s",
            Kind::SinkUnauthorized => "sink 401 for 30 s",
            Kind::ApiServerRestarted => "kube-apiserver killed, restarted",
            Kind::EtcdRestarted => "etcd killed, restarted",
            Kind::CredentialsRotated => "credential rotation",
            Kind::Scaled => "kubectl scale",
            Kind::CreditChanged => "spec change (credit)",
            Kind::NodeAgentRestarted => "node agent killed, restarted",
        }
    }
}

/// Something the plan makes happen at `at` after the load started.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Planned {
    #[serde(serialize_with = "seconds")]
    pub at: Duration,
    pub event: Event,
    /// Chooses the target (a pod, a group, a replica count) among those there are when it happens.
    pub pick: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type", content = "kind")]
pub enum Event {
    Fault(Kind),
    /// `BURST` messages published at once to one group.
    Burst,
}

/// No fault in the first and last seconds of the run: the load settles first, and the last fault
/// ends inside the run.
const LEAD_IN: Duration = Duration::from_secs(20);
const LEAD_OUT: Duration = Duration::from_secs(15);

/// How many of each fault a run of `run` gets: at least two per 10 minutes, at least one.
pub fn per_kind(run: Duration) -> u32 {
    (run.as_secs_f64() / 300.0).ceil().max(1.0) as u32
}

/// One burst per group every 5 minutes, at least one.
pub fn bursts(run: Duration) -> u32 {
    (run.as_secs_f64() / 300.0).round().max(1.0) as u32
}

/// The plan of a run of `run` from `seed`, in time order.
pub fn plan(seed: u64, run: Duration, groups: u32) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events = Vec::new();
    for kind in Kind::ALL {
        let last_start = run.saturating_sub(LEAD_OUT + kind.lasts()).max(LEAD_IN);
        for _ in 0..per_kind(run) {
            let at = Duration::from_secs_f64(rng.random_range(LEAD_IN.as_secs_f64()..=last_start.as_secs_f64()));
            events.push(Planned { at, event: Event::Fault(kind), pick: rng.random() });
        }
    }
    for group in 0..groups {
        for _ in 0..bursts(run) {
            let at = Duration::from_secs_f64(rng.random_range(LEAD_IN.as_secs_f64()..=run.saturating_sub(LEAD_OUT).as_secs_f64()));
            events.push(Planned { at, event: Event::Burst, pick: u64::from(group) });
        }
    }
    events.sort_by_key(|p| p.at);
    events
}

/// A seed from the clock, for a run that was not told one.
pub fn fresh_seed() -> u64 {
    rand::rng().random()
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn counts(plan: &[Planned]) -> BTreeMap<Kind, u32> {
        let mut counts = BTreeMap::new();
        for p in plan {
            if let Event::Fault(kind) = p.event {
                *counts.entry(kind).or_default() += 1;
            }
        }
        counts
    }

    #[test]
    fn every_kind_strikes_at_least_twice_in_ten_minutes_and_once_in_three() {
        let ten = plan(7, Duration::from_secs(600), 2);
        assert_eq!(counts(&ten).len(), Kind::ALL.len());
        assert!(counts(&ten).values().all(|&n| n >= 2), "{:?}", counts(&ten));
        let three = plan(7, Duration::from_secs(180), 2);
        assert!(counts(&three).values().all(|&n| n >= 1), "{:?}", counts(&three));
        let thirty = plan(7, Duration::from_secs(1800), 2);
        assert!(counts(&thirty).values().all(|&n| n >= 6), "{:?}", counts(&thirty));
    }

    #[test]
    fn the_same_seed_replays_the_same_plan_and_another_does_not() {
        let run = Duration::from_secs(600);
        assert_eq!(plan(42, run, 2), plan(42, run, 2));
        assert_ne!(plan(42, run, 2), plan(43, run, 2));
    }

    #[test]
    fn faults_start_after_the_lead_in_and_end_inside_the_run_in_time_order() {
        let run = Duration::from_secs(180);
        let plan = plan(3, run, 2);
        assert!(plan.windows(2).all(|w| w[0].at <= w[1].at));
        for p in &plan {
            let lasts = match p.event {
                Event::Fault(kind) => kind.lasts(),
                Event::Burst => Duration::ZERO,
            };
            assert!(p.at >= LEAD_IN && p.at + lasts <= run, "{p:?}");
        }
        assert_eq!(plan.iter().filter(|p| p.event == Event::Burst).count(), 2, "one burst per group");
    }
}
