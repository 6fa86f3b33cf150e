//! Apply: server-side apply of the Deployment, its PodDisruptionBudget, an RRSA ServiceAccount and
//! the status as field
//! manager `iotsub-operator`, and the Events.

use iotsub_crds::{ConsumerGroupSubscription, ConsumerGroupSubscriptionStatus};
use iotsub_operator_core::{
    events::{Event, EventType},
    names::MANAGER,
};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::ServiceAccount, policy::v1::PodDisruptionBudget};
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

/// Server-side apply of an object the subscription owns, in its namespace.
async fn owned<K>(client: &kube::Client, object: &K) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), object.meta().namespace.as_deref().unwrap_or_default());
    api.patch(&object.name_any(), &params(), &Patch::Apply(object)).await
}

pub async fn deployment(client: &kube::Client, deployment: &Deployment) -> Result<Deployment, kube::Error> {
    owned(client, deployment).await
}

pub async fn disruption_budget(client: &kube::Client, budget: &PodDisruptionBudget) -> Result<PodDisruptionBudget, kube::Error> {
    owned(client, budget).await
}

/// The ServiceAccount of an RRSA subscription that names none ([`crate::rrsa`]).
pub async fn service_account(client: &kube::Client, account: &ServiceAccount) -> Result<ServiceAccount, kube::Error> {
    owned(client, account).await
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
