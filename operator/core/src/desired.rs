//! The worker Deployment a subscription should have.

use std::collections::BTreeMap;

use iotsub_aliyun::{AuthMode, sts::STS_AUDIENCE};
use iotsub_crds::{ConsumerGroupSubscription, DEFAULT_CLIENT_CAP, DeadLetterKind, HttpMode, SinkKind};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, LocalObjectReference,
            ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource, SeccompProfile,
            SecretVolumeSource, SecurityContext, ServiceAccount, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube_core::{Resource, ResourceExt};

use crate::{
    names::{APPLIED_HASH_ANNOTATION, INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGER, NAME_LABEL, TEMPLATE_HASH_ANNOTATION, WORKER_NAME},
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
/// Where the `credentials.secretName` Secret is mounted (the worker's `--credentials-dir`): the
/// kubelet updates the files in place, the worker reads them at each connection attempt.
pub const CREDENTIALS_DIR: &str = "/var/run/iotsub/credentials";
const CREDENTIALS_VOLUME: &str = "credentials";
/// Where the `endpoint.caSecretRef` key is mounted, as `ca.pem` (the worker's `--ca-file`).
pub const CA_DIR: &str = "/var/run/iotsub/ca";
pub const CA_FILE: &str = "ca.pem";
const CA_VOLUME: &str = "ca";
/// Where ACK's pod-identity webhook mounts the RRSA token: the same path, so a pod looks the same
/// either way.
pub const RRSA_TOKEN_DIR: &str = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens";
pub const RRSA_TOKEN_FILE: &str = "token";
const RRSA_TOKEN_VOLUME: &str = "rrsa-token";
/// The projected token's lifetime, as ACK's webhook sets it; the kubelet renews it at 80%.
pub const RRSA_TOKEN_SECONDS: i64 = 3600;

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

/// The worker pod template, stamped with a hash of itself ([`TEMPLATE_HASH_ANNOTATION`]).
pub(crate) fn pod_template(cgs: &ConsumerGroupSubscription, default_image: &str, pull_secrets: &[String]) -> PodTemplateSpec {
    let image = if cgs.spec.worker.image.is_empty() { default_image } else { &cgs.spec.worker.image };
    let mut template = unstamped_template(cgs, image, pull_secrets);
    let text = serde_json::to_vec(&template).expect("a pod template serializes");
    let hash = short_hex(&<sha2::Sha256 as sha2::Digest>::digest(&text));
    let metadata = template.metadata.get_or_insert_with(Default::default);
    metadata.annotations.get_or_insert_with(Default::default).insert(TEMPLATE_HASH_ANNOTATION.into(), hash);
    template
}

/// The hash a pod template (or a pod made from it) carries.
pub fn template_hash(metadata: Option<&ObjectMeta>) -> Option<&str> {
    metadata?.annotations.as_ref()?.get(TEMPLATE_HASH_ANNOTATION).map(String::as_str)
}

/// The worker Deployment: named after the subscription, owned by it, with `template` (this
/// spec's, or while room is made under the cap the one its pods run), stamped with its own hash.
pub(crate) fn deployment(cgs: &ConsumerGroupSubscription, replicas: i32, paused: bool, template: PodTemplateSpec) -> Deployment {
    let mut deployment = unstamped_deployment(cgs, replicas, paused, template);
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

fn unstamped_deployment(cgs: &ConsumerGroupSubscription, replicas: i32, paused: bool, template: PodTemplateSpec) -> Deployment {
    let name = cgs.name_any();
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
            template,
            ..Default::default()
        }),
        status: None,
    }
}

fn unstamped_template(cgs: &ConsumerGroupSubscription, image: &str, pull_secrets: &[String]) -> PodTemplateSpec {
    let name = cgs.name_any();
    let spec = &cgs.spec;
    let annotations = spec.worker.pod_annotations.clone();
    let (volumes, mounts): (Vec<_>, Vec<_>) = mounted_volumes(cgs).into_iter().unzip();
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction { path: Some(path.into()), port: IntOrString::String("http".into()), ..Default::default() }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels(&name)), annotations: Some(annotations), ..Default::default() }),
        spec: Some(PodSpec {
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            // The workers call no Kubernetes API: no token of it is mounted. RRSA's
            // token (audience STS) is a projected volume of its own.
            automount_service_account_token: Some(false),
            service_account_name: service_account(cgs),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_USER),
                run_as_group: Some(RUN_AS_USER),
                seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                ..Default::default()
            }),
            // None when there are none: the applied hash of existing Deployments stays.
            image_pull_secrets: Some(pull_secrets.iter().map(|name| LocalObjectReference { name: name.clone() }).collect::<Vec<_>>())
                .filter(|s| !s.is_empty()),
            node_selector: Some(spec.worker.node_selector.clone()).filter(|m| !m.is_empty()),
            tolerations: Some(spec.worker.tolerations.clone()).filter(|t| !t.is_empty()),
            topology_spread_constraints: Some(crate::disruption::spread(&name)),
            volumes: Some(volumes).filter(|v| !v.is_empty()),
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
                volume_mounts: Some(mounts).filter(|m| !m.is_empty()),
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
    let mut env = vec![
        field("POD_NAME", "metadata.name"),
        field("POD_IP", "status.podIP"),
        value("IOTSUB_CLIENT_ID", "$(POD_NAME)".into()),
        value("IOTSUB_HTTP_ADDR", format!("$(POD_IP):{WORKER_PORT}")),
        value("IOTSUB_HOST", spec.endpoint.host.clone()),
        value("IOTSUB_PORT", spec.endpoint.port.to_string()),
        value("IOTSUB_INSTANCE_ID", spec.iot_instance_id.clone().unwrap_or_default()),
        value("IOTSUB_CONSUMER_GROUP_ID", spec.consumer_group_id.clone()),
        value("IOTSUB_SIGN_METHOD", spec.credentials.sign_method.as_str().into()),
    ];
    match &spec.credentials.rrsa {
        None => env.extend([
            value("IOTSUB_AUTH_MODE", spec.credentials.auth_mode.as_str().into()),
            value("IOTSUB_CREDENTIALS_DIR", CREDENTIALS_DIR.into()),
        ]),
        Some(rrsa) => {
            env.extend([
                value("IOTSUB_AUTH_MODE", AuthMode::StsToken.as_str().into()),
                value("ALIBABA_CLOUD_ROLE_ARN", rrsa.role_arn.clone()),
                value("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", rrsa.oidc_provider_arn.clone()),
                value("ALIBABA_CLOUD_OIDC_TOKEN_FILE", format!("{RRSA_TOKEN_DIR}/{RRSA_TOKEN_FILE}")),
                value("IOTSUB_STS_DURATION_SECONDS", rrsa.duration_seconds.to_string()),
            ]);
            if let Some(session) = &rrsa.role_session_name {
                env.push(value("ALIBABA_CLOUD_ROLE_SESSION_NAME", session.clone()));
            }
            if !rrsa.sts_endpoint.is_empty() {
                env.push(value("IOTSUB_STS_ENDPOINT", rrsa.sts_endpoint.clone()));
            }
        }
    }
    if spec.endpoint.ca_secret_ref.is_some() {
        env.push(value("IOTSUB_CA_FILE", format!("{CA_DIR}/{CA_FILE}")));
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
                env.push(value("IOTSUB_SINK_PROTOCOL", http.protocol.as_str().into()));
                if http.mode == HttpMode::Batch {
                    let batch = http.batch.clone().unwrap_or_default();
                    env.extend([
                        value("IOTSUB_SINK_MODE", "batch".into()),
                        value("IOTSUB_SINK_BATCH_MAX_EVENTS", batch.max_events.to_string()),
                        value("IOTSUB_SINK_BATCH_MAX_BYTES", batch.max_bytes.to_string()),
                        value("IOTSUB_SINK_BATCH_LINGER_MS", batch.linger_ms.to_string()),
                    ]);
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

/// The worker pods' ServiceAccount: the spec's, else with RRSA the one the operator makes (named
/// after the subscription), else none (the namespace's `default`).
pub fn service_account(cgs: &ConsumerGroupSubscription) -> Option<String> {
    cgs.spec.service_account_name.clone().or_else(|| cgs.spec.credentials.rrsa.as_ref().map(|_| cgs.name_any()))
}

/// The ServiceAccount the operator makes for an RRSA subscription without `serviceAccountName`.
pub fn owned_service_account(cgs: &ConsumerGroupSubscription) -> Option<ServiceAccount> {
    (cgs.spec.credentials.rrsa.is_some() && cgs.spec.service_account_name.is_none()).then(|| ServiceAccount {
        metadata: owned_metadata(cgs),
        // Its API token is never needed: only the projected RRSA token (audience STS).
        automount_service_account_token: Some(false),
        ..Default::default()
    })
}

/// Every file the worker reads, mounted read-only: the credentials Secret (or the RRSA token),
/// the CA, the sink's headers. Files, not environment, so updates reach running pods.
fn mounted_volumes(cgs: &ConsumerGroupSubscription) -> Vec<(Volume, VolumeMount)> {
    let spec = &cgs.spec;
    let mount =
        |name: &str, path: &str| VolumeMount { name: name.into(), mount_path: path.into(), read_only: Some(true), ..Default::default() };
    let secret = |name: &str, secret: &str, items: Option<Vec<KeyToPath>>| Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource { secret_name: Some(secret.into()), items, optional: Some(false), ..Default::default() }),
        ..Default::default()
    };
    let mut volumes = Vec::new();
    if let Some(name) = spec.credentials.secret() {
        volumes.push((secret(CREDENTIALS_VOLUME, name, None), mount(CREDENTIALS_VOLUME, CREDENTIALS_DIR)));
    }
    if spec.credentials.rrsa.is_some() {
        let token = ServiceAccountTokenProjection {
            audience: Some(STS_AUDIENCE.into()),
            expiration_seconds: Some(RRSA_TOKEN_SECONDS),
            path: RRSA_TOKEN_FILE.into(),
        };
        let volume = Volume {
            name: RRSA_TOKEN_VOLUME.into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection { service_account_token: Some(token), ..Default::default() }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        volumes.push((volume, mount(RRSA_TOKEN_VOLUME, RRSA_TOKEN_DIR)));
    }
    if let Some(ca) = &spec.endpoint.ca_secret_ref {
        let items = vec![KeyToPath { key: ca.key.clone(), path: CA_FILE.into(), mode: None }];
        volumes.push((secret(CA_VOLUME, &ca.name, Some(items)), mount(CA_VOLUME, CA_DIR)));
    }
    if let Some(headers_from) = spec.sink.http.as_ref().and_then(|h| h.headers_from.as_ref()) {
        volumes.push((secret(SINK_HEADERS_VOLUME, &headers_from.secret_name, None), mount(SINK_HEADERS_VOLUME, SINK_HEADERS_DIR)));
    }
    volumes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    /// The Deployment with this spec's pod template.
    fn built(cgs: &ConsumerGroupSubscription, replicas: i32, paused: bool, image: &str, pull_secrets: &[String]) -> Deployment {
        deployment(cgs, replicas, paused, pod_template(cgs, image, pull_secrets))
    }

    fn env_of(d: &Deployment) -> BTreeMap<String, EnvVar> {
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        pod.containers[0].env.clone().unwrap().into_iter().map(|e| (e.name.clone(), e)).collect()
    }

    #[test]
    fn deployment_follows_the_design() {
        let cgs = fixtures::subscription();
        let d = built(&cgs, 2, false, "iotsub-worker", &[]);
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
        assert_eq!(template_hash(template.metadata.as_ref()).map(str::len), Some(16), "stamped with its hash");
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
        let env = env_of(&built(&cgs, 2, false, "iotsub-worker", &[]));
        assert_eq!(env["IOTSUB_CLIENT_ID"].value.as_deref(), Some("$(POD_NAME)"));
        assert_eq!(env["IOTSUB_HTTP_ADDR"].value.as_deref(), Some("$(POD_IP):9090"));
        assert_eq!(env["POD_IP"].value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, "status.podIP");
        assert_eq!(env["IOTSUB_HOST"].value.as_deref(), Some("127.0.0.1"));
        assert_eq!(env["IOTSUB_PORT"].value.as_deref(), Some("5671"));
        assert_eq!(env["IOTSUB_CONSUMER_GROUP_ID"].value.as_deref(), Some("DEFAULT_GROUP"));
        assert_eq!(env["IOTSUB_IDLE_TIMEOUT_MS"].value.as_deref(), Some("60000"));
        assert!(env.values().all(|e| e.value_from.as_ref().is_none_or(|f| f.secret_key_ref.is_none())), "no Secret in the environment");
        assert_eq!(env["IOTSUB_CREDENTIALS_DIR"].value.as_deref(), Some(CREDENTIALS_DIR));
        assert_eq!(env["IOTSUB_CA_FILE"].value.as_deref(), Some("/var/run/iotsub/ca/ca.pem"));
        assert!(!env.contains_key("IOTSUB_ACCESS_KEY_SECRET") && !env.contains_key("IOTSUB_CA_PEM"));
        assert!(env.values().all(|e| e.value.as_deref() != Some("demo-secret")));
    }

    fn volume<'a>(d: &'a Deployment, name: &str) -> (&'a Volume, &'a VolumeMount) {
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let volume = pod.volumes.iter().flatten().find(|v| v.name == name).unwrap_or_else(|| panic!("no volume {name}"));
        let mount = pod.containers[0].volume_mounts.iter().flatten().find(|m| m.name == name).expect("mounted");
        assert_eq!(mount.read_only, Some(true), "{name} read-only");
        (volume, mount)
    }

    #[test]
    fn the_credentials_and_the_ca_are_mounted_files_the_kubelet_updates_in_place() {
        let cgs = fixtures::subscription();
        let d = built(&cgs, 2, false, "iotsub-worker", &[]);
        let (credentials, mount) = volume(&d, "credentials");
        assert_eq!(credentials.secret.as_ref().unwrap().secret_name.as_deref(), Some("creds"));
        assert_eq!(credentials.secret.as_ref().unwrap().items, None, "every key, named as in the Secret");
        assert_eq!(mount.mount_path, CREDENTIALS_DIR);
        let (ca, mount) = volume(&d, "ca");
        let ca = ca.secret.as_ref().unwrap();
        assert_eq!(ca.secret_name.as_deref(), Some("emulator-ca"));
        assert_eq!(ca.items.as_ref().unwrap()[0].key, "ca.pem");
        assert_eq!(ca.items.as_ref().unwrap()[0].path, CA_FILE);
        assert_eq!(mount.mount_path, CA_DIR);
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.service_account_name, None, "the namespace's default, with no token");
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert!(owned_service_account(&cgs).is_none());
    }

    #[test]
    fn rrsa_gives_the_pods_their_own_service_account_and_a_projected_sts_token() {
        let mut cgs = fixtures::subscription();
        cgs.spec.credentials = serde_json::from_value(serde_json::json!({"rrsa": {
            "roleArn": "acs:ram::1:role/iot", "oidcProviderArn": "acs:ram::1:oidc-provider/ack", "stsEndpoint": "https://127.0.0.1:8443"
        }}))
        .unwrap();
        let d = built(&cgs, 1, false, "img", &[]);
        let env = env_of(&d);
        let value = |name: &str| env.get(name).and_then(|e| e.value.clone());
        assert_eq!(value("ALIBABA_CLOUD_ROLE_ARN").as_deref(), Some("acs:ram::1:role/iot"));
        assert_eq!(value("ALIBABA_CLOUD_OIDC_PROVIDER_ARN").as_deref(), Some("acs:ram::1:oidc-provider/ack"));
        assert_eq!(value("ALIBABA_CLOUD_OIDC_TOKEN_FILE").as_deref(), Some("/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token"));
        assert_eq!(value("IOTSUB_AUTH_MODE").as_deref(), Some("ststoken"));
        assert_eq!(value("IOTSUB_STS_ENDPOINT").as_deref(), Some("https://127.0.0.1:8443"));
        assert_eq!(value("IOTSUB_STS_DURATION_SECONDS").as_deref(), Some("3600"));
        assert_eq!(value("ALIBABA_CLOUD_ROLE_SESSION_NAME"), None, "the worker names the session after its pod");
        assert_eq!(value("IOTSUB_CREDENTIALS_DIR"), None, "no AccessKey anywhere");
        let (token, mount) = volume(&d, "rrsa-token");
        let projection = token.projected.as_ref().unwrap().sources.as_ref().unwrap()[0].service_account_token.clone().unwrap();
        assert_eq!(projection.audience.as_deref(), Some("sts.aliyuncs.com"));
        assert_eq!((projection.expiration_seconds, projection.path.as_str()), (Some(3600), "token"));
        assert_eq!(mount.mount_path, RRSA_TOKEN_DIR);
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("orders"));
        let account = owned_service_account(&cgs).expect("made by the operator");
        assert_eq!(account.metadata.name.as_deref(), Some("orders"));
        assert_eq!(account.metadata.owner_references.as_ref().unwrap()[0].kind, "ConsumerGroupSubscription");
        cgs.spec.service_account_name = Some("iot-reader".into());
        let d = built(&cgs, 1, false, "img", &[]);
        assert_eq!(d.spec.unwrap().template.spec.unwrap().service_account_name.as_deref(), Some("iot-reader"));
        assert!(owned_service_account(&cgs).is_none(), "the user's own");
    }

    #[test]
    fn ststoken_in_a_secret_says_so_and_http_sink_gets_its_url() {
        let mut cgs = fixtures::subscription();
        cgs.spec.credentials.auth_mode = AuthMode::StsToken;
        cgs.spec.sink = serde_json::from_value(serde_json::json!({"type": "http", "http": {"url": "http://127.0.0.1:1/e"}})).unwrap();
        let env = env_of(&built(&cgs, 2, false, "img", &[]));
        assert_eq!(env["IOTSUB_AUTH_MODE"].value.as_deref(), Some("ststoken"));
        assert_eq!(env["IOTSUB_CREDENTIALS_DIR"].value.as_deref(), Some(CREDENTIALS_DIR));
        assert_eq!(env["IOTSUB_SINK"].value.as_deref(), Some("http"));
        assert_eq!(env["IOTSUB_SINK_URL"].value.as_deref(), Some("http://127.0.0.1:1/e"));
        assert_eq!(env["IOTSUB_SINK_TIMEOUT_MS"].value.as_deref(), Some("5000"));
        assert_eq!(env["IOTSUB_SINK_PROTOCOL"].value.as_deref(), Some("http1"));
        assert!(!env.contains_key("IOTSUB_SINK_MODE"), "one message per POST unless asked");
    }

    #[test]
    fn a_batched_http2_sink_passes_its_limits_with_defaults_for_those_left_out() {
        let mut cgs = fixtures::subscription();
        let sink = serde_json::json!({"type": "http", "http": {"url": "http://s/e", "protocol": "http2", "mode": "batch", "batch": {"lingerMs": 5}}});
        cgs.spec.sink = serde_json::from_value(sink).unwrap();
        let env = env_of(&built(&cgs, 1, false, "img", &[]));
        let get = |k: &str| env[k].value.clone().unwrap_or_default();
        assert_eq!(get("IOTSUB_SINK_PROTOCOL"), "http2");
        assert_eq!(get("IOTSUB_SINK_MODE"), "batch");
        assert_eq!(get("IOTSUB_SINK_BATCH_MAX_EVENTS"), "100");
        assert_eq!(get("IOTSUB_SINK_BATCH_MAX_BYTES"), "1048576");
        assert_eq!(get("IOTSUB_SINK_BATCH_LINGER_MS"), "5");
        cgs.spec.sink =
            serde_json::from_value(serde_json::json!({"type": "http", "http": {"url": "http://s/e", "mode": "batch"}})).unwrap();
        let env = env_of(&built(&cgs, 1, false, "img", &[]));
        assert_eq!(env["IOTSUB_SINK_BATCH_MAX_EVENTS"].value.as_deref(), Some("100"), "a batch block may be left out");
    }

    #[test]
    fn sink_delivery_settings_reach_the_worker() {
        let mut cgs = fixtures::subscription();
        let env = env_of(&built(&cgs, 2, false, "img", &[]));
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
        let d = built(&cgs, 2, false, "img", &[]);
        let env = env_of(&d);
        assert_eq!(value(&env, "IOTSUB_DEAD_LETTER").as_deref(), Some("http"));
        assert_eq!(value(&env, "IOTSUB_DEAD_LETTER_URL").as_deref(), Some("https://hooks.example/dead"));
        assert_eq!(value(&env, "IOTSUB_MAX_DELIVERIES").as_deref(), Some("3"));
        assert_eq!(value(&env, "IOTSUB_SINK_HEADERS_DIR").as_deref(), Some(SINK_HEADERS_DIR));
        let (headers, mount) = volume(&d, "sink-headers");
        assert_eq!(headers.secret.as_ref().and_then(|s| s.secret_name.as_deref()), Some("sink-auth"));
        assert_eq!(mount.mount_path, SINK_HEADERS_DIR);
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
            let env = env_of(&built(&cgs, 1, false, "img", &[]));
            assert_eq!(env["IOTSUB_RECONNECT_ATTEMPTS_PER_MINUTE"].value, Some(attempts.to_string()), "cap {cap:?}, {connections} per pod");
        }
    }

    #[test]
    fn worker_pods_carry_the_operators_pull_secrets_and_none_without() {
        let cgs = fixtures::subscription();
        let pod = |d: &Deployment| d.spec.as_ref().unwrap().template.spec.clone().unwrap();
        let names = ["registry-credentials".to_owned()];
        let with = built(&cgs, 1, false, "private.example/iotsub-worker:1", &names);
        let secrets = pod(&with).image_pull_secrets.unwrap();
        assert_eq!(secrets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["registry-credentials"]);
        let without = built(&cgs, 1, false, "iotsub-worker", &[]);
        assert_eq!(pod(&without).image_pull_secrets, None, "left out, so existing Deployments keep their hash");
    }

    #[test]
    fn the_template_hash_follows_what_the_pods_are_made_from_not_the_count() {
        let cgs = fixtures::subscription();
        let hash = |d: &Deployment| template_hash(d.spec.as_ref().unwrap().template.metadata.as_ref()).map(str::to_owned);
        let a = built(&cgs, 2, false, "img", &[]);
        assert_eq!(hash(&a), hash(&built(&cgs, 5, true, "img", &[])), "replicas and pausing are not the pods'");
        assert_ne!(hash(&a), hash(&built(&cgs, 2, false, "img:2", &[])), "another image");
        let mut credit = cgs.clone();
        credit.spec.connection.credit = 500;
        assert_ne!(hash(&a), hash(&built(&credit, 2, false, "img", &[])), "a spec change the pods read");
        let mut moved = cgs.clone();
        moved.spec.credentials.secret_name = Some("other".into());
        assert_ne!(hash(&a), hash(&built(&moved, 2, false, "img", &[])), "another credentials Secret is another volume");
    }

    #[test]
    fn the_applied_hash_changes_with_the_deployment_only() {
        let cgs = fixtures::subscription();
        let a = built(&cgs, 2, false, "img", &[]);
        assert_eq!(applied_hash(&a), applied_hash(&built(&cgs, 2, false, "img", &[])));
        assert_ne!(applied_hash(&a), applied_hash(&built(&cgs, 2, false, "img:2", &[])));
        assert_ne!(applied_hash(&a), applied_hash(&built(&cgs, 3, false, "img", &[])));
        let paused = built(&cgs, 2, true, "img", &[]);
        assert_eq!(paused.spec.as_ref().unwrap().paused, Some(true));
        assert_eq!(a.spec.as_ref().unwrap().paused, Some(false), "always set: the operator owns the field, a hand pause is undone");
        assert_ne!(applied_hash(&a), applied_hash(&paused));
    }

    #[test]
    fn spec_image_overrides_the_default() {
        let mut cgs = fixtures::subscription();
        cgs.spec.worker.image = "registry.example/iotsub-worker:1".into();
        let d = built(&cgs, 2, false, "iotsub-worker", &[]);
        assert_eq!(d.spec.unwrap().template.spec.unwrap().containers[0].image.as_deref(), Some("registry.example/iotsub-worker:1"));
    }
}
