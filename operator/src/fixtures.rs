//! A mocked API server for tests of a whole reconcile (the style of kube-rs's controller-rs): each
//! [`Scenario`] lists the exact calls a reconcile must make, answers them, and fails on any other.

use std::{sync::Arc, time::Duration};

use http::{Method, Request, Response, StatusCode};
use iotsub_operator_core::fixtures::{IMAGE, World};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    client::Body,
    core::PartialObjectMetaExt,
    runtime::{reflector::ObjectRef, watcher},
};
use tokio::sync::{mpsc, oneshot};

use clap::Parser;

use crate::{cli::Args, context::Context, controller, metrics::Metrics};

type Exchange = (Request<Body>, oneshot::Sender<Response<Body>>);

/// A call the reconcile makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Server-side apply of the worker Deployment.
    ApplyDeployment,
    /// Server-side apply of the workers' PodDisruptionBudget.
    ApplyDisruptionBudget,
    /// Server-side apply of the subscription's status.
    ApplyStatus,
    /// An Event with this reason.
    Event(String),
    /// A `get` of the Secret with this name.
    GetSecret(String),
}

/// What the API server answers a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The object sent, as if stored.
    Accept,
    /// This object.
    Object(serde_json::Value),
    /// `500 Internal Server Error`.
    Fail,
}

/// The calls expected, in order, with the answers to give.
pub struct Scenario(pub Vec<(Call, Answer)>);

/// The other side of the mocked client: receives its requests.
pub struct ApiServer {
    requests: mpsc::Receiver<Exchange>,
}

impl ApiServer {
    /// Answers the scenario's calls in order, asserting each; returns for [`ApiServer::assert_idle`].
    pub fn run(mut self, scenario: Scenario) -> tokio::task::JoinHandle<ApiServer> {
        tokio::spawn(async move {
            for (expected, answer) in scenario.0 {
                let (request, reply) = tokio::time::timeout(Duration::from_secs(5), self.requests.recv())
                    .await
                    .unwrap_or_else(|_| panic!("no call; expected {expected:?}"))
                    .expect("the client is alive");
                let (method, path) = (request.method().clone(), request.uri().path().to_owned());
                let body = request.into_body().collect_bytes().await.expect("a request body");
                let call = identify(&method, &path, &body);
                assert_eq!(call, Some(expected.clone()), "{method} {path}: {}", String::from_utf8_lossy(&body));
                let response = match answer {
                    Answer::Accept => Response::builder().status(StatusCode::OK).body(Body::from(accepted(&expected, &body))),
                    Answer::Object(object) => {
                        Response::builder().status(StatusCode::OK).body(Body::from(serde_json::to_vec(&object).expect("JSON")))
                    }
                    Answer::Fail => Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).body(Body::from(
                        br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcd is down","reason":"InternalError","code":500}"#.to_vec(),
                    )),
                };
                reply.send(response.expect("a response")).expect("the client waits");
            }
            self
        })
    }

    /// Fails if the client made any call beyond the scenario.
    pub fn assert_idle(mut self) {
        if let Ok((request, _)) = self.requests.try_recv() {
            panic!("an unexpected call: {} {}", request.method(), request.uri());
        }
    }
}

fn identify(method: &Method, path: &str, body: &[u8]) -> Option<Call> {
    if method == Method::GET {
        return path.strip_prefix("/api/v1/namespaces/team/secrets/").map(|name| Call::GetSecret(name.to_owned()));
    }
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    match (method, path) {
        (&Method::PATCH, "/apis/apps/v1/namespaces/team/deployments/orders") => Some(Call::ApplyDeployment),
        (&Method::PATCH, "/apis/policy/v1/namespaces/team/poddisruptionbudgets/orders") => Some(Call::ApplyDisruptionBudget),
        (&Method::PATCH, "/apis/iotsub.dev/v1alpha1/namespaces/team/consumergroupsubscriptions/orders/status") => Some(Call::ApplyStatus),
        (&Method::POST, "/apis/events.k8s.io/v1/namespaces/team/events") => Some(Call::Event(json["reason"].as_str()?.to_owned())),
        _ => None,
    }
}

/// The object as the API server would return it after storing it.
fn accepted(call: &Call, body: &[u8]) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(body).expect("JSON");
    if *call == Call::ApplyStatus {
        let mut cgs = serde_json::to_value(iotsub_operator_core::fixtures::subscription()).expect("JSON");
        cgs["status"] = json["status"].take();
        return serde_json::to_vec(&cgs).expect("JSON");
    }
    json["metadata"]["resourceVersion"] = "1".into();
    serde_json::to_vec(&json).expect("JSON")
}

/// A [`Context`] whose client talks to the returned [`ApiServer`], with `world`'s objects in its
/// watch caches and its memory of the subscription, and its Secrets already fetched.
pub fn context(world: &World) -> (Arc<Context>, ApiServer) {
    let (ctx, server) = context_fetching(world);
    // As if fetched before: a reconcile `get`s a Secret only when its version changed.
    world.secrets.iter().cloned().for_each(|secret| ctx.secrets.hold(secret));
    (ctx, server)
}

/// [`context`] with no Secret fetched yet.
pub fn context_fetching(world: &World) -> (Arc<Context>, ApiServer) {
    let (sender, requests) = mpsc::channel::<Exchange>(16);
    let service = tower::service_fn(move |request: Request<Body>| {
        let sender = sender.clone();
        async move {
            let (reply, response) = oneshot::channel();
            sender.send((request, reply)).await.map_err(|_| "the mocked API server stopped")?;
            response.await.map_err(|_| "the mocked API server gave no answer")
        }
    });
    let client = kube::Client::new(service, "team");
    let (stores, mut writers) = controller::stores();
    fill(&mut writers.deployments, world.observed.deployment.iter().cloned().map(namespaced));
    fill(&mut writers.pods, world.observed.pods.iter().cloned().map(namespaced_pod));
    // A world with a Deployment had its budget applied with it.
    fill(&mut writers.budgets, world.observed.deployment.iter().map(|_| iotsub_operator_core::disruption::budget(&world.cgs)));
    fill(&mut writers.secrets, world.secrets.iter().map(|s| s.metadata.clone().into_response_partial()));
    let args = Args::parse_from(["iotsub-operator", "--worker-image", IMAGE]);
    let ctx = Context::new(client, &args, "test", Arc::new(Metrics::default()), Arc::default(), stores).expect("a context");
    let mut memory = world.memory.clone();
    memory.platform.clone_from(&world.observed.platform);
    ctx.memories.put(ObjectRef::from_obj(&world.cgs), memory);
    (Arc::new(ctx), ApiServer { requests })
}

fn fill<K>(writer: &mut kube::runtime::reflector::store::Writer<K>, objects: impl Iterator<Item = K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

fn namespaced(mut deployment: Deployment) -> Deployment {
    deployment.metadata.namespace = Some("team".into());
    deployment
}

fn namespaced_pod(mut pod: Pod) -> Pod {
    pod.metadata.namespace = Some("team".into());
    pod.metadata.labels = Some(
        [("app.kubernetes.io/instance", "orders"), ("app.kubernetes.io/name", "iotsub-worker")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    );
    pod
}
