//! The autoscaling policy, pure: the replica count a backlog asks for, within the room the
//! consumer group's client cap leaves. No client, no clock: time and readings are parameters.
//!
//! `desired = clamp(ceil(backlog / targetBacklogPerReplica), minReplicas, capAllowed)` with
//! `capAllowed = min(maxReplicas, floor((clientCap − others) / connectionsPerPod))`, where `others`
//! counts the group's connected clients that are not this subscription's. Up at once, but only
//! into places that are free now: our own pods that are shutting down still hold theirs until
//! their connections close (they delay a scale-up, never cause a scale-down). Down one step at a
//! time, and only when every recommendation of the last stabilization window was lower.

use std::collections::VecDeque;

use iotsub_crds::{Autoscaling, ConsumerGroupSubscriptionSpec, conditions::reason};
use time::{Duration, OffsetDateTime};

use crate::{conditions::Condition, timestamps::rfc3339};

/// The policy's parameters, from the spec.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    pub min: i32,
    pub max: i32,
    pub client_cap: i32,
    pub connections_per_pod: i32,
    pub target_backlog_per_replica: i64,
    pub stabilization: Duration,
    /// Steps down are at least this far apart, so each one is judged on a fresh reading.
    pub step_interval: Duration,
}

impl Policy {
    pub(crate) fn from_spec(spec: &ConsumerGroupSubscriptionSpec, autoscaling: &Autoscaling) -> Policy {
        Policy {
            min: autoscaling.min_replicas.max(0),
            max: autoscaling.max_replicas.max(0),
            client_cap: autoscaling.client_cap.max(0),
            connections_per_pod: spec.connection.connections_per_pod.max(1),
            target_backlog_per_replica: autoscaling.target_backlog_per_replica.max(1),
            stabilization: Duration::seconds(i64::from(autoscaling.scale_down_stabilization_seconds.max(0))),
            step_interval: Duration::seconds(i64::from(autoscaling.poll_interval_seconds.max(1))),
        }
    }
}

/// What the platform said, reduced to what the policy needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Stacked messages (`AccumulationCount`).
    pub backlog: i64,
    /// Connected clients of the group that are not this subscription's.
    pub others: i32,
    /// Connected clients of this subscription's pods that are shutting down.
    pub draining: i32,
}

/// Everything a decision depends on.
#[derive(Debug, Clone)]
pub(crate) struct Input<'a> {
    pub policy: &'a Policy,
    /// The replicas the Deployment has now (as last applied).
    pub current: i32,
    /// `None` when the backlog could not be read.
    pub reading: Option<Reading>,
    /// The Deployment is replacing pods: the Deployment controller starts a replacement before the
    /// old pod's connection closes, so one pod's worth of clients is kept free.
    pub rolling_out: bool,
    pub last_scale: Option<OffsetDateTime>,
    pub now: OffsetDateTime,
}

/// Why the replica count is what it is; the Autoscaling condition's reason.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    ScaledUp {
        from: i32,
    },
    ScaledDown {
        from: i32,
    },
    /// The backlog asks for `wanted`, but only `allowed` fit under the cap (for now: `draining`
    /// of our clients still hold their places).
    CappedByClientLimit {
        wanted: i32,
        allowed: i32,
        draining: i32,
    },
    /// The backlog allows `recommended`; the count holds until the window has passed.
    StabilizingScaleDown {
        recommended: i32,
        until: OffsetDateTime,
    },
    Steady,
    BacklogUnavailable,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    pub replicas: i32,
    /// The recommendation to remember in [`Recent`]; `None` without a reading.
    pub recommendation: Option<i32>,
    pub outcome: Outcome,
}

/// The replicas that fit under the cap with `taken` places held by other clients, within `max`.
pub(crate) fn cap_allowed(policy: &Policy, taken: i32, rolling_out: bool) -> i32 {
    let room = (policy.client_cap - taken.max(0)).max(0);
    let pods = room / policy.connections_per_pod;
    let pods = if rolling_out { pods - 1 } else { pods };
    pods.clamp(0, policy.max.max(0))
}

/// Pods the backlog alone asks for: `ceil(backlog / target)`.
pub(crate) fn wanted(policy: &Policy, backlog: i64) -> i32 {
    let pods = (backlog.max(0) as u64).div_ceil(policy.target_backlog_per_replica as u64);
    i32::try_from(pods).unwrap_or(i32::MAX)
}

/// The decision for one reconcile. `recent` holds the recommendations of earlier reconciles.
pub(crate) fn decide(input: &Input<'_>, recent: &Recent) -> Decision {
    let policy = input.policy;
    let Some(reading) = input.reading else {
        // Unknown backlog and unknown foreign clients: keep what runs, within the static bounds.
        let static_cap = cap_allowed(policy, 0, false);
        let replicas = input.current.clamp(policy.min.min(static_cap), static_cap);
        return Decision { replicas, recommendation: None, outcome: Outcome::BacklogUnavailable };
    };
    let allowed = cap_allowed(policy, reading.others, input.rolling_out);
    // Places free right now; our draining clients give theirs back within seconds.
    let free_now = cap_allowed(policy, reading.others + reading.draining, input.rolling_out);
    let wanted = wanted(policy, reading.backlog);
    // The cap wins over minReplicas: a client the platform would refuse helps nobody.
    let recommendation = wanted.max(policy.min).min(allowed);
    let asked = wanted.max(policy.min).min(policy.max);
    let decision = |replicas, outcome| Decision { replicas, recommendation: Some(recommendation), outcome };
    let capped = |allowed| Outcome::CappedByClientLimit { wanted: asked, allowed, draining: reading.draining };

    if input.current > allowed {
        // Others took places (or a rollout needs one): down at once, never because of our own draining pods.
        let outcome = if asked > allowed { capped(allowed) } else { Outcome::ScaledDown { from: input.current } };
        return decision(allowed, outcome);
    }
    if recommendation > input.current {
        let to = recommendation.min(free_now).max(input.current);
        let outcome = if to < asked { capped(to) } else { Outcome::ScaledUp { from: input.current } };
        return decision(to, outcome);
    }
    if recommendation == input.current {
        return decision(input.current, if asked > allowed { capped(allowed) } else { Outcome::Steady });
    }
    // Lower: only when the whole window agrees, one step, and a step interval after the last change.
    let window_start = input.now - policy.stabilization;
    let window_agrees = recent.observed_since().is_some_and(|since| since <= window_start)
        && recent.max_since(window_start).is_none_or(|highest| highest < input.current);
    let next_step = input.last_scale.map_or(input.now, |last| last + policy.step_interval);
    if window_agrees && next_step <= input.now {
        return decision(input.current - 1, Outcome::ScaledDown { from: input.current });
    }
    let until = if window_agrees {
        next_step
    } else {
        recent.lower_since(input.current).map_or(input.now + policy.stabilization, |since| since + policy.stabilization)
    };
    decision(input.current, Outcome::StabilizingScaleDown { recommended: recommendation, until: until.max(input.now) })
}

/// The Autoscaling condition that explains `decision`.
pub(crate) fn condition(input: &Input<'_>, decision: &Decision) -> Condition {
    let policy = input.policy;
    let backlog =
        input.reading.map_or_else(String::new, |r| format!("backlog {} at {} per replica", r.backlog, policy.target_backlog_per_replica));
    let to = decision.replicas;
    match &decision.outcome {
        Outcome::ScaledUp { from } => Condition::holds(reason::SCALED_UP, format!("scaled up from {from} to {to}: {backlog}")),
        Outcome::ScaledDown { from } => Condition::holds(reason::SCALED_DOWN, format!("scaled down from {from} to {to}: {backlog}")),
        Outcome::CappedByClientLimit { wanted, allowed, draining } => {
            let others = input.reading.map_or(0, |r| r.others);
            let rollout = if input.rolling_out { ", one pod's clients kept free during the rollout" } else { "" };
            let draining = if *draining > 0 { format!(", {draining} of ours still closing") } else { String::new() };
            Condition::holds(
                reason::CAPPED_BY_CLIENT_LIMIT,
                format!(
                    "{backlog} asks for {wanted} replicas, {allowed} fit: {others} of the group's {} clients are not this subscription's ({} per pod){draining}{rollout}",
                    policy.client_cap, policy.connections_per_pod
                ),
            )
        }
        Outcome::StabilizingScaleDown { recommended, until } => Condition::holds(
            reason::STABILIZING_SCALE_DOWN,
            format!("{backlog} allows {recommended}; holding {to} until {} (scale-down stabilization window)", rfc3339(*until)),
        ),
        Outcome::Steady => Condition::holds(reason::STEADY, format!("{to} replicas: {backlog}")),
        Outcome::BacklogUnavailable => Condition::fails(
            reason::BACKLOG_UNAVAILABLE,
            format!("holding {to} replicas: the backlog can't be read (see BacklogAvailable)"),
        ),
    }
}

/// The recommendations of the last stabilization window, and since when they are known (an
/// operator that just started knows none, so it waits a whole window before scaling down).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recent {
    samples: VecDeque<(OffsetDateTime, i32)>,
    observed_since: Option<OffsetDateTime>,
}

impl Recent {
    /// Remembers `recommendation` at `now` and forgets what is older than `keep`.
    pub(crate) fn record(&mut self, now: OffsetDateTime, recommendation: i32, keep: Duration) {
        self.observed_since.get_or_insert(now);
        // One sample per second is enough, and bounds the memory of a busy subscription.
        if let Some(last) = self.samples.back_mut()
            && now - last.0 < Duration::SECOND
        {
            last.1 = last.1.max(recommendation);
        } else {
            self.samples.push_back((now, recommendation));
        }
        while self.samples.front().is_some_and(|(at, _)| now - *at > keep) {
            self.samples.pop_front();
        }
    }

    pub fn observed_since(&self) -> Option<OffsetDateTime> {
        self.observed_since
    }

    fn max_since(&self, start: OffsetDateTime) -> Option<i32> {
        self.samples.iter().filter(|(at, _)| *at >= start).map(|(_, r)| *r).max()
    }

    /// Since when every recommendation has been below `current` (for the condition's message).
    fn lower_since(&self, current: i32) -> Option<OffsetDateTime> {
        let last_high = self.samples.iter().rev().find(|(_, r)| *r >= current).map(|(at, _)| *at);
        match last_high {
            Some(high) => self.samples.iter().find(|(at, _)| *at > high).map(|(at, _)| *at),
            None => self.observed_since,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min: 1,
            max: 16,
            client_cap: 64,
            connections_per_pod: 1,
            target_backlog_per_replica: 1000,
            stabilization: Duration::seconds(300),
            step_interval: Duration::seconds(15),
        }
    }

    fn t(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_000) + Duration::seconds(seconds)
    }

    fn input(policy: &Policy, current: i32, reading: Option<(i64, i32)>, now: i64) -> Input<'_> {
        Input {
            policy,
            current,
            reading: reading.map(|(backlog, others)| Reading { backlog, others, draining: 0 }),
            rolling_out: false,
            last_scale: None,
            now: t(now),
        }
    }

    #[test]
    fn wanted_is_the_ceiling_of_backlog_over_target() {
        let p = policy();
        let cases = [(0, 0), (1, 1), (999, 1), (1000, 1), (1001, 2), (20_000, 20), (i64::MAX, i32::MAX)];
        for (backlog, pods) in cases {
            assert_eq!(wanted(&p, backlog), pods, "backlog {backlog}");
        }
    }

    #[test]
    fn cap_allowed_subtracts_other_clients_and_divides_by_connections() {
        // (cap, connections per pod, occupied, rolling out, max) → pods
        let cases = [
            (64, 1, 0, false, 16, 16),
            (64, 1, 60, false, 16, 4),
            (64, 4, 0, false, 16, 16),
            (64, 4, 3, false, 16, 15),
            (64, 4, 61, false, 16, 0),
            (64, 1, 70, false, 16, 0),
            (10, 1, 5, false, 8, 5),
            (10, 1, 5, true, 8, 4),
            (10, 1, 10, true, 8, 0),
        ];
        for (cap, cpp, taken, rolling, max, pods) in cases {
            let p = Policy { client_cap: cap, connections_per_pod: cpp, max, ..policy() };
            assert_eq!(cap_allowed(&p, taken, rolling), pods, "cap {cap} cpp {cpp} taken {taken} rolling {rolling}");
        }
    }

    #[test]
    fn decisions_table() {
        let p = policy();
        let empty = Recent::default();
        // (current, backlog, others) → (replicas, outcome)
        let cases: [(i32, i64, i32, i32, Outcome); 8] = [
            (1, 20_000, 0, 16, Outcome::ScaledUp { from: 1 }),
            (1, 5_500, 0, 6, Outcome::ScaledUp { from: 1 }),
            (6, 5_500, 0, 6, Outcome::Steady),
            (1, 0, 0, 1, Outcome::Steady),
            (1, 20_000, 59, 5, Outcome::CappedByClientLimit { wanted: 16, allowed: 5, draining: 0 }),
            (5, 20_000, 59, 5, Outcome::CappedByClientLimit { wanted: 16, allowed: 5, draining: 0 }),
            (8, 20_000, 60, 4, Outcome::CappedByClientLimit { wanted: 16, allowed: 4, draining: 0 }),
            (3, 0, 64, 0, Outcome::CappedByClientLimit { wanted: 1, allowed: 0, draining: 0 }),
        ];
        for (current, backlog, others, replicas, outcome) in cases {
            let d = decide(&input(&p, current, Some((backlog, others)), 0), &empty);
            assert_eq!((d.replicas, &d.outcome), (replicas, &outcome), "current {current} backlog {backlog} others {others}");
        }
    }

    #[test]
    fn max_replicas_bounds_without_being_called_the_cap() {
        let p = Policy { max: 4, ..policy() };
        let d = decide(&input(&p, 1, Some((20_000, 0)), 0), &Recent::default());
        assert_eq!((d.replicas, d.outcome), (4, Outcome::ScaledUp { from: 1 }));
    }

    #[test]
    fn an_unreadable_backlog_holds_the_current_count() {
        let p = policy();
        for current in [0, 1, 7, 16] {
            let d = decide(&input(&p, current, None, 0), &Recent::default());
            assert_eq!((d.replicas, d.recommendation, &d.outcome), (current.max(1), None, &Outcome::BacklogUnavailable));
        }
        let smaller = Policy { max: 4, ..policy() };
        assert_eq!(decide(&input(&smaller, 7, None, 0), &Recent::default()).replicas, 4, "a lowered max still applies");
    }

    #[test]
    fn scale_down_waits_for_the_window_then_steps_one_at_a_time() {
        let p = policy();
        let mut recent = Recent::default();
        let mut current = 1;
        let mut last_scale = None;
        let mut trace = Vec::new();
        // Backlog 8000 for a minute, then nothing; a reading every 15 s for 10 minutes.
        for step in 0..=40 {
            let now = step * 15;
            let backlog = if now < 60 { 8000 } else { 0 };
            let mut i = input(&p, current, Some((backlog, 0)), now);
            i.last_scale = last_scale;
            let d = decide(&i, &recent);
            recent.record(t(now), d.recommendation.unwrap(), p.stabilization);
            if d.replicas != current {
                last_scale = Some(t(now));
                trace.push((now, d.replicas));
            }
            current = d.replicas;
        }
        // Up to 8 at once; the last 8 was recommended at 45 s, so nothing goes down before 345 s,
        // then one step per reading.
        assert_eq!(trace, [(0, 8), (360, 7), (375, 6), (390, 5), (405, 4), (420, 3), (435, 2), (450, 1)]);
    }

    #[test]
    fn a_new_operator_waits_a_whole_window_before_scaling_down() {
        let p = policy();
        let mut recent = Recent::default();
        let d = decide(&input(&p, 8, Some((0, 0)), 0), &recent);
        assert_eq!(d.replicas, 8);
        assert!(matches!(d.outcome, Outcome::StabilizingScaleDown { recommended: 1, until } if until == t(300)));
        recent.record(t(0), 1, p.stabilization);
        assert_eq!(decide(&input(&p, 8, Some((0, 0)), 299), &recent).replicas, 8);
        assert_eq!(decide(&input(&p, 8, Some((0, 0)), 300), &recent).replicas, 7);
    }

    #[test]
    fn a_spike_inside_the_window_restarts_the_wait() {
        let p = policy();
        let mut recent = Recent::default();
        recent.record(t(0), 2, p.stabilization);
        recent.record(t(200), 8, p.stabilization);
        recent.record(t(300), 2, p.stabilization);
        assert_eq!(decide(&input(&p, 8, Some((0, 0)), 400), &recent).replicas, 8, "8 was recommended 200 s ago");
        assert_eq!(decide(&input(&p, 8, Some((0, 0)), 501), &recent).replicas, 7);
    }

    #[test]
    fn steps_down_are_a_step_interval_apart() {
        let p = policy();
        let mut recent = Recent::default();
        recent.record(t(0), 1, p.stabilization);
        let mut i = input(&p, 5, Some((0, 0)), 400);
        i.last_scale = Some(t(395));
        let d = decide(&i, &recent);
        assert_eq!((d.replicas, d.outcome), (5, Outcome::StabilizingScaleDown { recommended: 1, until: t(410) }), "stepped 5 s ago");
        i.last_scale = Some(t(385));
        assert_eq!(decide(&i, &recent).replicas, 4);
    }

    #[test]
    fn others_taking_the_cap_and_rollouts_push_the_count_down_at_once() {
        let p = Policy { client_cap: 10, max: 8, ..policy() };
        let d = decide(&input(&p, 8, Some((20_000, 4)), 0), &Recent::default());
        assert_eq!((d.replicas, d.outcome), (6, Outcome::CappedByClientLimit { wanted: 8, allowed: 6, draining: 0 }));
        let mut rolling = input(&p, 6, Some((20_000, 4)), 0);
        rolling.rolling_out = true;
        assert_eq!(decide(&rolling, &Recent::default()).replicas, 5, "one pod's clients kept free while pods are replaced");
    }

    #[test]
    fn our_draining_clients_delay_a_scale_up_and_never_cause_a_scale_down() {
        let p = Policy { client_cap: 10, max: 8, ..policy() };
        let reading = |draining| Some(Reading { backlog: 20_000, others: 5, draining });
        // At the cap while one of ours shuts down: hold, don't shrink (no spiral down).
        let mut i = input(&p, 4, None, 0);
        i.reading = reading(1);
        i.rolling_out = true;
        let d = decide(&i, &Recent::default());
        assert_eq!((d.replicas, d.outcome), (4, Outcome::CappedByClientLimit { wanted: 8, allowed: 4, draining: 1 }));
        // Up only into places free now: 2 draining leave room for 3, not the 5 the others leave.
        let mut i = input(&p, 1, None, 0);
        i.reading = reading(2);
        let d = decide(&i, &Recent::default());
        assert_eq!((d.replicas, d.outcome), (3, Outcome::CappedByClientLimit { wanted: 8, allowed: 3, draining: 2 }));
        i.reading = reading(0);
        assert_eq!(decide(&i, &Recent::default()).replicas, 5, "once they closed");
    }

    #[test]
    fn recent_keeps_one_sample_per_second_within_the_window() {
        let mut recent = Recent::default();
        let keep = Duration::seconds(10);
        recent.record(t(0), 3, keep);
        recent.record(t(0) + Duration::milliseconds(500), 5, keep);
        recent.record(t(0) + Duration::milliseconds(900), 4, keep);
        assert_eq!(recent.samples, [(t(0), 5)]);
        recent.record(t(11), 1, keep);
        assert_eq!(recent.samples, [(t(11), 1)]);
        assert_eq!(recent.observed_since(), Some(t(0)));
    }
}
