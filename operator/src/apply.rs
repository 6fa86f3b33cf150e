//! Apply: server-side apply of the Deployment, its PodDisruptionBudget and the status as field
//! manager `iotsub-operator`, and the Events.

use iotsub_crds::{ConsumerGroupSubscription, ConsumerGroupSubscriptionStatus};
use iotsub_operator_core::{
    events::{Event, EventType},
    names::MANAGER,
};
use k8s_openapi::api::{apps::v1::Deployment, policy::v1::PodDisruptionBudget};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::{self, Recorder},
};
use serde_json::json;

fn params() -> PatchParams {
    // `force`: this operator owns these fields; a hand edit of them is undone.
    PatchParams::apply(MANAGER).force()
}

pub async fn deployment(client: &kube::Client, deployment: &Deployment) -> Result<Deployment, kube::Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), deployment.metadata.namespace.as_deref().unwrap_or_default());
    api.patch(&deployment.name_any(), &params(), &Patch::Apply(deployment)).await
}

pub async fn disruption_budget(client: &kube::Client, budget: &PodDisruptionBudget) -> Result<PodDisruptionBudget, kube::Error> {
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), budget.metadata.namespace.as_deref().unwrap_or_default());
    api.patch(&budget.name_any(), &params(), &Patch::Apply(budget)).await
}

pub async fn status(
    client: &kube::Client,
    cgs: &ConsumerGroupSubscription,
    status: &ConsumerGroupSubscriptionStatus,
) -> Result<(), kube::Error> {
    let api: Api<ConsumerGroupSubscription> = Api::namespaced(client.clone(), &cgs.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": ConsumerGroupSubscription::api_version(&()),
        "kind": ConsumerGroupSubscription::kind(&()),
        "status": status,
    });
    api.patch_status(&cgs.name_any(), &params(), &Patch::Apply(&patch)).await?;
    Ok(())
}

/// Publishes each Event; a failure is logged, not returned (an Event is not worth a retry).
pub async fn events(recorder: &Recorder, cgs: &ConsumerGroupSubscription, events: Vec<Event>) {
    let reference = cgs.object_ref(&());
    for event in events {
        let event = events::Event {
            type_: match event.type_ {
                EventType::Normal => events::EventType::Normal,
                EventType::Warning => events::EventType::Warning,
            },
            reason: event.reason,
            note: Some(event.note),
            action: event.action,
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::warn!(%error, reason = %event.reason, "could not publish an Event");
        }
    }
}
