//! What every reconcile shares.

use std::{collections::HashMap, sync::{Arc, Mutex}};

use iotsub_aliyun::client::OpenApiClient;
use kube::runtime::events::{Recorder, Reporter};

use crate::{cli::Args, metrics::Metrics, platform::PlatformObservation};

pub const MANAGER: &str = "iotsub-operator";

pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub openapi: OpenApiClient,
    pub worker_image: String,
    pub watch_namespace: Option<String>,
    /// The last platform answer per subscription (`namespace/name`), so the OpenAPI is asked once
    /// per poll interval however often the subscription is reconciled.
    pub platform_cache: Mutex<HashMap<String, PlatformObservation>>,
}

impl Context {
    pub fn new(client: kube::Client, args: &Args, identity: &str, metrics: Arc<Metrics>) -> anyhow::Result<Context> {
        let reporter = Reporter { controller: MANAGER.into(), instance: Some(identity.into()) };
        Ok(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            openapi: OpenApiClient::with_defaults()?,
            worker_image: args.worker_image.clone(),
            watch_namespace: args.watch_namespace.clone(),
            platform_cache: Mutex::new(HashMap::new()),
        })
    }
}
