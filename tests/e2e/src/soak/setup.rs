//! The soak's system, as a user runs it: the chart's operator (2 replicas, leader election), the
//! emulator as the platform, the business-server stand-in as a pod behind the HTTP sink, a
//! dead-letter endpoint, other teams' clients, and three subscriptions on two consumer groups.

use std::{os::unix::fs::PermissionsExt, path::Path, sync::Arc, time::Duration};

use iotsub_crds::ConsumerGroupSubscription;
use iotsub_tests::{
    Emulator,
    amqp_client::{ClientOptions, idle_consumer},
    http_receiver::HttpReceiver,
    wait_until,
};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};

use crate::{
    Cluster, TestNamespace,
    helm::Release,
    reach,
    subscription::{self, CREDENTIALS},
};

/// The client cap of both groups (the platform's is 64; smaller here so that the cap is reached).
pub const CAP: usize = 6;
/// Other teams' clients in group A, holding part of its cap.
pub const OTHERS: usize = 2;
pub const GROUP_A: &str = "SOAK_A";
pub const GROUP_B: &str = "SOAK_B";
pub const GROUPS: [&str; 2] = [GROUP_A, GROUP_B];
pub const TOPIC: &str = "/a1soak/meter/thing/event/property/post";
/// The business server's service time.
pub const SERVICE_TIME_MS: u32 = 2;
pub const STANDIN: &str = "business-server";
pub const STANDIN_PORT: u16 = 8080;
pub const OTHER_TEAM_PREFIX: &str = "other-team-";

/// A subscription of the soak.
#[derive(Debug, Clone, Copy)]
pub struct Sub {
    pub name: &'static str,
    pub group: &'static str,
    /// `None`: autoscaling off, `spec.replicas` 1 (what `kubectl scale` changes).
    pub max_replicas: Option<u32>,
}

pub const SUBS: [Sub; 3] = [
    Sub { name: "meters", group: GROUP_A, max_replicas: Some(6) },
    Sub { name: "alarms", group: GROUP_B, max_replicas: Some(3) },
    Sub { name: "audit", group: GROUP_B, max_replicas: None },
];

pub fn emulator_config() -> String {
    let limits = format!("[limits]\nclient_cap_per_group = {CAP}\nstacked_rate_per_group = 1000\nrecord_acknowledged_ids = true\n");
    crate::bed::emulator_config_with_groups(&limits, &GROUPS)
}

/// Everything the soak runs against; dropped, it goes away (the namespace, the release, the clients).
pub struct System {
    pub cluster: Cluster,
    pub emulator: Arc<Emulator>,
    pub ns: TestNamespace,
    pub release: Release,
    pub dead_letters: HttpReceiver,
    /// The stand-in pod's address (`ip:port`), where the workers and the soak reach it.
    pub standin: String,
    /// Keeps the other teams' clients connected for the whole run (stopped when dropped).
    pub others: OtherTeams,
}

/// Other teams' idle clients of group A, holding part of its cap: a task logs each in again when the
/// platform dropped it (as their own consumers would), every 2 s, as long as the cap lets it.
pub struct OtherTeams {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtherTeams {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OtherTeams {
    fn start(emulator: Arc<Emulator>) -> OtherTeams {
        let task = tokio::spawn(async move {
            let mut held: Vec<Option<(iotsub_tests::amqp_client::Client, fe2o3_amqp::Receiver)>> = (0..OTHERS).map(|_| None).collect();
            loop {
                let attached: Vec<String> = match emulator.group_snapshot(GROUP_A).await {
                    Ok(group) => group.clients.into_iter().filter(|c| c.attached).map(|c| c.client_id).collect(),
                    Err(_) => Vec::new(),
                };
                for (n, slot) in held.iter_mut().enumerate() {
                    let id = format!("{OTHER_TEAM_PREFIX}{}", n + 1);
                    if attached.contains(&id) {
                        continue;
                    }
                    *slot = None;
                    let mut options = ClientOptions::demo(&id);
                    options.consumer_group_id = GROUP_A.into();
                    *slot = idle_consumer(&emulator, &options).await.ok();
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        OtherTeams { task }
    }
}

pub async fn start(records: &Path) -> anyhow::Result<System> {
    let cluster = Cluster::connect().await?;
    let emulator = reach::emulator(&emulator_config()).await?;
    let ns = cluster.namespace("soak").await?;
    subscription::put_secrets(&ns, &emulator).await?;

    std::fs::create_dir_all(records)?;
    // The stand-in runs as 65532 and appends to a file here.
    std::fs::set_permissions(records, std::fs::Permissions::from_mode(0o777))?;
    let standin = start_standin(&ns, records).await?;
    let dead_letters = reach::http_receiver().await?;

    let release = Release::install(
        &cluster.kubeconfig,
        "iotsub",
        &ns.name,
        &["--skip-crds", "--set", &format!("watchNamespace={}", ns.name), "--set", "replicas=2", "--set", "leaderElection.leaseSeconds=5"],
    )
    .await?;

    let emulator = Arc::new(emulator);
    let others = OtherTeams::start(emulator.clone());
    wait_until("the other teams' clients connected", Duration::from_secs(30), || async {
        let group = emulator.group_snapshot(GROUP_A).await.ok()?;
        (group.clients.iter().filter(|c| c.attached && c.client_id.starts_with(OTHER_TEAM_PREFIX)).count() == OTHERS).then_some(())
    })
    .await?;

    for sub in SUBS {
        subscription::apply(&ns, &manifest(sub, &emulator, &standin, &dead_letters.url)).await?;
    }
    Ok(System { cluster, emulator, ns, release, dead_letters, standin, others })
}

pub fn manifest(sub: Sub, emulator: &Emulator, standin: &str, dead_letter_url: &str) -> Value {
    let mut manifest = subscription::manifest(sub.name, emulator, 1);
    manifest["spec"]["consumerGroupId"] = json!(sub.group);
    manifest["spec"]["autoscaling"] = json!({
        "enabled": sub.max_replicas.is_some(),
        "minReplicas": 1,
        "maxReplicas": sub.max_replicas.unwrap_or(1),
        "clientCap": CAP,
        "targetBacklogPerReplica": 2000,
        "pollIntervalSeconds": 2,
        "scaleDownStabilizationSeconds": 30,
        "apiEndpoint": emulator.api_url(""),
    });
    manifest["spec"]["sink"] = json!({
        "type": "http",
        "http": {"url": format!("http://{standin}/events"), "timeoutSeconds": 5},
        "deadLetter": {"type": "http", "url": dead_letter_url},
    });
    manifest
}

/// The stand-in as a pod, recording what it took into `records/ids.txt`; its address once Ready.
async fn start_standin(ns: &TestNamespace, records: &Path) -> anyhow::Result<String> {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": STANDIN, "labels": {"app": STANDIN}},
        "spec": {
            "containers": [{
                "name": "standin",
                "image": reach::image("standin"),
                "env": [
                    {"name": "IOTSUB_STANDIN_LISTEN", "value": format!("0.0.0.0:{STANDIN_PORT}")},
                    {"name": "IOTSUB_STANDIN_SERVICE_TIME_MS", "value": SERVICE_TIME_MS.to_string()},
                    {"name": "IOTSUB_STANDIN_IDS_FILE", "value": "/records/ids.txt"},
                    {"name": "IOTSUB_STANDIN_IDS_TIMES", "value": "true"},
                ],
                "ports": [{"containerPort": STANDIN_PORT}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": STANDIN_PORT}, "periodSeconds": 1},
                "volumeMounts": [{"name": "records", "mountPath": "/records"}],
                "securityContext": {"runAsNonRoot": true, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true},
            }],
            "volumes": [{"name": "records", "hostPath": {"path": records.to_str().expect("utf-8 path"), "type": "Directory"}}],
        }
    });
    let pods: Api<Pod> = ns.api();
    pods.patch(STANDIN, &PatchParams::apply("iotsub-soak").force(), &Patch::Apply(&pod)).await?;
    let ip = wait_until("the business-server stand-in pod to be Ready", Duration::from_secs(120), || async {
        let status = pods.get(STANDIN).await.ok()?.status?;
        let ready = status.conditions?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(status.pod_ip?)
    })
    .await?;
    Ok(format!("{ip}:{STANDIN_PORT}"))
}

/// Waits until every subscription is Ready with all its clients connected.
pub async fn all_ready(ns: &TestNamespace, deadline: Duration) -> anyhow::Result<()> {
    let api: Api<ConsumerGroupSubscription> = ns.api();
    wait_until("every subscription Ready", deadline, || async {
        for sub in SUBS {
            let status = api.get(sub.name).await.ok()?.status?;
            (status.condition("Ready")?.status == "True").then_some(())?;
        }
        Some(())
    })
    .await
}

/// The credentials Secret holding the `demo` (or, rotated, the `rotated`) account's keys.
pub async fn put_credentials(ns: &TestNamespace, rotated: bool) -> anyhow::Result<()> {
    let (id, secret) = if rotated { ("rotated", "rotated-secret") } else { ("demo", "demo-secret") };
    ns.put_secret(CREDENTIALS, &[("accessKeyId", id), ("accessKeySecret", secret)]).await
}
