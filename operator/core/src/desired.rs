//! The worker Deployment a subscription should have.

use std::collections::BTreeMap;

use iotsub_aliyun::AuthMode;
use iotsub_crds::{ConsumerGroupSubscription, DEFAULT_CLIENT_CAP, DeadLetterKind, SinkKind};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, LocalObjectReference, ObjectFieldSelector,
            PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext,
            Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube_core::{Resource, ResourceExt};

use crate::{
    names::{
        ACCESS_KEY_ID, ACCESS_KEY_SECRET, APPLIED_HASH_ANNOTATION, CREDENTIALS_HASH_ANNOTATION, INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGER,
        NAME_LABEL, SECURITY_TOKEN, WORKER_NAME,
    },
    observed::short_hex,
};

pub const WORKER_PORT: i32 = 9090;
/// Longer than the platform's 30 s acknowledgement window, so in-flight messages finish on SIGTERM.
pub const TERMINATION_GRACE_SECONDS: i64 = 45;
/// A replacement pod counts as available only this long after it is ready: time for the operator
/// to see the pod it replaced shutting down and pause the rollout until its connection is gone
/// (rollout.rs), so a rollout holds at most one extra client, which the autoscaler keeps free.
pub const MIN_READY_SECONDS: i32 = 5;
/// The user of distroless `nonroot` images.
pub const RUN_AS_USER: i64 = 65532;
/// Where the `sink.http.headersFrom` Secret is mounted (the worker's `--sink-headers-dir`).
pub const SINK_HEADERS_DIR: &str = "/var/run/iotsub/sink-headers";
const SINK_HEADERS_VOLUME: &str = "sink-headers";

pub(crate) fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(INSTANCE_LABEL.into(), name.into()), (NAME_LABEL.into(), WORKER_NAME.into())])
}

pub(crate) fn labels(name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.insert(MANAGED_BY_LABEL.into(), MANAGER.into());
    labels
}

/// The metadata of an object the subscription owns: its name, namespace and labels, and a
/// controller owner reference (the garbage collector deletes it with the subscription).
pub(crate) fn owned_metadata(cgs: &impl Resource<DynamicType = ()>) -> ObjectMeta {
    let name = cgs.name_any();
    ObjectMeta {
        labels: Some(labels(&name)),
        name: Some(name),
        namespace: cgs.namespace(),
        owner_references: cgs.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

/// Replicas when autoscaling is off: `spec.replicas` (the CRD's rules keep it under the cap).
/// With autoscaling on, [`crate::autoscale`] decides.
pub(crate) fn static_replicas(cgs: &ConsumerGroupSubscription) -> i32 {
    cgs.spec.replicas.max(0)
}

/// The worker Deployment: named after the subscription, owned by it, stamped with its own hash.
pub(crate) fn deployment(
    cgs: &ConsumerGroupSubscription,
    replicas: i32,
    paused: bool,
    credentials_hash: &str,
    default_image: &str,
    pull_secrets: &[String],
) -> Deployment {
    let image = if cgs.spec.worker.image.is_empty() { default_image } else { &cgs.spec.worker.image };
    let mut deployment = unstamped_deployment(cgs, &Pods { replicas, paused, credentials_hash, image, pull_secrets });
    let text = serde_json::to_vec(&deployment).expect("a Deployment serializes");
    let hash = short_hex(&<sha2::Sha256 as sha2::Digest>::digest(&text));
    deployment.metadata.annotations = Some(BTreeMap::from([(APPLIED_HASH_ANNOTATION.into(), hash)]));
    deployment
}

pub(crate) fn applied_hash(deployment: &Deployment) -> Option<&String> {
    deployment.metadata.annotations.as_ref()?.get(APPLIED_HASH_ANNOTATION)
}

/// Why the Deployment in the cluster is not `wanted`, `None` when it is: not the last applied (its
/// hash changes with anything the operator wants), or a field the operator owns no longer holds its
/// value (a hand edit, undone by the apply; see [`crate::owned`]).
pub(crate) fn outdated(observed: &Deployment, wanted: &Deployment) -> Option<Outdated> {
    if applied_hash(observed) != applied_hash(wanted) {
        return Some(Outdated::Changed);
    }
    crate::owned::first_difference(observed, wanted).map(Outdated::Edited)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outdated {
    /// What the operator wants changed.
    Changed,
    /// A field the operator owns was edited (a JSON pointer to it).
    Edited(String),
}

/// What a reconcile decides about the pods; the rest of the Deployment follows from the spec.
struct Pods<'a> {
    replicas: i32,
    paused: bool,
    credentials_hash: &'a str,
    image: &'a str,
    pull_secrets: &'a [String],
}

fn unstamped_deployment(cgs: &ConsumerGroupSubscription, pods: &Pods<'_>) -> Deployment {
    let Pods { replicas, paused, credentials_hash, image, pull_secrets } = *pods;
    let name = cgs.name_any();
    let spec = &cgs.spec;
    let mut annotations = spec.worker.pod_annotations.clone();
    annotations.insert(CREDENTIALS_HASH_ANNOTATION.into(), credentials_hash.into());
    let (volumes, mounts) = sink_headers(cgs).map_or((None, None), |(volume, mount)| (Some(vec![volume]), Some(vec![mount])));
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction { path: Some(path.into()), port: IntOrString::String("http".into()), ..Default::default() }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    };
    Deployment {
        metadata: owned_metadata(cgs),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(selector_labels(&name)), ..Default::default() },
            // Never a surge pod: the group's client count must not pass the platform's cap.
            min_ready_seconds: Some(MIN_READY_SECONDS),
            // Held while a replaced pod still closes its connection (see rollout.rs). Always set,
            // so the field is the operator's and a hand `kubectl rollout pause` is undone.
            paused: Some(paused),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(0)),
                    max_unavailable: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels(&name)), annotations: Some(annotations), ..Default::default() }),
                spec: Some(PodSpec {
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                        ..Default::default()
                    }),
                    // None when there are none: the applied hash of existing Deployments stays.
                    image_pull_secrets: Some(
                        pull_secrets.iter().map(|name| LocalObjectReference { name: name.clone() }).collect::<Vec<_>>(),
                    )
                    .filter(|s| !s.is_empty()),
                    node_selector: Some(spec.worker.node_selector.clone()).filter(|m| !m.is_empty()),
                    tolerations: Some(spec.worker.tolerations.clone()).filter(|t| !t.is_empty()),
                    topology_spread_constraints: Some(crate::disruption::spread(&name)),
                    volumes,
                    containers: vec![Container {
                        name: "worker".into(),
                        image: Some(image.into()),
                        env: Some(env(cgs)),
                        ports: Some(vec![ContainerPort {
                            name: Some("http".into()),
                            container_port: WORKER_PORT,
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }]),
                        readiness_probe: Some(probe("/readyz", 5, 3)),
                        liveness_probe: Some(Probe { initial_delay_seconds: Some(10), ..probe("/healthz", 10, 3) }),
                        resources: spec.worker.resources.clone(),
                        volume_mounts: mounts,
                        security_context: Some(SecurityContext {
                            allow_privilege_escalation: Some(false),
                            read_only_root_filesystem: Some(true),
                            run_as_non_root: Some(true),
                            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The worker's configuration as environment (worker/src/config.rs): secrets by reference only.
fn env(cgs: &ConsumerGroupSubscription) -> Vec<EnvVar> {
    let spec = &cgs.spec;
    let value = |name: &str, value: String| EnvVar { name: name.into(), value: Some(value), value_from: None };
    let field = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), ..Default::default() }),
            ..Default::default()
        }),
    };
    let secret = |name: &str, secret: &str, key: &str| EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret.into(), key: key.into(), optional: Some(false) }),
            ..Default::default()
        }),
    };
    let credentials = &spec.credentials.secret_name;
    let mut env = vec![
        field("POD_NAME", "metadata.name"),
        field("POD_IP", "status.podIP"),
        value("IOTSUB_CLIENT_ID", "$(POD_NAME)".into()),
        value("IOTSUB_HTTP_ADDR", format!("$(POD_IP):{WORKER_PORT}")),
        value("IOTSUB_HOST", spec.endpoint.host.clone()),
        value("IOTSUB_PORT", spec.endpoint.port.to_string()),
        value("IOTSUB_INSTANCE_ID", spec.iot_instance_id.clone().unwrap_or_default()),
        value("IOTSUB_CONSUMER_GROUP_ID", spec.consumer_group_id.clone()),
        value("IOTSUB_AUTH_MODE", spec.credentials.auth_mode.as_str().into()),
        value("IOTSUB_SIGN_METHOD", spec.credentials.sign_method.as_str().into()),
        secret("IOTSUB_ACCESS_KEY_ID", credentials, ACCESS_KEY_ID),
        secret("IOTSUB_ACCESS_KEY_SECRET", credentials, ACCESS_KEY_SECRET),
    ];
    if spec.credentials.auth_mode == AuthMode::StsToken {
        env.push(secret("IOTSUB_SECURITY_TOKEN", credentials, SECURITY_TOKEN));
    }
    if let Some(ca) = &spec.endpoint.ca_secret_ref {
        env.push(secret("IOTSUB_CA_PEM", &ca.name, &ca.key));
    }
    env.extend([
        value("IOTSUB_CONNECTIONS", spec.connection.connections_per_pod.to_string()),
        value("IOTSUB_IDLE_TIMEOUT_MS", spec.connection.idle_timeout_ms.to_string()),
        value("IOTSUB_CREDIT", spec.connection.credit.to_string()),
        value("IOTSUB_MAX_MESSAGE_BYTES", spec.connection.max_message_bytes.to_string()),
        value("IOTSUB_RECONNECT_ATTEMPTS_PER_MINUTE", reconnect_attempts_per_minute(cgs).to_string()),
    ]);
    match spec.sink.kind {
        SinkKind::Log => env.push(value("IOTSUB_SINK", "log".into())),
        SinkKind::Http => {
            env.push(value("IOTSUB_SINK", "http".into()));
            if let Some(http) = &spec.sink.http {
                env.push(value("IOTSUB_SINK_URL", http.url.clone()));
                env.push(value("IOTSUB_SINK_TIMEOUT_MS", (i64::from(http.timeout_seconds) * 1000).to_string()));
                if http.headers_from.is_some() {
                    env.push(value("IOTSUB_SINK_HEADERS_DIR", SINK_HEADERS_DIR.into()));
                }
            }
        }
    }
    env.push(value("IOTSUB_DEAD_LETTER", spec.sink.dead_letter.kind.as_str().into()));
    if spec.sink.dead_letter.kind == DeadLetterKind::Http {
        env.push(value("IOTSUB_DEAD_LETTER_URL", spec.sink.dead_letter.url.clone()));
    }
    env.push(value("IOTSUB_MAX_DELIVERIES", spec.sink.max_deliveries.to_string()));
    env
}

/// The platform allows this many connection attempts per minute per consumer group, shared by
/// all its clients; 10 of its 100 are left to other consumers of the group.
const GROUP_ATTEMPTS_PER_MINUTE: i32 = 90;

/// One pod's share of the group's reconnect budget: its clients' part of the most clients the
/// group can have (the client cap), at least 1, so the cap's clients reconnecting after an outage
/// stay under the platform's limit together. A fixed figure (not the clients connected now), so
/// the pods do not roll whenever the group's client count changes.
fn reconnect_attempts_per_minute(cgs: &ConsumerGroupSubscription) -> i32 {
    let clients = cgs.spec.autoscaling.as_ref().map_or(DEFAULT_CLIENT_CAP, |a| a.client_cap).max(1);
    let per_pod = GROUP_ATTEMPTS_PER_MINUTE * cgs.spec.connection.connections_per_pod.max(1) / clients;
    per_pod.max(1)
}

/// The sink's request headers from `sink.http.headersFrom`, one file per header.
fn sink_headers(cgs: &ConsumerGroupSubscription) -> Option<(Volume, VolumeMount)> {
    let headers_from = cgs.spec.sink.http.as_ref()?.headers_from.as_ref()?;
    let volume = Volume {
        name: SINK_HEADERS_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(headers_from.secret_name.clone()),
            optional: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mount =
        VolumeMount { name: SINK_HEADERS_VOLUME.into(), mount_path: SINK_HEADERS_DIR.into(), read_only: Some(true), ..Default::default() };
    Some((volume, mount))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn env_of(d: &Deployment) -> BTreeMap<String, EnvVar> {
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        pod.containers[0].env.clone().unwrap().into_iter().map(|e| (e.name.clone(), e)).collect()
    }

    #[test]
    fn deployment_follows_the_design() {
        let cgs = fixtures::subscription();
        let d = deployment(&cgs, 2, false, "abc123", "iotsub-worker", &[]);
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(d.metadata.name.as_deref(), Some("orders"));
        assert_eq!(d.metadata.owner_references.as_ref().unwrap()[0].kind, "ConsumerGroupSubscription");
        assert_eq!(d.metadata.owner_references.as_ref().unwrap()[0].controller, Some(true));
        assert_eq!(spec.replicas, Some(2));
        let rolling = spec.strategy.as_ref().unwrap().rolling_update.as_ref().unwrap();
        assert_eq!(rolling.max_surge, Some(IntOrString::Int(0)));
        assert_eq!(spec.min_ready_seconds, Some(MIN_READY_SECONDS), "one old pod at a time gone before the next is replaced");
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
        let template = &spec.template;
        assert_eq!(template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()[CREDENTIALS_HASH_ANNOTATION], "abc123");
        let pod = template.spec.as_ref().unwrap();
        assert!(pod.termination_grace_period_seconds.unwrap() > 30);
        assert_eq!(pod.security_context.as_ref().unwrap().run_as_user, Some(65532));
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("iotsub-worker"));
        assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 9090);
        assert_eq!(container.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/readyz"));
        assert_eq!(container.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));
        let sc = container.security_context.as_ref().unwrap();
        assert_eq!((sc.allow_privilege_escalation, sc.read_only_root_filesystem), (Some(false), Some(true)));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
        let selector = spec.selector.match_labels.as_ref().unwrap();
        assert!(template.metadata.as_ref().unwrap().labels.as_ref().unwrap().iter().all(|(k, v)| selector.get(k).is_none_or(|s| s == v)));
    }

    #[test]
    fn env_carries_config_and_secret_references_only() {
        let cgs = fixtures::subscription();
        let env = env_of(&deployment(&cgs, 2, false, "h", "iotsub-worker", &[]));
        assert_eq!(env["IOTSUB_CLIENT_ID"].value.as_deref(), Some("$(POD_NAME)"));
        assert_eq!(env["IOTSUB_HTTP_ADDR"].value.as_deref(), Some("$(POD_IP):9090"));
        assert_eq!(env["POD_IP"].value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, "status.podIP");
        assert_eq!(env["IOTSUB_HOST"].value.as_deref(), Some("127.0.0.1"));
        assert_eq!(env["IOTSUB_PORT"].value.as_deref(), Some("5671"));
        assert_eq!(env["IOTSUB_CONSUMER_GROUP_ID"].value.as_deref(), Some("DEFAULT_GROUP"));
        assert_eq!(env["IOTSUB_IDLE_TIMEOUT_MS"].value.as_deref(), Some("60000"));
        let secret_ref = |name: &str| env[name].value_from.as_ref().unwrap().secret_key_ref.clone().unwrap();
        assert_eq!(
            (secret_ref("IOTSUB_ACCESS_KEY_SECRET").name, secret_ref("IOTSUB_ACCESS_KEY_SECRET").key),
            ("creds".into(), "accessKeySecret".into())
        );
        assert_eq!(secret_ref("IOTSUB_CA_PEM").name, "emulator-ca");
        assert!(!env.contains_key("IOTSUB_SECURITY_TOKEN"), "aksign needs no token");
        assert!(env.values().all(|e| e.value.as_deref() != Some("demo-secret")));
    }

    #[test]
    fn ststoken_adds_the_token_and_http_sink_its_url() {
        let mut cgs = fixtures::subscription();
        cgs.spec.credentials.auth_mode = AuthMode::StsToken;
        cgs.spec.sink = serde_json::from_value(serde_json::json!({"type": "http", "http": {"url": "http://127.0.0.1:1/e"}})).unwrap();
        let env = env_of(&deployment(&cgs, 2, false, "h", "img", &[]));
        assert_eq!(env["IOTSUB_SECURITY_TOKEN"].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().key, "securityToken");
        assert_eq!(env["IOTSUB_SINK"].value.as_deref(), Some("http"));
        assert_eq!(env["IOTSUB_SINK_URL"].value.as_deref(), Some("http://127.0.0.1:1/e"));
        assert_eq!(env["IOTSUB_SINK_TIMEOUT_MS"].value.as_deref(), Some("5000"));
    }

    #[test]
    fn sink_delivery_settings_reach_the_worker() {
        let mut cgs = fixtures::subscription();
        let env = env_of(&deployment(&cgs, 2, false, "h", "img", &[]));
        let value = |env: &BTreeMap<String, EnvVar>, name: &str| env.get(name).and_then(|e| e.value.clone());
        assert_eq!(value(&env, "IOTSUB_DEAD_LETTER").as_deref(), Some("log"), "nothing dropped without a record by default");
        assert_eq!(value(&env, "IOTSUB_DEAD_LETTER_URL"), None);
        assert_eq!(value(&env, "IOTSUB_MAX_DELIVERIES").as_deref(), Some("10"));
        assert_eq!(value(&env, "IOTSUB_MAX_MESSAGE_BYTES").as_deref(), Some("1048576"));
        assert_eq!(value(&env, "IOTSUB_SINK_HEADERS_DIR"), None);
        cgs.spec.sink = serde_json::from_value(serde_json::json!({
            "type": "http",
            "http": {"url": "https://hooks.example/iot", "headersFrom": {"secretName": "sink-auth"}},
            "deadLetter": {"type": "http", "url": "https://hooks.example/dead"},
            "maxDeliveries": 3,
        }))
        .unwrap();
        let d = deployment(&cgs, 2, false, "h", "img", &[]);
        let env = env_of(&d);
        assert_eq!(value(&env, "IOTSUB_DEAD_LETTER").as_deref(), Some("http"));
        assert_eq!(value(&env, "IOTSUB_DEAD_LETTER_URL").as_deref(), Some("https://hooks.example/dead"));
        assert_eq!(value(&env, "IOTSUB_MAX_DELIVERIES").as_deref(), Some("3"));
        assert_eq!(value(&env, "IOTSUB_SINK_HEADERS_DIR").as_deref(), Some(SINK_HEADERS_DIR));
        let pod = d.spec.unwrap().template.spec.unwrap();
        let volume = &pod.volumes.unwrap()[0];
        assert_eq!(volume.secret.as_ref().and_then(|s| s.secret_name.as_deref()), Some("sink-auth"));
        let mount = &pod.containers[0].volume_mounts.as_ref().unwrap()[0];
        assert_eq!((mount.name.as_str(), mount.mount_path.as_str(), mount.read_only), (volume.name.as_str(), SINK_HEADERS_DIR, Some(true)));
    }

    #[test]
    fn each_pod_gets_its_share_of_the_groups_reconnect_budget() {
        // (clientCap, connections per pod) → attempts per minute per pod
        let cases =
            [(None, 1, 1), (Some(64), 1, 1), (Some(64), 4, 5), (Some(10), 1, 9), (Some(10), 2, 18), (Some(128), 1, 1), (Some(1), 1, 90)];
        for (cap, connections, attempts) in cases {
            let mut cgs = fixtures::subscription();
            cgs.spec.connection.connections_per_pod = connections;
            cgs.spec.autoscaling = cap.map(|client_cap| iotsub_crds::Autoscaling { client_cap, ..Default::default() });
            let env = env_of(&deployment(&cgs, 1, false, "h", "img", &[]));
            assert_eq!(env["IOTSUB_RECONNECT_ATTEMPTS_PER_MINUTE"].value, Some(attempts.to_string()), "cap {cap:?}, {connections} per pod");
        }
    }

    #[test]
    fn worker_pods_carry_the_operators_pull_secrets_and_none_without() {
        let cgs = fixtures::subscription();
        let pod = |d: &Deployment| d.spec.as_ref().unwrap().template.spec.clone().unwrap();
        let names = ["registry-credentials".to_owned()];
        let with = deployment(&cgs, 1, false, "h", "private.example/iotsub-worker:1", &names);
        let secrets = pod(&with).image_pull_secrets.unwrap();
        assert_eq!(secrets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["registry-credentials"]);
        let without = deployment(&cgs, 1, false, "h", "iotsub-worker", &[]);
        assert_eq!(pod(&without).image_pull_secrets, None, "left out, so existing Deployments keep their hash");
    }

    #[test]
    fn the_applied_hash_changes_with_the_deployment_only() {
        let cgs = fixtures::subscription();
        let a = deployment(&cgs, 2, false, "h", "img", &[]);
        assert_eq!(applied_hash(&a), applied_hash(&deployment(&cgs, 2, false, "h", "img", &[])));
        assert_ne!(applied_hash(&a), applied_hash(&deployment(&cgs, 2, false, "rotated", "img", &[])));
        assert_ne!(applied_hash(&a), applied_hash(&deployment(&cgs, 3, false, "h", "img", &[])));
        let paused = deployment(&cgs, 2, true, "h", "img", &[]);
        assert_eq!(paused.spec.as_ref().unwrap().paused, Some(true));
        assert_eq!(a.spec.as_ref().unwrap().paused, Some(false), "always set: the operator owns the field, a hand pause is undone");
        assert_ne!(applied_hash(&a), applied_hash(&paused));
    }

    #[test]
    fn spec_image_overrides_the_default() {
        let mut cgs = fixtures::subscription();
        cgs.spec.worker.image = "registry.example/iotsub-worker:1".into();
        let d = deployment(&cgs, 2, false, "h", "iotsub-worker", &[]);
        assert_eq!(d.spec.unwrap().template.spec.unwrap().containers[0].image.as_deref(), Some("registry.example/iotsub-worker:1"));
    }
}
