//! Apply: server-side apply of the children and of the status, as field manager `iotsub-operator`.

use iotsub_crds::{ConsumerGroupSubscription, ConsumerGroupSubscriptionStatus};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::context::MANAGER;

fn params() -> PatchParams {
    // `force`: this operator owns these fields; a hand edit of them is undone.
    PatchParams::apply(MANAGER).force()
}

pub async fn deployment(client: &kube::Client, deployment: &Deployment) -> Result<Deployment, kube::Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), deployment.metadata.namespace.as_deref().unwrap_or_default());
    api.patch(&deployment.name_any(), &params(), &Patch::Apply(deployment)).await
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
