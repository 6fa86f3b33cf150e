//! A subscription's life with real worker pods against the emulator, one chapter per test:
//! workers connect and consume, `kubectl scale`, Secret rotation, operator restart, deletion.

use std::{collections::BTreeSet, time::Duration};

use iotsub_crds::ConsumerGroupSubscription;
use iotsub_e2e::{
    Bed,
    bed::emulator_config,
    subscription::{self, all_connected, emulator_clients, pod_names, selector, wait_status},
};
use iotsub_tests::wait_until;
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::{Event, Pod},
    policy::v1::PodDisruptionBudget,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{
    Api,
    api::{DeleteParams, ListParams},
};

async fn event_reasons(bed: &Bed) -> anyhow::Result<Vec<String>> {
    let events: Api<Event> = bed.ns.api();
    Ok(events.list(&ListParams::default()).await?.items.into_iter().filter_map(|e| e.reason).collect())
}

#[tokio::test]
async fn workers_connect_as_their_pods_and_messages_reach_the_log_sink() -> anyhow::Result<()> {
    let bed = Bed::start("e2e-life", &emulator_config("")).await?;
    let status = bed.subscribe("orders", 2).await?;
    let first_pods = pod_names(&bed.ns, "orders").await;
    let status_pods: BTreeSet<String> = status.clients.iter().map(|c| c.pod.clone()).collect();
    assert_eq!(status_pods, first_pods, "status.clients names each pod");
    assert!(status.clients.iter().all(|c| c.client_id == c.pod && c.remote.is_some() && c.online_since.is_some()));
    assert_eq!(emulator_clients(&bed.emulator).await?, first_pods.iter().cloned().collect::<Vec<_>>());
    assert_eq!(status.condition("CredentialsValid").unwrap().reason, "AcceptedByPlatform");

    let ids = bed.emulator.publish("DEFAULT_GROUP", "/pk/dn/thing/event/property/post", r#"{"Power":"on"}"#, 20).await?;
    wait_until("20 messages in the workers' log sink", Duration::from_secs(30), || async {
        let mut logs = String::new();
        for pod in &first_pods {
            logs += &bed.ns.container_log(pod, "worker").await;
        }
        ids.iter().all(|id| logs.contains(id.as_str())).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn kubectl_scale_writes_the_replicas_through_the_scale_subresource() -> anyhow::Result<()> {
    let bed = Bed::start("e2e-scale-sub", &emulator_config("")).await?;
    bed.subscribe("orders", 2).await?;
    bed.kubectl(&["scale", "cgs/orders", "--replicas=3"])?;
    let status = wait_status(&bed.ns, "orders", "3 workers connected", Duration::from_secs(60), all_connected(3)).await?;
    assert_eq!((status.desired_replicas, status.replicas), (3, 3));
    assert!(status.last_scale_time.is_some());
    let reasons = event_reasons(&bed).await?;
    for reason in ["Created", "Scaled", "AllClientsConnected"] {
        assert!(reasons.iter().any(|r| r == reason), "an Event {reason} among {reasons:?}");
    }
    Ok(())
}

/// The worker pods' UIDs, sorted.
async fn pod_uids(bed: &Bed, name: &str) -> anyhow::Result<Vec<String>> {
    let pods: Api<Pod> = bed.ns.api();
    let mut uids: Vec<String> =
        pods.list(&ListParams::default().labels(&selector(name))).await?.items.into_iter().filter_map(|p| p.metadata.uid).collect();
    uids.sort();
    Ok(uids)
}

/// The AccessKey ID each client of `DEFAULT_GROUP` logged in with.
async fn login_keys(bed: &Bed) -> anyhow::Result<Vec<String>> {
    let group = bed.emulator.group("DEFAULT_GROUP").await?;
    Ok(group["clients"].as_array().into_iter().flatten().filter_map(|c| c["accessKeyId"].as_str().map(str::to_owned)).collect())
}

#[tokio::test]
async fn a_rotated_secret_reaches_the_running_pods_without_a_rollout() -> anyhow::Result<()> {
    let bed = Bed::start("e2e-rotate", &emulator_config("")).await?;
    // A small client cap gives each pod a reconnect budget for the drops below (90/min shared).
    let mut manifest = subscription::manifest("orders", &bed.emulator, 2);
    manifest["spec"]["autoscaling"]["clientCap"] = 4.into();
    subscription::apply(&bed.ns, &manifest).await?;
    wait_status(&bed.ns, "orders", "2 workers connected", Duration::from_secs(90), all_connected(2)).await?;
    assert_eq!(login_keys(&bed).await?, ["demo", "demo"]);
    let uids = pod_uids(&bed, "orders").await?;
    let deployments: Api<Deployment> = bed.ns.api();
    let generation = deployments.get("orders").await?.metadata.generation;

    bed.ns.put_secret(subscription::CREDENTIALS, &[("accessKeyId", "rotated"), ("accessKeySecret", "rotated-secret")]).await?;
    // The node updates the mounted Secret in place; each connection uses the key it finds at its
    // next attempt. Dropped every 10 s until every client logged in again with the new key.
    let last_drop = std::cell::Cell::new(std::time::Instant::now());
    wait_until("both clients logged in with the rotated key", Duration::from_secs(150), || async {
        let keys = login_keys(&bed).await.ok()?;
        if keys.len() == 2 && keys.iter().all(|k| k == "rotated") {
            return Some(());
        }
        if last_drop.get().elapsed() > Duration::from_secs(10) {
            bed.emulator.inject("drop-connections", "DEFAULT_GROUP").await.ok()?;
            last_drop.set(std::time::Instant::now());
        }
        None
    })
    .await?;
    assert_eq!(pod_uids(&bed, "orders").await?, uids, "the same pods: no rollout");
    assert_eq!(deployments.get("orders").await?.metadata.generation, generation, "the Deployment was not changed");
    let replica_sets: Api<ReplicaSet> = bed.ns.api();
    assert_eq!(replica_sets.list(&ListParams::default()).await?.items.len(), 1, "one ReplicaSet");
    let status = wait_status(&bed.ns, "orders", "2 workers connected", Duration::from_secs(60), all_connected(2)).await?;
    assert_eq!(status.condition("CredentialsValid").unwrap().reason, "AcceptedByPlatform");
    let reasons = event_reasons(&bed).await?;
    assert!(!reasons.iter().any(|r| r == "PodTemplateChanged"), "{reasons:?}");
    Ok(())
}

#[tokio::test]
async fn an_operator_restarted_mid_way_converges_without_duplicate_children() -> anyhow::Result<()> {
    let mut bed = Bed::start("e2e-restart", &emulator_config("")).await?;
    bed.subscribe("orders", 3).await?;
    bed.kill_operator().await?;
    subscription::apply(&bed.ns, &subscription::manifest("orders", &bed.emulator, 2)).await?; // the spec changes while it is down
    bed.restart_operator().await?;
    wait_status(&bed.ns, "orders", "2 workers after the restart", Duration::from_secs(90), |s| {
        all_connected(2)(s) && s.observed_generation == Some(2)
    })
    .await?;
    let deployments: Api<Deployment> = bed.ns.api();
    assert_eq!(deployments.list(&ListParams::default()).await?.items.len(), 1, "one Deployment");
    let replica_sets: Api<ReplicaSet> = bed.ns.api();
    let live_sets = replica_sets
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0)
        .count();
    assert_eq!(live_sets, 1, "one ReplicaSet with replicas");
    assert_eq!(pod_names(&bed.ns, "orders").await.len(), 2);
    Ok(())
}

#[tokio::test]
async fn deleting_the_subscription_removes_the_workers_their_disruption_budget_and_their_clients() -> anyhow::Result<()> {
    let bed = Bed::start("e2e-delete", &emulator_config("")).await?;
    bed.subscribe("orders", 2).await?;

    // While it lives, a drain may take one of its workers at a time: the disruption controller
    // counts both pods under the budget and allows one eviction.
    let budgets: Api<PodDisruptionBudget> = bed.ns.api();
    let budget = budgets.get("orders").await?;
    let spec = budget.spec.clone().expect("a spec");
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    let owner = budget.metadata.owner_references.unwrap_or_default();
    assert_eq!(owner.iter().map(|o| (o.kind.as_str(), o.name.as_str())).collect::<Vec<_>>(), [("ConsumerGroupSubscription", "orders")]);
    wait_until("the budget to count 2 pods and allow 1 disruption", Duration::from_secs(30), || async {
        let status = budgets.get("orders").await.ok()?.status?;
        (status.expected_pods == Some(2) && status.current_healthy == Some(2) && status.disruptions_allowed == Some(1)).then_some(())
    })
    .await?;
    let deployments: Api<Deployment> = bed.ns.api();
    let template = deployments.get("orders").await?.spec.and_then(|s| s.template.spec).expect("a pod template");
    let spread = template.topology_spread_constraints.unwrap_or_default();
    assert_eq!(
        spread.iter().map(|c| (c.topology_key.as_str(), c.when_unsatisfiable.as_str())).collect::<Vec<_>>(),
        [("kubernetes.io/hostname", "ScheduleAnyway")]
    );

    let subscriptions: Api<ConsumerGroupSubscription> = bed.ns.api();
    subscriptions.delete("orders", &DeleteParams::foreground()).await?;
    let pods: Api<Pod> = bed.ns.api();
    wait_until("the Deployment, the budget and the pods to be gone", Duration::from_secs(90), || async {
        let deployments = deployments.list(&ListParams::default()).await.ok()?.items;
        let budgets = budgets.list(&ListParams::default()).await.ok()?.items;
        let pods = pods.list(&ListParams::default().labels(&selector("orders"))).await.ok()?.items;
        (deployments.is_empty() && budgets.is_empty() && pods.is_empty()).then_some(())
    })
    .await?;
    wait_until("the emulator to list no client", Duration::from_secs(30), || async {
        emulator_clients(&bed.emulator).await.ok()?.is_empty().then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_hand_edit_of_the_deployment_is_undone() -> anyhow::Result<()> {
    let bed = Bed::start("e2e-hand", &emulator_config("")).await?;
    bed.subscribe("orders", 2).await?;
    bed.kubectl(&["scale", "deployment/orders", "--replicas=4"])?;
    let deployments: Api<Deployment> = bed.ns.api();
    wait_until("the operator to put the Deployment back to 2 replicas", Duration::from_secs(20), || async {
        let replicas = deployments.get("orders").await.ok()?.spec?.replicas;
        (replicas == Some(2)).then_some(())
    })
    .await?;
    wait_status(&bed.ns, "orders", "2 workers connected", Duration::from_secs(60), all_connected(2)).await?;
    Ok(())
}
