//! The faults themselves, each done the way it happens in production: real signals to real
//! processes, real API calls, the platform (emulator) and the business server (stand-in) failing.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use iotsub_crds::ConsumerGroupSubscription;
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Pod};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use nix::{sys::signal::Signal, unistd::Pid};
use serde_json::json;

use super::{
    schedule::Kind,
    setup::{self, GROUPS, SUBS, System},
};
use crate::{cluster::kubeconfig_path, workspace_root};

/// A fault as it was done.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Injected {
    pub kind: Kind,
    /// Seconds into the run: when it was planned, began and ended.
    pub planned: f64,
    pub began: f64,
    pub ended: f64,
    /// What it hit (a pod, a group, a process), or why it could not be done.
    pub target: String,
    pub done: bool,
}

/// State the faults carry from one to the next.
#[derive(Default)]
pub struct Chaos {
    rotated: bool,
}

impl Chaos {
    /// Does `kind`, choosing its target with `pick`; returns what it hit. A fault that lasts is
    /// undone by a task of its own after [`Kind::lasts`].
    pub async fn strike(&mut self, system: &System, kind: Kind, pick: u64) -> anyhow::Result<String> {
        let ns = &system.ns;
        match kind {
            Kind::WorkerKilled => {
                let pod = pick_worker(system, pick).await?;
                let pid = pod_process(&pod, "iotsub-worker")?;
                nix::sys::signal::kill(pid, Signal::SIGKILL)?;
                Ok(format!("pod {pod} (pid {pid})"))
            }
            Kind::PodDeleted => {
                let pod = pick_worker(system, pick).await?;
                ns.api::<Pod>().delete(&pod, &DeleteParams::default()).await?;
                Ok(format!("pod {pod}"))
            }
            Kind::LeaderKilled => {
                let leases: Api<Lease> = ns.api();
                let holder = leases.get("iotsub-operator").await?.spec.and_then(|s| s.holder_identity);
                let pod = holder.ok_or_else(|| anyhow::anyhow!("the Lease iotsub-operator has no holder"))?;
                let pid = pod_process(&pod, "iotsub-operator")?;
                nix::sys::signal::kill(pid, Signal::SIGKILL)?;
                Ok(format!("leader {pod} (pid {pid})"))
            }
            Kind::ConnectionsDropped => {
                let group = GROUPS[(pick % GROUPS.len() as u64) as usize];
                let dropped = system.emulator.inject("drop-connections", group).await?.dropped.unwrap_or(0);
                Ok(format!("{group}: {dropped} connections"))
            }
            Kind::LoginsRefused => {
                let group = GROUPS[(pick % GROUPS.len() as u64) as usize];
                system.emulator.inject("refuse-logins", group).await?;
                let dropped = system.emulator.inject("drop-connections", group).await?.dropped.unwrap_or(0);
                Ok(format!("{group}: {dropped} connections dropped, logins refused"))
            }
            Kind::SinkUnavailable | Kind::SinkUnauthorized => {
                let status = if kind == Kind::SinkUnavailable { 503 } else { 401 };
                let body = json!({"status": status, "seconds": kind.lasts().as_secs_f64()});
                let response = reqwest::Client::new()
                    .post(format!("http://{}/admin/fault", system.standin))
                    .json(&body)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await?;
                anyhow::ensure!(response.status().is_success(), "the stand-in refused the fault: {}", response.status());
                Ok(format!("business server answers {status}"))
            }
            Kind::ApiServerRestarted => restart_component("kube-apiserver").await,
            Kind::EtcdRestarted => restart_component("etcd").await,
            Kind::NodeAgentRestarted => {
                let agent = std::fs::read_to_string(run_dir().join("node-agent")).unwrap_or_else(|_| "lk-agent".into());
                restart_component(agent.trim()).await
            }
            Kind::CredentialsRotated => {
                self.rotated = !self.rotated;
                let rotated = self.rotated;
                retry("rotating the credentials", || setup::put_credentials(ns, rotated)).await?;
                Ok(format!("keys of {}", if rotated { "rotated" } else { "demo" }))
            }
            Kind::Scaled => {
                let sub = SUBS.iter().find(|s| s.max_replicas.is_none()).expect("a subscription without autoscaling");
                let api: Api<ConsumerGroupSubscription> = ns.api();
                let current = retry("reading the subscription", || api.get(sub.name)).await?.spec.replicas;
                let replicas = if current >= 2 { 1 } else { 2 };
                let args = ["scale".to_owned(), format!("consumergroupsubscription/{}", sub.name), format!("--replicas={replicas}")];
                retry("kubectl scale", || kubectl(&system.ns, &args)).await?;
                Ok(format!("{} {current} → {replicas} replicas", sub.name))
            }
            Kind::CreditChanged => {
                let sub = SUBS[(pick % SUBS.len() as u64) as usize];
                let api: Api<ConsumerGroupSubscription> = ns.api();
                let current = retry("reading the subscription", || api.get(sub.name)).await?.spec.connection.credit;
                let credit = if current == 100 { 200 } else { 100 };
                let (params, patch) = (PatchParams::default(), Patch::Merge(json!({"spec": {"connection": {"credit": credit}}})));
                retry("changing the credit", || api.patch(sub.name, &params, &patch)).await?;
                Ok(format!("{} credit {current} → {credit}", sub.name))
            }
        }
    }

    /// Ends a fault that lasts (the stand-in's faults end by themselves).
    pub async fn end(&mut self, system: &System, kind: Kind, target: &str) -> anyhow::Result<()> {
        if kind == Kind::LoginsRefused {
            let group = target.split(':').next().unwrap_or_default();
            system.emulator.inject("resume", group).await?;
        }
        Ok(())
    }
}

/// A worker pod of any subscription, chosen by `pick` among those running.
async fn pick_worker(system: &System, pick: u64) -> anyhow::Result<String> {
    let pods: Api<Pod> = system.ns.api();
    let list = pods.list(&ListParams::default().labels("app.kubernetes.io/name=iotsub-worker")).await?;
    let mut running: Vec<String> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(ResourceExt::name_any)
        .collect();
    running.sort();
    anyhow::ensure!(!running.is_empty(), "no worker pod is running");
    Ok(running.swap_remove((pick % running.len() as u64) as usize))
}

/// The process of `binary` in the pod named `pod`: the one whose environment holds
/// `POD_NAME=<pod>` (the downward API sets it in the worker's and the operator's containers).
fn pod_process(pod: &str, binary: &str) -> anyhow::Result<Pid> {
    let needle = format!("POD_NAME={pod}");
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<i32>() else { continue };
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let Ok(comm) = std::fs::read_to_string(proc_dir.join("comm")) else { continue };
        // comm is cut at 15 bytes.
        if !binary.starts_with(comm.trim()) {
            continue;
        }
        let Ok(environ) = std::fs::read(proc_dir.join("environ")) else { continue };
        if environ.split(|b| *b == 0).any(|var| var == needle.as_bytes()) {
            return Ok(Pid::from_raw(pid));
        }
    }
    anyhow::bail!("no {binary} process of pod {pod} on this machine")
}

/// `target/localkube/run`, where the local cluster keeps its components' pids.
fn run_dir() -> PathBuf {
    kubeconfig_path().parent().map_or_else(|| workspace_root().join("target/localkube"), Path::to_path_buf).join("run")
}

/// SIGKILL of a component of the local cluster, a pause, then `tests/cluster/up.sh` starts it
/// again and waits until the cluster can run pods.
async fn restart_component(name: &str) -> anyhow::Result<String> {
    let pid_file = run_dir().join(format!("{name}.pid"));
    let pid: i32 =
        std::fs::read_to_string(&pid_file).map_err(|e| anyhow::anyhow!("reading {}: {e}", pid_file.display()))?.trim().parse()?;
    // Its process group: the component and what it started (nsenter runs the kubelet as a child).
    nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL)?;
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let output = tokio::process::Command::new(workspace_root().join("tests/cluster/up.sh")).output().await?;
    anyhow::ensure!(output.status.success(), "up.sh after killing {name}: {}", String::from_utf8_lossy(&output.stderr));
    Ok(format!("{name} (pid {pid}) down {:.1} s", down.elapsed().as_secs_f64()))
}

/// `kubectl -n <namespace> <args>`; the error is its stderr.
async fn kubectl(ns: &crate::TestNamespace, args: &[String]) -> anyhow::Result<()> {
    let output = tokio::process::Command::new(crate::cluster::kubectl())
        .args(["-n", &ns.name])
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .await?;
    anyhow::ensure!(output.status.success(), "kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    Ok(())
}

/// Retries an API call for up to a minute (the API server may be restarting).
async fn retry<T, E: std::fmt::Display, F, Fut>(what: &str, mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() < deadline => {
                eprintln!("soak: {what}: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => anyhow::bail!("{what}: {e}"),
        }
    }
}
