//! What every reconcile shares: the client, the watch caches, the OpenAPI client, and the
//! per-subscription memory.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use iotsub_aliyun::client::OpenApiClient;
use iotsub_crds::ConsumerGroupSubscription;
use iotsub_operator_core::{Memory, names::MANAGER};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Secret},
};
use kube::runtime::{
    events::{Recorder, Reporter},
    reflector::{ObjectRef, Store},
};

use crate::{cli::Args, metrics::Metrics};

/// Watch caches of what reconciles read, so a reconcile costs no API read.
#[derive(Clone)]
pub struct Stores {
    pub deployments: Store<Deployment>,
    pub pods: Store<Pod>,
    pub secrets: Store<Secret>,
}

impl Stores {
    /// Once every cache has had its first full list.
    pub async fn wait_until_ready(&self) {
        let _ = tokio::join!(self.deployments.wait_until_ready(), self.pods.wait_until_ready(), self.secrets.wait_until_ready());
    }

    /// The caches still waiting for their first full list.
    pub fn not_ready(&self) -> Vec<&'static str> {
        use futures::FutureExt;
        [
            ("deployments", self.deployments.wait_until_ready().now_or_never().is_some()),
            ("pods", self.pods.wait_until_ready().now_or_never().is_some()),
            ("secrets", self.secrets.wait_until_ready().now_or_never().is_some()),
        ]
        .into_iter()
        .filter_map(|(name, ready)| (!ready).then_some(name))
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
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub openapi: OpenApiClient,
    pub worker_image: String,
    pub watch_namespace: Option<String>,
    pub memories: Memories,
    /// For the workers' `/status` ([`crate::sink_status`]).
    pub worker_http: reqwest::Client,
    /// The port of the workers' HTTP server (the Deployment's; tests point it elsewhere).
    pub worker_port: u16,
}

impl Context {
    pub fn new(client: kube::Client, args: &Args, identity: &str, metrics: Arc<Metrics>, stores: Stores) -> anyhow::Result<Context> {
        let reporter = Reporter { controller: MANAGER.into(), instance: Some(identity.into()) };
        Ok(Context {
            recorder: Recorder::new(client.clone(), reporter),
            stores,
            client,
            metrics,
            openapi: OpenApiClient::with_defaults(),
            worker_image: args.worker_image.clone(),
            watch_namespace: args.watch_namespace.clone(),
            memories: Memories::default(),
            worker_http: crate::sink_status::client()?,
            worker_port: u16::try_from(iotsub_operator_core::WORKER_PORT)?,
        })
    }

    /// A deleted subscription: its memory and its metric series go, in this one place.
    pub fn forget(&self, cgs: &ConsumerGroupSubscription) {
        self.memories.remove(&ObjectRef::from_obj(cgs));
        self.metrics.forget_subscription(cgs);
    }
}
