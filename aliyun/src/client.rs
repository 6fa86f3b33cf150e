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
///
/// Only `https://`, and no redirect is followed: the query carries the signature and, with
/// ststoken, the SecurityToken, so it goes only to the endpoint named, over verified TLS.
pub struct OpenApiClient {
    settings: HttpSettings,
    /// One HTTP client per extra trust root (`None`: the default roots only), made when first used.
    clients: Mutex<HashMap<Option<Vec<u8>>, reqwest::Client>>,
    limiter: RateLimiter,
    retry: RetryPolicy,
}

/// Time limits of one attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpSettings {
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings { timeout: Duration::from_secs(5), connect_timeout: Duration::from_secs(3) }
    }
}

/// Where and as whom to call.
pub struct Target<'a> {
    /// `https://iot.<regionId>.aliyuncs.com`, or an override (a private endpoint, the emulator).
    pub base_url: &'a str,
    pub region_id: &'a str,
    pub access_key: &'a AccessKey,
    /// A PEM CA trusted besides the default roots (a private endpoint's, the emulator's).
    pub extra_root_pem: Option<&'a [u8]>,
}

/// The default endpoint of a region.
pub fn regional_endpoint(region_id: &str) -> String {
    format!("https://iot.{region_id}.aliyuncs.com")
}

impl OpenApiClient {
    pub fn new(settings: HttpSettings, retry: RetryPolicy) -> OpenApiClient {
        OpenApiClient { settings, clients: Mutex::new(HashMap::new()), limiter: RateLimiter::new(CALLS_PER_SECOND), retry }
    }

    /// A 5 s timeout per attempt (3 s to connect) and [`RetryPolicy::default`]: at most about 16 s
    /// for a call that never gets an answer.
    pub fn with_defaults() -> OpenApiClient {
        OpenApiClient::new(HttpSettings::default(), RetryPolicy::default())
    }

    /// The HTTP client trusting the default roots and `extra_root_pem`.
    fn http(&self, extra_root_pem: Option<&[u8]>) -> Result<reqwest::Client, CallError> {
        let key = extra_root_pem.map(<[u8]>::to_vec);
        if let Some(client) = self.clients.lock().expect("client cache lock").get(&key) {
            return Ok(client.clone());
        }
        let client = http_client(self.settings, extra_root_pem)?;
        self.clients.lock().expect("client cache lock").insert(key, client.clone());
        Ok(client)
    }

    /// STS `AssumeRoleWithOIDC` at `endpoint` (https only, no redirects), trusting
    /// `extra_root_pem` besides the default roots: one attempt (the caller keeps what it got until
    /// shortly before it expires, so a failure is retried at its next need).
    pub async fn assume_role_with_oidc(
        &self,
        endpoint: &str,
        extra_root_pem: Option<&[u8]>,
        request: &crate::sts::AssumeRoleWithOidc,
    ) -> Result<crate::sts::Assumed, crate::sts::StsError> {
        require_https(endpoint).map_err(|e| crate::sts::StsError::Unreachable(e.to_string()))?;
        let http = self.http(extra_root_pem).map_err(|e| crate::sts::StsError::Unreachable(e.to_string()))?;
        crate::sts::assume_role_with_oidc(&http, endpoint, request).await
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
        let http = self.http(target.extra_root_pem)?;
        require_https(target.base_url)?;
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
        let response = http.get(url).send().await.map_err(|e| classify(&e))?;
        if response.status().is_redirection() {
            return Err(CallError::Untrusted(redirect(&response)));
        }
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| CallError::Unreachable(describe(&e)))?;
        parse_answer(status, &body)
    }
}

/// rustls with the default roots plus `extra_root_pem`, no redirects, `https://` only.
fn http_client(settings: HttpSettings, extra_root_pem: Option<&[u8]>) -> Result<reqwest::Client, CallError> {
    let mut builder = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true);
    if let Some(pem) = extra_root_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|_| CallError::Untrusted("the CA for the OpenAPI endpoint is not a PEM certificate".into()))?;
        if certs.is_empty() {
            return Err(CallError::Untrusted("the CA for the OpenAPI endpoint holds no PEM certificate".into()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| CallError::Untrusted(format!("cannot make an HTTPS client: {}", describe(&e))))
}

/// The endpoint must be `https://`: the signed query and the token never travel in clear.
fn require_https(base_url: &str) -> Result<(), CallError> {
    match reqwest::Url::parse(base_url) {
        Ok(url) if url.scheme() == "https" && url.host_str().is_some() => Ok(()),
        Ok(url) => Err(CallError::Untrusted(format!("the OpenAPI endpoint must be an https:// URL, not {}://", url.scheme()))),
        Err(e) => Err(CallError::Untrusted(format!("the OpenAPI endpoint is not a URL: {e}"))),
    }
}

/// A redirect, named by its status and where it points (scheme, host and port only: a redirect
/// may echo the signed query back).
fn redirect(response: &reqwest::Response) -> String {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| response.url().join(l).ok())
        .map_or_else(|| "nowhere".to_owned(), |u| format!("{}://{}", u.scheme(), host_port(&u)));
    format!(
        "the OpenAPI endpoint ({}) answered {} redirecting to {location}; redirects are not followed",
        host_port(response.url()),
        response.status()
    )
}

fn host_port(url: &reqwest::Url) -> String {
    format!("{}:{}", url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0))
}

/// A certificate the roots do not vouch for is no network blip: it is said as such and not retried.
fn classify(e: &reqwest::Error) -> CallError {
    match tls_failure(e) {
        Some(tls) => CallError::Untrusted(format!("TLS handshake failed ({}): {tls}", e.url().map_or_else(String::new, host_port))),
        None => CallError::Unreachable(describe(e)),
    }
}

/// The rustls error somewhere in `e`'s sources (an `io::Error` hides its inner error from
/// `source`, so it is unwrapped with `get_ref`).
fn tls_failure(e: &reqwest::Error) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        next = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
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
    fn only_an_https_url_with_a_host_is_called() {
        assert_eq!(require_https("https://iot.cn-shanghai.aliyuncs.com"), Ok(()));
        let refused = |url: &str| match require_https(url) {
            Err(CallError::Untrusted(why)) => why,
            other => panic!("{url}: {other:?}"),
        };
        assert!(refused("http://iot.cn-shanghai.aliyuncs.com").contains("https:// URL, not http://"));
        assert!(refused("iot.example").contains("not a URL"));
        assert!(refused("https://").contains("not a URL: empty host"), "{}", refused("https://"));
    }

    #[test]
    fn a_ca_that_is_not_pem_is_named_as_such() {
        let why = |pem: &[u8]| match http_client(HttpSettings::default(), Some(pem)) {
            Err(CallError::Untrusted(why)) => why,
            Ok(_) => panic!("a client from {pem:?}"),
            Err(other) => panic!("{other:?}"),
        };
        assert!(why(b"not a certificate").contains("no PEM certificate"), "{}", why(b"not a certificate"));
        assert!(http_client(HttpSettings::default(), None).is_ok(), "the default roots alone");
    }

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
