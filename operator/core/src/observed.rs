//! What a reconcile observed, as plain data, and the pure checks on it: which credentials the
//! Secrets hold, and the autoscaler's reading of the platform's answer.

use std::collections::{BTreeMap, HashSet};

use iotsub_aliyun::{AuthMode, amqp::AccessKey, answer::CallError, consumer_group::ConsumerGroupStatus};
use iotsub_crds::ConsumerGroupSubscription;
use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::Deployment,
        core::v1::{Pod, Secret},
    },
};
use kube_core::ResourceExt;
use time::OffsetDateTime;

use crate::{
    autoscale,
    guard::Guard,
    names::{self, ACCESS_KEY_ID, ACCESS_KEY_SECRET, SECURITY_TOKEN},
};

#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub credentials: Credentials,
    pub deployment: Option<Deployment>,
    /// The subscription's worker pods, terminating ones included.
    pub pods: Vec<Pod>,
    /// `None` when the platform was not asked (unusable credentials, or not yet in this reconcile).
    pub platform: Option<PlatformObservation>,
    /// The sinks of the pods that run but are not ready ([`sink_suspects`]); empty when every pod
    /// is ready, as nothing is asked then.
    pub sinks: Vec<SinkReading>,
}

/// One pod's answer to `GET /status`, its `sink` object; `sink` is `None` when it could not be
/// read (unreachable, timed out, not JSON): unknown, not failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkReading {
    pub pod: String,
    pub sink: Option<PodSink>,
}

/// The worker's `/status` `sink` object. `target` and `lastError` are redacted by the worker
/// (no userinfo, query or header value).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSink {
    #[serde(rename = "type")]
    pub kind: String,
    pub target: String,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    pub since: String,
}

impl PodSink {
    pub fn is_failing(&self) -> bool {
        self.state != BreakerState::Ok
    }
}

pub use iotsub_common::sink::BreakerState;

/// The pods whose sink is worth asking about, as (name, pod IP): running, not shutting down, with
/// an address, and not Ready (a worker whose breaker is open says so on `/readyz`). A settled
/// subscription has none, so it costs no call.
pub fn sink_suspects(pods: &[Pod]) -> Vec<(String, String)> {
    pods.iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let status = pod.status.as_ref()?;
            let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
            let ip = status.pod_ip.as_ref().filter(|ip| !ip.is_empty())?;
            (status.phase.as_deref() == Some("Running") && !ready).then(|| (pod.name_any(), ip.clone()))
        })
        .collect()
}

/// What the Secrets hold (or STS gave, with RRSA), checked. The secret values stay in
/// `access_key` (whose `Debug` redacts).
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    Valid {
        access_key: AccessKey,
        /// From STS (RRSA), not from a Secret.
        assumed: bool,
    },
    SecretNotFound {
        secret: String,
    },
    KeyMissing {
        secret: String,
        key: String,
    },
    /// The Secret lacks `iotsub.dev/credentials: "true"` (and the operator requires it): its
    /// data is not read.
    NotLabelled {
        secret: String,
    },
    /// RRSA: no STS credentials for the ServiceAccount (`reason` is the condition's).
    RoleNotAssumed(RoleRefusal),
}

/// Why RRSA gave the operator no credentials: a condition reason and a message without secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRefusal {
    pub reason: &'static str,
    pub message: String,
}

/// Where the key comes from, as observed: `credentials.secretName`'s Secret (`None`: not found),
/// or the outcome of the RRSA exchange.
#[derive(Debug, Clone, Copy)]
pub enum KeySource<'a> {
    Secret(Option<&'a Secret>),
    Rrsa(Result<&'a AccessKey, &'a RoleRefusal>),
}

impl Credentials {
    pub fn is_valid(&self) -> bool {
        matches!(self, Credentials::Valid { .. })
    }
}

/// The platform's answer to `QueryConsumerGroupStatus`.
#[derive(Debug, Clone, PartialEq)]
pub enum PlatformAnswer {
    Status(ConsumerGroupStatus),
    Failed(CallError),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlatformObservation {
    pub answer: PlatformAnswer,
    pub at: OffsetDateTime,
}

impl PlatformObservation {
    pub fn status(&self) -> Option<&ConsumerGroupStatus> {
        match &self.answer {
            PlatformAnswer::Status(status) => Some(status),
            PlatformAnswer::Failed(_) => None,
        }
    }

    pub fn is_throttled(&self) -> bool {
        matches!(self.answer, PlatformAnswer::Failed(CallError::Throttled))
    }
}

impl Observed {
    /// The Deployment's pod-template hash: which template its newest pods are made from.
    pub fn template_hash(&self) -> Option<&str> {
        crate::desired::template_hash(self.deployment.as_ref()?.spec.as_ref()?.template.metadata.as_ref())
    }

    /// The Deployment's replicas as last applied.
    pub fn current_replicas(&self) -> Option<i32> {
        self.deployment.as_ref()?.spec.as_ref()?.replicas
    }

    pub fn running_pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(|pod| pod.metadata.deletion_timestamp.is_none())
    }
}

/// The autoscaler's view of the platform's answer — the backlog, and the group's connected
/// clients that are not this subscription's running pods: our pods shutting down (or already gone,
/// whose connection the platform still lists: a clientId `<subscription>-…` that no running pod
/// has), and everyone else's. `None` without an answer.
pub fn reading(observed: &Observed, subscription: &str, connections_per_pod: i32) -> Option<autoscale::Reading> {
    let answer = observed.platform.as_ref()?.status()?;
    let running: HashSet<String> =
        observed.running_pods().flat_map(|pod| names::client_ids(&pod.name_any(), connections_per_pod)).collect();
    let ours_prefix = format!("{subscription}-");
    let (mut others, mut draining) = (0, 0);
    for client in answer.client_connection_status_list.clients.iter().filter(|c| !running.contains(&c.client_id)) {
        if client.client_id.starts_with(&ours_prefix) {
            draining += 1;
        } else {
            others += 1;
        }
    }
    Some(autoscale::Reading { backlog: answer.accumulation_count, others, draining })
}

/// Which keys the auth mode needs and whether they are there (or whether STS gave credentials).
/// Their content rolls no pod: the workers re-read the mounted Secrets and the CA at each
/// connection attempt (where they come from is in the pod template, whose hash does). `ca`
/// is the CA reference's Secret name, key and Secret; `sink_headers` the `sink.http.headersFrom`
/// Secret's name and Secret, which only has to exist (a pod cannot start without it). Each Secret
/// must also be one the `guard` lets the operator use (its label), checked before any of its data
/// is read.
pub fn check_credentials(
    cgs: &ConsumerGroupSubscription,
    key: KeySource<'_>,
    ca: Option<(&str, &str, Option<&Secret>)>,
    sink_headers: Option<(&str, Option<&Secret>)>,
    guard: &Guard,
) -> Credentials {
    let unusable =
        |name: &str, secret: &Secret| (!guard.secret_usable(&secret.metadata)).then(|| Credentials::NotLabelled { secret: name.into() });
    let assumed = matches!(key, KeySource::Rrsa(_));
    let access_key = match key {
        KeySource::Secret(secret) => {
            let secret_name = cgs.spec.credentials.secret().unwrap_or_default().to_owned();
            let Some(secret) = secret else {
                return Credentials::SecretNotFound { secret: secret_name };
            };
            if let Some(refused) = unusable(&secret_name, secret) {
                return refused;
            }
            match key_from_secret(cgs, &secret_name, secret) {
                Ok(key) => key,
                Err(missing) => return missing,
            }
        }
        KeySource::Rrsa(Ok(key)) => key.clone(),
        KeySource::Rrsa(Err(refusal)) => return Credentials::RoleNotAssumed(refusal.clone()),
    };
    if let Some((ca_name, ca_key, ca_secret)) = ca {
        let Some(ca_secret) = ca_secret else {
            return Credentials::SecretNotFound { secret: ca_name.into() };
        };
        if let Some(refused) = unusable(ca_name, ca_secret) {
            return refused;
        }
        if secret_data(ca_secret).get(ca_key).is_none_or(Vec::is_empty) {
            return Credentials::KeyMissing { secret: ca_name.into(), key: ca_key.into() };
        }
    }
    match sink_headers {
        Some((headers_name, None)) => return Credentials::SecretNotFound { secret: headers_name.into() },
        Some((headers_name, Some(headers))) => {
            if let Some(refused) = unusable(headers_name, headers) {
                return refused;
            }
        }
        None => {}
    }
    Credentials::Valid { access_key, assumed }
}

/// The AccessKey in `secret`, or which key it lacks.
fn key_from_secret(cgs: &ConsumerGroupSubscription, secret_name: &str, secret: &Secret) -> Result<AccessKey, Credentials> {
    let data = secret_data(secret);
    let ststoken = cgs.spec.credentials.auth_mode == AuthMode::StsToken;
    let mut needed = vec![ACCESS_KEY_ID, ACCESS_KEY_SECRET];
    if ststoken {
        needed.push(SECURITY_TOKEN);
    }
    if let Some(key) = needed.iter().find(|key| data.get(**key).is_none_or(Vec::is_empty)) {
        return Err(Credentials::KeyMissing { secret: secret_name.into(), key: (*key).into() });
    }
    let text = |key: &str| String::from_utf8_lossy(&data[key]).trim().to_owned();
    Ok(AccessKey {
        id: text(ACCESS_KEY_ID),
        secret: text(ACCESS_KEY_SECRET).into(),
        security_token: ststoken.then(|| text(SECURITY_TOKEN).into()),
    })
}

/// The first 8 bytes of a digest, in hex: enough to tell versions apart in an annotation.
pub(crate) fn short_hex(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// `data`, with `stringData` over it (as the API server would merge them).
fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret.data.iter().flatten().map(|(k, ByteString(v))| (k.clone(), v.clone())).collect();
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, IMAGE};
    use iotsub_aliyun::consumer_group::{ClientConnectionInfo, ClientConnectionStatusList};

    #[test]
    fn reading_tells_our_draining_clients_from_everyone_elses() {
        let draining = fixtures::terminating(fixtures::pod("orders-abc-3"));
        let clients = ["orders-abc-1-0", "orders-abc-1-1", "orders-abc-3-0", "someone-else", "orders-gone-0"]
            .iter()
            .map(|id| ClientConnectionInfo { client_id: (*id).into(), ..Default::default() })
            .collect();
        let observed = Observed {
            credentials: Credentials::SecretNotFound { secret: "s".into() },
            deployment: None,
            pods: vec![fixtures::pod("orders-abc-1"), fixtures::pod("orders-abc-2"), draining],
            platform: Some(PlatformObservation {
                answer: PlatformAnswer::Status(ConsumerGroupStatus {
                    accumulation_count: 1234,
                    client_connection_status_list: ClientConnectionStatusList { clients },
                    ..Default::default()
                }),
                at: fixtures::now(),
            }),
            sinks: vec![],
        };
        let seen = reading(&observed, "orders", 2);
        assert_eq!(
            seen,
            Some(autoscale::Reading { backlog: 1234, others: 1, draining: 2 }),
            "orders-abc-3-0 shuts down, orders-gone-0 is gone"
        );
        let failed = Observed { platform: None, ..observed };
        assert_eq!(reading(&failed, "orders", 2), None);
    }

    #[test]
    fn credentials_name_what_is_missing_and_say_where_the_key_came_from() {
        let cgs = fixtures::subscription();
        let ca = fixtures::secret("emulator-ca", &[("ca.pem", "PEM")]);
        let full = fixtures::secret("creds", &[("accessKeyId", "demo"), ("accessKeySecret", "demo-secret")]);
        let check = |secret: Option<&Secret>, ca_secret: Option<&Secret>| {
            check_credentials(&cgs, KeySource::Secret(secret), Some(("emulator-ca", "ca.pem", ca_secret)), None, &fixtures::guard())
        };
        assert_eq!(check(None, Some(&ca)), Credentials::SecretNotFound { secret: "creds".into() });
        let partial = fixtures::secret("creds", &[("accessKeyId", "demo")]);
        assert_eq!(check(Some(&partial), Some(&ca)), Credentials::KeyMissing { secret: "creds".into(), key: "accessKeySecret".into() });
        assert_eq!(check(Some(&full), None), Credentials::SecretNotFound { secret: "emulator-ca".into() });
        let valid = check(Some(&full), Some(&ca));
        let Credentials::Valid { access_key, assumed } = &valid else { panic!("{valid:?}") };
        assert_eq!((access_key.id.as_str(), access_key.secret.expose().as_str(), *assumed), ("demo", "demo-secret", false));
        assert!(!format!("{valid:?}").contains("demo-secret"), "Debug redacts");
        let empty_ca = fixtures::secret("emulator-ca", &[("ca.pem", "")]);
        assert_eq!(check(Some(&full), Some(&empty_ca)), Credentials::KeyMissing { secret: "emulator-ca".into(), key: "ca.pem".into() });
        let ca_ref = Some(("emulator-ca", "ca.pem", Some(&ca)));
        assert_eq!(
            check_credentials(&cgs, KeySource::Secret(Some(&full)), ca_ref, Some(("sink-auth", None)), &fixtures::guard()),
            Credentials::SecretNotFound { secret: "sink-auth".into() },
            "a missing headersFrom Secret is named, not left to a pod stuck in ContainerCreating"
        );
        let refusal = RoleRefusal { reason: "RoleRefused", message: "STS refused".into() };
        assert_eq!(
            check_credentials(&cgs, KeySource::Rrsa(Err(&refusal)), ca_ref, None, &fixtures::guard()),
            Credentials::RoleNotAssumed(refusal)
        );
        let key = AccessKey { id: "STS.x".into(), secret: "s".to_owned().into(), security_token: Some("t".to_owned().into()) };
        let assumed = check_credentials(&cgs, KeySource::Rrsa(Ok(&key)), ca_ref, None, &fixtures::guard());
        assert!(matches!(assumed, Credentials::Valid { assumed: true, .. }), "{assumed:?}");
    }

    #[test]
    fn an_unlabelled_secret_is_named_before_its_data_is_read_unless_the_label_is_not_required() {
        let cgs = fixtures::subscription();
        let guard = fixtures::guard();
        let unlabelled = |mut secret: Secret| {
            secret.metadata.labels = None;
            secret
        };
        let full = fixtures::secret("creds", &[("accessKeyId", "demo"), ("accessKeySecret", "demo-secret")]);
        let ca = fixtures::secret("emulator-ca", &[("ca.pem", "PEM")]);
        let headers = fixtures::secret("sink-auth", &[("Authorization", "Bearer t0ken")]);
        let check = |secret: &Secret, ca: &Secret, headers: &Secret, guard: &Guard| {
            let ca = Some(("emulator-ca", "ca.pem", Some(ca)));
            check_credentials(&cgs, KeySource::Secret(Some(secret)), ca, Some(("sink-auth", Some(headers))), guard)
        };
        assert!(check(&full, &ca, &headers, &guard).is_valid(), "the fixtures carry the label");
        let partial = unlabelled(fixtures::secret("creds", &[("accessKeyId", "demo")]));
        assert_eq!(check(&partial, &ca, &headers, &guard), Credentials::NotLabelled { secret: "creds".into() }, "before its keys");
        assert_eq!(check(&full, &unlabelled(ca.clone()), &headers, &guard), Credentials::NotLabelled { secret: "emulator-ca".into() });
        assert_eq!(check(&full, &ca, &unlabelled(headers.clone()), &guard), Credentials::NotLabelled { secret: "sink-auth".into() });
        let lifted = Guard::new(IMAGE, &[], false, true, true).expect("guard");
        assert!(check(&unlabelled(full), &unlabelled(ca), &unlabelled(headers), &lifted).is_valid());
    }

    fn worker_pod(name: &str, phase: &str, ready: bool, ip: &str) -> Pod {
        let mut pod = fixtures::pod(name);
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some(phase.into()),
            pod_ip: (!ip.is_empty()).then(|| ip.into()),
            conditions: Some(vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    #[test]
    fn only_running_pods_that_are_not_ready_are_asked_about_their_sink() {
        let pods = [
            worker_pod("ready", "Running", true, "127.1.0.2"),
            worker_pod("unready", "Running", false, "127.1.0.3"),
            worker_pod("pending", "Pending", false, ""),
            worker_pod("no-ip", "Running", false, ""),
            fixtures::terminating(worker_pod("leaving", "Running", false, "127.1.0.4")),
            fixtures::pod("no-status"),
        ];
        assert_eq!(sink_suspects(&pods), [("unready".to_owned(), "127.1.0.3".to_owned())]);
    }

    #[test]
    fn the_workers_status_sink_object_parses() {
        let json = r#"{"type":"http","target":"http://sink.team:8080/in","deadLetter":"log","state":"half-open",
            "consecutiveFailures":12,"lastError":"HTTP 503 Service Unavailable","since":"2026-01-02T03:00:00Z"}"#;
        let sink: PodSink = serde_json::from_str(json).expect("parses");
        assert_eq!(sink.state, BreakerState::HalfOpen);
        assert_eq!((sink.consecutive_failures, sink.last_error.as_deref()), (12, Some("HTTP 503 Service Unavailable")));
        assert!(sink.is_failing());
        let ok: PodSink =
            serde_json::from_str(&json.replace("half-open", "ok").replace(r#""HTTP 503 Service Unavailable""#, "null")).expect("parses");
        assert!(!ok.is_failing() && ok.last_error.is_none());
    }
}
