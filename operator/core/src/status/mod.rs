//! The status to write: spec + observations + `now` → `ConsumerGroupSubscriptionStatus`, one
//! module per condition. Time is a parameter so tests compare whole statuses.

mod autoscaling;
mod backlog;
mod clients;
mod credentials;
mod ready;
mod sink;
pub(crate) mod spec_allowed;

use iotsub_crds::{Backlog, ClientStatus, ConsumerGroupSubscription, ConsumerGroupSubscriptionStatus, conditions};
use kube_core::ResourceExt;
use time::OffsetDateTime;

pub(crate) use clients::clients;

use crate::{conditions::Condition, names, observed::Observed, timestamps::rfc3339};

/// The status for `observed`; `autoscaling` is the autoscaler's explanation, `None` when it is
/// disabled; `spec_allowed` the guard rails' verdict ([`spec_allowed::condition`]).
pub(crate) fn status(
    cgs: &ConsumerGroupSubscription,
    observed: &Observed,
    desired_replicas: i32,
    autoscaling: Option<Condition>,
    spec_allowed: Condition,
    now: OffsetDateTime,
) -> ConsumerGroupSubscriptionStatus {
    let previous = cgs.status.clone().unwrap_or_default();
    let deployment_status = observed.deployment.as_ref().and_then(|d| d.status.clone()).unwrap_or_default();
    let counts = ready::Counts {
        desired: desired_replicas,
        replicas: deployment_status.replicas.unwrap_or(0),
        ready: deployment_status.ready_replicas.unwrap_or(0),
        updated: deployment_status.updated_replicas.unwrap_or(0),
    };
    let connections = cgs.spec.connection.connections_per_pod.max(1);
    let platform = observed.platform.as_ref();
    let answer = platform.and_then(|p| p.status());
    let clients = clients(&observed.pods, connections, answer.map(|a| &a.client_connection_status_list.clients[..]));
    let ours: Vec<&ClientStatus> = clients.iter().filter(|c| !c.pod.is_empty()).collect();
    let connected_ours = ours.iter().filter(|c| c.connected).count();
    let backlog = match (answer, platform) {
        (Some(a), Some(p)) => {
            Some(Backlog { messages: a.accumulation_count, consumed_per_minute: a.consumer_speed, observed_at: rfc3339(p.at) })
        }
        _ => previous.backlog.clone(), // stale but dated by its observedAt
    };

    let credentials = credentials::condition(&observed.credentials, platform.map(|p| &p.answer));
    let backlog_condition = backlog::condition(platform.map(|p| &p.answer));
    let was_ready = previous.condition(conditions::READY).is_some_and(|c| c.status == conditions::TRUE);
    let mut ready = ready::condition(&ready::Input {
        credentials: &credentials,
        credentials_usable: observed.credentials.is_valid(),
        spec_allowed: &spec_allowed,
        counts,
        was_ready,
        clients: answer.map(|_| ready::Clients { connected: connected_ours, ours: ours.len() }),
        backlog: &backlog_condition,
    });
    let sink = sink::condition(&observed.sinks, observed.running_pods().count());
    if sink.is_false() && ready.is_false() {
        // Why the pods are not ready, when it is their sink.
        ready.message = format!("{}; {}", ready.message, sink.message);
    }
    let autoscaling = autoscaling::condition(autoscaling, previous.condition(conditions::AUTOSCALING), desired_replicas);

    let now = rfc3339(now);
    let generation = cgs.metadata.generation;
    let condition = |type_: &str, condition: Condition| {
        let status = condition.status.as_str();
        let since =
            previous.condition(type_).filter(|c| c.status == status).map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        iotsub_crds::Condition {
            type_: type_.into(),
            status: status.into(),
            reason: condition.reason.into(),
            message: condition.message,
            last_transition_time: since,
            observed_generation: generation,
        }
    };
    let last_scale_time = if previous.desired_replicas != desired_replicas && cgs.status.is_some() {
        Some(now.clone())
    } else {
        previous.last_scale_time.clone()
    };
    ConsumerGroupSubscriptionStatus {
        observed_generation: generation,
        replicas: counts.replicas,
        ready_replicas: counts.ready,
        desired_replicas,
        selector: names::selector(&cgs.name_any()),
        backlog,
        connected_clients: connected_ours as i32,
        clients,
        last_scale_time,
        conditions: vec![
            condition(conditions::READY, ready),
            condition(conditions::CREDENTIALS_VALID, credentials),
            condition(conditions::AUTOSCALING, autoscaling),
            condition(conditions::BACKLOG_AVAILABLE, backlog_condition),
            condition(conditions::SINK_AVAILABLE, sink),
            condition(conditions::SPEC_ALLOWED, spec_allowed),
        ],
    }
}

/// `1 replica`, `2 replicas`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        fixtures,
        observed::{Credentials, PlatformAnswer, PlatformObservation},
    };
    use iotsub_aliyun::{
        amqp::AccessKey,
        answer::CallError,
        consumer_group::{ClientConnectionInfo, ConsumerGroupStatus},
    };
    use iotsub_crds::Condition;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-02 03:04:05 UTC);

    /// [`super::status`] of a spec within the guard rails.
    fn status(
        cgs: &ConsumerGroupSubscription,
        observed: &Observed,
        desired_replicas: i32,
        autoscaling: Option<crate::conditions::Condition>,
        now: OffsetDateTime,
    ) -> ConsumerGroupSubscriptionStatus {
        super::status(cgs, observed, desired_replicas, autoscaling, spec_allowed::condition(None, &fixtures::guard()), now)
    }
    const NOW_TEXT: &str = "2026-01-02T03:04:05Z";

    fn valid() -> Credentials {
        Credentials::Valid {
            access_key: AccessKey { id: "demo".into(), secret: "demo-secret".to_owned().into(), security_token: None },
            assumed: false,
        }
    }

    fn answer(clients: &[&str]) -> PlatformObservation {
        let clients = clients
            .iter()
            .map(|id| ClientConnectionInfo {
                client_id: (*id).into(),
                client_ip_port: "127.1.0.2:40000".into(),
                online_time: 1_767_323_045_000,
                ..Default::default()
            })
            .collect();
        PlatformObservation {
            answer: PlatformAnswer::Status(ConsumerGroupStatus {
                envelope: iotsub_aliyun::consumer_group::Envelope { success: true, ..Default::default() },
                accumulation_count: 42,
                consumer_speed: 7,
                client_connection_status_list: iotsub_aliyun::consumer_group::ClientConnectionStatusList { clients },
                ..Default::default()
            }),
            at: NOW,
        }
    }

    fn observed(credentials: Credentials, platform: Option<PlatformObservation>, ready: i32) -> Observed {
        Observed {
            credentials,
            deployment: Some(fixtures::deployment_with_status(2, ready)),
            pods: vec![fixtures::pod("orders-abc-1"), fixtures::pod("orders-abc-2")],
            platform,
            sinks: vec![],
        }
    }

    fn cond<'a>(s: &'a ConsumerGroupSubscriptionStatus, t: &str) -> &'a Condition {
        s.condition(t).unwrap()
    }

    #[test]
    fn all_connected_is_ready_with_clients_joined() {
        let cgs = fixtures::subscription();
        let s = status(&cgs, &observed(valid(), Some(answer(&["orders-abc-1", "orders-abc-2", "someone-else"])), 2), 2, None, NOW);
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!((s.replicas, s.ready_replicas, s.desired_replicas, s.connected_clients), (2, 2, 2, 2));
        assert_eq!(s.selector, "app.kubernetes.io/instance=orders,app.kubernetes.io/name=iotsub-worker");
        assert_eq!(s.backlog, Some(Backlog { messages: 42, consumed_per_minute: 7, observed_at: NOW_TEXT.into() }));
        assert_eq!(
            s.clients,
            vec![
                ClientStatus {
                    client_id: "orders-abc-1".into(),
                    pod: "orders-abc-1".into(),
                    connected: true,
                    online_since: Some("2026-01-02T03:04:05Z".into()),
                    remote: Some("127.1.0.2:40000".into())
                },
                ClientStatus {
                    client_id: "orders-abc-2".into(),
                    pod: "orders-abc-2".into(),
                    connected: true,
                    online_since: Some("2026-01-02T03:04:05Z".into()),
                    remote: Some("127.1.0.2:40000".into())
                },
                ClientStatus {
                    client_id: "someone-else".into(),
                    pod: "".into(),
                    connected: true,
                    online_since: Some("2026-01-02T03:04:05Z".into()),
                    remote: Some("127.1.0.2:40000".into())
                },
            ]
        );
        assert_eq!(
            *cond(&s, "Ready"),
            Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "AllClientsConnected".into(),
                message: "2 replicas ready, 2 clients connected".into(),
                last_transition_time: NOW_TEXT.into(),
                observed_generation: Some(3)
            }
        );
        assert_eq!(cond(&s, "CredentialsValid").reason, "AcceptedByPlatform");
        assert_eq!(cond(&s, "BacklogAvailable").status, "True");
    }

    #[test]
    fn a_missing_client_is_not_ready() {
        let cgs = fixtures::subscription();
        let s = status(&cgs, &observed(valid(), Some(answer(&["orders-abc-1"])), 2), 2, None, NOW);
        assert_eq!((cond(&s, "Ready").status.as_str(), cond(&s, "Ready").reason.as_str()), ("False", "ClientsNotConnected"));
        assert!(!s.clients.iter().find(|c| c.client_id == "orders-abc-2").unwrap().connected);
    }

    #[test]
    fn several_connections_per_pod_are_numbered() {
        let pods = [fixtures::pod("p")];
        let ids: Vec<_> = clients(&pods, 3, None).into_iter().map(|c| c.client_id).collect();
        assert_eq!(ids, ["p-0", "p-1", "p-2"]);
    }

    #[test]
    fn missing_secret_and_key_name_the_reason_without_secrets() {
        let cgs = fixtures::subscription();
        let s = status(&cgs, &observed(Credentials::SecretNotFound { secret: "creds".into() }, None, 0), 2, None, NOW);
        assert_eq!(
            (cond(&s, "CredentialsValid").status.as_str(), cond(&s, "CredentialsValid").reason.as_str()),
            ("False", "SecretNotFound")
        );
        assert_eq!(cond(&s, "Ready").reason, "CredentialsInvalid");
        assert_eq!(cond(&s, "BacklogAvailable").status, "Unknown");
        let s = status(
            &cgs,
            &observed(Credentials::KeyMissing { secret: "creds".into(), key: "accessKeySecret".into() }, None, 0),
            2,
            None,
            NOW,
        );
        assert_eq!(cond(&s, "CredentialsValid").message, "Secret creds has no key accessKeySecret");
    }

    #[test]
    fn refused_and_unreachable_platform() {
        let cgs = fixtures::subscription();
        let mut refused = answer(&[]);
        refused.answer = PlatformAnswer::Failed(CallError::Refused {
            code: "SignatureDoesNotMatch".into(),
            request_id: "r".into(),
            message: "m".into(),
        });
        let s = status(&cgs, &observed(valid(), Some(refused), 2), 2, None, NOW);
        assert_eq!(cond(&s, "CredentialsValid").reason, "RefusedByPlatform");
        assert_eq!(cond(&s, "Ready").status, "False");
        let mut down = answer(&[]);
        down.answer = PlatformAnswer::Failed(CallError::Unreachable("connection failed (iot.cn-shanghai.aliyuncs.com:443)".into()));
        let s = status(&cgs, &observed(valid(), Some(down), 2), 2, None, NOW);
        assert_eq!(cond(&s, "BacklogAvailable").reason, "PlatformUnreachable");
        assert_eq!((cond(&s, "Ready").status.as_str(), cond(&s, "Ready").reason.as_str()), ("True", "ReplicasReady"));
        assert_eq!(cond(&s, "CredentialsValid").reason, "SecretFound");
        assert!(s.clients.iter().all(|c| !c.connected));
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let mut cgs = fixtures::subscription();
        let first =
            status(&cgs, &observed(valid(), Some(answer(&["orders-abc-1", "orders-abc-2"])), 1), 2, None, datetime!(2026-01-01 0:00 UTC));
        assert_eq!(cond(&first, "Ready").reason, "Progressing");
        cgs.status = Some(first);
        let again = status(&cgs, &observed(valid(), Some(answer(&["orders-abc-1"])), 1), 2, None, NOW);
        assert_eq!(cond(&again, "Ready").last_transition_time, "2026-01-01T00:00:00Z", "still False");
        assert_eq!(cond(&again, "CredentialsValid").last_transition_time, "2026-01-01T00:00:00Z");
        cgs.status = Some(again);
        let ready = status(&cgs, &observed(valid(), Some(answer(&["orders-abc-1", "orders-abc-2"])), 2), 2, None, NOW);
        assert_eq!(cond(&ready, "Ready").last_transition_time, NOW_TEXT);
        assert_eq!(ready.last_scale_time, None, "desired did not change");
        cgs.status = Some(ready);
        let scaled = status(&cgs, &observed(valid(), None, 2), 3, None, NOW);
        assert_eq!(scaled.last_scale_time.as_deref(), Some(NOW_TEXT));
    }

    #[test]
    fn autoscaling_condition_is_disabled_or_keeps_the_reason_of_the_last_change() {
        let mut cgs = fixtures::subscription();
        let off = status(&cgs, &observed(valid(), Some(answer(&[])), 2), 2, None, NOW);
        assert_eq!((cond(&off, "Autoscaling").status.as_str(), cond(&off, "Autoscaling").reason.as_str()), ("False", "Disabled"));
        let up = status(
            &cgs,
            &observed(valid(), Some(answer(&[])), 2),
            8,
            Some(crate::conditions::Condition::holds("ScaledUp", "scaled up from 2 to 8")),
            NOW,
        );
        cgs.status = Some(up);
        let steady = status(
            &cgs,
            &observed(valid(), Some(answer(&[])), 8),
            8,
            Some(crate::conditions::Condition::holds("Steady", "8 replicas")),
            NOW,
        );
        assert_eq!(
            (cond(&steady, "Autoscaling").reason.as_str(), cond(&steady, "Autoscaling").message.as_str()),
            ("ScaledUp", "scaled up from 2 to 8")
        );
        let held =
            status(&cgs, &observed(valid(), None, 8), 8, Some(crate::conditions::Condition::fails("BacklogUnavailable", "holding 8")), NOW);
        assert_eq!(cond(&held, "Autoscaling").reason, "BacklogUnavailable");
    }

    #[test]
    fn a_ready_subscription_stays_ready_while_it_scales() {
        let mut cgs = fixtures::subscription();
        let ready = status(&cgs, &observed(valid(), Some(answer(&["orders-abc-1", "orders-abc-2"])), 2), 2, None, NOW);
        assert_eq!(cond(&ready, "Ready").message, "2 replicas ready, 2 clients connected");
        cgs.status = Some(ready);
        let scaling = status(&cgs, &observed(valid(), Some(answer(&["orders-abc-1", "orders-abc-2"])), 2), 3, None, NOW);
        assert_eq!((cond(&scaling, "Ready").status.as_str(), cond(&scaling, "Ready").reason.as_str()), ("True", "Scaling"));
        assert_eq!(cond(&scaling, "Ready").message, "2 replicas ready, scaling to 3");
        cgs.status = None;
        let fresh = status(&cgs, &observed(valid(), None, 1), 2, None, NOW);
        assert_eq!(
            (cond(&fresh, "Ready").reason.as_str(), cond(&fresh, "Ready").message.as_str()),
            ("Progressing", "1 of 2 replicas ready"),
            "not ready before: progressing"
        );
    }
}
