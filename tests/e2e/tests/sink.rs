//! The worker's sink, as the subscription tells it: a sink that keeps failing opens the workers'
//! circuit breakers, and the operator says which pods fail and why (SinkAvailable, a Warning
//! Event); when the sink takes again, the condition turns back and every message arrives. A
//! `headersFrom` Secret that does not exist is a condition, not pods stuck in ContainerCreating.
//! The README's batched HTTP/2 sink delivers every message through the operator's workers.

use std::time::Duration;

use iotsub_crds::ConsumerGroupSubscriptionStatus;
use iotsub_e2e::{
    Bed, readme_block,
    subscription::{self, all_connected, pod_names, wait_status},
};
use iotsub_tests::wait_until;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Event};
use kube::{Api, api::ListParams};
use serde_json::json;

const TOPIC: &str = "/a1demo/meter/thing/event/property/post";

fn sink_is(status: &'static str, reason: &'static str) -> impl Fn(&ConsumerGroupSubscriptionStatus) -> bool {
    move |s| s.condition("SinkAvailable").is_some_and(|c| c.status == status && c.reason == reason)
}

/// Waits for an Event of `type_` and `reason` whose note contains `text`; its note.
async fn event(bed: &Bed, type_: &str, reason: &str, text: &str) -> anyhow::Result<String> {
    let events: Api<Event> = bed.ns.api();
    wait_until(&format!("a {type_} Event {reason} naming {text}"), Duration::from_secs(30), || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        list.into_iter()
            .filter(|e| e.type_.as_deref() == Some(type_) && e.reason.as_deref() == Some(reason))
            .find_map(|e| e.message.filter(|n| n.contains(text)))
    })
    .await
}

#[tokio::test]
async fn a_sink_answering_503_is_named_on_the_subscription_until_it_takes_again() -> anyhow::Result<()> {
    let bed = Bed::start("e2e-sink", "").await?;
    let receiver = iotsub_e2e::reach::http_receiver().await?;
    let mut manifest = subscription::manifest("orders", &bed.emulator, 1);
    manifest["spec"]["sink"] = json!({"type": "http", "http": {"url": receiver.url, "timeoutSeconds": 2}});
    subscription::apply(&bed.ns, &manifest).await?;
    let settled = wait_status(&bed.ns, "orders", "the worker connected", Duration::from_secs(90), all_connected(1)).await?;
    assert_eq!(settled.condition("SinkAvailable").map(|c| c.reason.as_str()), Some("SinkTaking"));
    let pod = pod_names(&bed.ns, "orders").await.into_iter().next().expect("a worker pod");

    // The sink fails: the worker's breaker opens, /readyz turns 503, the operator asks /status.
    receiver.answer(503);
    let ids = bed.emulator.publish("DEFAULT_GROUP", TOPIC, "{\"kWh\":1}", 10).await?;
    let status =
        wait_status(&bed.ns, "orders", "SinkAvailable=False/SinkFailing", Duration::from_secs(120), sink_is("False", "SinkFailing"))
            .await?;
    let message = &status.condition("SinkAvailable").unwrap().message;
    assert!(message.contains(&pod) && message.contains("503") && message.contains("1 of 1 pod"), "{message}");
    assert!(message.contains(&receiver.url), "the message names the sink: {message}");
    let warning = event(&bed, "Warning", "SinkFailing", &pod).await?;
    assert!(warning.contains("503"), "{warning}");
    // The Deployment's ready count follows the pod's readiness a moment later (the deployment
    // controller's own status): Ready turns False with it.
    wait_status(&bed.ns, "orders", "Ready=False with the sink failing", Duration::from_secs(30), |s| {
        s.condition("Ready").is_some_and(|c| c.status == "False") && s.condition("SinkAvailable").is_some_and(|c| c.status == "False")
    })
    .await?;

    // The sink takes again: the condition turns back, a Normal Event says so, nothing is lost.
    receiver.answer(200);
    wait_status(&bed.ns, "orders", "SinkAvailable=True/SinkTaking", Duration::from_secs(120), sink_is("True", "SinkTaking")).await?;
    event(&bed, "Normal", "SinkTaking", "again").await?;
    wait_until("every published messageId accepted by the sink", Duration::from_secs(60), || async {
        (receiver.missing(&ids) == 0).then_some(())
    })
    .await
    .map_err(|e| e.context(format!("{} of {} messageIds never reached the sink", receiver.missing(&ids), ids.len())))?;
    wait_status(&bed.ns, "orders", "the worker ready again", Duration::from_secs(60), all_connected(1)).await?;
    Ok(())
}

#[tokio::test]
async fn a_missing_headers_from_secret_is_a_condition_not_a_pod_stuck_creating() -> anyhow::Result<()> {
    let bed = Bed::start("e2e-sink-auth", "").await?;
    let mut manifest = subscription::manifest("orders", &bed.emulator, 1);
    manifest["spec"]["sink"] =
        json!({"type": "http", "http": {"url": "http://127.0.0.1:9/events", "headersFrom": {"secretName": "sink-auth"}}});
    subscription::apply(&bed.ns, &manifest).await?;
    let is_not_found = |s: &ConsumerGroupSubscriptionStatus| s.condition("CredentialsValid").is_some_and(|c| c.reason == "SecretNotFound");
    let status = wait_status(&bed.ns, "orders", "CredentialsValid=False/SecretNotFound", Duration::from_secs(30), is_not_found).await?;
    let credentials = status.condition("CredentialsValid").unwrap();
    assert_eq!((credentials.status.as_str(), credentials.message.as_str()), ("False", "Secret sink-auth not found"));
    event(&bed, "Warning", "SecretNotFound", "sink-auth").await?;
    let deployments: Api<Deployment> = bed.ns.api();
    assert!(deployments.get_opt("orders").await?.is_none(), "no Deployment whose pods could only wait for the Secret");

    // The Secret appears: the check passes and the Deployment is made. (The local control plane
    // ignores volume mounts, so its pods cannot read the headers; the worker's component test
    // `worker_sink_credentials` covers the headers on the wire.)
    bed.ns.put_secret("sink-auth", &[("Authorization", "Bearer e2e-t0ken")]).await?;
    let found = |s: &ConsumerGroupSubscriptionStatus| s.condition("CredentialsValid").is_some_and(|c| c.status == "True");
    wait_status(&bed.ns, "orders", "CredentialsValid=True", Duration::from_secs(30), found).await?;
    let deployment =
        wait_until("the worker Deployment", Duration::from_secs(30), || async { deployments.get_opt("orders").await.ok()? }).await?;
    let volumes = deployment.spec.and_then(|s| s.template.spec).and_then(|s| s.volumes).unwrap_or_default();
    assert!(volumes.iter().any(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("sink-auth")), "{volumes:?}");
    let events: Api<Event> = bed.ns.api();
    let shown = serde_json::to_string(&wait_status(&bed.ns, "orders", "a status", Duration::from_secs(5), |_| true).await?)?;
    let all_events = serde_json::to_string(&events.list(&ListParams::default()).await?.items)?;
    for text in [&shown, &all_events, &bed.operator.log_text()] {
        assert!(!text.contains("e2e-t0ken"), "a header value leaked: {text}");
    }
    Ok(())
}

#[tokio::test]
async fn the_readmes_batched_http2_sink_delivers_every_message_in_batches() -> anyhow::Result<()> {
    let bed = Bed::start("e2e-batch", "").await?;
    let receiver = iotsub_e2e::reach::http_receiver().await?;
    let block: serde_json::Value = serde_yaml::from_str(&readme_block("**Batched mode**")?)?;
    let mut sink = block["sink"].clone();
    assert_eq!((sink["http"]["mode"].as_str(), sink["http"]["protocol"].as_str()), (Some("batch"), Some("http2")), "{sink}");
    sink["http"]["url"] = json!(receiver.url);
    let mut manifest = subscription::manifest("orders", &bed.emulator, 1);
    manifest["spec"]["sink"] = sink;
    subscription::apply(&bed.ns, &manifest).await?;
    wait_status(&bed.ns, "orders", "the worker connected", Duration::from_secs(90), all_connected(1)).await?;

    bed.emulator.fault("pause-delivery", "DEFAULT_GROUP").await?;
    let ids = bed.emulator.publish("DEFAULT_GROUP", TOPIC, "{\"kWh\":1}", 50).await?;
    bed.emulator.fault("resume", "DEFAULT_GROUP").await?;
    wait_until("every published messageId accepted by the sink", Duration::from_secs(60), || async {
        (receiver.missing(&ids) == 0).then_some(())
    })
    .await
    .map_err(|e| e.context(format!("{} of {} messageIds never reached the sink", receiver.missing(&ids), ids.len())))?;
    let requests = receiver.requests();
    assert!(requests.iter().all(|r| r.version == "HTTP/2.0"), "{:?}", requests.iter().map(|r| &r.version).collect::<Vec<_>>());
    assert!(
        requests.iter().all(|r| r.headers.get("content-type").map(String::as_str) == Some(iotsub_tests::http_receiver::BATCH_CONTENT_TYPE))
    );
    assert!(requests.len() < ids.len(), "{} POSTs for {} messages: no batch had two", requests.len(), ids.len());
    Ok(())
}
