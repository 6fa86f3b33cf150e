//! The reconcile loop: observe → desired → apply → status → Events.

use std::{sync::Arc, time::{Duration, Instant}};

use futures::StreamExt;
use iotsub_crds::{ConsumerGroupSubscription, SecretKeyRef};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Secret};
use kube::{
    Api, ResourceExt,
    runtime::{Controller, controller::Action, reflector::ObjectRef, watcher},
};
use tracing::{info, warn};

use crate::{apply, context::Context, desired, events, metrics::ErrorLabels, observe::{self, Credentials}, platform, status};

/// What failed, by stage. Messages name the object, never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("observe: {0}")]
    Observe(#[from] observe::ObserveError),
    #[error("applying the Deployment: {0}")]
    ApplyDeployment(#[source] kube::Error),
    #[error("writing status: {0}")]
    WriteStatus(#[source] kube::Error),
}

impl Error {
    /// The `error` label of `iotsub_operator_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Observe(_) => "observe",
            Error::ApplyDeployment(_) => "apply_deployment",
            Error::WriteStatus(_) => "write_status",
        }
    }
}

/// Runs until SIGTERM/SIGINT.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let (subscriptions, deployments, secrets): (Api<ConsumerGroupSubscription>, Api<Deployment>, Api<Secret>) =
        match &ctx.watch_namespace {
            Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns), Api::namespaced(client, ns)),
            None => (Api::all(client.clone()), Api::all(client.clone()), Api::all(client)),
        };
    let controller = Controller::new(subscriptions, watcher::Config::default().any_semantic());
    let store = controller.store();
    // A Secret change reconciles every subscription that reads it (credentials or CA).
    let secret_mapper = move |secret: Secret| {
        let ns = secret.namespace();
        let name = secret.name_any();
        store
            .state()
            .into_iter()
            .filter(|cgs| cgs.namespace() == ns && reads_secret(cgs, &name))
            .map(|cgs| ObjectRef::from_obj(&*cgs))
            .collect::<Vec<_>>()
    };
    info!("controller running");
    controller
        .owns(deployments, watcher::Config::default().labels(&format!("{}={}", desired::MANAGED_BY_LABEL, crate::context::MANAGER)))
        .watches(secrets, watcher::Config::default(), secret_mapper)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    info!("controller stopped");
}

fn reads_secret(cgs: &ConsumerGroupSubscription, secret: &str) -> bool {
    cgs.spec.credentials.secret_name == secret
        || cgs.spec.endpoint.ca_secret_ref.as_ref().is_some_and(|SecretKeyRef { name, .. }| name == secret)
}

async fn reconcile(cgs: Arc<ConsumerGroupSubscription>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_stages(&cgs, &ctx).await;
    ctx.metrics.reconcile_seconds.observe(started.elapsed().as_secs_f64());
    if let Err(error) = &result {
        events::error(&ctx, &cgs, error.metric_label(), error.to_string()).await;
    }
    result
}

async fn reconcile_stages(cgs: &ConsumerGroupSubscription, ctx: &Context) -> Result<Action, Error> {
    if cgs.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the Deployment.
        platform::forget(ctx, cgs);
        return Ok(Action::await_change());
    }
    let now = status::rfc3339(time::OffsetDateTime::now_utc());
    let mut observed = observe::observe(ctx, cgs, &now).await?;
    let desired_replicas = desired::replicas(cgs);
    let mut created = false;
    let mut rotated = false;
    if let Credentials::Valid { hash, .. } = &observed.credentials {
        let wanted = desired::deployment(cgs, hash, &ctx.worker_image);
        created = observed.deployment.is_none();
        rotated = observed.deployment.as_ref().is_some_and(|d| template_hash(d).is_some_and(|old| old != hash));
        let applied = apply::deployment(&ctx.client, &wanted).await.map_err(Error::ApplyDeployment)?;
        observed.deployment = Some(applied);
    }
    // With unusable credentials an existing Deployment is left as it is: its pods keep working
    // until the Secret is fixed, and no new pod is started that could only fail.
    let new_status = status::status(cgs, &observed, desired_replicas, &now);
    let before = cgs.status.as_ref();
    if before != Some(&new_status) {
        apply::status(&ctx.client, cgs, &new_status).await.map_err(Error::WriteStatus)?;
    }
    let to_publish = events::changes(before, &new_status, created, rotated);
    if !to_publish.is_empty() {
        info!(subscription = %cgs.name_any(), namespace = cgs.namespace().as_deref().unwrap_or(""), events = to_publish.len(), ready = ?new_status.condition("Ready").map(|c| &c.reason), "reconciled with changes");
        events::publish(ctx, cgs, to_publish).await;
    }
    Ok(Action::requeue(requeue_after(cgs, &observed)))
}

/// Soon while throttled; else the poll interval, so status.clients follows the platform.
fn requeue_after(cgs: &ConsumerGroupSubscription, observed: &observe::Observed) -> Duration {
    let throttled = observed.platform.as_ref().is_some_and(|p| {
        matches!(p.answer, platform::PlatformAnswer::Failed(iotsub_aliyun::client::CallError::Throttled))
    });
    if throttled { Duration::from_secs(2) } else { platform::poll_interval(cgs).min(Duration::from_secs(60)) }
}

fn template_hash(deployment: &Deployment) -> Option<&String> {
    deployment.spec.as_ref()?.template.metadata.as_ref()?.annotations.as_ref()?.get(desired::CREDENTIALS_HASH_ANNOTATION)
}

fn error_policy(cgs: Arc<ConsumerGroupSubscription>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(subscription = %cgs.name_any(), namespace = cgs.namespace().as_deref().unwrap_or(""), stage = error.metric_label(), %error, "reconcile failed");
    ctx.metrics.reconcile_errors.get_or_create(&ErrorLabels { error: error.metric_label().into() }).inc();
    Action::requeue(Duration::from_secs(5))
}
