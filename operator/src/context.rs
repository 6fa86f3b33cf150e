//! What every reconcile shares.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use iotsub_aliyun::client::OpenApiClient;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Secret},
};
use kube::runtime::{
    events::{Recorder, Reporter},
    reflector::Store,
};

use crate::{autoscale::Recent, cli::Args, metrics::Metrics, platform::PlatformObservation};

pub const MANAGER: &str = "iotsub-operator";

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

pub struct Context {
    pub client: kube::Client,
    pub stores: Stores,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub openapi: OpenApiClient,
    pub worker_image: String,
    pub watch_namespace: Option<String>,
    /// The last platform answer per subscription (`namespace/name`), so the OpenAPI is asked once
    /// per poll interval however often the subscription is reconciled.
    pub platform_cache: Mutex<HashMap<String, PlatformObservation>>,
    /// The autoscaler's recent recommendations per subscription (`namespace/name`). Not persisted:
    /// a new leader waits a whole stabilization window before it scales anything down.
    pub recent_recommendations: Mutex<HashMap<String, Recent>>,
}

impl Context {
    pub fn new(client: kube::Client, args: &Args, identity: &str, metrics: Arc<Metrics>, stores: Stores) -> anyhow::Result<Context> {
        let reporter = Reporter { controller: MANAGER.into(), instance: Some(identity.into()) };
        Ok(Context {
            recorder: Recorder::new(client.clone(), reporter),
            stores,
            client,
            metrics,
            openapi: OpenApiClient::with_defaults()?,
            worker_image: args.worker_image.clone(),
            watch_namespace: args.watch_namespace.clone(),
            platform_cache: Mutex::new(HashMap::new()),
            recent_recommendations: Mutex::new(HashMap::new()),
        })
    }
}
