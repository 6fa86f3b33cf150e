//! What the platform's OpenAPI says about a subscription's consumer group, asked at most once per
//! `pollIntervalSeconds` per subscription, with the subscription's own credentials.

use std::time::{Duration, Instant};

use iotsub_aliyun::{
    amqp::AccessKey,
    client::{CallError, Target, regional_endpoint},
    consumer_group::ConsumerGroupStatus,
};
use iotsub_crds::ConsumerGroupSubscription;
use kube::ResourceExt;

use crate::{context::Context, metrics::PlatformLabels};

#[derive(Debug, Clone, PartialEq)]
pub enum PlatformAnswer {
    Status(ConsumerGroupStatus),
    Failed(CallError),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlatformObservation {
    pub answer: PlatformAnswer,
    /// RFC 3339, for status.
    pub observed_at: String,
    pub at: Instant,
}

pub fn poll_interval(cgs: &ConsumerGroupSubscription) -> Duration {
    let seconds = cgs.spec.autoscaling.as_ref().map_or(15, |a| a.poll_interval_seconds).max(1);
    Duration::from_secs(seconds as u64)
}

pub fn api_endpoint(cgs: &ConsumerGroupSubscription) -> String {
    match cgs.spec.autoscaling.as_ref().map(|a| a.api_endpoint.as_str()).filter(|e| !e.is_empty()) {
        Some(endpoint) => endpoint.to_owned(),
        None => regional_endpoint(&cgs.spec.region_id),
    }
}

/// `namespace/name`: the key of per-subscription memory.
pub fn cache_key(cgs: &ConsumerGroupSubscription) -> String {
    format!("{}/{}", cgs.namespace().unwrap_or_default(), cgs.name_any())
}

/// The cached answer when it is fresh, else a new call. A throttled call keeps the last answer.
pub async fn observe(ctx: &Context, cgs: &ConsumerGroupSubscription, key: &AccessKey, now_rfc3339: &str) -> PlatformObservation {
    let cache_key = cache_key(cgs);
    let cached = ctx.platform_cache.lock().expect("cache lock").get(&cache_key).cloned();
    if let Some(cached) = &cached
        && cached.at.elapsed() < poll_interval(cgs)
    {
        return cached.clone();
    }
    let endpoint = api_endpoint(cgs);
    let target = Target { base_url: &endpoint, region_id: &cgs.spec.region_id, access_key: key };
    let result = ctx.openapi.query_consumer_group_status(&target, cgs.spec.iot_instance_id.as_deref(), &cgs.spec.consumer_group_id).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(CallError::Throttled) => "throttled",
        Err(CallError::Unreachable(_)) => "unreachable",
        Err(CallError::Refused { .. }) => "refused",
        Err(CallError::Platform { .. }) => "platform_error",
        Err(CallError::Decode { .. }) => "decode_error",
    };
    ctx.metrics.platform_calls.get_or_create(&PlatformLabels { outcome: outcome.into() }).inc();
    let throttled = matches!(result, Err(CallError::Throttled));
    if throttled && let Some(cached) = cached {
        return cached;
    }
    let observation = PlatformObservation {
        answer: match result {
            Ok(status) => PlatformAnswer::Status(status),
            Err(error) => PlatformAnswer::Failed(error),
        },
        observed_at: now_rfc3339.to_owned(),
        at: Instant::now(),
    };
    if !throttled {
        // A throttled call is not an answer: the next reconcile (soon) asks again.
        ctx.platform_cache.lock().expect("cache lock").insert(cache_key, observation.clone());
    }
    observation
}

pub fn forget(ctx: &Context, cgs: &ConsumerGroupSubscription) {
    ctx.platform_cache.lock().expect("cache lock").remove(&cache_key(cgs));
    ctx.metrics.forget_subscription(cgs);
}
