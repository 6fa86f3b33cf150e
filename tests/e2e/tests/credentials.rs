//! What only the operator can see becomes a condition with a reason and an Event, not a crash:
//! a missing Secret, a missing key, credentials the platform refuses.

use std::time::Duration;

use iotsub_aliyun::redact::Redactor;
use iotsub_e2e::{
    Bed,
    subscription::{self, all_connected, wait_status},
};
use iotsub_tests::wait_until;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Event};
use kube::{Api, api::ListParams};

fn condition_is(type_: &'static str, reason: &'static str) -> impl Fn(&iotsub_crds::ConsumerGroupSubscriptionStatus) -> bool {
    move |s| s.condition(type_).is_some_and(|c| c.reason == reason)
}

#[tokio::test]
async fn missing_secret_or_key_is_a_condition_not_a_crash() -> anyhow::Result<()> {
    let mut bed = Bed::without_credentials("e2e-creds", "").await?;
    let ns = &bed.ns;
    subscription::apply(ns, &subscription::manifest("orders", &bed.emulator, 1)).await?;

    // No Secret: CredentialsValid=False/SecretNotFound, Ready=False, a Warning Event, no Deployment.
    let status =
        wait_status(ns, "orders", "SecretNotFound", Duration::from_secs(30), condition_is("CredentialsValid", "SecretNotFound")).await?;
    let credentials = status.condition("CredentialsValid").unwrap();
    assert_eq!(credentials.status, "False");
    assert!(credentials.message.contains(subscription::CREDENTIALS), "{}", credentials.message);
    assert_eq!(status.condition("Ready").unwrap().reason, "CredentialsInvalid");
    let events: Api<Event> = ns.api();
    wait_until("a Warning Event SecretNotFound", Duration::from_secs(20), || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        list.iter().any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("SecretNotFound")).then_some(())
    })
    .await?;
    let deployments: Api<Deployment> = ns.api();
    assert!(deployments.get_opt("orders").await?.is_none(), "no Deployment whose pods could only fail");

    // A Secret without the access key secret: SecretKeyMissing, naming the key and not a value.
    ns.put_secret(subscription::CREDENTIALS, &[("accessKeyId", "demo")]).await?;
    let status =
        wait_status(ns, "orders", "SecretKeyMissing", Duration::from_secs(30), condition_is("CredentialsValid", "SecretKeyMissing"))
            .await?;
    assert!(status.condition("CredentialsValid").unwrap().message.contains("accessKeySecret"));

    // Credentials the platform refuses: RefusedByPlatform, and the secret appears nowhere.
    ns.put_secret(subscription::CREDENTIALS, &[("accessKeyId", "demo"), ("accessKeySecret", "wrong-secret-value")]).await?;
    let status =
        wait_status(ns, "orders", "RefusedByPlatform", Duration::from_secs(30), condition_is("CredentialsValid", "RefusedByPlatform"))
            .await?;
    let shown = serde_json::to_string(&status)?;
    let all_events = serde_json::to_string(&events.list(&ListParams::default()).await?.items)?;
    for text in [&shown, &all_events, &bed.operator.log_text()] {
        assert!(!text.contains("wrong-secret-value") && !text.contains("demo-secret"), "a secret leaked: {text}");
    }

    // The operator never crashed; fixing the Secret brings the worker up.
    assert!(bed.operator.process.child.try_wait()?.is_none(), "the operator is still running");
    let ns = &bed.ns;
    ns.put_secret(subscription::CREDENTIALS, &[("accessKeyId", "demo"), ("accessKeySecret", "demo-secret")]).await?;
    wait_status(ns, "orders", "the worker connected", Duration::from_secs(90), all_connected(1)).await?;
    Ok(())
}

/// `+`, `/` and `=` make the token's raw, percent-encoded and doubly percent-encoded forms differ.
const STS_TOKEN: &str = "CAIS+e2e/StsToken=0123456789abcdef";
const WRONG_SECRET: &str = "sts-wrong-secret-value";

#[tokio::test]
async fn a_refused_sts_signature_leaves_no_trace_of_the_token_in_status_events_log_or_metrics() -> anyhow::Result<()> {
    let bed = Bed::without_credentials("e2e-sts-leak", "").await?;
    // Our own operator, logging its debug lines too: more text that must hold no secret.
    let args = iotsub_e2e::bed::operator_args(&bed.ns);
    let operator = iotsub_e2e::Operator::start_logging(&bed.cluster.kubeconfig, &args, "info,iotsub_operator=debug").await?;
    let mut bed = bed;
    bed.operator = operator;
    let ns = &bed.ns;
    ns.put_secret(subscription::CREDENTIALS, &[("accessKeyId", "demo"), ("accessKeySecret", WRONG_SECRET), ("securityToken", STS_TOKEN)])
        .await?;
    let mut manifest = subscription::manifest("orders", &bed.emulator, 1);
    manifest["spec"]["credentials"]["authMode"] = serde_json::json!("ststoken");
    subscription::apply(ns, &manifest).await?;

    // The emulated gateway refuses the signature and, like the real one, answers with its string
    // to sign: the token inside, percent-encoded twice.
    let status =
        wait_status(ns, "orders", "RefusedByPlatform", Duration::from_secs(30), condition_is("CredentialsValid", "RefusedByPlatform"))
            .await?;
    let calls = bed.emulator.openapi_calls_typed().await?;
    assert!(calls.iter().any(|c| c.code == "SignatureDoesNotMatch"), "{calls:?}");
    let backlog = status.condition("BacklogAvailable").expect("BacklogAvailable");
    assert!(backlog.message.contains("SignatureDoesNotMatch") && backlog.message.contains("RequestId"), "{}", backlog.message);

    let events: Api<Event> = ns.api();
    wait_until("a Warning Event RefusedByPlatform", Duration::from_secs(20), || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        list.iter().any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("RefusedByPlatform")).then_some(())
    })
    .await?;
    let secrets = Redactor::for_values([STS_TOKEN, WRONG_SECRET]);
    let texts = [
        ("status", serde_json::to_string(&status)?),
        ("Events", serde_json::to_string(&events.list(&ListParams::default()).await?.items)?),
        ("the operator's log", bed.operator.log_text()),
        ("/metrics", bed.operator.get("/metrics").await?.1),
    ];
    for (where_, text) in &texts {
        assert!(!text.is_empty(), "{where_} is empty: nothing was checked");
        assert!(!secrets.finds_any(text), "the token or secret (raw, percent-encoded or base64) in {where_}: {text}");
    }
    Ok(())
}
