//! The reconcile loop: observe → desired → apply → status → Events.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use iotsub_crds::{ConsumerGroupSubscription, SecretKeyRef};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Secret};
use kube::{
    Api, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        predicates,
        reflector::{self, ObjectRef, store::Writer},
        watcher::{self, watcher},
    },
};
use tracing::{info, warn};

use crate::{
    apply, autoscale,
    context::{Context, Stores},
    desired, events,
    metrics::ErrorLabels,
    observe::{self, Credentials},
    platform, rollout, status,
};

/// What failed, by stage. Messages name the object, never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying the Deployment: {0}")]
    ApplyDeployment(#[source] kube::Error),
    #[error("writing status: {0}")]
    WriteStatus(#[source] kube::Error),
    #[error("the watch caches of {0} are not filled yet")]
    CachesNotReady(String),
}

/// How long a reconcile waits for the watch caches before it gives up and is retried.
const CACHES_READY_WITHIN: Duration = Duration::from_secs(10);

impl Error {
    /// The `error` label of `iotsub_operator_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::ApplyDeployment(_) => "apply_deployment",
            Error::WriteStatus(_) => "write_status",
            Error::CachesNotReady(_) => "caches_not_ready",
        }
    }
}

/// The writers behind [`Stores`], fed by [`run`]'s watches.
pub struct Writers {
    deployments: Writer<Deployment>,
    pods: Writer<Pod>,
    secrets: Writer<Secret>,
}

pub fn stores() -> (Stores, Writers) {
    let (deployments, deployments_writer) = reflector::store();
    let (pods, pods_writer) = reflector::store();
    let (secrets, secrets_writer) = reflector::store();
    (Stores { deployments, pods, secrets }, Writers { deployments: deployments_writer, pods: pods_writer, secrets: secrets_writer })
}

/// Runs until SIGTERM/SIGINT.
pub async fn run(ctx: Arc<Context>, writers: Writers) {
    let client = ctx.client.clone();
    let ns = ctx.watch_namespace.clone();
    fn api<K>(client: &kube::Client, ns: &Option<String>) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ours = watcher::Config::default().labels(&format!("{}={}", desired::MANAGED_BY_LABEL, crate::context::MANAGER));
    // Status-only changes of a subscription (our own writes) don't trigger a reconcile.
    let (subscriptions, subscriptions_writer) = reflector::store::<ConsumerGroupSubscription>();
    let subscription_stream = watcher(api(&client, &ns), watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(subscriptions_writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let deployment_stream =
        watcher(api::<Deployment>(&client, &ns), ours.clone()).default_backoff().reflect(writers.deployments).applied_objects();
    let secret_stream =
        watcher(api::<Secret>(&client, &ns), watcher::Config::default()).default_backoff().reflect(writers.secrets).applied_objects();
    let pod_cache = watcher(api::<Pod>(&client, &ns), ours).default_backoff().reflect(writers.pods).for_each(|event| async move {
        if let Err(error) = event {
            warn!(%error, "watching the worker pods failed; retrying");
        }
    });
    let pods_task = tokio::spawn(pod_cache);
    let store = subscriptions.clone();
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
    let stores = ctx.stores.clone();
    Controller::for_stream(subscription_stream, subscriptions)
        .owns_stream(deployment_stream)
        .watches_stream(secret_stream, secret_mapper)
        .shutdown_on_signal()
        .run(
            move |cgs, ctx| {
                let stores = stores.clone();
                async move {
                    // The first reconciles must not see empty caches (and create what exists).
                    // Bounded, so a cache that never fills shows up in the log and is retried.
                    if tokio::time::timeout(CACHES_READY_WITHIN, stores.wait_until_ready()).await.is_err() {
                        return Err(Error::CachesNotReady(stores.not_ready().join(", ")));
                    }
                    reconcile(cgs, ctx).await
                }
            },
            error_policy,
            ctx,
        )
        .for_each(|result| async move {
            // Reconcile errors are logged by `error_policy`; a failing watch only shows up here.
            if let Err(error @ kube::runtime::controller::Error::QueueError(_)) = result {
                warn!(%error, "watching failed; retrying with backoff");
            }
        })
        .await;
    pods_task.abort();
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
        ctx.recent_recommendations.lock().expect("lock").remove(&platform::cache_key(cgs));
        return Ok(Action::await_change());
    }
    let now_at = time::OffsetDateTime::now_utc();
    let now = status::rfc3339(now_at);
    let mut observed = observe::observe(ctx, cgs);
    let hash = match &observed.credentials {
        Credentials::Valid { hash, .. } => Some(hash.clone()),
        _ => None,
    };
    let old_hash = observed.deployment.as_ref().and_then(template_hash).cloned();
    let rotated = hash.as_ref().is_some_and(|hash| old_hash.as_ref().is_some_and(|old| old != hash));
    // Pods of an older template still exist: the Deployment is replacing them. (Its status lags
    // behind an apply; the pods' own annotation does not.)
    let replacing = old_hash.as_ref().is_some_and(|current| {
        observed.pods.iter().any(|pod| pod.annotations().get(desired::CREDENTIALS_HASH_ANNOTATION) != Some(current))
    });
    let autoscaling = cgs.spec.autoscaling.as_ref().filter(|a| a.enabled);
    // Without autoscaling the platform is asked only after the apply, so nothing is read yet.
    let (desired_replicas, autoscaling_condition, reading) = match autoscaling {
        None => (desired::static_replicas(cgs), None, None),
        Some(autoscaling) => {
            // The backlog decides the count, so the platform is asked before anything is applied.
            observe::observe_platform(ctx, cgs, &mut observed, &now).await;
            let reading = observe::reading(&observed, &cgs.name_any(), cgs.spec.connection.connections_per_pod);
            let (replicas, condition) = autoscale(ctx, cgs, autoscaling, &observed, reading, rotated || replacing, now_at);
            (replicas, Some(condition), reading)
        }
    };
    let running_pods = observed.pods.iter().filter(|pod| pod.metadata.deletion_timestamp.is_none()).count();
    let view = rollout::View {
        autoscaling: autoscaling.is_some(),
        rotated,
        replacing,
        current: observed.deployment.as_ref().and_then(|d| d.spec.as_ref()?.replicas).unwrap_or(0),
        desired: desired_replicas,
        running_pods,
        terminating_pods: observed.pods.len() - running_pods,
        clients_closing: reading.is_some_and(|r| r.draining > 0),
    };
    let plan = rollout::plan(&view);
    let making_room = plan.making_room(&view);
    let rolled = rotated && !making_room;
    if making_room {
        info!(subscription = %cgs.name_any(), namespace = cgs.namespace().as_deref().unwrap_or(""), replicas = desired_replicas, "new credentials: making room under the client cap before the pods roll");
    }
    let mut created = false;
    if let Some(hash) = if making_room { &old_hash } else { &hash } {
        let wanted = desired::deployment(cgs, desired_replicas, plan.paused, hash, &ctx.worker_image);
        created = observed.deployment.is_none();
        let unchanged = observed.deployment.as_ref().is_some_and(|d| desired::applied_hash(d) == desired::applied_hash(&wanted));
        if !unchanged {
            let applied = apply::deployment(&ctx.client, &wanted).await.map_err(Error::ApplyDeployment)?;
            observed.deployment = Some(applied);
        }
    }
    // With unusable credentials an existing Deployment is left as it is: its pods keep working
    // until the Secret is fixed, and no new pod is started that could only fail.
    if autoscaling.is_none() {
        // Asked after the apply, so a slow OpenAPI never delays the workers.
        observe::observe_platform(ctx, cgs, &mut observed, &now).await;
    }
    let new_status = status::status(cgs, &observed, desired_replicas, autoscaling_condition, &now);
    ctx.metrics.observe_subscription(cgs, &new_status);
    let before = cgs.status.as_ref();
    if before != Some(&new_status) {
        apply::status(&ctx.client, cgs, &new_status).await.map_err(Error::WriteStatus)?;
    }
    let to_publish = events::changes(before, &new_status, created, rolled);
    if !to_publish.is_empty() {
        info!(subscription = %cgs.name_any(), namespace = cgs.namespace().as_deref().unwrap_or(""), events = to_publish.len(), ready = ?new_status.condition("Ready").map(|c| &c.reason), "reconciled with changes");
        events::publish(ctx, cgs, to_publish).await;
    }
    Ok(Action::requeue(requeue_after(cgs, &observed)))
}

/// The autoscaler's decision for this reconcile, remembered for the scale-down window.
fn autoscale(
    ctx: &Context,
    cgs: &ConsumerGroupSubscription,
    autoscaling: &iotsub_crds::Autoscaling,
    observed: &observe::Observed,
    reading: Option<autoscale::Reading>,
    rolling_out: bool,
    now: time::OffsetDateTime,
) -> (i32, status::AutoscalingCondition) {
    let policy = autoscale::Policy::from_spec(&cgs.spec, autoscaling);
    let deployment_spec = observed.deployment.as_ref().and_then(|d| d.spec.as_ref());
    let current = deployment_spec.and_then(|s| s.replicas).unwrap_or(policy.min);
    let last_scale = cgs
        .status
        .as_ref()
        .and_then(|s| s.last_scale_time.as_deref())
        .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok());
    let input = autoscale::Input { policy: &policy, current, reading, rolling_out, last_scale, now };
    let mut recent = ctx.recent_recommendations.lock().expect("lock");
    let recent = recent.entry(platform::cache_key(cgs)).or_default();
    let decision = autoscale::decide(&input, recent);
    if let Some(recommendation) = decision.recommendation {
        recent.record(now, recommendation, policy.stabilization);
    }
    if decision.replicas != current {
        let reading = input.reading.unwrap_or(autoscale::Reading { backlog: -1, others: -1, draining: -1 });
        info!(
            subscription = %cgs.name_any(), namespace = cgs.namespace().as_deref().unwrap_or(""), from = current, to = decision.replicas,
            backlog = reading.backlog, others = reading.others, draining = reading.draining, rolling_out = input.rolling_out, pods = observed.pods.len(),
            outcome = ?decision.outcome, "autoscaler changes the replicas"
        );
    }
    (decision.replicas, autoscale::condition(&input, &decision))
}

/// The poll interval, so status.clients follows the platform; a throttled call retries at a random
/// point within it, so subscriptions sharing an AccessKey spread their calls instead of retrying
/// in step.
fn requeue_after(cgs: &ConsumerGroupSubscription, observed: &observe::Observed) -> Duration {
    let interval = platform::poll_interval(cgs).min(Duration::from_secs(60));
    let throttled = observed
        .platform
        .as_ref()
        .is_some_and(|p| matches!(p.answer, platform::PlatformAnswer::Failed(iotsub_aliyun::client::CallError::Throttled)));
    if throttled {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        Duration::from_millis(500) + interval.mul_f64(f64::from(nanos % 1000) / 1000.0)
    } else {
        interval
    }
}

fn template_hash(deployment: &Deployment) -> Option<&String> {
    deployment.spec.as_ref()?.template.metadata.as_ref()?.annotations.as_ref()?.get(desired::CREDENTIALS_HASH_ANNOTATION)
}

fn error_policy(cgs: Arc<ConsumerGroupSubscription>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(subscription = %cgs.name_any(), namespace = cgs.namespace().as_deref().unwrap_or(""), stage = error.metric_label(), %error, "reconcile failed");
    ctx.metrics.reconcile_errors.get_or_create(&ErrorLabels { error: error.metric_label().into() }).inc();
    Action::requeue(Duration::from_secs(5))
}
