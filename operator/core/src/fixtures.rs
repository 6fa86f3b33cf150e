//! Test fixtures: a subscription as a user writes it, and Secrets, pods and Deployments as the
//! cluster reports them.

use std::collections::BTreeMap;

use iotsub_aliyun::{
    answer::CallError,
    consumer_group::{ClientConnectionInfo, ClientConnectionStatusList, ConsumerGroupStatus},
};
use iotsub_crds::ConsumerGroupSubscription;
use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::{Deployment, DeploymentStatus},
        core::v1::{Pod, Secret},
    },
    apimachinery::pkg::apis::meta::v1::Time,
};
use time::{OffsetDateTime, macros::datetime};

use crate::{
    Decision, Guard, Memory, Observed, PlatformAnswer, PlatformObservation, decide,
    names::{CREDENTIALS_LABEL, CREDENTIALS_LABEL_VALUE},
    observed::{KeySource, check_credentials},
};

pub const SUBSCRIPTION_YAML: &str = r#"
apiVersion: iotsub.dev/v1alpha1
kind: ConsumerGroupSubscription
metadata: {name: orders, namespace: team, uid: 5f0c-uid, generation: 3}
spec:
  endpoint: {host: 127.0.0.1, caSecretRef: {name: emulator-ca, key: ca.pem}}
  consumerGroupId: DEFAULT_GROUP
  regionId: cn-shanghai
  credentials: {secretName: creds}
  replicas: 2
"#;

pub fn subscription() -> ConsumerGroupSubscription {
    serde_yaml::from_str(SUBSCRIPTION_YAML).expect("fixture parses")
}

/// A fixed "now" for tests.
pub fn now() -> OffsetDateTime {
    datetime!(2026-01-02 03:04:05 UTC)
}

pub fn deployment_with_status(replicas: i32, ready: i32) -> Deployment {
    Deployment {
        status: Some(DeploymentStatus {
            replicas: Some(replicas),
            ready_replicas: Some(ready),
            updated_replicas: Some(replicas),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn pod(name: &str) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.into());
    pod
}

/// `pod`, shutting down.
pub fn terminating(mut pod: Pod) -> Pod {
    pod.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    pod
}

/// A Secret with the label the operator requires ([`crate::names::CREDENTIALS_LABEL`]).
pub fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.into());
    secret.metadata.namespace = Some("team".into());
    secret.metadata.labels = Some(BTreeMap::from([(CREDENTIALS_LABEL.into(), CREDENTIALS_LABEL_VALUE.into())]));
    secret.data = Some(data.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect::<BTreeMap<_, _>>());
    secret
}

pub const IMAGE: &str = "iotsub-worker:test";

/// The operator's default guard rails with [`IMAGE`].
pub fn guard() -> Guard {
    Guard::with_defaults(IMAGE)
}

/// A subscription and what the cluster and the platform show of it, for tests that run
/// [`decide`] reconcile after reconcile.
#[derive(Clone)]
pub struct World {
    pub cgs: ConsumerGroupSubscription,
    pub observed: Observed,
    pub memory: Memory,
    /// Clients of the group that are not ours.
    pub others: Vec<String>,
    pub backlog: i64,
    pub platform_down: bool,
    /// The Secrets in the namespace.
    pub secrets: Vec<Secret>,
    /// The operator's guard rails ([`guard`] unless a test changes them).
    pub guard: Guard,
}

pub fn creds(id: &str) -> Secret {
    secret("creds", &[("accessKeyId", id), ("accessKeySecret", "s3cr3t")])
}

impl World {
    pub fn new(cgs: ConsumerGroupSubscription) -> World {
        let mut world = World {
            observed: Observed {
                credentials: check_credentials(&cgs, KeySource::Secret(None), None, None, &guard()),
                deployment: None,
                pods: vec![],
                platform: None,
                sinks: vec![],
            },
            cgs,
            memory: Memory::default(),
            others: vec![],
            backlog: 0,
            platform_down: false,
            secrets: vec![],
            guard: guard(),
        };
        world.put_secret(Some(&creds("demo")));
        world
    }

    /// The credentials Secret is now `credentials` (`None`: deleted); the CA Secret is there.
    pub fn put_secret(&mut self, credentials: Option<&Secret>) {
        let ca = secret("emulator-ca", &[("ca.pem", "PEM")]);
        self.observed.credentials =
            check_credentials(&self.cgs, KeySource::Secret(credentials), Some(("emulator-ca", "ca.pem", Some(&ca))), None, &self.guard);
        self.secrets = credentials.into_iter().cloned().chain([ca]).collect();
    }

    /// What the platform answers now: our running pods' clients, the others, the backlog.
    pub fn ask_platform(&mut self) {
        if !self.observed.credentials.is_valid() {
            self.observed.platform = None;
            return;
        }
        let answer = if self.platform_down {
            PlatformAnswer::Failed(CallError::Unreachable("connection failed (iot.cn-shanghai.aliyuncs.com:443)".into()))
        } else {
            let ours = self.observed.running_pods().map(|p| p.metadata.name.clone().unwrap_or_default());
            let clients = ours
                .chain(self.others.iter().cloned())
                .map(|client_id| ClientConnectionInfo { client_id, client_ip_port: "10.0.0.1:1".into(), ..Default::default() })
                .collect();
            PlatformAnswer::Status(ConsumerGroupStatus {
                accumulation_count: self.backlog,
                client_connection_status_list: ClientConnectionStatusList { clients },
                ..Default::default()
            })
        };
        self.observed.platform = Some(PlatformObservation { answer, at: now() });
    }

    pub fn decide(&mut self) -> Decision {
        self.ask_platform();
        decide(&self.cgs, &self.observed, &self.memory, now(), &self.guard)
    }

    /// The cluster carries a decision out: the Deployment's pods all ready on its template.
    pub fn carry_out(&mut self, decision: &Decision) {
        if let Some(deployment) = &decision.deployment {
            let mut deployment = deployment.clone();
            let replicas = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            deployment.status = Some(DeploymentStatus {
                replicas: Some(replicas),
                ready_replicas: Some(replicas),
                updated_replicas: Some(replicas),
                ..Default::default()
            });
            let annotations = deployment.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.annotations.clone());
            self.observed.pods = (0..replicas)
                .map(|i| {
                    let mut pod = pod(&format!("orders-abc-{i}"));
                    pod.metadata.annotations.clone_from(&annotations);
                    pod
                })
                .collect();
            self.observed.deployment = Some(deployment);
        }
        if let Some(status) = &decision.status {
            self.cgs.status = Some(status.clone());
        }
        self.memory = decision.memory.clone();
    }

    /// Decides and carries out until nothing is left to do.
    pub fn settle(mut self) -> World {
        for _ in 0..5 {
            let decision = self.decide();
            if decision.deployment.is_none() && decision.status.is_none() {
                return self;
            }
            self.carry_out(&decision);
        }
        panic!("no settled state after 5 reconciles: {:?}", self.cgs.status);
    }
}
