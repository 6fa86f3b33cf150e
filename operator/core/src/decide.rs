//! The one decision of a reconcile: what was observed and what is remembered → the Deployment to
//! apply, the status to write, the Events to publish, when to look again, and what to remember.

use std::time::Duration;

use iotsub_aliyun::redact::Redactor;
use iotsub_crds::{Autoscaling, ConsumerGroupSubscription, ConsumerGroupSubscriptionStatus};
use k8s_openapi::api::apps::v1::Deployment;
use kube_core::ResourceExt;
use time::OffsetDateTime;

use crate::{
    autoscale,
    conditions::Condition,
    desired,
    events::{self, Event},
    guard::Guard,
    memory::Memory,
    observed::{self, Credentials, Observed},
    rollout, status,
    timestamps::parse_rfc3339,
};

/// A reconcile is never more than this apart from the next, so status.clients follows the platform.
const MAX_REQUEUE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The Deployment to apply; `None` when the cluster's is already it, or the credentials are not
    /// usable (an existing Deployment is then left as it is: its pods keep working until the
    /// Secret is fixed, and no new pod is started that could only fail).
    pub deployment: Option<Deployment>,
    /// The status to write; `None` when it is unchanged.
    pub status: Option<ConsumerGroupSubscriptionStatus>,
    pub events: Vec<Event>,
    pub requeue: Requeue,
    /// What to remember for the next reconcile of this subscription.
    pub memory: Memory,
    /// What is worth a log line.
    pub notes: Vec<Note>,
}

/// When to reconcile again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    After(Duration),
    /// Our own rate limiter had no call left: retry at a random point within this interval, so
    /// subscriptions sharing an AccessKey spread their calls instead of retrying in step.
    Spread(Duration),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// A field the operator owns was edited by hand (a JSON pointer): the apply undoes it.
    UndoingEdit {
        field: String,
    },
    /// A new pod template waits: at the client cap, one pod fewer first.
    MakingRoom {
        replicas: i32,
    },
    Autoscaled {
        from: i32,
        to: i32,
        reading: Option<autoscale::Reading>,
        rolling_out: bool,
        outcome: autoscale::Outcome,
    },
}

/// Decides a reconcile of `cgs`. The `guard` says which worker image runs and what a spec may
/// ask for; a refused spec gets no Deployment and no change to one.
pub fn decide(cgs: &ConsumerGroupSubscription, observed: &Observed, memory: &Memory, now: OffsetDateTime, guard: &Guard) -> Decision {
    let mut memory = memory.clone();
    let mut notes = Vec::new();
    let refusal = guard.check(cgs);
    // Nothing is applied with credentials that are not usable (an existing Deployment's pods keep
    // working) or a spec the guard refuses.
    let applicable = observed.credentials.is_valid() && refusal.is_none();
    let template = desired::pod_template(cgs, guard.image(cgs), guard.pull_secrets());
    let hash = desired::template_hash(template.metadata.as_ref());
    let old_hash = observed.template_hash();
    // A new pod template (a spec change, another credentials source, the operator's image) is a
    // rollout: paced under the client cap below.
    let rotated = applicable && old_hash.is_some_and(|old| Some(old) != hash);
    // Pods of an older template still exist: the Deployment is replacing them. (Its status lags
    // behind an apply; the pods' own annotation does not.)
    let replacing =
        old_hash.is_some_and(|current| observed.pods.iter().any(|pod| desired::template_hash(Some(&pod.metadata)) != Some(current)));
    let reading = observed::reading(observed, &cgs.name_any(), cgs.spec.connection.connections_per_pod);
    let autoscaling = cgs.spec.enabled_autoscaling();
    let (desired_replicas, autoscaling_condition) = match autoscaling {
        None => (desired::static_replicas(cgs), None),
        Some(autoscaling) => {
            let step = Autoscale { cgs, autoscaling, observed, reading, rolling_out: rotated || replacing, now };
            let (replicas, condition, note) = step.decide(&mut memory.recent);
            notes.extend(note);
            (replicas, Some(condition))
        }
    };
    let running_pods = observed.running_pods().count();
    let view = rollout::View {
        autoscaling: autoscaling.is_some(),
        rotated,
        replacing,
        current: observed.current_replicas().unwrap_or(0),
        desired: desired_replicas,
        running_pods,
        terminating_pods: observed.pods.len() - running_pods,
        clients_closing: reading.is_some_and(|r| r.draining > 0),
    };
    let plan = rollout::plan(&view);
    let making_room = plan.making_room(&view);
    if making_room {
        notes.push(Note::MakingRoom { replicas: desired_replicas });
    }
    // While room is made, the pods keep the template they run (only the count changes).
    let template = match observed.deployment.as_ref().and_then(|d| d.spec.as_ref()) {
        Some(current) if making_room => current.template.clone(),
        _ => template,
    };
    let wanted = applicable.then(|| desired::deployment(cgs, desired_replicas, plan.paused, template));
    let created = wanted.is_some() && observed.deployment.is_none();
    let deployment = wanted.filter(|wanted| match observed.deployment.as_ref().map(|d| desired::outdated(d, wanted)) {
        None | Some(Some(desired::Outdated::Changed)) => true,
        Some(Some(desired::Outdated::Edited(field))) => {
            notes.push(Note::UndoingEdit { field });
            true
        }
        Some(None) => false,
    });

    let spec_allowed = status::spec_allowed::condition(refusal.as_ref(), guard);
    // A refused spec changes no count: the status says what runs, and no Scaled Event is told.
    let shown_replicas = if refusal.is_some() { observed.current_replicas().unwrap_or(0) } else { desired_replicas };
    let mut new_status = status::status(cgs, observed, shown_replicas, autoscaling_condition, spec_allowed, now);
    let before = cgs.status.as_ref();
    let mut events = events::changes(before, &new_status, created, rotated && !making_room);
    if let Credentials::Valid { access_key, .. } = &observed.credentials {
        // The last guard: whatever a message quotes (the platform's words), never a secret.
        let redactor = Redactor::for_key(access_key);
        for condition in &mut new_status.conditions {
            condition.message = redactor.redact(&condition.message);
        }
        for event in &mut events {
            event.note = redactor.redact(&event.note);
        }
    }
    let requeue = requeue(cgs, observed);
    let status = (before != Some(&new_status)).then_some(new_status);
    Decision { deployment, status, events, requeue, memory, notes }
}

/// The autoscaler's step of one reconcile.
struct Autoscale<'a> {
    cgs: &'a ConsumerGroupSubscription,
    autoscaling: &'a Autoscaling,
    observed: &'a Observed,
    reading: Option<autoscale::Reading>,
    rolling_out: bool,
    now: OffsetDateTime,
}

impl Autoscale<'_> {
    /// The replicas, the Autoscaling condition, and a note when the count changes; the
    /// recommendation is remembered in `recent` for the scale-down window.
    fn decide(&self, recent: &mut autoscale::Recent) -> (i32, Condition, Option<Note>) {
        let policy = autoscale::Policy::from_spec(&self.cgs.spec, self.autoscaling);
        let current = self.observed.current_replicas().unwrap_or(policy.min);
        let last_scale = self.cgs.status.as_ref().and_then(|s| s.last_scale_time.as_deref()).and_then(parse_rfc3339);
        let input =
            autoscale::Input { policy: &policy, current, reading: self.reading, rolling_out: self.rolling_out, last_scale, now: self.now };
        let decision = autoscale::decide(&input, recent);
        if let Some(recommendation) = decision.recommendation {
            recent.record(self.now, recommendation, policy.stabilization);
        }
        let note = (decision.replicas != current).then(|| Note::Autoscaled {
            from: current,
            to: decision.replicas,
            reading: self.reading,
            rolling_out: self.rolling_out,
            outcome: decision.outcome.clone(),
        });
        (decision.replicas, autoscale::condition(&input, &decision), note)
    }
}

/// How often the platform is polled (capped at [`MAX_REQUEUE`]), spread when throttled.
fn requeue(cgs: &ConsumerGroupSubscription, observed: &Observed) -> Requeue {
    let interval = poll_interval(cgs).min(MAX_REQUEUE);
    if observed.platform.as_ref().is_some_and(observed::PlatformObservation::is_throttled) {
        Requeue::Spread(interval)
    } else {
        Requeue::After(interval)
    }
}

/// How long an answer of the platform is reused: `autoscaling.pollIntervalSeconds` (15 s by default).
pub fn poll_interval(cgs: &ConsumerGroupSubscription) -> Duration {
    let seconds = cgs.spec.autoscaling.as_ref().map_or(15, |a| a.poll_interval_seconds).max(1);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(1))
}

/// Whether the platform's answer can change the Deployment (the autoscaler reads the backlog), so
/// it is asked before deciding. Otherwise it is asked after the apply, so a slow OpenAPI never
/// delays the workers.
pub fn platform_first(cgs: &ConsumerGroupSubscription) -> bool {
    cgs.spec.enabled_autoscaling().is_some()
}

#[cfg(test)]
mod tests {
    use iotsub_aliyun::answer::CallError;

    use super::*;
    use crate::{
        events::EventType,
        fixtures::{self, IMAGE, World, creds},
        guard::Guard,
        observed::{PlatformAnswer, PlatformObservation},
    };

    fn replicas(decision: &Decision) -> Option<i32> {
        decision.deployment.as_ref()?.spec.as_ref()?.replicas
    }

    fn template_hash(decision: &Decision) -> Option<String> {
        let observed = Observed { deployment: decision.deployment.clone(), ..World::new(fixtures::subscription()).observed };
        observed.template_hash().map(str::to_owned)
    }

    fn reasons(decision: &Decision) -> Vec<(&str, EventType)> {
        decision.events.iter().map(|e| (e.reason.as_str(), e.type_)).collect()
    }

    fn condition<'a>(decision: &'a Decision, type_: &str) -> (&'a str, &'a str) {
        let c = decision.status.as_ref().and_then(|s| s.condition(type_)).expect("a status with the condition");
        (c.status.as_str(), c.reason.as_str())
    }

    fn autoscaled(max: i32, cap: i32) -> ConsumerGroupSubscription {
        let mut cgs = fixtures::subscription();
        cgs.spec.autoscaling =
            Some(Autoscaling { max_replicas: max, client_cap: cap, target_backlog_per_replica: 100, ..Autoscaling::default() });
        cgs
    }

    #[test]
    fn first_creation_applies_the_deployment_and_says_so() {
        let mut world = World::new(fixtures::subscription());
        let decision = world.decide();
        assert_eq!(replicas(&decision), Some(2));
        assert!(template_hash(&decision).is_some(), "the template is stamped");
        assert_eq!(condition(&decision, "Ready"), ("False", "Progressing"));
        assert_eq!(reasons(&decision), [("Created", EventType::Normal), ("AcceptedByPlatform", EventType::Normal)]);
        assert_eq!(decision.requeue, Requeue::After(Duration::from_secs(15)));
    }

    #[test]
    fn a_settled_subscription_needs_no_call_at_all() {
        let mut world = World::new(fixtures::subscription()).settle();
        let decision = world.decide();
        assert_eq!((&decision.deployment, &decision.status, &decision.events), (&None, &None, &vec![]));
        assert_eq!(world.cgs.status.as_ref().and_then(|s| s.condition("Ready")).map(|c| c.reason.as_str()), Some("AllClientsConnected"));
    }

    #[test]
    fn a_spec_change_applies_the_new_count() {
        let mut world = World::new(fixtures::subscription()).settle();
        world.cgs.spec.replicas = 3;
        let decision = world.decide();
        assert_eq!(replicas(&decision), Some(3));
        assert_eq!(reasons(&decision), [("Scaled", EventType::Normal)]);
        assert_eq!(condition(&decision, "Ready"), ("True", "Scaling"));
    }

    /// The credentials now come from another Secret (another volume in the pod template).
    fn move_credentials(world: &mut World) {
        world.cgs.spec.credentials.secret_name = Some("creds-v2".into());
        world.put_secret(Some(&fixtures::secret("creds-v2", &[("accessKeyId", "v2"), ("accessKeySecret", "v2-secret")])));
    }

    #[test]
    fn a_new_key_in_the_same_secret_changes_no_pod() {
        let mut world = World::new(fixtures::subscription()).settle();
        world.put_secret(Some(&creds("rotated")));
        let decision = world.decide();
        assert_eq!(decision.deployment, None, "the workers re-read the mounted Secret at their next connection attempt");
        assert!(reasons(&decision).is_empty(), "{:?}", reasons(&decision));
    }

    #[test]
    fn another_credentials_secret_rolls_the_pods() {
        let mut world = World::new(fixtures::subscription()).settle();
        let old = world.observed.template_hash().map(str::to_owned);
        move_credentials(&mut world);
        let decision = world.decide();
        let new = template_hash(&decision);
        assert!(new.is_some() && new != old, "{new:?} after {old:?}");
        assert_eq!(replicas(&decision), Some(2));
        assert!(reasons(&decision).contains(&("PodTemplateChanged", EventType::Normal)), "{:?}", reasons(&decision));
        assert!(decision.notes.is_empty());
    }

    #[test]
    fn at_the_client_cap_a_new_credentials_source_waits_for_room() {
        let mut world = World::new(autoscaled(4, 4));
        world.backlog = 10_000;
        let mut world = world.settle();
        assert_eq!(world.observed.current_replicas(), Some(4), "the cap is full");
        let old = world.observed.template_hash().map(str::to_owned);
        move_credentials(&mut world);
        let decision = world.decide();
        assert_eq!(replicas(&decision), Some(3), "one pod fewer first");
        assert_eq!(template_hash(&decision), old, "still the old template");
        let template = &decision.deployment.as_ref().unwrap().spec.as_ref().unwrap().template;
        let volumes = serde_json::to_string(&template.spec.as_ref().unwrap().volumes).unwrap();
        assert!(volumes.contains("\"creds\"") && !volumes.contains("creds-v2"), "the old template whole, not only its hash: {volumes}");
        assert!(decision.notes.contains(&Note::MakingRoom { replicas: 3 }), "{:?}", decision.notes);
        assert!(!reasons(&decision).iter().any(|(r, _)| *r == "PodTemplateChanged"));
        // Once the count is real, the pods roll.
        world.carry_out(&decision);
        let decision = world.decide();
        assert_ne!(template_hash(&decision), old);
        assert!(reasons(&decision).contains(&("PodTemplateChanged", EventType::Normal)));
    }

    #[test]
    fn any_spec_change_the_pods_are_made_from_waits_for_room_at_the_cap() {
        let mut world = World::new(autoscaled(4, 4));
        world.backlog = 10_000;
        let mut world = world.settle();
        let old = world.observed.template_hash().map(str::to_owned);
        world.cgs.spec.connection.credit = 500;
        let decision = world.decide();
        assert_eq!(replicas(&decision), Some(3), "one pod fewer first");
        assert_eq!(template_hash(&decision), old, "the running template, credit and all");
        world.carry_out(&decision);
        let decision = world.decide();
        assert_ne!(template_hash(&decision), old, "then the new one");
        assert!(reasons(&decision).contains(&("PodTemplateChanged", EventType::Normal)));
    }

    #[test]
    fn invalid_credentials_leave_the_deployment_alone_and_warn() {
        let mut world = World::new(fixtures::subscription()).settle();
        world.put_secret(None);
        let decision = world.decide();
        assert_eq!(decision.deployment, None, "its pods keep working until the Secret is fixed");
        assert_eq!(condition(&decision, "CredentialsValid"), ("False", "SecretNotFound"));
        assert_eq!(condition(&decision, "Ready"), ("False", "CredentialsInvalid"));
        assert_eq!(condition(&decision, "BacklogAvailable"), ("Unknown", "NotQueried"));
        assert_eq!(reasons(&decision), [("SecretNotFound", EventType::Warning), ("CredentialsInvalid", EventType::Normal)]);
        let mut fresh = World::new(fixtures::subscription());
        fresh.put_secret(Some(&fixtures::secret("creds", &[("accessKeyId", "demo")])));
        let decision = fresh.decide();
        assert_eq!(decision.deployment, None, "no Deployment whose pods could only fail");
        assert_eq!(condition(&decision, "CredentialsValid"), ("False", "SecretKeyMissing"));
    }

    #[test]
    fn an_unreachable_platform_keeps_the_workers_and_says_why() {
        let mut world = World::new(fixtures::subscription()).settle();
        world.platform_down = true;
        let decision = world.decide();
        assert_eq!(decision.deployment, None);
        assert_eq!(condition(&decision, "BacklogAvailable"), ("False", "PlatformUnreachable"));
        assert_eq!(condition(&decision, "Ready"), ("True", "ReplicasReady"));
        assert_eq!(condition(&decision, "CredentialsValid"), ("True", "SecretFound"));
        // With autoscaling, the count holds.
        let mut world = World::new(autoscaled(8, 64));
        world.backlog = 300;
        let mut world = world.settle();
        world.platform_down = true;
        let decision = world.decide();
        assert_eq!(decision.deployment, None, "3 replicas held");
        assert_eq!(condition(&decision, "Autoscaling"), ("False", "BacklogUnavailable"));
        assert!(reasons(&decision).contains(&("BacklogUnavailable", EventType::Warning)));
    }

    #[test]
    fn a_hand_edit_of_the_deployment_is_undone() {
        let mut cgs = fixtures::subscription();
        let quantity = |q: &str| k8s_openapi::apimachinery::pkg::api::resource::Quantity(q.into());
        cgs.spec.worker.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some([("memory".to_owned(), quantity("256Mi"))].into()),
            ..Default::default()
        });
        let settled = World::new(cgs).settle();
        type Edit = fn(&mut Deployment);
        fn container(d: &mut Deployment) -> &mut k8s_openapi::api::core::v1::Container {
            &mut d.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0]
        }
        let edits: [(&str, Edit); 7] = [
            ("scaled by hand", |d| d.spec.as_mut().unwrap().replicas = Some(5)),
            ("paused by hand", |d| d.spec.as_mut().unwrap().paused = Some(true)),
            ("another image", |d| container(d).image = Some("evil:latest".into())),
            ("an env value (kubectl set env)", |d| {
                let env = container(d).env.as_mut().unwrap().iter_mut().find(|e| e.name == "IOTSUB_CREDIT").unwrap();
                env.value = Some("7".into());
            }),
            ("an env var removed", |d| container(d).env.as_mut().unwrap().retain(|e| e.name != "IOTSUB_CREDIT")),
            ("a pod template label", |d| {
                d.spec
                    .as_mut()
                    .unwrap()
                    .template
                    .metadata
                    .as_mut()
                    .unwrap()
                    .labels
                    .as_mut()
                    .unwrap()
                    .insert("app.kubernetes.io/name".into(), "x".into());
            }),
            ("resources", |d| {
                container(d).resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
                    limits: Some([("memory".to_owned(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Ti".into()))].into()),
                    ..Default::default()
                });
            }),
        ];
        for (what, edit) in edits {
            let mut world = settled.clone();
            edit(world.observed.deployment.as_mut().unwrap());
            let decision = world.decide();
            let wanted = decision.deployment.as_ref().unwrap_or_else(|| panic!("{what}: not undone"));
            let spec = wanted.spec.as_ref().unwrap();
            assert_eq!((spec.replicas, spec.paused), (Some(2), Some(false)), "{what}");
            assert_eq!(spec.template.spec.as_ref().unwrap().containers[0].image.as_deref(), Some(IMAGE), "{what}");
        }
    }

    #[test]
    fn fields_the_operator_does_not_own_are_left_alone() {
        let settled = World::new(fixtures::subscription()).settle();
        let mut world = settled.clone();
        let deployment = world.observed.deployment.as_mut().unwrap();
        deployment.metadata.annotations.as_mut().unwrap().insert("team.example/owner".into(), "ops".into());
        let template = deployment.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        template.containers[0].image_pull_policy = Some("IfNotPresent".into()); // the API server's default
        template.containers[0].env.as_mut().unwrap().push(k8s_openapi::api::core::v1::EnvVar {
            name: "TZ".into(),
            value: Some("UTC".into()),
            value_from: None,
        });
        assert_eq!(world.decide().deployment, None, "no apply for fields others own");
    }

    #[test]
    fn a_throttled_call_spreads_the_next_reconcile() {
        let mut world = World::new(fixtures::subscription());
        world.observed.platform = Some(PlatformObservation { answer: PlatformAnswer::Failed(CallError::Throttled), at: fixtures::now() });
        let decision = decide(&world.cgs, &world.observed, &world.memory, fixtures::now(), &world.guard);
        assert_eq!(decision.requeue, Requeue::Spread(Duration::from_secs(15)));
    }

    #[test]
    fn a_worker_image_outside_the_guard_rails_creates_and_changes_nothing_and_warns() {
        let mut cgs = fixtures::subscription();
        cgs.spec.worker.image = "evil.example/steal:latest".into();
        let decision = World::new(cgs.clone()).decide();
        assert_eq!(decision.deployment, None, "no Deployment for a refused spec");
        assert_eq!(condition(&decision, "SpecAllowed"), ("False", "WorkerImageNotAllowed"));
        assert_eq!(condition(&decision, "Ready"), ("False", "SpecNotAllowed"));
        assert_eq!(reasons(&decision), [("WorkerImageNotAllowed", EventType::Warning), ("AcceptedByPlatform", EventType::Normal)]);
        let note = &decision.events[0].note;
        assert!(note.contains("--allowed-worker-images") && note.contains("evil.example/steal:latest"), "{note}");

        // A settled subscription whose spec turns to a refused image keeps its Deployment as it is.
        let mut settled = World::new(fixtures::subscription()).settle();
        settled.cgs.spec.worker.image = "evil.example/steal:latest".into();
        settled.cgs.spec.replicas = 5;
        let decision = settled.decide();
        assert_eq!(decision.deployment, None, "neither the image nor the count changes");
        assert_eq!(condition(&decision, "SpecAllowed"), ("False", "WorkerImageNotAllowed"));
        assert_eq!(decision.status.as_ref().map(|s| s.desired_replicas), Some(2), "the count that runs");
        assert_eq!(reasons(&decision), [("WorkerImageNotAllowed", EventType::Warning), ("SpecNotAllowed", EventType::Normal)], "no Scaled");

        // An allowed glob lets it run.
        let mut allowed = World::new(cgs);
        allowed.guard = Guard::new(IMAGE, &["evil.example/*".into()], true, true, true).expect("guard");
        let decision = allowed.decide();
        let image = decision.deployment.as_ref().and_then(|d| d.spec.as_ref()?.template.spec.as_ref()?.containers[0].image.clone());
        assert_eq!(image.as_deref(), Some("evil.example/steal:latest"));
        assert_eq!(condition(&decision, "SpecAllowed"), ("True", "Allowed"));
    }

    #[test]
    fn an_unlabelled_secret_is_not_used_and_says_which_label_and_flag() {
        let mut world = World::new(fixtures::subscription());
        let mut secret = creds("demo");
        secret.metadata.labels = None;
        world.put_secret(Some(&secret));
        let decision = world.decide();
        assert_eq!(decision.deployment, None);
        assert_eq!(condition(&decision, "CredentialsValid"), ("False", "SecretNotLabelled"));
        assert_eq!(condition(&decision, "Ready"), ("False", "CredentialsInvalid"));
        assert_eq!(condition(&decision, "BacklogAvailable"), ("Unknown", "NotQueried"), "its keys are not used to call the platform");
        assert_eq!(reasons(&decision), [("SecretNotLabelled", EventType::Warning)]);
        let note = &decision.events[0].note;
        assert!(note.contains("iotsub.dev/credentials=true") && note.contains("--require-secret-label=false"), "{note}");
    }

    #[test]
    fn no_status_message_or_event_holds_the_token_or_secret_in_any_encoding() {
        let token = "CAIS+sts/Token=42";
        let mut world = World::new(fixtures::subscription()).settle();
        world.cgs.spec.credentials.auth_mode = iotsub_aliyun::AuthMode::StsToken;
        let secret = fixtures::secret("creds", &[("accessKeyId", "STS.id"), ("accessKeySecret", "sts-secret"), ("securityToken", token)]);
        world.put_secret(Some(&secret));
        let redactor = Redactor::for_values([token, "sts-secret"]);
        // A gateway message that echoes the request in whatever form (answer.rs cuts the known one).
        let echo = format!("raw {token} query {} signed {}", openapi_encode(token), openapi_encode(&openapi_encode(token)));
        let echo = format!("{echo} base64 {} secret sts-secret", base64_of(token));
        for answer in [
            CallError::Refused { code: "SignatureDoesNotMatch".into(), request_id: "r".into(), message: echo.clone() },
            CallError::Platform { code: "InternalError".into(), request_id: "r".into(), message: echo.clone() },
        ] {
            world.observed.platform = Some(PlatformObservation { answer: PlatformAnswer::Failed(answer), at: fixtures::now() });
            let decision = decide(&world.cgs, &world.observed, &world.memory, fixtures::now(), &world.guard);
            let status = decision.status.as_ref().expect("a changed status");
            let text = serde_json::to_string(status).expect("serializes") + &format!("{:?}", decision.events);
            assert!(status.conditions.iter().any(|c| c.message.contains("<redacted>")), "the failure is reported: {text}");
            assert!(!redactor.finds_any(&text), "{text}");
        }
    }

    fn openapi_encode(text: &str) -> String {
        iotsub_aliyun::openapi::percent_encode(text)
    }

    fn base64_of(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn the_autoscaler_remembers_its_recommendations() {
        let mut world = World::new(autoscaled(8, 64));
        world.backlog = 300;
        let decision = world.decide();
        assert_eq!(replicas(&decision), Some(3));
        assert_eq!(decision.memory.recent.observed_since(), Some(fixtures::now()));
        assert!(matches!(decision.notes[..], [Note::Autoscaled { from: 1, to: 3, .. }]), "{:?}", decision.notes);
    }
}
