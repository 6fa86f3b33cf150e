//! Subscriptions for tests: pointing at a local emulator, and waits on their status.

use std::collections::BTreeSet;
use std::time::Duration;

use iotsub_crds::{ConsumerGroupSubscription, ConsumerGroupSubscriptionStatus};
use iotsub_tests::{Emulator, wait_until};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};

use crate::TestNamespace;

pub const CREDENTIALS: &str = "aliyun-credentials";
pub const CA_SECRET: &str = "emulator-ca";

/// A subscription of `DEFAULT_GROUP` at `emulator`, polling its OpenAPI every 2 s.
pub fn manifest(name: &str, emulator: &Emulator, replicas: i32) -> Value {
    json!({
        "apiVersion": "iotsub.dev/v1alpha1",
        "kind": "ConsumerGroupSubscription",
        "metadata": {"name": name},
        "spec": {
            "endpoint": {"host": emulator.amqp_addr.ip().to_string(), "port": emulator.amqp_addr.port(), "caSecretRef": {"name": CA_SECRET, "key": "ca.pem"}},
            "consumerGroupId": "DEFAULT_GROUP",
            "regionId": "cn-shanghai",
            "credentials": {"secretName": CREDENTIALS},
            "replicas": replicas,
            "autoscaling": {"enabled": false, "pollIntervalSeconds": 2, "apiEndpoint": emulator.api_url("")},
        }
    })
}

/// The emulator's CA and the `demo` account's keys as Secrets.
pub async fn put_secrets(ns: &TestNamespace, emulator: &Emulator) -> anyhow::Result<()> {
    let ca = std::fs::read_to_string(&emulator.ca_pem)?;
    ns.put_secret(CA_SECRET, &[("ca.pem", &ca)]).await?;
    ns.put_secret(CREDENTIALS, &[("accessKeyId", "demo"), ("accessKeySecret", "demo-secret")]).await
}

pub async fn apply(ns: &TestNamespace, manifest: &Value) -> anyhow::Result<ConsumerGroupSubscription> {
    let api: Api<ConsumerGroupSubscription> = ns.api();
    let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
    Ok(api.patch(name, &PatchParams::apply("iotsub-e2e").force(), &Patch::Apply(manifest)).await?)
}

/// Waits until the subscription's status satisfies `check`; the error shows the last status.
pub async fn wait_status(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    deadline: Duration,
    check: impl Fn(&ConsumerGroupSubscriptionStatus) -> bool,
) -> anyhow::Result<ConsumerGroupSubscriptionStatus> {
    let api: Api<ConsumerGroupSubscription> = ns.api();
    let result = wait_until(what, deadline, || async {
        let status = api.get(name).await.ok()?.status?;
        check(&status).then_some(status)
    })
    .await;
    match result {
        Ok(status) => Ok(status),
        Err(error) => {
            let last = api.get(name).await.ok().and_then(|c| c.status);
            Err(error.context(format!("last status: {}", serde_json::to_string_pretty(&last).unwrap_or_default())))
        }
    }
}

/// `Ready=True/AllClientsConnected` with exactly `replicas` of our clients, all connected.
pub fn all_connected(replicas: usize) -> impl Fn(&ConsumerGroupSubscriptionStatus) -> bool {
    move |s| {
        let ours: Vec<_> = s.clients.iter().filter(|c| !c.pod.is_empty()).collect();
        s.condition("Ready").is_some_and(|c| c.reason == "AllClientsConnected")
            && ours.len() == replicas
            && ours.iter().all(|c| c.connected)
            && s.ready_replicas as usize == replicas
    }
}

/// The clientIds the emulator lists as connected to `DEFAULT_GROUP`.
pub async fn emulator_clients(emulator: &Emulator) -> anyhow::Result<Vec<String>> {
    let group = emulator.group("DEFAULT_GROUP").await?;
    let mut ids: Vec<String> =
        group["clients"].as_array().into_iter().flatten().filter_map(|c| c["clientId"].as_str().map(str::to_owned)).collect();
    ids.sort();
    Ok(ids)
}

/// The label selector of the subscription `name`'s worker pods.
pub fn selector(name: &str) -> String {
    format!("app.kubernetes.io/instance={name},app.kubernetes.io/name=iotsub-worker")
}

/// The names of the subscription `name`'s worker pods that are not shutting down.
pub async fn pod_names(ns: &TestNamespace, name: &str) -> BTreeSet<String> {
    let pods: Api<Pod> = ns.api();
    let list = pods.list(&ListParams::default().labels(&selector(name))).await.map(|l| l.items).unwrap_or_default();
    list.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).map(kube::ResourceExt::name_any).collect()
}
