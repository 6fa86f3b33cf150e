//! Observe: read what a subscription depends on from the watch caches (no API call) into
//! [`Observed`]. The platform is asked separately ([`crate::platform`]).

use iotsub_crds::ConsumerGroupSubscription;
use iotsub_operator_core::{
    Guard, Observed,
    names::{INSTANCE_LABEL, NAME_LABEL, WORKER_NAME},
    observed::check_credentials,
};
use kube::{ResourceExt, runtime::reflector::ObjectRef};

use crate::context::Stores;

/// The Secrets (checked, against the `guard`'s label rule too), the Deployment and the worker
/// pods; `platform` is left `None`, and `sinks` empty ([`crate::sink_status`] fills it).
pub fn cluster(stores: &Stores, cgs: &ConsumerGroupSubscription, guard: &Guard) -> Observed {
    let namespace = cgs.namespace().unwrap_or_default();
    let name = cgs.name_any();
    let secret = |secret_name: &str| stores.secrets.get(&ObjectRef::new(secret_name).within(&namespace));
    let credentials_secret = secret(&cgs.spec.credentials.secret_name);
    let ca_secret = cgs.spec.endpoint.ca_secret_ref.as_ref().map(|ca| (ca, secret(&ca.name)));
    let headers_name = cgs.spec.sink.http.as_ref().and_then(|h| h.headers_from.as_ref()).map(|h| h.secret_name.as_str());
    let headers_secret = headers_name.map(|n| (n, secret(n)));
    let credentials = check_credentials(
        cgs,
        credentials_secret.as_deref(),
        ca_secret.as_ref().map(|(r, s)| (r.name.as_str(), r.key.as_str(), s.as_deref())),
        headers_secret.as_ref().map(|(n, s)| (*n, s.as_deref())),
        guard,
    );
    let deployment = stores.deployments.get(&ObjectRef::new(&name).within(&namespace)).map(|d| (*d).clone());
    let pods = stores
        .pods
        .state_filter(|pod| {
            pod.namespace().as_deref() == Some(namespace.as_str())
                && pod.labels().get(INSTANCE_LABEL) == Some(&name)
                && pod.labels().get(NAME_LABEL).map(String::as_str) == Some(WORKER_NAME)
        })
        .into_iter()
        .map(|p| (*p).clone())
        .collect();
    Observed { credentials, deployment, pods, platform: None, sinks: vec![] }
}
