//! Ask the platform's OpenAPI about a subscription's consumer group, with the subscription's own
//! credentials, at most once per poll interval (the answer is remembered in [`Memory`]).

use iotsub_aliyun::{
    amqp::AccessKey,
    answer::CallError,
    client::{Target, regional_endpoint},
};
use iotsub_crds::ConsumerGroupSubscription;
use iotsub_operator_core::{Memory, PlatformAnswer, PlatformObservation, decide::poll_interval};
use kube::ResourceExt;
use time::OffsetDateTime;

use crate::{context::Context, metrics::PlatformLabels};

/// The remembered answer while it is fresh, else a new call (remembered unless throttled).
pub async fn observe(
    ctx: &Context,
    cgs: &ConsumerGroupSubscription,
    key: &AccessKey,
    memory: &mut Memory,
    now: OffsetDateTime,
) -> PlatformObservation {
    if let Some(fresh) = memory.fresh_platform(now, poll_interval(cgs)) {
        return fresh.clone();
    }
    let endpoint = api_endpoint(cgs);
    let ca = api_ca(ctx, cgs).await;
    let target = Target { base_url: &endpoint, region_id: &cgs.spec.region_id, access_key: key, extra_root_pem: ca.as_deref() };
    let result = ctx.openapi.query_consumer_group_status(&target, cgs.spec.iot_instance_id.as_deref(), &cgs.spec.consumer_group_id).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(CallError::Throttled) => "throttled",
        Err(CallError::Unreachable(_)) => "unreachable",
        Err(CallError::Refused { .. }) => "refused",
        Err(CallError::Platform { .. }) => "platform_error",
        Err(CallError::Decode { .. }) => "decode_error",
        Err(CallError::Untrusted(_)) => "untrusted",
    };
    ctx.metrics.platform_calls.get_or_create(&PlatformLabels { outcome: outcome.into() }).inc();
    let answer = match result {
        Ok(status) => PlatformAnswer::Status(status),
        Err(error) => PlatformAnswer::Failed(error),
    };
    memory.remember_platform(PlatformObservation { answer, at: now })
}

/// `endpoint.caSecretRef`'s CA, trusted (besides the default roots) for an `apiEndpoint` override:
/// a private endpoint, or the emulator. The public regional endpoint gets the default roots only.
async fn api_ca(ctx: &Context, cgs: &ConsumerGroupSubscription) -> Option<Vec<u8>> {
    cgs.spec.autoscaling.as_ref().filter(|a| !a.api_endpoint.is_empty())?;
    endpoint_ca(ctx, cgs).await
}

/// `endpoint.caSecretRef`'s CA. (Read from what observe fetched: no API call.)
async fn endpoint_ca(ctx: &Context, cgs: &ConsumerGroupSubscription) -> Option<Vec<u8>> {
    let reference = cgs.spec.endpoint.ca_secret_ref.as_ref()?;
    let namespace = cgs.namespace().unwrap_or_default();
    let secret = ctx.secrets.get(&namespace, &reference.name, |meta| ctx.guard.secret_usable(meta)).await.ok()??;
    secret_value(&secret, &reference.key)
}

/// `key`'s value in `secret` (`data`, else `stringData`).
pub fn secret_value(secret: &k8s_openapi::api::core::v1::Secret, key: &str) -> Option<Vec<u8>> {
    let from_data = secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.clone());
    from_data.or_else(|| secret.string_data.as_ref()?.get(key).map(|v| v.clone().into_bytes()))
}

fn api_endpoint(cgs: &ConsumerGroupSubscription) -> String {
    match cgs.spec.autoscaling.as_ref().map(|a| a.api_endpoint.as_str()).filter(|e| !e.is_empty()) {
        Some(endpoint) => endpoint.to_owned(),
        None => regional_endpoint(&cgs.spec.region_id),
    }
}
