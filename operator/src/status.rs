//! Status, pure: spec + observations + "now" → the status to write. Time is a parameter so tests
//! compare whole statuses.

use std::collections::BTreeMap;

use iotsub_aliyun::client::CallError;
use iotsub_crds::{
    Backlog, ClientStatus, Condition, ConsumerGroupSubscription, ConsumerGroupSubscriptionStatus,
    conditions::{self, reason},
};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::{
    desired,
    observe::{Credentials, Observed},
    platform::PlatformAnswer,
};

/// The Autoscaling condition as the autoscaler explained its decision: (status, reason, message).
pub type AutoscalingCondition = (&'static str, &'static str, String);

/// The status for `observed`; `autoscaling` is `None` when it is disabled; `now` is RFC 3339.
pub fn status(
    cgs: &ConsumerGroupSubscription,
    observed: &Observed,
    desired_replicas: i32,
    autoscaling: Option<AutoscalingCondition>,
    now: &str,
) -> ConsumerGroupSubscriptionStatus {
    let previous = cgs.status.clone().unwrap_or_default();
    let generation = cgs.metadata.generation;
    let deployment_status = observed.deployment.as_ref().and_then(|d| d.status.clone()).unwrap_or_default();
    let replicas = deployment_status.replicas.unwrap_or(0);
    let ready = deployment_status.ready_replicas.unwrap_or(0);
    let updated = deployment_status.updated_replicas.unwrap_or(0);
    let connections = cgs.spec.connection.connections_per_pod.max(1) as u32;

    let platform = observed.platform.as_ref();
    let answer = platform.and_then(|p| match &p.answer {
        PlatformAnswer::Status(s) => Some(s),
        PlatformAnswer::Failed(_) => None,
    });
    let clients = clients(&observed.pods, connections, answer.map(|a| &a.client_connection_status_list.clients[..]));
    let ours: Vec<&ClientStatus> = clients.iter().filter(|c| !c.pod.is_empty()).collect();
    let connected_ours = ours.iter().filter(|c| c.connected).count();
    let backlog = match (answer, platform) {
        (Some(a), Some(p)) => {
            Some(Backlog { messages: a.accumulation_count, consumed_per_minute: a.consumer_speed, observed_at: p.observed_at.clone() })
        }
        _ => previous.backlog.clone(), // stale but dated by its observedAt
    };

    let credentials = credentials_condition(&observed.credentials, platform.map(|p| &p.answer));
    let backlog_condition = match platform.map(|p| &p.answer) {
        None => (conditions::UNKNOWN, reason::NOT_QUERIED, "the credentials are not usable, so the platform was not asked".to_owned()),
        Some(PlatformAnswer::Status(_)) => (conditions::TRUE, reason::QUERIED, "QueryConsumerGroupStatus answered".to_owned()),
        // Throttled by our own limiter is "not asked yet", not a failure of the platform.
        Some(PlatformAnswer::Failed(CallError::Throttled)) => (conditions::UNKNOWN, reason::THROTTLED, CallError::Throttled.to_string()),
        Some(PlatformAnswer::Failed(error)) => (conditions::FALSE, failure_reason(error), error.to_string()),
    };
    let rolled_out = replicas == desired_replicas && ready == desired_replicas && updated == desired_replicas;
    // Only the count changes, and it was ready: still ready (a scale step is not an outage).
    let was_ready = previous.condition(conditions::READY).is_some_and(|c| c.status == conditions::TRUE);
    let scaling = was_ready && ready > 0 && updated == replicas;
    let ready_condition = if !observed.credentials.is_valid() || credentials.0 == conditions::FALSE {
        (conditions::FALSE, reason::CREDENTIALS_INVALID, credentials.2.clone())
    } else if desired_replicas == 0 && replicas == 0 {
        (conditions::TRUE, reason::SCALED_TO_ZERO, "no replicas wanted".to_owned())
    } else if !rolled_out && scaling {
        (conditions::TRUE, reason::SCALING, format!("{} ready, scaling to {desired_replicas}", plural(ready, "replica")))
    } else if !rolled_out {
        let waiting = if updated < replicas { format!(", {updated} of {replicas} on the current template") } else { String::new() };
        (conditions::FALSE, reason::PROGRESSING, format!("{ready} of {} ready{waiting}", plural(desired_replicas, "replica")))
    } else if answer.is_none() {
        (
            conditions::TRUE,
            reason::REPLICAS_READY,
            format!("{} ready; connected clients unknown: {}", plural(ready, "replica"), backlog_condition.2),
        )
    } else if connected_ours == ours.len() {
        (
            conditions::TRUE,
            reason::ALL_CLIENTS_CONNECTED,
            format!("{} ready, {} connected", plural(ready, "replica"), plural(connected_ours as i32, "client")),
        )
    } else {
        (conditions::FALSE, reason::CLIENTS_NOT_CONNECTED, format!("{connected_ours} of {} connected", plural(ours.len() as i32, "client")))
    };
    // A steady count keeps the reason of the last change, which says why it is what it is.
    let last_change = previous
        .condition(conditions::AUTOSCALING)
        .and_then(|c| [reason::SCALED_UP, reason::SCALED_DOWN].into_iter().find(|r| *r == c.reason).map(|r| (r, c.message.clone())));
    let autoscaling_condition = match (autoscaling, last_change) {
        (None, _) => {
            (conditions::FALSE, reason::DISABLED, format!("autoscaling is not enabled: spec.replicas ({desired_replicas}) is used"))
        }
        (Some((_, reason::STEADY, _)), Some((last, message))) => (conditions::TRUE, last, message),
        (Some(explained), _) => explained,
    };
    let condition = |type_: &str, (status, reason, message): (&str, &str, String)| {
        let since =
            previous.condition(type_).filter(|c| c.status == status).map_or_else(|| now.to_owned(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time: since,
            observed_generation: generation,
        }
    };
    let last_scale_time = if previous.desired_replicas != desired_replicas && cgs.status.is_some() {
        Some(now.to_owned())
    } else {
        previous.last_scale_time.clone()
    };
    ConsumerGroupSubscriptionStatus {
        observed_generation: generation,
        replicas,
        ready_replicas: ready,
        desired_replicas,
        selector: desired::selector(&cgs.name_any()),
        backlog,
        connected_clients: connected_ours as i32,
        clients,
        last_scale_time,
        conditions: vec![
            condition(conditions::READY, ready_condition),
            condition(conditions::CREDENTIALS_VALID, credentials),
            condition(conditions::AUTOSCALING, autoscaling_condition),
            condition(conditions::BACKLOG_AVAILABLE, backlog_condition),
        ],
    }
}

/// `1 replica`, `2 replicas`.
fn plural(n: i32, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

fn credentials_condition(credentials: &Credentials, answer: Option<&PlatformAnswer>) -> (&'static str, &'static str, String) {
    match credentials {
        Credentials::SecretNotFound { secret } => (conditions::FALSE, reason::SECRET_NOT_FOUND, format!("Secret {secret} not found")),
        Credentials::KeyMissing { secret, key } => {
            (conditions::FALSE, reason::SECRET_KEY_MISSING, format!("Secret {secret} has no key {key}"))
        }
        Credentials::Valid { .. } => match answer {
            Some(PlatformAnswer::Failed(CallError::Refused { code, .. })) => {
                (conditions::FALSE, reason::REFUSED_BY_PLATFORM, format!("the platform's OpenAPI refused the credentials: {code}"))
            }
            Some(PlatformAnswer::Status(_)) => {
                (conditions::TRUE, reason::ACCEPTED_BY_PLATFORM, "the platform's OpenAPI accepted the credentials".into())
            }
            _ => (conditions::TRUE, reason::SECRET_FOUND, "the Secret holds every key the auth mode needs".into()),
        },
    }
}

fn failure_reason(error: &CallError) -> &'static str {
    match error {
        CallError::Throttled => reason::THROTTLED,
        CallError::Unreachable(_) => reason::PLATFORM_UNREACHABLE,
        CallError::Refused { .. } | CallError::Platform { .. } | CallError::Decode { .. } => reason::PLATFORM_ERROR,
    }
}

/// Each pod's clientIds (the pod name, or `<pod>-<i>` with several connections), joined with the
/// platform's connected clients; then the group's other clients, with no pod. Sorted by clientId.
pub fn clients(
    pods: &[Pod],
    connections: u32,
    platform: Option<&[iotsub_aliyun::consumer_group::ClientConnectionInfo]>,
) -> Vec<ClientStatus> {
    let connected: BTreeMap<&str, &iotsub_aliyun::consumer_group::ClientConnectionInfo> =
        platform.unwrap_or_default().iter().map(|c| (c.client_id.as_str(), c)).collect();
    let mut out: BTreeMap<String, ClientStatus> = BTreeMap::new();
    for pod in pods {
        let pod_name = pod.name_any();
        for id in desired::client_ids(&pod_name, connections as i32) {
            let info = connected.get(id.as_str());
            out.insert(
                id.clone(),
                ClientStatus {
                    client_id: id,
                    pod: pod_name.clone(),
                    connected: info.is_some(),
                    online_since: info.and_then(|i| epoch_ms_rfc3339(i.online_time)),
                    remote: info.map(|i| i.client_ip_port.clone()),
                },
            );
        }
    }
    for (id, info) in connected {
        out.entry(id.to_owned()).or_insert_with(|| ClientStatus {
            client_id: id.to_owned(),
            pod: String::new(),
            connected: true,
            online_since: epoch_ms_rfc3339(info.online_time),
            remote: Some(info.client_ip_port.clone()),
        });
    }
    out.into_values().collect()
}

fn epoch_ms_rfc3339(ms: i64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    at.format(&time::format_description::well_known::Rfc3339).ok()
}

pub fn rfc3339(at: time::OffsetDateTime) -> String {
    at.replace_nanosecond(0).unwrap_or(at).format(&time::format_description::well_known::Rfc3339).expect("RFC 3339 formats")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fixtures, platform::PlatformObservation};
    use iotsub_aliyun::{
        amqp::AccessKey,
        consumer_group::{ClientConnectionInfo, ConsumerGroupStatus},
    };

    const NOW: &str = "2026-01-02T03:04:05Z";

    fn valid() -> Credentials {
        Credentials::Valid {
            access_key: AccessKey { id: "demo".into(), secret: "demo-secret".into(), security_token: None },
            hash: "h".into(),
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
                success: true,
                accumulation_count: 42,
                consumer_speed: 7,
                client_connection_status_list: iotsub_aliyun::consumer_group::ClientConnectionStatusList { clients },
                ..Default::default()
            }),
            observed_at: NOW.into(),
            at: std::time::Instant::now(),
        }
    }

    fn observed(credentials: Credentials, platform: Option<PlatformObservation>, ready: i32) -> Observed {
        Observed {
            credentials,
            deployment: Some(fixtures::deployment_with_status(2, ready)),
            pods: vec![fixtures::pod("orders-abc-1"), fixtures::pod("orders-abc-2")],
            platform,
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
        assert_eq!(s.backlog, Some(Backlog { messages: 42, consumed_per_minute: 7, observed_at: NOW.into() }));
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
                last_transition_time: NOW.into(),
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
        refused.answer = PlatformAnswer::Failed(CallError::Refused { code: "SignatureDoesNotMatch".into(), message: "m".into() });
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
        let first = status(&cgs, &observed(valid(), Some(answer(&["orders-abc-1", "orders-abc-2"])), 1), 2, None, "2026-01-01T00:00:00Z");
        assert_eq!(cond(&first, "Ready").reason, "Progressing");
        cgs.status = Some(first);
        let again = status(&cgs, &observed(valid(), Some(answer(&["orders-abc-1"])), 1), 2, None, NOW);
        assert_eq!(cond(&again, "Ready").last_transition_time, "2026-01-01T00:00:00Z", "still False");
        assert_eq!(cond(&again, "CredentialsValid").last_transition_time, "2026-01-01T00:00:00Z");
        cgs.status = Some(again);
        let ready = status(&cgs, &observed(valid(), Some(answer(&["orders-abc-1", "orders-abc-2"])), 2), 2, None, NOW);
        assert_eq!(cond(&ready, "Ready").last_transition_time, NOW);
        assert_eq!(ready.last_scale_time, None, "desired did not change");
        cgs.status = Some(ready);
        let scaled = status(&cgs, &observed(valid(), None, 2), 3, None, NOW);
        assert_eq!(scaled.last_scale_time.as_deref(), Some(NOW));
    }

    #[test]
    fn autoscaling_condition_is_disabled_or_keeps_the_reason_of_the_last_change() {
        let mut cgs = fixtures::subscription();
        let off = status(&cgs, &observed(valid(), Some(answer(&[])), 2), 2, None, NOW);
        assert_eq!((cond(&off, "Autoscaling").status.as_str(), cond(&off, "Autoscaling").reason.as_str()), ("False", "Disabled"));
        let up = status(&cgs, &observed(valid(), Some(answer(&[])), 2), 8, Some(("True", "ScaledUp", "scaled up from 2 to 8".into())), NOW);
        cgs.status = Some(up);
        let steady = status(&cgs, &observed(valid(), Some(answer(&[])), 8), 8, Some(("True", "Steady", "8 replicas".into())), NOW);
        assert_eq!(
            (cond(&steady, "Autoscaling").reason.as_str(), cond(&steady, "Autoscaling").message.as_str()),
            ("ScaledUp", "scaled up from 2 to 8")
        );
        let held = status(&cgs, &observed(valid(), None, 8), 8, Some(("False", "BacklogUnavailable", "holding 8".into())), NOW);
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
