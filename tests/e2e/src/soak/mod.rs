//! The soak (`make soak`): the whole system under steady load and bursts while faults strike on a
//! seeded schedule, with the invariants checked as it runs and at the end. docs/reliability.md
//! describes it and holds the figures of a 30-minute run.

pub mod chaos;
pub mod load;
pub mod schedule;
pub mod setup;
pub mod verdict;
pub mod watch;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use iotsub_crds::ConsumerGroupSubscription;
use iotsub_emulator::admin::AcknowledgedIds;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use self::{
    chaos::{Chaos, Injected},
    load::{Log, STEADY_PER_SECOND},
    schedule::{Event, Kind, Planned},
    setup::{GROUPS, SUBS, System},
    verdict::{Delivery, Health, Published, Taken},
};

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub run: Duration,
    pub seed: u64,
    /// Where the stand-in's ids file and the run's record (`soak.json`) go.
    pub dir: PathBuf,
}

/// Subscriptions must be Ready this long after the last fault ended.
const READY_AFTER_LAST_FAULT: Duration = Duration::from_secs(60);
/// Once the load stops, what was published must be delivered within this, plus a second per
/// [`DRAIN_RATE`] messages of the largest backlog (the platform pushes stacked messages at a
/// limited rate per group, and a failed push blocks them for a minute).
const DRAIN: Duration = Duration::from_secs(180);
const DRAIN_RATE: u64 = 500;

/// Per kind of fault: how often it struck and how long the system took to recover.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindSummary {
    pub kind: Kind,
    pub name: &'static str,
    pub count: usize,
    pub not_done: usize,
    /// Seconds from the fault's end to every subscription Ready and every group flowing.
    pub recovery_median_s: Option<f64>,
    pub recovery_max_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub seed: u64,
    pub run_seconds: f64,
    pub plan: Vec<Planned>,
    pub faults: Vec<Injected>,
    pub kinds: Vec<KindSummary>,
    pub delivery: Delivery,
    pub dead_letters_received: usize,
    pub publish_failures: u64,
    pub peak_clients: BTreeMap<String, usize>,
    pub cap: usize,
    /// The platform's refusals of the subscriptions' workers, by stage and condition.
    pub refusals: BTreeMap<String, usize>,
    /// Seconds from the last fault's end to every subscription Ready.
    pub ready_after_last_fault_s: Option<f64>,
    /// Seconds from the load's end to every message delivered.
    pub drained_after_s: Option<f64>,
    pub broken: Vec<String>,
    pub samples: Vec<watch::Sample>,
}

pub async fn run(settings: &Settings) -> anyhow::Result<Report> {
    println!("soak: seed {} (SOAK_SEED={} replays this plan), {:.0} s of load", settings.seed, settings.seed, settings.run.as_secs_f64());
    let records = settings.dir.join("standin");
    let _ = std::fs::remove_file(records.join("ids.txt"));
    let system = setup::start(&records).await?;
    setup::all_ready(&system.ns, Duration::from_secs(180)).await?;
    println!("soak: {} subscriptions Ready in namespace {}; load and faults start", SUBS.len(), system.ns.name);

    let emulator = system.emulator.clone();
    let started = Instant::now();
    let stop_load = CancellationToken::new();
    let stop_watch = CancellationToken::new();
    let seen = watch::Shared::default();
    let subs_api: Api<ConsumerGroupSubscription> = system.ns.api();
    let pods_api: Api<Pod> = system.ns.api();
    let watcher = watch::start(emulator.clone(), (subs_api.clone(), pods_api), started, seen.clone(), stop_watch.clone());
    let logs: Vec<Log> = GROUPS.iter().map(|_| Log::default()).collect();
    let loads: Vec<_> =
        GROUPS.iter().zip(&logs).map(|(g, log)| load::steady(emulator.clone(), g, log.clone(), stop_load.clone())).collect();

    let plan = schedule::plan(settings.seed, settings.run, GROUPS.len() as u32);
    let faults = strike_all(&system, &plan, &logs, started, &seen).await;
    tokio::time::sleep(settings.run.saturating_sub(started.elapsed())).await;
    let last_end = faults.iter().map(|f| f.ended).fold(0.0, f64::max);

    // Recovery is judged under load: the load goes on until every subscription is Ready again (a
    // worker whose sink circuit opened needs a message to probe it with).
    let mut broken = Vec::new();
    let ready_deadline =
        Duration::from_secs_f64((last_end + READY_AFTER_LAST_FAULT.as_secs_f64() - started.elapsed().as_secs_f64()).max(1.0));
    let ready_after_last_fault_s = match setup::all_ready(&system.ns, ready_deadline).await {
        Ok(()) => Some(started.elapsed().as_secs_f64() - last_end),
        Err(e) => {
            broken.push(format!("not every subscription was Ready within {} s of the last fault: {e:#}", READY_AFTER_LAST_FAULT.as_secs()));
            None
        }
    };
    stop_load.cancel();
    for load in loads {
        load.await?;
    }
    let load_ended = started.elapsed().as_secs_f64();
    println!("soak: the last fault ended at {last_end:.0} s; load stopped at {load_ended:.0} s");

    let published: Vec<Published> = logs.iter().flat_map(|l| l.lock().unwrap().messages.clone()).collect();
    let mut backlog = 0;
    for group in GROUPS {
        backlog = backlog.max(system.emulator.group_snapshot(group).await?.backlog);
    }
    let drain = DRAIN + Duration::from_secs(backlog / DRAIN_RATE);
    println!("soak: waiting up to {} s for the backlog (at most {backlog} in a group) to be delivered", drain.as_secs());
    let drained_after_s = match drained(&system, published.len(), drain).await {
        Ok(()) => Some(started.elapsed().as_secs_f64() - load_ended),
        Err(e) => {
            broken.push(format!("what was published was not all delivered within {} s of the load's end: {e:#}", drain.as_secs()));
            None
        }
    };
    stop_watch.cancel();
    watcher.await?;

    broken.extend(operator_errors(&subs_api).await);
    // Acknowledged first, then what the sink took: each acknowledgement follows its 2xx, and the
    // stand-in writes an id down just after answering, so the file is read once it caught up.
    let mut acknowledged = Vec::new();
    for group in GROUPS {
        acknowledged.extend(acknowledged_ids(&system, group).await?);
    }
    let dead: Vec<String> = system.dead_letters.requests().iter().filter_map(|r| r.ce_id().map(str::to_owned)).collect();
    standin_flushed(&system).await?;
    let taken = read_taken(&records.join("ids.txt"))?;
    let delivery = verdict::delivery(&published, &taken, &dead, &acknowledged);
    broken.extend(delivery.broken());

    let refusals = refusals(&system, &mut broken).await?;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    broken.extend(seen.broken.iter().cloned());
    let kinds = summarize(&faults, &health(&seen.samples));
    let report = Report {
        seed: settings.seed,
        run_seconds: load_ended,
        plan,
        faults,
        kinds,
        delivery,
        dead_letters_received: dead.len(),
        publish_failures: logs.iter().map(|l| l.lock().unwrap().failures).sum(),
        peak_clients: seen.peak_clients,
        cap: setup::CAP,
        refusals,
        ready_after_last_fault_s,
        drained_after_s,
        broken,
        samples: seen.samples,
    };
    std::fs::write(settings.dir.join("soak.json"), serde_json::to_vec_pretty(&report)?)?;
    drop(system);
    Ok(report)
}

/// Does the plan in time: bursts and faults at their moments, faults that last ended by a task of
/// their own; returns every fault as it was done.
async fn strike_all(system: &System, plan: &[Planned], logs: &[Log], started: Instant, seen: &watch::Shared) -> Vec<Injected> {
    let mut chaos = Chaos::default();
    let mut faults: Vec<Injected> = Vec::new();
    // Faults that last, and when they end: ended in order as time passes.
    let mut lasting: Vec<(usize, Instant)> = Vec::new();
    for planned in plan {
        let at = started + planned.at;
        loop {
            let next_end = lasting.iter().map(|(_, end)| *end).min();
            match next_end {
                Some(end) if end <= at => {
                    tokio::time::sleep_until(end.into()).await;
                    end_lasting(system, &mut chaos, &mut faults, &mut lasting, started, seen).await;
                }
                _ => break,
            }
        }
        tokio::time::sleep_until(at.into()).await;
        let Event::Fault(kind) = planned.event else {
            let group = GROUPS[(planned.pick % GROUPS.len() as u64) as usize];
            let log = &logs[(planned.pick % GROUPS.len() as u64) as usize];
            println!("soak: {:6.1} s burst of {} into {group}", started.elapsed().as_secs_f64(), load::BURST);
            load::publish(&system.emulator, group, load::BURST, log).await;
            continue;
        };
        let began = started.elapsed().as_secs_f64();
        let outcome = chaos.strike(system, kind, planned.pick).await;
        let now = started.elapsed().as_secs_f64();
        let (target, done) = match outcome {
            Ok(target) => (target, true),
            Err(e) => (format!("not done: {e:#}"), false),
        };
        println!("soak: {began:6.1} s {:<34} {target}", kind.name());
        faults.push(Injected { kind, planned: planned.at.as_secs_f64(), began, ended: now, target, done });
        if done && !kind.lasts().is_zero() {
            lasting.push((faults.len() - 1, Instant::now() + kind.lasts()));
        } else {
            let mut seen = seen.lock().unwrap();
            seen.quiet_since = seen.quiet_since.max(now);
        }
    }
    while !lasting.is_empty() {
        let end = lasting.iter().map(|(_, end)| *end).min().expect("not empty");
        tokio::time::sleep_until(end.into()).await;
        end_lasting(system, &mut chaos, &mut faults, &mut lasting, started, seen).await;
    }
    faults
}

async fn end_lasting(
    system: &System,
    chaos: &mut Chaos,
    faults: &mut [Injected],
    lasting: &mut Vec<(usize, Instant)>,
    started: Instant,
    seen: &watch::Shared,
) {
    let now = Instant::now();
    let (due, rest): (Vec<_>, Vec<_>) = lasting.drain(..).partition(|(_, end)| *end <= now);
    *lasting = rest;
    for (index, _) in due {
        let fault = &mut faults[index];
        if let Err(e) = chaos.end(system, fault.kind, &fault.target).await {
            fault.target.push_str(&format!("; ending it failed: {e:#}"));
        }
        fault.ended = started.elapsed().as_secs_f64();
        let mut seen = seen.lock().unwrap();
        seen.quiet_since = seen.quiet_since.max(fault.ended);
    }
}

/// Waits until the emulator has nothing left for any group and the stand-in wrote every id it took.
async fn drained(system: &System, published: usize, deadline: Duration) -> anyhow::Result<()> {
    iotsub_tests::wait_until(&format!("the {published} published messages delivered"), deadline, || async {
        for group in GROUPS {
            let snapshot = system.emulator.group_snapshot(group).await.ok()?;
            (snapshot.backlog == 0 && snapshot.in_flight == 0).then_some(())?;
        }
        Some(())
    })
    .await?;
    standin_flushed(system).await
}

/// Waits until the stand-in has written down every id it took.
async fn standin_flushed(system: &System) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let stats_url = format!("http://{}/admin/stats", system.standin);
    iotsub_tests::wait_until("the stand-in's ids file complete", Duration::from_secs(30), || async {
        let stats: serde_json::Value = http.get(&stats_url).send().await.ok()?.json().await.ok()?;
        (stats["idsFlushed"] == stats["eventsTaken"]).then_some(())
    })
    .await
}

/// Conditions a subscription must not end with: an error the operator left in its status.
async fn operator_errors(api: &Api<ConsumerGroupSubscription>) -> Vec<String> {
    let mut errors = Vec::new();
    for sub in SUBS {
        let Ok(cgs) = api.get(sub.name).await else {
            errors.push(format!("{}: the subscription could not be read at the end", sub.name));
            continue;
        };
        for condition in cgs.status.map(|s| s.conditions).unwrap_or_default() {
            let fine = condition.status == "True" || condition.type_ == "Autoscaling" && sub.max_replicas.is_none();
            if !fine {
                errors.push(format!(
                    "{}: condition {}={} ({}: {}) at the end",
                    sub.name, condition.type_, condition.status, condition.reason, condition.message
                ));
            }
        }
    }
    errors
}

fn read_taken(path: &std::path::Path) -> anyhow::Result<Vec<Taken>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading the stand-in's ids file {}: {e}", path.display()))?;
    text.lines()
        .map(|line| {
            let (id, at) = line.split_once('\t').ok_or_else(|| anyhow::anyhow!("ids file line without a time: {line:?}"))?;
            Ok(Taken { id: id.to_owned(), at_ms: at.parse()? })
        })
        .collect()
}

async fn acknowledged_ids(system: &System, group: &str) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    loop {
        let page: AcknowledgedIds =
            system.emulator.get_json(&format!("/admin/consumer-groups/{group}/acknowledged-ids?from={}", ids.len())).await?;
        if page.ids.is_empty() {
            return Ok(ids);
        }
        ids.extend(page.ids);
    }
}

/// The platform's refusals of our workers by stage and condition; one for the client cap breaks the
/// invariant (the operator started more clients than the cap leaves), the others are the faults'.
async fn refusals(system: &System, broken: &mut Vec<String>) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for refusal in system.emulator.refusals_typed().await? {
        let client = refusal.client_id.clone().unwrap_or_default();
        if client.starts_with(setup::OTHER_TEAM_PREFIX) {
            continue;
        }
        *counts.entry(format!("{} {}", refusal.stage.as_str(), refusal.condition)).or_default() += 1;
        if refusal.reason.contains("clients, the limit") {
            broken.push(format!("worker {client} was refused for the group's client cap: {}", refusal.reason));
        }
    }
    Ok(counts)
}

/// Each second's health, from the samples: every subscription Ready, every group flowing.
fn health(samples: &[watch::Sample]) -> Vec<Health> {
    const WINDOW: usize = 5;
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let before = &samples[i.saturating_sub(WINDOW)];
            let span = (s.t - before.t).max(1.0);
            let flowing = s.groups.iter().all(|(group, g)| {
                let earlier = before.groups.get(group).map_or(g.acknowledged, |b| b.acknowledged);
                verdict::flowing((g.acknowledged - earlier) as f64 / span, g.backlog, f64::from(STEADY_PER_SECOND))
            });
            let all_ready = s.subs.as_ref().is_some_and(|subs| subs.values().all(|sub| sub.is_ready));
            Health { t: s.t, all_ready, flowing }
        })
        .collect()
}

fn summarize(faults: &[Injected], health: &[Health]) -> Vec<KindSummary> {
    Kind::ALL
        .iter()
        .map(|&kind| {
            let of_kind: Vec<&Injected> = faults.iter().filter(|f| f.kind == kind).collect();
            let mut recoveries: Vec<f64> = of_kind.iter().filter(|f| f.done).filter_map(|f| verdict::recovery(health, f.ended)).collect();
            recoveries.sort_by(f64::total_cmp);
            KindSummary {
                kind,
                name: kind.name(),
                count: of_kind.len(),
                not_done: of_kind.iter().filter(|f| !f.done).count(),
                recovery_median_s: recoveries.get(recoveries.len() / 2).copied(),
                recovery_max_s: recoveries.last().copied(),
            }
        })
        .collect()
}

/// The lines `make soak` prints at the end.
pub fn summary(report: &Report) -> String {
    let d = &report.delivery;
    let mut out = format!(
        "soak: seed {}, {:.0} s: published {}, delivered {}, dead letters {}, lost {}, duplicates {} ({:.3} %), \
         acknowledged {} (not taken: {}); end-to-end latency p50 {} ms, p99 {} ms, max {} ms; peak clients {:?} of a cap of {}; \
         the platform refused the workers: {:?}\n",
        report.seed,
        report.run_seconds,
        d.published,
        d.delivered,
        d.dead_letters,
        d.lost,
        d.duplicates,
        d.duplicate_percent,
        d.acknowledged,
        d.acknowledged_not_taken,
        d.latency_p50_ms,
        d.latency_p99_ms,
        d.latency_max_ms,
        report.peak_clients,
        report.cap,
        report.refusals
    );
    for k in &report.kinds {
        let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0} s"));
        out.push_str(&format!(
            "  {:<34} ×{} {} recovery median {}, max {}\n",
            k.name,
            k.count,
            if k.not_done > 0 { format!("({} not done)", k.not_done) } else { String::new() },
            fmt(k.recovery_median_s),
            fmt(k.recovery_max_s)
        ));
    }
    if report.broken.is_empty() {
        out.push_str("soak: every invariant held\n");
    } else {
        for b in &report.broken {
            out.push_str(&format!("soak: BROKEN: {b}\n"));
        }
    }
    out
}
