//! Events: what changed between the previous status and the new one, and reconcile errors.

use iotsub_crds::{ConsumerGroupSubscription, ConsumerGroupSubscriptionStatus, conditions};
use kube::{Resource, runtime::events::{Event, EventType}};

use crate::context::Context;

/// Pure: the Events that a reconcile from `before` to `after` deserves.
pub fn changes(
    before: Option<&ConsumerGroupSubscriptionStatus>,
    after: &ConsumerGroupSubscriptionStatus,
    deployment_created: bool,
    credentials_rotated: bool,
) -> Vec<Event> {
    let mut events = Vec::new();
    let event = |type_, reason: &str, action: &str, note: String| Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if deployment_created {
        events.push(event(EventType::Normal, "Created", "CreateDeployment", format!("created the worker Deployment with {} replicas", after.desired_replicas)));
    } else if let Some(before) = before
        && before.desired_replicas != after.desired_replicas
    {
        events.push(event(EventType::Normal, "Scaled", "Scale", format!("scaled from {} to {} replicas", before.desired_replicas, after.desired_replicas)));
    }
    if credentials_rotated {
        events.push(event(EventType::Normal, "CredentialsRotated", "RollPods", "the credentials changed: rolling the worker pods".into()));
    }
    for type_ in [conditions::CREDENTIALS_VALID, conditions::READY] {
        let Some(now) = after.condition(type_) else { continue };
        let was = before.and_then(|b| b.condition(type_));
        let changed = was.is_none_or(|w| w.status != now.status || w.reason != now.reason);
        if changed {
            let kind = if now.status == conditions::FALSE && type_ == conditions::CREDENTIALS_VALID { EventType::Warning } else { EventType::Normal };
            if now.status == conditions::TRUE || kind == EventType::Warning || was.is_some() {
                events.push(event(kind, &now.reason, type_, now.message.clone()));
            }
        }
    }
    events
}

pub async fn publish(ctx: &Context, cgs: &ConsumerGroupSubscription, events: Vec<Event>) {
    let reference = cgs.object_ref(&());
    for event in events {
        if let Err(error) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(%error, reason = %event.reason, "could not publish an Event");
        }
    }
}

pub async fn error(ctx: &Context, cgs: &ConsumerGroupSubscription, stage: &str, message: String) {
    let event = Event { type_: EventType::Warning, reason: "ReconcileError".into(), note: Some(message), action: stage.into(), secondary: None };
    publish(ctx, cgs, vec![event]).await;
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
                .map(|(t, s, r)| Condition { type_: (*t).into(), status: (*s).into(), reason: (*r).into(), message: format!("{r} happened"), ..Default::default() })
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
        assert_eq!(reasons(&changes(Some(&ready), &scaled, false, true)), [("Scaled", false), ("CredentialsRotated", false)]);
        let broken = status(3, &[("Ready", "False", "CredentialsInvalid"), ("CredentialsValid", "False", "SecretNotFound")]);
        assert_eq!(reasons(&changes(Some(&scaled), &broken, false, false)), [("SecretNotFound", true), ("CredentialsInvalid", false)]);
        assert!(changes(Some(&broken), &broken, false, false).is_empty(), "no change, no Event");
    }
}
