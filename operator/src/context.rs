//! What every reconcile shares: the client, the watch caches, the OpenAPI client, and the
//! per-subscription memory.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};

use iotsub_aliyun::client::OpenApiClient;
use iotsub_crds::ConsumerGroupSubscription;
use iotsub_operator_core::{Guard, Memory, names::MANAGER};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Secret},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    core::PartialObjectMeta,
    runtime::{
        events::{Recorder, Reporter},
        reflector::{ObjectRef, Store},
    },
};

use crate::{cli::Args, health::Health, metrics::Metrics, secrets::Secrets};

/// Watch caches of what reconciles read, so a reconcile costs no API read (Secrets: metadata
/// only, see [`crate::secrets`]).
#[derive(Clone)]
pub struct Stores {
    pub deployments: Store<Deployment>,
    pub budgets: Store<PodDisruptionBudget>,
    pub pods: Store<Pod>,
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// Done once every cache has had its first full list.
    filled: Shared<BoxFuture<'static, ()>>,
    filled_each: Arc<Filled>,
}

/// Which caches have had their first full list.
#[derive(Default)]
struct Filled {
    deployments: AtomicBool,
    budgets: AtomicBool,
    pods: AtomicBool,
    secrets: AtomicBool,
}

impl Stores {
    pub fn new(
        deployments: Store<Deployment>,
        budgets: Store<PodDisruptionBudget>,
        pods: Store<Pod>,
        secrets: Store<PartialObjectMeta<Secret>>,
    ) -> Stores {
        // kube-runtime's `Store::wait_until_ready` wakes only the last task that waited: with
        // several reconciles waiting (a start, a failover) all but one would sleep until their
        // timeout. So one shared future waits on the stores, and every reconcile waits on it.
        let filled_each = Arc::new(Filled::default());
        let filled = {
            let (d, b, p, s, each) = (deployments.clone(), budgets.clone(), pods.clone(), secrets.clone(), filled_each.clone());
            async move {
                let mark = |flag: &AtomicBool| flag.store(true, Ordering::Release);
                tokio::join!(
                    async { d.wait_until_ready().await.ok().inspect(|()| mark(&each.deployments)) },
                    async { b.wait_until_ready().await.ok().inspect(|()| mark(&each.budgets)) },
                    async { p.wait_until_ready().await.ok().inspect(|()| mark(&each.pods)) },
                    async { s.wait_until_ready().await.ok().inspect(|()| mark(&each.secrets)) },
                );
            }
            .boxed()
            .shared()
        };
        Stores { deployments, budgets, pods, secrets, filled, filled_each }
    }

    /// Once every cache has had its first full list.
    pub async fn wait_until_ready(&self) {
        self.filled.clone().await;
    }

    /// The caches still waiting for their first full list.
    pub fn not_ready(&self) -> Vec<&'static str> {
        let each = &self.filled_each;
        [("deployments", &each.deployments), ("poddisruptionbudgets", &each.budgets), ("pods", &each.pods), ("secrets", &each.secrets)]
            .into_iter()
            .filter_map(|(name, filled)| (!filled.load(Ordering::Acquire)).then_some(name))
            .collect()
    }
}

/// What the operator remembers per subscription. The controller never reconciles one object
/// twice at once, so a reconcile takes its entry and puts the new one back.
#[derive(Default)]
pub struct Memories(Mutex<HashMap<ObjectRef<ConsumerGroupSubscription>, Memory>>);

impl Memories {
    pub fn get(&self, key: &ObjectRef<ConsumerGroupSubscription>) -> Memory {
        self.0.lock().expect("memory lock").get(key).cloned().unwrap_or_default()
    }

    pub fn put(&self, key: ObjectRef<ConsumerGroupSubscription>, memory: Memory) {
        self.0.lock().expect("memory lock").insert(key, memory);
    }

    fn remove(&self, key: &ObjectRef<ConsumerGroupSubscription>) {
        self.0.lock().expect("memory lock").remove(key);
    }
}

pub struct Context {
    pub client: kube::Client,
    pub stores: Stores,
    /// The referenced Secrets, with their data.
    pub secrets: Secrets,
    pub health: Arc<Health>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub openapi: OpenApiClient,
    /// STS credentials of RRSA subscriptions.
    pub roles: crate::rrsa::Roles,
    /// The worker image and what subscriptions may choose (the operator's flags).
    pub guard: Guard,
    pub watch_namespace: Option<String>,
    pub memories: Memories,
    /// For the workers' `/status` ([`crate::sink_status`]).
    pub worker_http: reqwest::Client,
    /// The port of the workers' HTTP server (the Deployment's; tests point it elsewhere).
    pub worker_port: u16,
}

impl Context {
    pub fn new(
        client: kube::Client,
        args: &Args,
        identity: &str,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        stores: Stores,
    ) -> anyhow::Result<Context> {
        let reporter = Reporter { controller: MANAGER.into(), instance: Some(identity.into()) };
        Ok(Context {
            secrets: Secrets::new(client.clone(), stores.secrets.clone()),
            health,
            recorder: Recorder::new(client.clone(), reporter),
            stores,
            client,
            metrics,
            openapi: OpenApiClient::with_defaults(),
            roles: crate::rrsa::Roles::default(),
            guard: args.guard()?,
            watch_namespace: args.watch_namespace.clone(),
            memories: Memories::default(),
            worker_http: crate::sink_status::client()?,
            worker_port: u16::try_from(iotsub_operator_core::WORKER_PORT)?,
        })
    }

    /// A deleted subscription: its memory and its metric series go, in this one place.
    pub fn forget(&self, cgs: &ConsumerGroupSubscription) {
        self.memories.remove(&ObjectRef::from_obj(cgs));
        self.roles.forget(cgs);
        self.metrics.forget_subscription(cgs);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kube::runtime::watcher;

    use crate::controller;

    /// Several reconciles wait for the caches at once (a start or a failover with many
    /// subscriptions): every one of them must be woken when the caches fill.
    #[tokio::test]
    async fn every_reconcile_waiting_for_the_caches_is_woken_when_they_fill() {
        let (stores, mut writers) = controller::stores();
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let stores = stores.clone();
                tokio::spawn(async move { stores.wait_until_ready().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await; // every waiter is parked
        writers.deployments.apply_watcher_event(&watcher::Event::InitDone);
        writers.budgets.apply_watcher_event(&watcher::Event::InitDone);
        writers.pods.apply_watcher_event(&watcher::Event::InitDone);
        writers.secrets.apply_watcher_event(&watcher::Event::InitDone);
        for (i, waiter) in waiters.into_iter().enumerate() {
            tokio::time::timeout(Duration::from_secs(2), waiter).await.unwrap_or_else(|_| panic!("waiter {i} was never woken")).unwrap();
        }
    }
}
