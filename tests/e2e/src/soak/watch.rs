//! One look at the whole system every second: each group as the platform (emulator) sees it, each
//! subscription's status, each worker pod's readiness. The invariants that must hold at every
//! moment are checked here: a group's clients never above its cap, no worker pod not-ready for
//! more than two minutes after the last fault ended.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use iotsub_crds::ConsumerGroupSubscription;
use iotsub_tests::Emulator;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt, api::ListParams};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::setup::{CAP, GROUPS, OTHER_TEAM_PREFIX, SUBS};

/// How long a worker pod may stay not-ready once no fault is going on.
pub const STUCK_AFTER: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSample {
    pub backlog: u64,
    pub published: u64,
    pub acknowledged: u64,
    pub ours: usize,
    pub others: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubSample {
    pub desired: i32,
    pub ready: i32,
    /// The Ready condition is True.
    pub is_ready: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Seconds since the load started.
    pub t: f64,
    pub groups: BTreeMap<String, GroupSample>,
    /// Absent while the API server does not answer.
    pub subs: Option<BTreeMap<String, SubSample>>,
    pub pods_not_ready: Option<usize>,
}

/// What the watch saw, shared with the run.
#[derive(Default)]
pub struct Seen {
    pub samples: Vec<Sample>,
    /// Invariants broken while the run went on, each once with when.
    pub broken: Vec<String>,
    /// The end of the latest fault, seconds into the run (set by the run as faults end).
    pub quiet_since: f64,
    pub peak_clients: BTreeMap<String, usize>,
}

pub type Shared = Arc<Mutex<Seen>>;

pub fn start(
    emulator: Arc<Emulator>,
    ns_api: (Api<ConsumerGroupSubscription>, Api<Pod>),
    started: Instant,
    seen: Shared,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (subs_api, pods_api) = ns_api;
        let mut not_ready_since: HashMap<String, f64> = HashMap::new();
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => break,
            }
            let t = started.elapsed().as_secs_f64();
            let mut sample = Sample { t, ..Sample::default() };
            for group in GROUPS {
                let Ok(snapshot) = emulator.group_snapshot(group).await else { continue };
                let attached: Vec<&str> = snapshot.clients.iter().filter(|c| c.attached).map(|c| c.client_id.as_str()).collect();
                let others = attached.iter().filter(|id| id.starts_with(OTHER_TEAM_PREFIX)).count();
                sample.groups.insert(
                    group.into(),
                    GroupSample {
                        backlog: snapshot.backlog,
                        published: snapshot.counters.published,
                        acknowledged: snapshot.counters.acknowledged,
                        ours: attached.len() - others,
                        others,
                    },
                );
                let mut seen = seen.lock().unwrap();
                let peak = seen.peak_clients.entry(group.into()).or_default();
                *peak = (*peak).max(attached.len());
                if attached.len() > CAP {
                    seen.broken
                        .push(format!("at {t:.0} s group {group} had {} clients, above its cap of {CAP}: {attached:?}", attached.len()));
                }
            }
            sample.subs = subs(&subs_api).await;
            if let Ok(pods) = pods_api.list(&ListParams::default().labels("app.kubernetes.io/name=iotsub-worker")).await {
                let mut now_not_ready = Vec::new();
                for pod in pods.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
                    let ready = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                    if !ready {
                        now_not_ready.push(pod.name_any());
                    }
                }
                not_ready_since.retain(|name, _| now_not_ready.contains(name));
                let mut seen = seen.lock().unwrap();
                for name in &now_not_ready {
                    let since = *not_ready_since.entry(name.clone()).or_insert(t);
                    let counted_from = since.max(seen.quiet_since);
                    if t - counted_from > STUCK_AFTER.as_secs_f64() {
                        seen.broken.push(format!(
                            "at {t:.0} s worker pod {name} was not ready for {:.0} s after the last fault ended",
                            t - counted_from
                        ));
                        not_ready_since.insert(name.clone(), t); // reported once per two minutes
                    }
                }
                sample.pods_not_ready = Some(now_not_ready.len());
            }
            seen.lock().unwrap().samples.push(sample);
        }
    })
}

async fn subs(api: &Api<ConsumerGroupSubscription>) -> Option<BTreeMap<String, SubSample>> {
    let mut subs = BTreeMap::new();
    for sub in SUBS {
        let status = api.get(sub.name).await.ok()?.status.unwrap_or_default();
        let is_ready = status.condition("Ready").is_some_and(|c| c.status == "True");
        subs.insert(sub.name.into(), SubSample { desired: status.desired_replicas, ready: status.ready_replicas, is_ready });
    }
    Some(subs)
}
