//! A client of the consumer-group OpenAPI (feature `client`): signed GET requests, and one rate
//! limiter per AccessKey because the platform allows 5 calls/s per account.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use time::OffsetDateTime;

pub use crate::answer::{CallError, is_credential_code, is_transient, parse_answer};
use crate::{amqp::AccessKey, consumer_group::ConsumerGroupStatus, openapi, redact::Redactor};

/// The platform's OpenAPI rate: calls per second per AccessKey.
pub const CALLS_PER_SECOND: f64 = 5.0;

/// A token bucket per AccessKey id.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_second: f64) -> RateLimiter {
        RateLimiter { per_second, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one call for `key_id` if one is left now.
    pub fn try_acquire(&self, key_id: &str) -> bool {
        self.try_acquire_at(key_id, Instant::now())
    }

    pub fn try_acquire_at(&self, key_id: &str, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        let (tokens, last) = buckets.entry(key_id.to_owned()).or_insert((self.per_second, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.per_second).min(self.per_second);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Which failures are tried again, and how: transient ones (unreachable, a 5xx, the gateway's
/// own throttling) with exponential backoff and jitter. Every attempt takes a call from the
/// AccessKey's budget, so retries never push past 5 calls/s.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 3, first_backoff: Duration::from_millis(250) }
    }
}

/// Calls the IoT Platform's OpenAPI; cheap to share (`Arc`) across reconciles.
pub struct OpenApiClient {
    http: reqwest::Client,
    limiter: RateLimiter,
    retry: RetryPolicy,
}

/// Where and as whom to call.
pub struct Target<'a> {
    /// `https://iot.<regionId>.aliyuncs.com`, or an override (the emulator).
    pub base_url: &'a str,
    pub region_id: &'a str,
    pub access_key: &'a AccessKey,
}

/// The default endpoint of a region.
pub fn regional_endpoint(region_id: &str) -> String {
    format!("https://iot.{region_id}.aliyuncs.com")
}

impl OpenApiClient {
    pub fn new(http: reqwest::Client, retry: RetryPolicy) -> OpenApiClient {
        OpenApiClient { http, limiter: RateLimiter::new(CALLS_PER_SECOND), retry }
    }

    /// A client with rustls, a 5 s timeout per attempt (3 s to connect) and [`RetryPolicy::default`]:
    /// at most about 16 s for a call that never gets an answer.
    pub fn with_defaults() -> Result<OpenApiClient, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).connect_timeout(Duration::from_secs(3)).build()?;
        Ok(OpenApiClient::new(http, RetryPolicy::default()))
    }

    /// `QueryConsumerGroupStatus`, retried while transient; [`CallError::Throttled`] when the
    /// AccessKey's budget is spent before the first attempt (after one, the last failure).
    pub async fn query_consumer_group_status(
        &self,
        target: &Target<'_>,
        instance_id: Option<&str>,
        group_id: &str,
    ) -> Result<ConsumerGroupStatus, CallError> {
        let mut backoff = self.retry.first_backoff;
        let mut last = CallError::Throttled;
        for attempt in 1..=self.retry.attempts.max(1) {
            if !self.limiter.try_acquire(&target.access_key.id) {
                return Err(last);
            }
            // The gateway's text is cut where it echoes the request (answer.rs); this hides
            // anything else that would carry the secret or the token.
            let redactor = Redactor::for_key(target.access_key);
            match self.query_once(target, instance_id, group_id).await.map_err(|e| e.redacted(&redactor)) {
                Err(error) if is_transient(&error) && attempt < self.retry.attempts => {
                    last = error;
                    tokio::time::sleep(iotsub_common::jitter::equal_random(backoff)).await;
                    backoff *= 2;
                }
                result => return result,
            }
        }
        Err(last)
    }

    async fn query_once(&self, target: &Target<'_>, instance_id: Option<&str>, group_id: &str) -> Result<ConsumerGroupStatus, CallError> {
        let mut params = openapi::common_params(
            "QueryConsumerGroupStatus",
            &target.access_key.id,
            target.region_id,
            &nonce(),
            OffsetDateTime::now_utc(),
        );
        params.insert("GroupId".into(), group_id.into());
        if let Some(instance) = instance_id.filter(|i| !i.is_empty()) {
            params.insert("IotInstanceId".into(), instance.into());
        }
        if let Some(token) = &target.access_key.security_token {
            params.insert("SecurityToken".into(), token.expose().clone());
        }
        let url =
            format!("{}/?{}", target.base_url.trim_end_matches('/'), openapi::signed_query(&params, target.access_key.secret.expose()));
        // reqwest's error text includes the URL, which carries the signature and maybe the token.
        let response = self.http.get(url).send().await.map_err(|e| CallError::Unreachable(describe(&e)))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| CallError::Unreachable(describe(&e)))?;
        parse_answer(status, &body)
    }
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let host = e.url().and_then(|u| u.host_str().map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0))));
    match host {
        Some(host) => format!("{kind} ({host})"),
        None => kind.to_owned(),
    }
}

fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = OffsetDateTime::now_utc().unix_timestamp_nanos();
    format!("{t:x}-{}-{n:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_calls_per_second_per_key() {
        let limiter = RateLimiter::new(5.0);
        let t0 = Instant::now();
        assert_eq!((0..7).filter(|_| limiter.try_acquire_at("a", t0)).count(), 5);
        assert!(limiter.try_acquire_at("b", t0), "another key has its own budget");
        assert!(!limiter.try_acquire_at("a", t0 + Duration::from_millis(100)));
        assert!(limiter.try_acquire_at("a", t0 + Duration::from_millis(250)));
    }
}
