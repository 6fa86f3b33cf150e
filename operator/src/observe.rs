//! Observe: read what the subscription depends on (its Secrets, its Deployment and pods, the
//! platform's view) into plain data for the pure stages.

use std::collections::BTreeMap;

use iotsub_aliyun::amqp::AccessKey;
use iotsub_crds::{AuthMode, ConsumerGroupSubscription};
use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::Deployment,
        core::v1::{Pod, Secret},
    },
};
use kube::{ResourceExt, runtime::reflector::ObjectRef};
use sha2::{Digest, Sha256};

use crate::{
    autoscale,
    context::Context,
    desired,
    platform::{self, PlatformAnswer, PlatformObservation},
};

pub const ACCESS_KEY_ID: &str = "accessKeyId";
pub const ACCESS_KEY_SECRET: &str = "accessKeySecret";
pub const SECURITY_TOKEN: &str = "securityToken";

#[derive(Debug)]
pub struct Observed {
    pub credentials: Credentials,
    pub deployment: Option<Deployment>,
    pub pods: Vec<Pod>,
    /// `None` when the credentials are not usable, so the platform was not asked.
    pub platform: Option<PlatformObservation>,
}

/// What the Secrets hold, checked. The secret values stay in `access_key` (whose `Debug` redacts).
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    Valid { access_key: AccessKey, hash: String },
    SecretNotFound { secret: String },
    KeyMissing { secret: String, key: String },
}

impl Credentials {
    pub fn is_valid(&self) -> bool {
        matches!(self, Credentials::Valid { .. })
    }
}

/// Reads the watch caches (no API call); `platform` is left for [`observe_platform`], which runs
/// after the Deployment is applied so a slow OpenAPI never delays the workers.
pub fn observe(ctx: &Context, cgs: &ConsumerGroupSubscription) -> Observed {
    let namespace = cgs.namespace().unwrap_or_default();
    let name = cgs.name_any();
    let secret = |secret_name: &str| ctx.stores.secrets.get(&ObjectRef::new(secret_name).within(&namespace));
    let credentials_secret = secret(&cgs.spec.credentials.secret_name);
    let ca_secret = cgs.spec.endpoint.ca_secret_ref.as_ref().map(|ca| (ca, secret(&ca.name)));
    let credentials = check_credentials(
        cgs,
        credentials_secret.as_deref(),
        ca_secret.as_ref().map(|(r, s)| (r.name.as_str(), r.key.as_str(), s.as_deref())),
    );
    let deployment = ctx.stores.deployments.get(&ObjectRef::new(&name).within(&namespace)).map(|d| (*d).clone());
    let pods = ctx
        .stores
        .pods
        .state_filter(|pod| {
            pod.namespace().as_deref() == Some(namespace.as_str())
                && pod.labels().get(desired::INSTANCE_LABEL) == Some(&name)
                && pod.labels().get(desired::NAME_LABEL).map(String::as_str) == Some(desired::WORKER_NAME)
        })
        .into_iter()
        .map(|p| (*p).clone())
        .collect();
    Observed { credentials, deployment, pods, platform: None }
}

/// With usable credentials, what the platform says (cached per poll interval).
pub async fn observe_platform(ctx: &Context, cgs: &ConsumerGroupSubscription, observed: &mut Observed, now_rfc3339: &str) {
    if let Credentials::Valid { access_key, .. } = &observed.credentials {
        observed.platform = Some(platform::observe(ctx, cgs, access_key, now_rfc3339).await);
    }
}

/// Pure: the autoscaler's view of the platform's answer — the backlog, and the group's connected
/// clients that are not this subscription's running pods: our pods shutting down (or already gone,
/// whose connection the platform still lists: a clientId `<subscription>-…` that no running pod
/// has), and everyone else's. `None` without an answer.
pub fn reading(observed: &Observed, subscription: &str, connections_per_pod: i32) -> Option<autoscale::Reading> {
    let PlatformAnswer::Status(answer) = &observed.platform.as_ref()?.answer else {
        return None;
    };
    let running: std::collections::HashSet<String> = observed
        .pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .flat_map(|pod| desired::client_ids(&pod.name_any(), connections_per_pod))
        .collect();
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

/// Pure: which keys the auth mode needs, whether they are there, and the hash that rolls the pods
/// when any of them (or the CA) changes.
pub fn check_credentials(
    cgs: &ConsumerGroupSubscription,
    secret: Option<&Secret>,
    ca: Option<(&str, &str, Option<&Secret>)>,
) -> Credentials {
    let secret_name = cgs.spec.credentials.secret_name.clone();
    let Some(secret) = secret else {
        return Credentials::SecretNotFound { secret: secret_name };
    };
    let data = secret_data(secret);
    let mut needed = vec![ACCESS_KEY_ID, ACCESS_KEY_SECRET];
    if cgs.spec.credentials.auth_mode == AuthMode::Ststoken {
        needed.push(SECURITY_TOKEN);
    }
    let mut hasher = Sha256::new();
    for key in &needed {
        match data.get(*key).filter(|v| !v.is_empty()) {
            Some(value) => hash_entry(&mut hasher, key, value),
            None => return Credentials::KeyMissing { secret: secret_name, key: (*key).into() },
        }
    }
    if let Some((ca_name, ca_key, ca_secret)) = ca {
        let Some(ca_secret) = ca_secret else {
            return Credentials::SecretNotFound { secret: ca_name.into() };
        };
        match secret_data(ca_secret).get(ca_key).filter(|v| !v.is_empty()) {
            Some(value) => hash_entry(&mut hasher, "ca", value),
            None => return Credentials::KeyMissing { secret: ca_name.into(), key: ca_key.into() },
        }
    }
    let text = |key: &str| String::from_utf8_lossy(&data[key]).trim().to_owned();
    let access_key = AccessKey {
        id: text(ACCESS_KEY_ID),
        secret: text(ACCESS_KEY_SECRET),
        security_token: (cgs.spec.credentials.auth_mode == AuthMode::Ststoken).then(|| text(SECURITY_TOKEN)),
    };
    let digest = hasher.finalize();
    let hash = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Credentials::Valid { access_key, hash }
}

fn hash_entry(hasher: &mut Sha256, key: &str, value: &[u8]) {
    hasher.update((key.len() as u64).to_be_bytes());
    hasher.update(key.as_bytes());
    hasher.update((value.len() as u64).to_be_bytes());
    hasher.update(value);
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
    use crate::fixtures;
    use iotsub_aliyun::consumer_group::{ClientConnectionInfo, ClientConnectionStatusList, ConsumerGroupStatus};

    #[test]
    fn reading_tells_our_draining_clients_from_everyone_elses() {
        let mut draining = fixtures::pod("orders-abc-3");
        draining.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
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
                observed_at: String::new(),
                at: std::time::Instant::now(),
            }),
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
}
