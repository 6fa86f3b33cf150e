//! The autoscaler end to end with real worker pods: a backlog built with no consumer → replicas
//! rise → the backlog drains → replicas step back down after the (shortened) window, with every
//! message in the sink; then other consumers take part of the group's client cap and the operator
//! scales only into what is left; new credentials roll the pods at the cap without a refused
//! client; an unreadable backlog holds the count. The run is recorded for `docs/autoscaling.svg`
//! (`scripts/plot-autoscaling.py`).

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use iotsub_crds::ConsumerGroupSubscription;
use iotsub_e2e::{
    Bed, bed, holds_for,
    subscription::{self, pod_names, wait_status},
    workspace_root,
};
use iotsub_tests::{
    Emulator,
    amqp_client::{ClientOptions, idle_consumer},
    wait_until,
    worker::SinkServer,
};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Event};
use kube::{Api, api::ListParams};
use serde_json::{Value, json};

const CAP: usize = 10;
const TARGET: i64 = 2500;
const BURST: u32 = 20_000;
const WINDOW_SECONDS: u64 = 20;
const POLL_SECONDS: u64 = 2;
const TOPIC: &str = "/a1demo/meter/thing/event/property/post";

fn emulator_config() -> String {
    bed::emulator_config(&format!("[limits]\nclient_cap_per_group = {CAP}\nstacked_rate_per_group = 1000\n"))
}

fn manifest(emulator: &Emulator, sink_url: &str) -> Value {
    let mut manifest = subscription::manifest("meters", emulator, 1);
    manifest["spec"]["autoscaling"] = json!({
        "minReplicas": 1,
        "maxReplicas": 8,
        "clientCap": CAP,
        "targetBacklogPerReplica": TARGET,
        "pollIntervalSeconds": POLL_SECONDS,
        "scaleDownStabilizationSeconds": WINDOW_SECONDS,
        "apiEndpoint": emulator.api_url(""),
    });
    manifest["spec"]["sink"] = json!({"type": "http", "http": {"url": sink_url, "timeoutSeconds": 5}});
    manifest
}

/// One look at the emulator and the subscription, every half second.
#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    t: f64,
    backlog: u64,
    acknowledged: u64,
    desired: i32,
    ready: i32,
    ours_connected: usize,
    others_connected: usize,
    reason: String,
    /// The worker Deployment is paused (a rollout waits for a replaced pod's connection to close).
    paused: bool,
}

#[derive(Default)]
struct Recording {
    samples: Vec<Sample>,
    phases: Vec<(f64, String)>,
}

struct Recorder {
    started: Instant,
    recording: Arc<Mutex<Recording>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    fn start(emulator: &Emulator, api: Api<ConsumerGroupSubscription>, deployments: Api<Deployment>) -> Recorder {
        let started = Instant::now();
        let recording = Arc::new(Mutex::new(Recording::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (group_url, http) = (emulator.api_url("/admin/consumer-groups/DEFAULT_GROUP?instanceId="), emulator.http_client());
        let (rec, halt) = (recording.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !halt.load(Ordering::SeqCst) {
                let group: Option<Value> = match http.get(&group_url).send().await {
                    Ok(response) => response.json().await.ok(),
                    Err(_) => None,
                };
                let status = api.get("meters").await.ok().and_then(|c| c.status);
                let status = status.unwrap_or_default(); // zeros before the subscription exists
                let paused = deployments.get_opt("meters").await.ok().flatten().and_then(|d| d.spec?.paused).unwrap_or(false);
                if let Some(group) = group {
                    let clients: Vec<&str> =
                        group["clients"].as_array().into_iter().flatten().filter_map(|c| c["clientId"].as_str()).collect();
                    let others = clients.iter().filter(|id| id.starts_with("other-team-")).count();
                    rec.lock().unwrap().samples.push(Sample {
                        t: started.elapsed().as_secs_f64(),
                        backlog: group["backlog"].as_u64().unwrap_or(0),
                        acknowledged: group["acknowledged"].as_u64().unwrap_or(0),
                        desired: status.desired_replicas,
                        ready: status.ready_replicas,
                        ours_connected: clients.len() - others,
                        others_connected: others,
                        reason: status.condition("Autoscaling").map(|c| c.reason.clone()).unwrap_or_default(),
                        paused,
                    });
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Recorder { started, recording, stop, task }
    }

    fn phase(&self, label: &str) {
        self.recording.lock().unwrap().phases.push((self.started.elapsed().as_secs_f64(), label.into()));
    }

    /// Waits until a sample satisfies `check` (the recorder looks every half second).
    async fn wait_sampled(&self, what: &str, check: impl Fn(&Sample) -> bool) -> anyhow::Result<()> {
        wait_until(what, Duration::from_secs(10), || async { self.samples().last().is_some_and(&check).then_some(()) }).await
    }

    fn samples(&self) -> Vec<Sample> {
        self.recording.lock().unwrap().samples.clone()
    }

    async fn finish(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let recording = self.recording.lock().unwrap();
        let out = json!({
            "what": "make e2e: tests/e2e/tests/autoscaling.rs",
            "settings": {"clientCap": CAP, "targetBacklogPerReplica": TARGET, "burst": BURST, "minReplicas": 1, "maxReplicas": 8,
                         "scaleDownStabilizationSeconds": WINDOW_SECONDS, "pollIntervalSeconds": POLL_SECONDS, "otherClients": 5},
            "phases": recording.phases.iter().map(|(t, label)| json!({"t": t, "label": label})).collect::<Vec<_>>(),
            "samples": recording.samples,
        });
        let path = workspace_root().join("target/e2e/autoscaling-run.json");
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        std::fs::write(&path, serde_json::to_string_pretty(&out)?)?;
        Ok(())
    }
}

/// Device traffic at about 200 messages/s while it runs; the messageIds it published.
struct SteadyTraffic {
    ids: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl SteadyTraffic {
    fn start(emulator: &Emulator) -> SteadyTraffic {
        let (ids, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (url, http) = (emulator.api_url("/admin/messages"), emulator.http_client());
        let (sent, halt) = (ids.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !halt.load(Ordering::SeqCst) {
                let body = json!({"consumerGroupId": "DEFAULT_GROUP", "topic": TOPIC, "payload": "{\"kWh\":1}", "count": 20});
                if let Ok(response) = http.post(&url).json(&body).send().await
                    && let Ok(reply) = response.json::<Value>().await
                {
                    let new: Vec<String> = serde_json::from_value(reply["messageIds"].clone()).unwrap_or_default();
                    sent.lock().unwrap().extend(new);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        SteadyTraffic { ids, stop, task }
    }

    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.ids.lock().unwrap().clone()
    }
}

async fn backlog(emulator: &Emulator) -> anyhow::Result<u64> {
    Ok(emulator.group("DEFAULT_GROUP").await?["backlog"].as_u64().unwrap_or(u64::MAX))
}

async fn cap_refusals(emulator: &Emulator) -> anyhow::Result<Vec<Value>> {
    Ok(emulator.refusals().await?.into_iter().filter(|r| r["condition"] == "amqp:resource-limit-exceeded").collect())
}

async fn wait_all_in_sink(sink: &SinkServer, ids: &[String], deadline: Duration) -> anyhow::Result<()> {
    let result = wait_until("every published messageId accepted by the sink", deadline, || async {
        let accepted = sink.accepted_ids();
        ids.iter().all(|id| accepted.contains(id)).then_some(())
    })
    .await;
    result.map_err(|e| {
        let accepted = sink.accepted_ids();
        let missing = ids.iter().filter(|id| !accepted.contains(*id)).count();
        e.context(format!("{missing} of {} messageIds never reached the sink", ids.len()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_the_backlog_within_the_client_cap() -> anyhow::Result<()> {
    let bed = Bed::start("e2e-scale", &emulator_config()).await?;
    let (ns, emulator, operator) = (&bed.ns, &bed.emulator, &bed.operator);
    let sink = iotsub_e2e::reach::http_receiver().await?;
    let api: Api<ConsumerGroupSubscription> = ns.api();

    // A backlog built over a few seconds while nothing consumes.
    let recorder = Recorder::start(emulator, api.clone(), ns.api());
    recorder.phase("devices publish, nothing consumes");
    let mut published = Vec::new();
    for _ in 0..4 {
        published.extend(emulator.publish("DEFAULT_GROUP", TOPIC, "{\"kWh\":1}", BURST / 4).await?);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(backlog(emulator).await?, u64::from(BURST));
    recorder.phase("20 000 stacked: subscription applied");
    subscription::apply(ns, &manifest(emulator, &sink.url)).await?;

    // Up at once to ceil(20 000 / 2 500) = 8, the maxReplicas, under the cap of 10.
    let status = wait_status(ns, "meters", "8 replicas wanted", Duration::from_secs(30), |s| s.desired_replicas == 8).await?;
    assert_eq!(status.condition("Autoscaling").map(|c| c.reason.as_str()), Some("ScaledUp"), "{status:?}");
    wait_status(ns, "meters", "8 replicas ready", Duration::from_secs(90), |s| s.ready_replicas == 8).await?;
    let traffic = SteadyTraffic::start(emulator);

    // The backlog drains, then the count steps back down once the window has passed.
    wait_until("the stacked backlog drained", Duration::from_secs(180), || async { (backlog(emulator).await.ok()? < 500).then_some(()) })
        .await?;
    recorder.phase("backlog drained");
    wait_status(ns, "meters", "back to 1 replica", Duration::from_secs(150), |s| s.desired_replicas == 1 && s.ready_replicas == 1).await?;
    recorder.wait_sampled("1 replica sampled", |s| s.desired == 1).await?;
    recorder.phase("scaled back to 1");
    published.extend(traffic.stop().await);
    wait_all_in_sink(&sink, &published, Duration::from_secs(90)).await?;

    let samples = recorder.samples();
    let mut steps: Vec<i32> = samples.iter().map(|s| s.desired).collect();
    steps.dedup();
    let down: Vec<i32> = steps.iter().copied().skip_while(|d| *d != 8).collect();
    assert_eq!(down, [8, 7, 6, 5, 4, 3, 2, 1], "one step at a time: {steps:?}");
    let last_high = samples.iter().filter(|s| s.backlog > (7 * TARGET) as u64).map(|s| s.t).fold(0.0, f64::max);
    let first_down = samples.iter().find(|s| s.desired == 7).map(|s| s.t).expect("a step down was sampled");
    assert!(
        first_down - last_high >= (WINDOW_SECONDS - POLL_SECONDS - 1) as f64,
        "the first step down ({first_down:.1} s) waited the window after the backlog last asked for 8 ({last_high:.1} s)"
    );
    assert_eq!(cap_refusals(emulator).await?, Vec::<Value>::new(), "no client refused for the cap");

    // Other consumers take 5 of the 10 places; the next backlog gets only what is left.
    let mut others = Vec::new();
    for i in 1..=5 {
        others.push(idle_consumer(emulator, &ClientOptions::demo(&format!("other-team-{i}"))).await?);
    }
    wait_status(ns, "meters", "the 5 other clients seen", Duration::from_secs(30), |s| {
        s.clients.iter().filter(|c| c.pod.is_empty()).count() == 5
    })
    .await?;
    recorder.phase("5 other clients hold half the cap; 20 000 more published");
    let seen_others_at = recorder.started.elapsed().as_secs_f64();
    let second_burst = emulator.publish("DEFAULT_GROUP", TOPIC, "{\"kWh\":2}", BURST).await?;
    let status = wait_status(ns, "meters", "capped at 5 replicas", Duration::from_secs(30), |s| {
        s.desired_replicas == 5 && s.condition("Autoscaling").is_some_and(|c| c.reason == "CappedByClientLimit")
    })
    .await?;
    let message = &status.condition("Autoscaling").expect("set").message;
    assert!(message.contains(" replicas, 5 fit: 5 of the group's 10 clients are not this subscription's"), "{message}");
    wait_status(ns, "meters", "5 replicas ready", Duration::from_secs(90), |s| s.ready_replicas == 5 && s.connected_clients == 5).await?;
    wait_all_in_sink(&sink, &second_burst, Duration::from_secs(180)).await?;
    recorder.phase("second backlog drained");
    let over = recorder.samples().into_iter().filter(|s| s.t > seen_others_at && s.desired > 5).collect::<Vec<_>>();
    assert!(over.is_empty(), "never more than the 5 places left: {over:?}");
    assert_eq!(cap_refusals(emulator).await?, Vec::<Value>::new(), "no client refused for the cap");

    // Credentials from another Secret while the group is full (a new volume: the pods roll; a new
    // key in the same Secret would not roll them): no client over the cap.
    let mut manifest = manifest(emulator, &sink.url);
    manifest["spec"]["autoscaling"]["minReplicas"] = json!(5);
    subscription::apply(ns, &manifest).await?;
    let old_pods = pod_names(ns, "meters").await;
    assert_eq!(old_pods.len(), 5, "{old_pods:?}");
    recorder.phase("new credentials while the group is at its cap");
    ns.put_secret("rotated-credentials", &[("accessKeyId", "rotated"), ("accessKeySecret", "rotated-secret")]).await?;
    manifest["spec"]["credentials"]["secretName"] = json!("rotated-credentials");
    subscription::apply(ns, &manifest).await?;
    wait_until("5 new pods, connected with the new key", Duration::from_secs(180), || async {
        let now = pod_names(ns, "meters").await;
        let status = api.get("meters").await.ok()?.status?;
        (now.len() == 5 && now.is_disjoint(&old_pods) && status.ready_replicas == 5 && status.connected_clients == 5).then_some(())
    })
    .await?;
    recorder.phase("rolled");
    let rotated_at = recorder.recording.lock().unwrap().phases.iter().rev().nth(1).map_or(0.0, |p| p.0);
    let lowest = recorder.samples().iter().filter(|s| s.t >= rotated_at).map(|s| s.desired).min().unwrap_or(0);
    let log = operator.log_text();
    let decisions: Vec<&str> = log.lines().filter(|l| l.contains("autoscaler changes")).collect();
    assert!(lowest >= 4, "the rollout takes one pod's place at most, not {lowest}; the operator's decisions:\n{}", decisions.join("\n"));
    assert_eq!(cap_refusals(emulator).await?, Vec::<Value>::new(), "no client refused for the cap during the rollout");
    let rollout: Vec<Sample> = recorder.samples().into_iter().filter(|s| s.t >= rotated_at).collect();
    let most = rollout.iter().map(|s| s.ours_connected + s.others_connected).max().unwrap_or(0);
    assert!(most <= CAP, "at most {CAP} clients at any sample, saw {most}");
    assert!(rollout.iter().any(|s| s.paused), "the rollout paused while a replaced pod closed its connection");
    let deployment = ns.api::<Deployment>().get("meters").await?;
    assert_eq!(deployment.spec.and_then(|s| s.paused), None, "and is not left paused");

    // The backlog can't be read: the count holds where it is instead of following stale figures.
    manifest["spec"]["autoscaling"]["minReplicas"] = json!(1);
    subscription::apply(ns, &manifest).await?;
    wait_status(ns, "meters", "the first step down", Duration::from_secs(60), |s| s.desired_replicas == 4).await?;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?; // bound, then dropped
    manifest["spec"]["autoscaling"]["apiEndpoint"] = json!(format!("https://{dead}"));
    subscription::apply(ns, &manifest).await?;
    recorder.phase("the OpenAPI unreachable");
    let status = wait_status(ns, "meters", "Autoscaling=False/BacklogUnavailable", Duration::from_secs(30), |s| {
        s.condition("Autoscaling").is_some_and(|c| c.status == "False" && c.reason == "BacklogUnavailable")
    })
    .await?;
    let held = status.desired_replicas;
    holds_for("the count held while the backlog can't be read", Duration::from_secs(4 * POLL_SECONDS), || async {
        let desired = api.get("meters").await?.status.unwrap_or_default().desired_replicas;
        anyhow::ensure!(desired == held, "desiredReplicas {desired}, held at {held}");
        Ok(())
    })
    .await?;
    assert_eq!(status.condition("BacklogAvailable").map(|c| c.reason.as_str()), Some("PlatformUnreachable"));

    let events: Api<Event> = ns.api();
    let events = events.list(&ListParams::default()).await?.items;
    let unavailable = events.iter().find(|e| e.reason.as_deref() == Some("BacklogUnavailable"));
    assert_eq!(unavailable.and_then(|e| e.type_.as_deref()), Some("Warning"), "a Warning says the count is held");
    let capped = events.iter().find(|e| e.reason.as_deref() == Some("CappedByClientLimit"));
    assert_eq!(capped.and_then(|e| e.type_.as_deref()), Some("Warning"), "a Warning says the cap holds the count back");
    let scaled: HashSet<&str> =
        events.iter().filter(|e| e.reason.as_deref() == Some("Scaled")).filter_map(|e| e.message.as_deref()).collect();
    assert!(scaled.iter().any(|n| n.contains("ScaledDown")), "Scaled Events say why: {scaled:?}");
    assert!(!operator.log_text().contains("demo-secret"), "no secret in the operator's log");
    recorder.finish().await?;
    drop(others);
    Ok(())
}
