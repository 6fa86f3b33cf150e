//! Level-triggered: a hand edit of a field the operator applies to the worker Deployment (image,
//! env, resources, replicas, pod template labels, the pause) is undone within one reconcile of the
//! Deployment's watch event; another manager's fields stay; a settled subscription is not
//! applied again. The workers' PodDisruptionBudget likewise comes back when deleted or edited.

use std::time::Duration;

use iotsub_e2e::{
    Bed,
    bed::emulator_config,
    holds_for,
    subscription::{self, all_connected, wait_status},
};
use iotsub_tests::wait_until;
use k8s_openapi::{
    api::{apps::v1::Deployment, policy::v1::PodDisruptionBudget},
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::{Value, json};

/// The field an edit touches, read from the Deployment as JSON.
fn read(deployment: &Deployment, pointer: &str) -> Value {
    serde_json::to_value(deployment).ok().and_then(|v| v.pointer(pointer).cloned()).unwrap_or(Value::Null)
}

fn container(patch: &Value) -> Value {
    json!({"spec": {"template": {"spec": {"containers": [patch]}}}})
}

#[tokio::test]
async fn hand_edits_of_owned_fields_are_undone_and_other_managers_fields_stay() -> anyhow::Result<()> {
    let bed = Bed::start("e2e-level", &emulator_config("")).await?;
    let mut manifest = subscription::manifest("orders", &bed.emulator, 1);
    manifest["spec"]["worker"] = json!({"resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}}});
    subscription::apply(&bed.ns, &manifest).await?;
    wait_status(&bed.ns, "orders", "the worker connected", Duration::from_secs(90), all_connected(1)).await?;
    let deployments: Api<Deployment> = bed.ns.api();

    // Settled: the Deployment in the cluster (with the API server's defaults) holds what the
    // operator applies, so reconciles (every 2 s here) apply nothing.
    let applies = bed.operator.metric("iotsub_operator_deployment_applies_total").await?;
    let reconciles = bed.operator.metric("iotsub_operator_reconciles_total").await?;
    holds_for("no apply while settled", Duration::from_secs(6), || async {
        let now = bed.operator.metric("iotsub_operator_deployment_applies_total").await?;
        anyhow::ensure!(now == applies, "applied again with nothing changed ({applies} → {now})");
        Ok(())
    })
    .await
    .map_err(|e| {
        let undone: Vec<String> = bed.operator.log_text().lines().filter(|l| l.contains("undoing")).map(str::to_owned).collect();
        e.context(undone.join("\n"))
    })?;
    assert!(bed.operator.metric("iotsub_operator_reconciles_total").await? >= reconciles + 2.0, "the operator kept reconciling");

    // Another manager's annotation: not the operator's field, so it stays through every undo below.
    let theirs = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "orders", "annotations": {"team.example/owner": "ops"}}});
    deployments.patch("orders", &PatchParams::apply("team-tooling"), &Patch::Apply(&theirs)).await?;

    // name, a strategic-merge patch as `kubectl edit`/`set`/`scale` would send, the field it changes
    let edits = [
        ("image", container(&json!({"name": "worker", "image": "evil:latest"})), "/spec/template/spec/containers/0/image"),
        (
            "env (kubectl set env)",
            container(&json!({"name": "worker", "env": [{"name": "IOTSUB_CREDIT", "value": "7"}]})),
            "/spec/template/spec/containers/0/env",
        ),
        (
            "resources",
            container(&json!({"name": "worker", "resources": {"limits": {"memory": "1Gi"}}})),
            "/spec/template/spec/containers/0/resources",
        ),
        ("replicas (not autoscaled)", json!({"spec": {"replicas": 3}}), "/spec/replicas"),
        (
            "a pod template label",
            json!({"spec": {"template": {"metadata": {"labels": {"app.kubernetes.io/managed-by": "someone"}}}}}),
            "/spec/template/metadata/labels",
        ),
        ("the pause (kubectl rollout pause)", json!({"spec": {"paused": true}}), "/spec/paused"),
    ];
    for (what, patch, pointer) in edits {
        let before = read(&deployments.get("orders").await?, pointer);
        let edited = deployments
            .patch("orders", &PatchParams { field_manager: Some("kubectl-edit".into()), ..Default::default() }, &Patch::Strategic(&patch))
            .await?;
        assert_ne!(read(&edited, pointer), before, "{what}: the edit took");
        let restored = wait_until(&format!("{what} undone"), Duration::from_secs(10), || async {
            let now = deployments.get("orders").await.ok()?;
            (read(&now, pointer) == before).then_some(now)
        })
        .await
        .map_err(|e| e.context(bed.operator.log_text()))?;
        let annotations = restored.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations.get("team.example/owner").map(String::as_str),
            Some("ops"),
            "{what}: another manager's annotation was removed"
        );
    }

    // The workers' PodDisruptionBudget: deleted or edited by hand, it comes back.
    let budgets: Api<PodDisruptionBudget> = bed.ns.api();
    let deleted = budgets.get("orders").await?.metadata.uid;
    budgets.delete("orders", &DeleteParams::default()).await?;
    wait_until("the deleted budget recreated", Duration::from_secs(10), || async {
        budgets.get_opt("orders").await.ok()?.filter(|b| b.metadata.uid != deleted)
    })
    .await
    .map_err(|e| e.context(bed.operator.log_text()))?;
    let edit = json!({"spec": {"maxUnavailable": 5}});
    budgets
        .patch("orders", &PatchParams { field_manager: Some("kubectl-edit".into()), ..Default::default() }, &Patch::Merge(&edit))
        .await?;
    wait_until("the budget's maxUnavailable undone", Duration::from_secs(10), || async {
        let budget = budgets.get("orders").await.ok()?;
        (budget.spec?.max_unavailable == Some(IntOrString::Int(1))).then_some(())
    })
    .await?;
    Ok(())
}
