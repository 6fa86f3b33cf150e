//! Events: what changed between the previous status and the new one.

use iotsub_crds::{
    ConsumerGroupSubscriptionStatus,
    conditions::{self, reason},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// An Event about the subscription, as the operator publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub type_: EventType,
    /// A condition reason, or what happened (`Created`, `Scaled`, `PodTemplateChanged`).
    pub reason: String,
    /// What the operator did or checked (`CreateDeployment`, a condition type).
    pub action: String,
    pub note: String,
}

/// The Events that a reconcile from `before` to `after` deserves.
pub(crate) fn changes(
    before: Option<&ConsumerGroupSubscriptionStatus>,
    after: &ConsumerGroupSubscriptionStatus,
    deployment_created: bool,
    credentials_rotated: bool,
) -> Vec<Event> {
    let mut events = Vec::new();
    let event = |type_, reason: &str, action: &str, note: String| Event { type_, reason: reason.into(), action: action.into(), note };
    if deployment_created {
        events.push(event(
            EventType::Normal,
            "Created",
            "CreateDeployment",
            format!("created the worker Deployment with {} replicas", after.desired_replicas),
        ));
    } else if let Some(before) = before
        && before.desired_replicas != after.desired_replicas
    {
        // The autoscaler's explanation (backlog, cap) when it made the change.
        let why = after
            .condition(conditions::AUTOSCALING)
            .filter(|c| c.status == conditions::TRUE)
            .map_or_else(String::new, |c| format!(" ({}: {})", c.reason, c.message));
        events.push(event(
            EventType::Normal,
            "Scaled",
            "Scale",
            format!("scaled from {} to {} replicas{why}", before.desired_replicas, after.desired_replicas),
        ));
    }
    // The autoscaler being held back deserves a Warning once, when it starts.
    if let Some(now) = after.condition(conditions::AUTOSCALING)
        && (now.reason == reason::CAPPED_BY_CLIENT_LIMIT || now.reason == reason::BACKLOG_UNAVAILABLE)
        && before.and_then(|b| b.condition(conditions::AUTOSCALING)).is_none_or(|was| was.reason != now.reason)
    {
        events.push(event(EventType::Warning, &now.reason, conditions::AUTOSCALING, now.message.clone()));
    }
    if credentials_rotated {
        events.push(event(
            EventType::Normal,
            "PodTemplateChanged",
            "RollPods",
            "the worker pod template changed: rolling the pods, one at a time under the client cap".into(),
        ));
    }
    // A failing sink warns when it starts, and says so when it recovers (not at creation).
    if let Some(now) = after.condition(conditions::SINK_AVAILABLE) {
        let was = before.and_then(|b| b.condition(conditions::SINK_AVAILABLE)).map(|c| c.status.as_str());
        if now.status == conditions::FALSE && was != Some(conditions::FALSE) {
            events.push(event(EventType::Warning, &now.reason, conditions::SINK_AVAILABLE, now.message.clone()));
        } else if now.status == conditions::TRUE && was == Some(conditions::FALSE) {
            events.push(event(EventType::Normal, &now.reason, conditions::SINK_AVAILABLE, "the sink takes messages again".into()));
        }
    }
    // A refused spec warns, naming the rule and the flag; again when the rule it breaks changes.
    if let Some(now) = after.condition(conditions::SPEC_ALLOWED) {
        let was = before.and_then(|b| b.condition(conditions::SPEC_ALLOWED));
        if now.status == conditions::FALSE && was.is_none_or(|w| w.status != now.status || w.reason != now.reason) {
            events.push(event(EventType::Warning, &now.reason, conditions::SPEC_ALLOWED, now.message.clone()));
        } else if now.status == conditions::TRUE && was.is_some_and(|w| w.status == conditions::FALSE) {
            events.push(event(EventType::Normal, &now.reason, conditions::SPEC_ALLOWED, "the spec is within the guard rails again".into()));
        }
    }
    for type_ in [conditions::CREDENTIALS_VALID, conditions::READY] {
        let Some(now) = after.condition(type_) else { continue };
        let was = before.and_then(|b| b.condition(type_));
        // Ready says so when it turns (a scale step, True/Scaling, is the Scaled Event's business).
        let changed = was.is_none_or(|w| w.status != now.status || (type_ == conditions::CREDENTIALS_VALID && w.reason != now.reason));
        if changed {
            let kind = if now.status == conditions::FALSE && type_ == conditions::CREDENTIALS_VALID {
                EventType::Warning
            } else {
                EventType::Normal
            };
            if now.status == conditions::TRUE || kind == EventType::Warning || was.is_some() {
                events.push(event(kind, &now.reason, type_, now.message.clone()));
            }
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotsub_crds::Condition;

    fn status(desired: i32, conditions: &[(&str, &str, &str)]) -> ConsumerGroupSubscriptionStatus {
        ConsumerGroupSubscriptionStatus {
            desired_replicas: desired,
            conditions: conditions
                .iter()
                .map(|(t, s, r)| Condition {
                    type_: (*t).into(),
                    status: (*s).into(),
                    reason: (*r).into(),
                    message: format!("{r} happened"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn reasons(events: &[Event]) -> Vec<(&str, bool)> {
        events.iter().map(|e| (e.reason.as_str(), e.type_ == EventType::Warning)).collect()
    }

    #[test]
    fn create_scale_rotation_and_credential_problems_make_events() {
        let first = status(2, &[("Ready", "False", "Progressing"), ("CredentialsValid", "True", "SecretFound")]);
        assert_eq!(reasons(&changes(None, &first, true, false)), [("Created", false), ("SecretFound", false)]);
        let ready = status(2, &[("Ready", "True", "AllClientsConnected"), ("CredentialsValid", "True", "SecretFound")]);
        assert_eq!(reasons(&changes(Some(&first), &ready, false, false)), [("AllClientsConnected", false)]);
        let scaled = status(3, &[("Ready", "True", "AllClientsConnected"), ("CredentialsValid", "True", "SecretFound")]);
        assert_eq!(reasons(&changes(Some(&ready), &scaled, false, true)), [("Scaled", false), ("PodTemplateChanged", false)]);
        let scaling = status(4, &[("Ready", "True", "Scaling"), ("CredentialsValid", "True", "SecretFound")]);
        assert_eq!(reasons(&changes(Some(&scaled), &scaling, false, false)), [("Scaled", false)], "no Ready Event for a scale step");
        let broken = status(3, &[("Ready", "False", "CredentialsInvalid"), ("CredentialsValid", "False", "SecretNotFound")]);
        assert_eq!(reasons(&changes(Some(&scaled), &broken, false, false)), [("SecretNotFound", true), ("CredentialsInvalid", false)]);
        assert!(changes(Some(&broken), &broken, false, false).is_empty(), "no change, no Event");
    }

    #[test]
    fn autoscaling_explains_scaling_and_warns_once_when_held_back() {
        let steady = status(2, &[("Autoscaling", "True", "Steady")]);
        let up = status(8, &[("Autoscaling", "True", "ScaledUp")]);
        let events = changes(Some(&steady), &up, false, false);
        assert_eq!(reasons(&events), [("Scaled", false)]);
        assert_eq!(events[0].note, "scaled from 2 to 8 replicas (ScaledUp: ScaledUp happened)");
        let capped = status(5, &[("Autoscaling", "True", "CappedByClientLimit")]);
        assert_eq!(reasons(&changes(Some(&up), &capped, false, false)), [("Scaled", false), ("CappedByClientLimit", true)]);
        assert!(changes(Some(&capped), &capped, false, false).is_empty(), "still capped: no second Warning");
        let unavailable = status(5, &[("Autoscaling", "False", "BacklogUnavailable")]);
        assert_eq!(reasons(&changes(Some(&capped), &unavailable, false, false)), [("BacklogUnavailable", true)]);
    }

    #[test]
    fn a_refused_spec_warns_once_per_rule_and_its_recovery_is_told() {
        let allowed = status(2, &[("SpecAllowed", "True", "Allowed")]);
        assert!(changes(None, &allowed, false, false).is_empty(), "an allowed spec is no news");
        let image = status(2, &[("SpecAllowed", "False", "WorkerImageNotAllowed")]);
        let events = changes(None, &image, false, false);
        assert_eq!(reasons(&events), [("WorkerImageNotAllowed", true)], "refused from the start");
        assert_eq!(events[0].action, "SpecAllowed");
        assert!(changes(Some(&image), &image, false, false).is_empty(), "still refused: no second Warning");
        let placement = status(2, &[("SpecAllowed", "False", "WorkerPlacementNotAllowed")]);
        assert_eq!(reasons(&changes(Some(&image), &placement, false, false)), [("WorkerPlacementNotAllowed", true)]);
        assert_eq!(reasons(&changes(Some(&placement), &allowed, false, false)), [("Allowed", false)]);
    }

    #[test]
    fn a_failing_sink_warns_once_and_its_recovery_is_told() {
        let taking = status(2, &[("SinkAvailable", "True", "SinkTaking")]);
        assert!(changes(None, &taking, false, false).is_empty(), "a new subscription's sink is no news");
        let failing = status(2, &[("SinkAvailable", "False", "SinkFailing")]);
        let events = changes(Some(&taking), &failing, false, false);
        assert_eq!(reasons(&events), [("SinkFailing", true)]);
        assert_eq!((events[0].action.as_str(), events[0].note.as_str()), ("SinkAvailable", "SinkFailing happened"));
        assert!(changes(Some(&failing), &failing, false, false).is_empty(), "still failing: no second Warning");
        let unknown = status(2, &[("SinkAvailable", "Unknown", "SinkUnknown")]);
        assert!(changes(Some(&failing), &unknown, false, false).is_empty(), "unknown is not a recovery");
        assert_eq!(reasons(&changes(Some(&unknown), &failing, false, false)), [("SinkFailing", true)]);
        assert_eq!(reasons(&changes(Some(&failing), &taking, false, false)), [("SinkTaking", false)]);
    }
}
