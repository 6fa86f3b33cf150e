//! One reconcile: observe (I/O) → [`decide`] (pure) → apply (I/O).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use iotsub_common::jitter;
use iotsub_crds::ConsumerGroupSubscription;
use iotsub_operator_core::{
    Credentials, Decision, Note, Observed, Requeue, decide,
    decide::platform_first,
    disruption,
    events::{Event, EventType},
    observed::sink_suspects,
};
use kube::{
    ResourceExt,
    runtime::{controller::Action, reflector::ObjectRef},
};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::{apply, context::Context, metrics::ErrorLabels, observe, platform, sink_status};

/// What failed, by stage. Messages name the object, never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying the Deployment: {0}")]
    ApplyDeployment(#[source] kube::Error),
    #[error("applying the PodDisruptionBudget: {0}")]
    ApplyDisruptionBudget(#[source] kube::Error),
    #[error("writing status: {0}")]
    WriteStatus(#[source] kube::Error),
    #[error("the watch caches of {0} are not filled yet")]
    CachesNotReady(String),
    #[error("reading a referenced Secret: {0}")]
    ReadSecret(#[source] kube::Error),
}

impl Error {
    /// The `error` label of `iotsub_operator_reconcile_errors_total`, and the Event's action.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::ApplyDeployment(_) => "apply_deployment",
            Error::ApplyDisruptionBudget(_) => "apply_disruption_budget",
            Error::WriteStatus(_) => "write_status",
            Error::CachesNotReady(_) => "caches_not_ready",
            Error::ReadSecret(_) => "read_secret",
        }
    }
}

/// A failed reconcile is retried this soon.
const RETRY_AFTER: Duration = Duration::from_secs(5);

pub async fn reconcile(cgs: Arc<ConsumerGroupSubscription>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_at(&cgs, &ctx, OffsetDateTime::now_utc()).await;
    ctx.metrics.reconcile_seconds.observe(started.elapsed().as_secs_f64());
    if let Err(error) = &result {
        let event = Event {
            type_: EventType::Warning,
            reason: "ReconcileError".into(),
            action: error.metric_label().into(),
            note: error.to_string(),
        };
        apply::events(&ctx.recorder, &cgs, vec![event]).await;
    }
    result
}

#[expect(clippy::needless_pass_by_value, reason = "the signature `Controller::run` calls")]
pub fn error_policy(cgs: Arc<ConsumerGroupSubscription>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(subscription = %cgs.name_any(), namespace = cgs.namespace().as_deref().unwrap_or(""), stage = error.metric_label(), %error, "reconcile failed");
    ctx.metrics.reconcile_errors.get_or_create(&ErrorLabels { error: error.metric_label().into() }).inc();
    Action::requeue(RETRY_AFTER)
}

async fn reconcile_at(cgs: &ConsumerGroupSubscription, ctx: &Context, now: OffsetDateTime) -> Result<Action, Error> {
    if cgs.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the Deployment.
        ctx.forget(cgs);
        return Ok(Action::await_change());
    }
    let key = ObjectRef::from_obj(cgs);
    let mut memory = ctx.memories.get(&key);
    let mut observed = observe::cluster(ctx, cgs).await.map_err(Error::ReadSecret)?;
    observed.sinks = sink_status::read(&ctx.worker_http, sink_suspects(&observed.pods), ctx.worker_port).await;
    if platform_first(cgs) {
        ask_platform(ctx, cgs, &mut observed, &mut memory, now).await;
    }
    let mut decision = decide(cgs, &observed, &memory, now, &ctx.guard);
    // Remembered before anything can fail: the platform's answer and the autoscaler's
    // recommendation stand even when the apply does not go through.
    ctx.memories.put(key.clone(), decision.memory.clone());
    if let Some(deployment) = &decision.deployment {
        ctx.metrics.deployment_applies.inc();
        apply::deployment(&ctx.client, deployment).await.map_err(Error::ApplyDeployment)?;
    }
    // One worker at a time may be evicted: applied with the Deployment, and whenever it is missing
    // or was edited by hand.
    let budget = disruption::budget(cgs);
    if decision.deployment.is_some() || disruption::needs_apply(ctx.stores.budgets.get(&ObjectRef::from_obj(&budget)).as_deref(), &budget) {
        apply::disruption_budget(&ctx.client, &budget).await.map_err(Error::ApplyDisruptionBudget)?;
    }
    let mut memory = decision.memory.clone();
    if !platform_first(cgs) && ask_platform(ctx, cgs, &mut observed, &mut memory, now).await {
        // Asked after the apply, so a slow OpenAPI never delays the workers; its answer cannot
        // change the Deployment (no autoscaling), only the status and Events.
        decision = Decision { deployment: None, ..decide(cgs, &observed, &memory, now, &ctx.guard) };
        ctx.memories.put(key, decision.memory.clone());
    }
    log_notes(cgs, &decision.notes);
    ctx.metrics.observe_subscription(cgs, decision.status.as_ref().or(cgs.status.as_ref()));
    if let Some(status) = &decision.status {
        apply::status(&ctx.client, cgs, status).await.map_err(Error::WriteStatus)?;
    }
    if !decision.events.is_empty() {
        let ready = decision.status.as_ref().and_then(|s| s.condition("Ready")).map(|c| c.reason.clone());
        info!(subscription = %cgs.name_any(), namespace = cgs.namespace().as_deref().unwrap_or(""), events = decision.events.len(), ready = ?ready, "reconciled with changes");
        apply::events(&ctx.recorder, cgs, decision.events).await;
    }
    Ok(Action::requeue(match decision.requeue {
        Requeue::After(after) => after,
        Requeue::Spread(interval) => Duration::from_millis(500) + interval.mul_f64(jitter::unit()),
    }))
}

/// With usable credentials, fills `observed.platform` (remembered, or a new call); `false` when
/// the credentials are not usable, so nothing was asked.
async fn ask_platform(
    ctx: &Context,
    cgs: &ConsumerGroupSubscription,
    observed: &mut Observed,
    memory: &mut iotsub_operator_core::Memory,
    now: OffsetDateTime,
) -> bool {
    let Credentials::Valid { access_key, .. } = &observed.credentials else {
        return false;
    };
    observed.platform = Some(platform::observe(ctx, cgs, access_key, memory, now).await);
    true
}

fn log_notes(cgs: &ConsumerGroupSubscription, notes: &[Note]) {
    let name = cgs.name_any();
    let namespace = cgs.namespace().unwrap_or_default();
    for note in notes {
        match note {
            Note::UndoingEdit { field } => {
                info!(subscription = %name, namespace, field, "a field the operator owns was edited on the worker Deployment: undoing it");
            }
            Note::MakingRoom { replicas } => {
                info!(subscription = %name, namespace, replicas, "a new pod template: making room under the client cap before the pods roll");
            }
            Note::Autoscaled { from, to, reading, rolling_out, outcome } => {
                let (backlog, others, draining) = reading.map_or((-1, -1, -1), |r| (r.backlog, r.others, r.draining));
                info!(
                    subscription = %name, namespace, from, to, backlog, others, draining, rolling_out,
                    outcome = ?outcome, "autoscaler changes the replicas"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use iotsub_operator_core::{
        Memory,
        fixtures::{World, creds, now, subscription},
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::fixtures::{
        self,
        Answer::{self, Accept, Fail},
        Call::{ApplyDeployment, ApplyDisruptionBudget, ApplyStatus, Event, GetSecret},
        Scenario,
    };

    /// Runs one reconcile of `world` against the mocked API server, which asserts `scenario`.
    async fn reconcile_in(world: &World, scenario: Scenario) -> (Result<Action, Error>, Arc<Context>) {
        let (ctx, server) = fixtures::context(world);
        let server = server.run(scenario);
        // An unexpected call is never answered: the reconcile waits for it until this timeout.
        let result = tokio::time::timeout(Duration::from_secs(5), reconcile_at(&world.cgs, &ctx, now())).await;
        server.await.expect("the scenario ran").assert_idle();
        (result.expect("the reconcile finished"), ctx)
    }

    fn event(reason: &str) -> crate::fixtures::Call {
        Event(reason.into())
    }

    #[tokio::test]
    async fn a_new_subscription_gets_its_deployment_then_status_then_events() {
        let mut world = World::new(subscription());
        world.ask_platform();
        let scenario = Scenario(vec![
            (ApplyDeployment, Accept),
            (ApplyDisruptionBudget, Accept),
            (ApplyStatus, Accept),
            (event("Created"), Accept),
            (event("AcceptedByPlatform"), Accept),
        ]);
        let (result, _) = reconcile_in(&world, scenario).await;
        assert_eq!(result.expect("reconciled"), Action::requeue(Duration::from_secs(15)));
    }

    #[tokio::test]
    async fn a_settled_subscription_makes_no_call() {
        let world = World::new(subscription()).settle();
        let (result, _) = reconcile_in(&world, Scenario(vec![])).await;
        assert_eq!(result.expect("reconciled"), Action::requeue(Duration::from_secs(15)));
    }

    #[tokio::test]
    async fn a_rotated_key_makes_no_call_the_workers_re_read_it() {
        let mut world = World::new(subscription()).settle();
        world.put_secret(Some(&creds("rotated")));
        let (result, _) = reconcile_in(&world, Scenario(vec![])).await;
        result.expect("reconciled");
    }

    #[tokio::test]
    async fn referenced_secrets_are_fetched_once_and_reused_while_their_version_is_unchanged() {
        let world = World::new(subscription()).settle();
        let object = |name: &str| {
            Answer::Object(serde_json::to_value(world.secrets.iter().find(|s| s.metadata.name.as_deref() == Some(name))).unwrap())
        };
        let (ctx, server) = fixtures::context_fetching(&world);
        let server = server
            .run(Scenario(vec![(GetSecret("creds".into()), object("creds")), (GetSecret("emulator-ca".into()), object("emulator-ca"))]));
        let result = tokio::time::timeout(Duration::from_secs(5), reconcile_at(&world.cgs, &ctx, now())).await;
        server.await.expect("the scenario ran").assert_idle();
        result.expect("the reconcile finished").expect("reconciled");
        assert_eq!(ctx.secrets.held(), 2, "exactly the referenced Secrets");

        // Same versions: no call. (The mocked server is gone: a call would fail the reconcile.)
        reconcile_at(&world.cgs, &ctx, now()).await.expect("reconciled from what was fetched");
    }

    #[tokio::test]
    async fn a_deleted_secret_writes_status_and_warns_without_touching_the_deployment() {
        let mut world = World::new(subscription()).settle();
        world.put_secret(None);
        let scenario = Scenario(vec![(ApplyStatus, Accept), (event("SecretNotFound"), Accept), (event("CredentialsInvalid"), Accept)]);
        let (result, _) = reconcile_in(&world, scenario).await;
        result.expect("reconciled");
    }

    #[tokio::test]
    async fn a_failed_apply_is_an_error_and_a_warning_event() {
        let mut world = World::new(subscription());
        world.ask_platform();
        let (ctx, server) = fixtures::context(&world);
        let server = server.run(Scenario(vec![(ApplyDeployment, Fail), (event("ReconcileError"), Accept)]));
        let result = tokio::time::timeout(Duration::from_secs(5), reconcile(Arc::new(world.cgs.clone()), ctx.clone())).await;
        server.await.expect("the scenario ran").assert_idle();
        let result = result.expect("the reconcile finished");
        assert!(matches!(result, Err(Error::ApplyDeployment(_))), "{result:?}");
        assert_eq!(error_policy(Arc::new(world.cgs.clone()), &result.unwrap_err(), ctx), Action::requeue(RETRY_AFTER));
    }

    #[tokio::test]
    async fn a_refused_disruption_budget_is_an_error_after_the_deployment_went_through() {
        let mut world = World::new(subscription());
        world.ask_platform();
        let scenario = Scenario(vec![(ApplyDeployment, Accept), (ApplyDisruptionBudget, Fail)]);
        let (result, _) = reconcile_in(&world, scenario).await;
        let error = result.expect_err("the budget was refused");
        assert!(matches!(error, Error::ApplyDisruptionBudget(_)), "{error:?}");
        assert_eq!(error.metric_label(), "apply_disruption_budget");
    }

    /// A settled world whose first pod runs but is not ready, at 127.0.0.1.
    fn with_an_unready_pod() -> World {
        let mut world = World::new(subscription()).settle();
        world.observed.pods[0].status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some("127.0.0.1".into()),
            conditions: Some(vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        world
    }

    /// A worker's `/status` on 127.0.0.1, answering `sink`; its port.
    async fn worker_status(sink: serde_json::Value) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let app = axum::Router::new().route(
            "/status",
            axum::routing::get(move || {
                let sink = sink.clone();
                async move { axum::Json(serde_json::json!({ "sink": sink, "ready": false })) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    /// [`reconcile_in`] with the workers' HTTP port at `port`.
    async fn reconcile_with_workers_on(world: &World, port: u16, scenario: Scenario) -> Result<Action, Error> {
        let (ctx, server) = fixtures::context(world);
        let mut ctx = Arc::into_inner(ctx).expect("the only reference");
        ctx.worker_port = port;
        let server = server.run(scenario);
        let result = tokio::time::timeout(Duration::from_secs(5), reconcile_at(&world.cgs, &ctx, now())).await;
        server.await.expect("the scenario ran").assert_idle();
        result.expect("the reconcile finished")
    }

    #[tokio::test]
    async fn an_unready_pod_whose_sink_breaker_is_open_turns_sink_available_false_with_a_warning() {
        let world = with_an_unready_pod();
        let port = worker_status(serde_json::json!({
            "type": "http", "target": "http://sink.team:8080/in", "deadLetter": "log", "state": "open",
            "consecutiveFailures": 12, "lastError": "HTTP 503 Service Unavailable", "since": "2026-01-02T03:00:00Z"
        }))
        .await;
        let scenario = Scenario(vec![(ApplyStatus, Accept), (event("SinkFailing"), Accept)]);
        reconcile_with_workers_on(&world, port, scenario).await.expect("reconciled");
    }

    #[tokio::test]
    async fn an_unready_pod_that_cannot_be_read_is_unknown_not_failing() {
        let world = with_an_unready_pod();
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("an address").port();
        let scenario = Scenario(vec![(ApplyStatus, Accept)]);
        reconcile_with_workers_on(&world, port, scenario).await.expect("reconciled");
    }

    #[tokio::test]
    async fn a_deleted_subscription_is_forgotten_without_a_call() {
        let mut world = World::new(subscription()).settle();
        world.cgs.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let (result, ctx) = reconcile_in(&world, Scenario(vec![])).await;
        assert_eq!(result.expect("reconciled"), Action::await_change());
        assert_eq!(ctx.memories.get(&ObjectRef::from_obj(&world.cgs)), Memory::default());
    }

    #[tokio::test]
    async fn what_a_failed_reconcile_learned_is_remembered() {
        let mut cgs = subscription();
        cgs.spec.autoscaling = Some(iotsub_crds::Autoscaling { target_backlog_per_replica: 100, ..Default::default() });
        let mut world = World::new(cgs);
        world.backlog = 300;
        world.ask_platform();
        let (result, ctx) = reconcile_in(&world, Scenario(vec![(ApplyDeployment, Fail)])).await;
        assert!(matches!(result, Err(Error::ApplyDeployment(_))), "{result:?}");
        let memory = ctx.memories.get(&ObjectRef::from_obj(&world.cgs));
        assert_eq!(memory.recent.observed_since(), Some(now()), "the autoscaler's recommendation counts for its window");
    }
}
