//! Guard rails for tenants on the real API server: a worker image the operator does not allow
//! and a Secret without the `iotsub.dev/credentials` label are refused with a condition and a
//! Warning Event naming the rule and the flag, and nothing is created for them; the flag (or the
//! label) lets them through.

use std::time::Duration;

use iotsub_crds::ConsumerGroupSubscriptionStatus;
use iotsub_e2e::{
    Bed, Operator,
    bed::operator_args,
    holds_for,
    subscription::{self, all_connected, wait_status},
};
use iotsub_tests::wait_until;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Event};
use kube::{Api, api::ListParams};
use serde_json::json;

/// The worker image under another name (imported into the node by make cluster-up; lk-agent runs
/// an image by its last path component).
const CUSTOM_IMAGE: &str = iotsub_e2e::reach::CUSTOM_WORKER_IMAGE;

fn condition_is(type_: &'static str, status: &'static str, reason: &'static str) -> impl Fn(&ConsumerGroupSubscriptionStatus) -> bool {
    move |s| s.condition(type_).is_some_and(|c| c.status == status && c.reason == reason)
}

/// Waits for a Warning Event `reason` whose note contains every one of `parts`; its note.
async fn warning(bed: &Bed, reason: &str, parts: &[&str]) -> anyhow::Result<String> {
    let events: Api<Event> = bed.ns.api();
    wait_until(&format!("a Warning Event {reason} naming {parts:?}"), Duration::from_secs(30), || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        list.into_iter()
            .filter(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
            .find_map(|e| e.message.filter(|note| parts.iter().all(|p| note.contains(p))))
    })
    .await
}

/// No Deployment `orders` appears for as long as `for_` (it would come within a reconcile).
async fn no_deployment(bed: &Bed, for_: Duration) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = bed.ns.api();
    holds_for("no Deployment orders", for_, || async {
        match deployments.get_opt("orders").await? {
            None => Ok(()),
            Some(_) => Err(anyhow::anyhow!("a Deployment orders exists")),
        }
    })
    .await
}

#[tokio::test]
async fn a_worker_image_the_operator_does_not_allow_gets_no_deployment_until_the_flag_allows_it() -> anyhow::Result<()> {
    let mut bed = Bed::start("e2e-guard-image", "").await?;
    let mut manifest = subscription::manifest("orders", &bed.emulator, 1);
    manifest["spec"]["worker"] = json!({"image": CUSTOM_IMAGE});
    subscription::apply(&bed.ns, &manifest).await?;

    let refused = condition_is("SpecAllowed", "False", "WorkerImageNotAllowed");
    let status = wait_status(&bed.ns, "orders", "SpecAllowed=False WorkerImageNotAllowed", Duration::from_secs(30), refused).await?;
    assert_eq!(status.condition("Ready").map(|c| c.reason.as_str()), Some("SpecNotAllowed"));
    warning(&bed, "WorkerImageNotAllowed", &[CUSTOM_IMAGE, "--allowed-worker-images"]).await?;
    no_deployment(&bed, Duration::from_secs(3)).await?;

    // An operator that allows the registry's team images runs it.
    bed.kill_operator().await?;
    let mut args = operator_args(&bed.ns).to_vec();
    args.extend(["--allowed-worker-images", "localhost/team/*"]);
    bed.operator = Operator::start(&bed.cluster.kubeconfig, &args).await?;
    wait_status(&bed.ns, "orders", "the custom-image worker connected", Duration::from_secs(90), all_connected(1)).await?;
    let status =
        wait_status(&bed.ns, "orders", "SpecAllowed=True", Duration::from_secs(10), condition_is("SpecAllowed", "True", "Allowed")).await?;
    assert!(status.condition("Ready").is_some_and(|c| c.status == "True"));
    let deployments: Api<Deployment> = bed.ns.api();
    let deployment = deployments.get("orders").await?;
    let image = deployment.spec.and_then(|s| s.template.spec).and_then(|s| s.containers.into_iter().next()).and_then(|c| c.image);
    assert_eq!(image.as_deref(), Some(CUSTOM_IMAGE));
    Ok(())
}

#[tokio::test]
async fn an_unlabelled_secret_is_not_used_until_it_carries_the_label() -> anyhow::Result<()> {
    let bed = Bed::without_credentials("e2e-guard-label", "").await?;
    bed.ns.put_secret_labelled(subscription::CREDENTIALS, &[("accessKeyId", "demo"), ("accessKeySecret", "demo-secret")], &[]).await?;
    subscription::apply(&bed.ns, &subscription::manifest("orders", &bed.emulator, 1)).await?;

    let refused = condition_is("CredentialsValid", "False", "SecretNotLabelled");
    let status = wait_status(&bed.ns, "orders", "CredentialsValid=False SecretNotLabelled", Duration::from_secs(30), refused).await?;
    assert_eq!(status.condition("Ready").map(|c| c.reason.as_str()), Some("CredentialsInvalid"));
    assert_eq!(status.condition("BacklogAvailable").map(|c| c.reason.as_str()), Some("NotQueried"), "its keys were not used");
    warning(&bed, "SecretNotLabelled", &[subscription::CREDENTIALS, "iotsub.dev/credentials=true", "--require-secret-label=false"]).await?;
    no_deployment(&bed, Duration::from_secs(3)).await?;
    assert!(bed.emulator.openapi_calls_typed().await?.is_empty(), "the platform was not called with an unlabelled Secret's keys");

    // Labelled, the same Secret is used.
    bed.ns.put_secret(subscription::CREDENTIALS, &[("accessKeyId", "demo"), ("accessKeySecret", "demo-secret")]).await?;
    wait_status(&bed.ns, "orders", "the worker connected", Duration::from_secs(90), all_connected(1)).await?;
    Ok(())
}
