//! A subscription's life with real worker pods against the emulator: create, messages to the log
//! sink, status.clients, `kubectl scale`, Secret rotation, operator restart, deletion.

use std::{collections::BTreeSet, time::Duration};

use iotsub_crds::ConsumerGroupSubscription;
use iotsub_e2e::{
    Cluster, Operator,
    cluster::kubectl,
    subscription::{self, all_connected, emulator_clients, wait_status},
    workspace_root,
};
use iotsub_tests::{Emulator, wait_until};
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::{Event, Pod},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams},
};

const EMULATOR: &str = r#"
[[accounts]]
access_key_id = "demo"
access_key_secret = "demo-secret"

[[accounts]]
access_key_id = "rotated"
access_key_secret = "rotated-secret"

[[instances]]
id = ""
consumer_groups = ["DEFAULT_GROUP"]
"#;

const SELECTOR: &str = "app.kubernetes.io/instance=orders,app.kubernetes.io/name=iotsub-worker";

async fn pod_names(pods: &Api<Pod>) -> BTreeSet<String> {
    let list = pods.list(&ListParams::default().labels(SELECTOR)).await.map(|l| l.items).unwrap_or_default();
    list.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).map(|p| p.name_any()).collect()
}

fn worker_log(ns: &str, pod: &str) -> String {
    std::fs::read_to_string(workspace_root().join(format!("target/localkube/logs/{ns}_{pod}_worker.log"))).unwrap_or_default()
}

#[tokio::test]
async fn subscription_lifecycle_with_real_workers() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let emulator = Emulator::start(EMULATOR).await?;
    let ns = cluster.namespace("e2e-life").await?;
    subscription::put_secrets(&ns, &emulator).await?;
    let mut operator = Operator::start(&cluster.kubeconfig, &["--watch-namespace", &ns.name, "--leader-election", "false"]).await?;
    subscription::apply(&ns, &subscription::manifest("orders", &emulator, 2)).await?;

    // Workers run, connect, and every pod's clientId is listed as connected.
    let status = wait_status(&ns, "orders", "2 workers connected", Duration::from_secs(90), all_connected(2)).await?;
    let pods: Api<Pod> = ns.api();
    let first_pods = pod_names(&pods).await;
    let status_pods: BTreeSet<String> = status.clients.iter().map(|c| c.pod.clone()).collect();
    assert_eq!(status_pods, first_pods, "status.clients names each pod");
    assert!(status.clients.iter().all(|c| c.client_id == c.pod && c.remote.is_some() && c.online_since.is_some()));
    assert_eq!(emulator_clients(&emulator).await?, first_pods.iter().cloned().collect::<Vec<_>>());
    assert_eq!(status.condition("CredentialsValid").unwrap().reason, "AcceptedByPlatform");

    // Messages reach the log sink of the pods.
    let ids = emulator.publish("DEFAULT_GROUP", "/pk/dn/thing/event/property/post", r#"{"Power":"on"}"#, 20).await?;
    wait_until("20 messages in the workers' log sink", Duration::from_secs(30), || async {
        let logs: String = first_pods.iter().map(|p| worker_log(&ns.name, p)).collect();
        ids.iter().all(|id| logs.contains(id.as_str())).then_some(())
    })
    .await?;

    // `kubectl scale` writes spec.replicas through the scale subresource.
    let scaled = std::process::Command::new(kubectl())
        .args(["-n", &ns.name, "scale", "cgs/orders", "--replicas=3"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()?;
    assert!(scaled.status.success(), "kubectl scale: {}", String::from_utf8_lossy(&scaled.stderr));
    let status = wait_status(&ns, "orders", "3 workers connected", Duration::from_secs(60), all_connected(3)).await?;
    assert_eq!((status.desired_replicas, status.replicas), (3, 3));
    assert!(status.last_scale_time.is_some());
    let events: Api<Event> = ns.api();
    let reasons: Vec<String> = events.list(&ListParams::default()).await?.items.into_iter().filter_map(|e| e.reason).collect();
    for reason in ["Created", "Scaled", "AllClientsConnected"] {
        assert!(reasons.iter().any(|r| r == reason), "an Event {reason} among {reasons:?}");
    }

    // Rotating the Secret rolls the pods; the new ones log in with the new key.
    let before_rotation = pod_names(&pods).await;
    let deployments: Api<Deployment> = ns.api();
    let old_hash = template_hash(&deployments.get("orders").await?);
    ns.put_secret(subscription::CREDENTIALS, &[("accessKeyId", "rotated"), ("accessKeySecret", "rotated-secret")]).await?;
    wait_until("the Deployment's credentials hash to change", Duration::from_secs(20), || async {
        let hash = template_hash(&deployments.get("orders").await.ok()?);
        (hash != old_hash).then_some(())
    })
    .await?;
    let status = wait_status(&ns, "orders", "3 rolled workers connected", Duration::from_secs(180), |s| {
        all_connected(3)(s) && s.clients.iter().all(|c| !before_rotation.contains(&c.pod))
    })
    .await?;
    let connected: Vec<String> = status.clients.iter().map(|c| c.client_id.clone()).collect();
    assert_eq!(emulator_clients(&emulator).await?, connected, "only the rolled pods are clients");
    let reasons: Vec<String> = events.list(&ListParams::default()).await?.items.into_iter().filter_map(|e| e.reason).collect();
    assert!(reasons.iter().any(|r| r == "CredentialsRotated"), "{reasons:?}");

    // Restarting the operator mid-way converges without duplicate children.
    operator.process.signal(nix::sys::signal::Signal::SIGKILL)?;
    operator.process.wait_exit(Duration::from_secs(10)).await?;
    subscription::apply(&ns, &subscription::manifest("orders", &emulator, 2)).await?; // spec changes while it is down
    let _operator = Operator::start(&cluster.kubeconfig, &["--watch-namespace", &ns.name, "--leader-election", "false"]).await?;
    wait_status(&ns, "orders", "2 workers after the restart", Duration::from_secs(90), |s| {
        all_connected(2)(s) && s.observed_generation == Some(3)
    })
    .await?;
    let all_deployments = deployments.list(&ListParams::default()).await?.items;
    assert_eq!(all_deployments.len(), 1, "one Deployment");
    let replica_sets: Api<ReplicaSet> = ns.api();
    let live_sets = replica_sets
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0)
        .count();
    assert_eq!(live_sets, 1, "one ReplicaSet with replicas");
    assert_eq!(pod_names(&pods).await.len(), 2);

    // Deleting the subscription removes the workers; their clients disconnect.
    let subscriptions: Api<ConsumerGroupSubscription> = ns.api();
    subscriptions.delete("orders", &DeleteParams::foreground()).await?;
    wait_until("the Deployment and pods to be gone", Duration::from_secs(90), || async {
        let deployments = deployments.list(&ListParams::default()).await.ok()?.items;
        let pods = pods.list(&ListParams::default().labels(SELECTOR)).await.ok()?.items;
        (deployments.is_empty() && pods.is_empty()).then_some(())
    })
    .await?;
    wait_until("the emulator to list no client", Duration::from_secs(30), || async {
        emulator_clients(&emulator).await.ok()?.is_empty().then_some(())
    })
    .await?;
    Ok(())
}

fn template_hash(d: &Deployment) -> Option<String> {
    d.spec.as_ref()?.template.metadata.as_ref()?.annotations.as_ref()?.get("iotsub.dev/credentials-hash").cloned()
}
