//! Names the operator writes and reads: its field manager, labels, annotations, Secret keys.

/// Field manager of every apply, Reporter of every Event, and the `managed-by` label.
pub const MANAGER: &str = "iotsub-operator";

pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The worker pods' `app.kubernetes.io/name`.
pub const WORKER_NAME: &str = "iotsub-worker";

/// A hash of the worker pod template (everything the pods are made from): a new one is a rollout,
/// which the operator paces under the group's client cap (`rollout`). Credentials are not in it:
/// the workers re-read them from mounted files, so rotating a Secret rolls nothing.
pub const TEMPLATE_HASH_ANNOTATION: &str = "iotsub.dev/template-hash";
/// A hash of the Deployment as last applied: an unchanged one is not applied again, so a
/// reconcile of a settled subscription makes no API call.
pub const APPLIED_HASH_ANNOTATION: &str = "iotsub.dev/applied-hash";

/// The label every Secret a subscription references (credentials, CA, sink headers) must carry
/// before the operator uses it, unless it runs with `--require-secret-label=false`: a Secret of
/// the namespace is not a subscription's to use until someone who may label it says so.
pub const CREDENTIALS_LABEL: &str = "iotsub.dev/credentials";
pub const CREDENTIALS_LABEL_VALUE: &str = "true";

/// Keys of the credentials Secret.
pub const ACCESS_KEY_ID: &str = "accessKeyId";
pub const ACCESS_KEY_SECRET: &str = "accessKeySecret";
pub const SECURITY_TOKEN: &str = "securityToken";

/// `managed-by=iotsub-operator`: what the operator's watches of Deployments and pods select.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGER}")
}

/// The label selector of a subscription's pods, as a string (status.selector, pod lists).
pub fn selector(subscription: &str) -> String {
    format!("{INSTANCE_LABEL}={subscription},{NAME_LABEL}={WORKER_NAME}")
}

/// The clientIds a pod opens: its name, or `<pod>-<i>` with several connections (the worker's rule).
pub fn client_ids(pod_name: &str, connections_per_pod: i32) -> Vec<String> {
    if connections_per_pod <= 1 { vec![pod_name.to_owned()] } else { (0..connections_per_pod).map(|i| format!("{pod_name}-{i}")).collect() }
}
