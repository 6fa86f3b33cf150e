//! Test fixtures: a subscription as a user writes it, and children as the cluster reports them.

use iotsub_crds::ConsumerGroupSubscription;
use k8s_openapi::api::{
    apps::v1::{Deployment, DeploymentStatus},
    core::v1::Pod,
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
