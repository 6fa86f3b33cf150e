//! Observe: read what a subscription depends on into [`Observed`]: the Deployment and pods from
//! the watch caches, the referenced Secrets through [`crate::secrets`] (a `get` only when one
//! changed), and with RRSA the STS credentials ([`crate::rrsa`]). The platform is asked separately
//! ([`crate::platform`]).

use iotsub_crds::ConsumerGroupSubscription;
use iotsub_operator_core::{
    Observed,
    names::{INSTANCE_LABEL, NAME_LABEL, WORKER_NAME},
    observed::{KeySource, check_credentials},
};
use kube::{ResourceExt, runtime::reflector::ObjectRef};

use crate::context::Context;

/// The Secrets (checked, against the guard's label rule too: an unlabelled Secret's data is never
/// fetched), the Deployment and the worker pods; `platform` is left `None`, and `sinks` empty
/// ([`crate::sink_status`] fills it).
pub async fn cluster(ctx: &Context, cgs: &ConsumerGroupSubscription) -> Result<Observed, kube::Error> {
    let (stores, guard) = (&ctx.stores, &ctx.guard);
    let usable = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| guard.secret_usable(meta);
    let namespace = cgs.namespace().unwrap_or_default();
    let name = cgs.name_any();
    let credentials_secret = match cgs.spec.credentials.secret() {
        Some(secret) => ctx.secrets.get(&namespace, secret, usable).await?,
        None => None,
    };
    let ca_secret = match cgs.spec.endpoint.ca_secret_ref.as_ref() {
        Some(ca) => Some((ca, ctx.secrets.get(&namespace, &ca.name, usable).await?)),
        None => None,
    };
    let headers_secret = match cgs.spec.sink.http.as_ref().and_then(|h| h.headers_from.as_ref()).map(|h| h.secret_name.as_str()) {
        Some(name) => Some((name, ctx.secrets.get(&namespace, name, usable).await?)),
        None => None,
    };
    // RRSA: STS credentials for the operator's own calls, the exchange the workers make too.
    let assumed = match &cgs.spec.credentials.rrsa {
        Some(rrsa) => {
            // The CA Secret fetched above (the cache holds it: no second read).
            let ca = ca_secret
                .as_ref()
                .filter(|_| !rrsa.sts_endpoint.is_empty())
                .and_then(|(reference, secret)| crate::platform::secret_value(secret.as_deref()?, &reference.key));
            Some(crate::rrsa::credentials(ctx, cgs, rrsa, ca.as_deref()).await)
        }
        None => None,
    };
    let key = match &assumed {
        Some(outcome) => KeySource::Rrsa(outcome.as_ref()),
        None => KeySource::Secret(credentials_secret.as_deref()),
    };
    let credentials = check_credentials(
        cgs,
        key,
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
    ctx.metrics.secrets_held.set(i64::try_from(ctx.secrets.held()).unwrap_or(i64::MAX));
    Ok(Observed { credentials, deployment, pods, platform: None, sinks: vec![] })
}
