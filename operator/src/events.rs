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
