//! The controller: the watches that feed the caches and trigger reconciles ([`crate::reconcile`]).

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use iotsub_crds::{ConsumerGroupSubscription, SecretKeyRef};
use iotsub_operator_core::names;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Secret},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt, predicates,
        reflector::{self, ObjectRef, store::Writer},
        watcher::{self, watcher},
    },
};
use tracing::{info, warn};

use crate::{
    context::{Context, Stores},
    reconcile::{Error, error_policy, reconcile},
    secrets,
};

/// How long a reconcile waits for the watch caches before it gives up and is retried.
const CACHES_READY_WITHIN: Duration = Duration::from_secs(10);

/// The writers behind [`Stores`], fed by [`run`]'s watches.
pub struct Writers {
    pub(crate) deployments: Writer<Deployment>,
    pub(crate) budgets: Writer<PodDisruptionBudget>,
    pub(crate) pods: Writer<Pod>,
    pub(crate) secrets: Writer<PartialObjectMeta<Secret>>,
}

pub fn stores() -> (Stores, Writers) {
    let (deployments, deployments_writer) = reflector::store();
    let (budgets, budgets_writer) = reflector::store();
    let (pods, pods_writer) = reflector::store();
    let (secrets, secrets_writer) = reflector::store();
    let writers = Writers { deployments: deployments_writer, budgets: budgets_writer, pods: pods_writer, secrets: secrets_writer };
    (Stores::new(deployments, budgets, pods, secrets), writers)
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
    let ours = watcher::Config::default().labels(&names::managed_selector());
    // Status-only changes of a subscription (our own writes) don't trigger a reconcile.
    let (subscriptions, subscriptions_writer) = reflector::store::<ConsumerGroupSubscription>();
    let subscription_stream = watcher(api(&client, &ns), watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(subscriptions_writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let deployment_stream =
        watcher(api::<Deployment>(&client, &ns), ours.clone()).default_backoff().reflect(writers.deployments).applied_objects();
    // Secrets: metadata only (crate::secrets); a reconcile fetches the ones it references.
    let secret_stream = watcher(api::<PartialObjectMeta<Secret>>(&client, &ns), watcher::Config::default().page_size(100))
        .default_backoff()
        .modify(secrets::strip)
        .reflect(writers.secrets)
        .applied_objects();
    // A budget deleted or edited by hand is a change to undo, like the Deployment's.
    let budget_stream =
        watcher(api::<PodDisruptionBudget>(&client, &ns), ours.clone()).default_backoff().reflect(writers.budgets).applied_objects();
    let pod_cache = watcher(api::<Pod>(&client, &ns), ours).default_backoff().reflect(writers.pods).for_each(|event| async move {
        if let Err(error) = event {
            warn!(%error, "watching the worker pods failed; retrying");
        }
    });
    let pods_task = tokio::spawn(pod_cache);
    let store = subscriptions.clone();
    // A Secret change reconciles every subscription that reads it (credentials, CA, sink headers).
    let secret_mapper = move |secret: PartialObjectMeta<Secret>| {
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
    ctx.health.leading(subscriptions.clone());
    // Leading shows (metric) once the caches are filled: before that, nothing is reconciled.
    let filled = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            ctx.stores.wait_until_ready().await;
            ctx.health.caches_filled();
            ctx.metrics.leader.set(1);
            info!("watch caches filled: reconciling");
        })
    };
    let stores = ctx.stores.clone();
    let health = ctx.health.clone();
    Controller::for_stream(subscription_stream, subscriptions)
        .owns_stream(deployment_stream)
        .owns_stream(budget_stream)
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
        .for_each(|result| {
            let health = health.clone();
            async move {
                // Reconcile errors are logged by `error_policy`; a failing watch only shows up here.
                match result {
                    Err(error @ kube::runtime::controller::Error::QueueError(_)) => warn!(%error, "watching failed; retrying with backoff"),
                    _ => health.reconciled(),
                }
            }
        })
        .await;
    pods_task.abort();
    filled.abort();
    info!("controller stopped");
}

fn reads_secret(cgs: &ConsumerGroupSubscription, secret: &str) -> bool {
    cgs.spec.credentials.secret() == Some(secret)
        || cgs.spec.endpoint.ca_secret_ref.as_ref().is_some_and(|SecretKeyRef { name, .. }| name == secret)
        || cgs.spec.sink.http.as_ref().and_then(|h| h.headers_from.as_ref()).is_some_and(|h| h.secret_name == secret)
}
