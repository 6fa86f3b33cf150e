//! status.clients: each expected clientId joined with the platform's list of connected clients.

use std::collections::BTreeMap;

use iotsub_aliyun::consumer_group::ClientConnectionInfo;
use iotsub_crds::ClientStatus;
use k8s_openapi::api::core::v1::Pod;
use kube_core::ResourceExt;

use crate::{names, timestamps::epoch_ms_rfc3339};

/// Each pod's clientIds (the pod name, or `<pod>-<i>` with several connections), joined with the
/// platform's connected clients; then the group's other clients, with no pod. Sorted by clientId.
pub(crate) fn clients(pods: &[Pod], connections: i32, platform: Option<&[ClientConnectionInfo]>) -> Vec<ClientStatus> {
    let connected: BTreeMap<&str, &ClientConnectionInfo> = platform.unwrap_or_default().iter().map(|c| (c.client_id.as_str(), c)).collect();
    let mut out: BTreeMap<String, ClientStatus> = BTreeMap::new();
    for pod in pods {
        let pod_name = pod.name_any();
        for id in names::client_ids(&pod_name, connections) {
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
