//! The `http` sink: each message is POSTed as a CloudEvent in HTTP binary mode.
//!
//! `ce-id` = messageId, `ce-subject` = topic, `ce-time` = generateTime (RFC 3339),
//! `ce-source` = `/aliyun/iot/<instance>/<group>`, body = the payload, `content-type` = its
//! `dataContentType`. Redirects are never followed (a POST that a client follows through a 301, 302
//! or 303 turns into a GET without a body, and the landing page's 200 would look like a delivery).
//! What each answer means: [`super::outcome`].

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, SystemTime},
};

use reqwest::{
    Url,
    header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER},
    redirect,
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{
    headers::HeaderFiles,
    outcome::{Attempt, Class, classify_status, parse_retry_after},
    url::redact,
};
use crate::message::{GenerateTime, IotMessage};

pub const CE_TYPE: &str = "com.aliyun.iot.message";

pub fn ce_source(instance_id: &str, group: &str) -> String {
    format!("/aliyun/iot/{instance_id}/{group}")
}

fn put(headers: &mut HeaderMap, name: &'static str, value: &str) {
    // Header values cannot carry control characters; such a value is percent-encoded instead.
    let value = HeaderValue::from_str(value)
        .unwrap_or_else(|_| HeaderValue::from_str(&percent_encode_controls(value)).expect("percent-encoded value is a valid header"));
    headers.insert(HeaderName::from_static(name), value);
}

/// `ce-time` must be RFC 3339: epoch milliseconds (a long, or its decimal text) are converted, an
/// RFC 3339 text passes, anything else is kept as sent in the extension `generatetime`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CeTime {
    Time(String),
    Extension(String),
}

/// The CloudEvent time of `message` (pure).
pub fn ce_time(message: &IotMessage) -> Option<CeTime> {
    let rfc3339 =
        |ms: i64| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok().and_then(|t| t.format(&Rfc3339).ok());
    let time = message.generate_time.as_ref()?;
    Some(match (time.millis().and_then(rfc3339), time) {
        (Some(text), _) => CeTime::Time(text),
        (None, GenerateTime::Text(text)) if OffsetDateTime::parse(text, &Rfc3339).is_ok() => CeTime::Time(text.clone()),
        (None, GenerateTime::Text(text)) => CeTime::Extension(text.clone()),
        (None, GenerateTime::Millis(ms)) => CeTime::Extension(ms.to_string()),
    })
}

/// The CloudEvents headers of `message` (pure).
pub fn cloudevent_headers(message: &IotMessage, source: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    put(&mut headers, "ce-specversion", "1.0");
    put(&mut headers, "ce-id", &message.message_id);
    put(&mut headers, "ce-source", source);
    put(&mut headers, "ce-type", CE_TYPE);
    if !message.topic.is_empty() {
        put(&mut headers, "ce-subject", &message.topic);
    }
    match ce_time(message) {
        Some(CeTime::Time(text)) => put(&mut headers, "ce-time", &text),
        Some(CeTime::Extension(text)) => put(&mut headers, "ce-generatetime", &text),
        None => {}
    }
    put(&mut headers, CONTENT_TYPE.as_str(), &message.data_content_type);
    headers
}

fn percent_encode_controls(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// How the sink talks HTTP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// HTTP/1.1 only: a pooled keep-alive connection per request in flight.
    #[default]
    Http1,
    /// HTTP/2 only: one connection, a stream per request (`h2c` by prior knowledge for `http://`,
    /// ALPN `h2` for `https://`).
    Http2,
}

/// An HTTP client that never follows a redirect.
pub fn client(protocol: Protocol) -> Result<reqwest::Client, crate::Error> {
    let builder = reqwest::Client::builder().redirect(redirect::Policy::none()).pool_idle_timeout(Duration::from_secs(60));
    let builder = match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_prior_knowledge(),
    };
    builder.build().map_err(|e| crate::Error::Sink(format!("building the HTTP client: {e}")))
}

/// The cause of a transport failure, without the URL (the caller names the redacted one).
pub fn transport_error(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut text = what.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What the answer `status` (with its headers) means, with a detail fit for logs.
pub fn judge(status: reqwest::StatusCode, headers: &HeaderMap, snippet: &str, shown_url: &str) -> Attempt {
    let code = status.as_u16();
    let class = classify_status(code);
    let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let detail = match class {
        Class::Taken => String::new(),
        _ if status.is_redirection() => {
            format!("POST {shown_url} answered {status} (redirects are not followed; Location: {})", header(LOCATION).unwrap_or("none"))
        }
        Class::SinkDown => format!("POST {shown_url} answered {status}: the sink is misconfigured or down, not the message"),
        Class::Rejected => format!("POST {shown_url} answered {status}: {snippet}"),
        Class::Transient => format!("POST {shown_url} answered {status}"),
    };
    let retry_after = header(RETRY_AFTER).and_then(|v| parse_retry_after(v, SystemTime::now()));
    Attempt { class, status: Some(code), detail, retry_after }
}

/// Said of a failed connection to an HTTP/2 sink that never answered: an HTTP/1.1-only server drops
/// (or answers in HTTP/1.1, which is no HTTP/2 frame) the HTTP/2 preface, and the client only sees
/// the connection fail.
const NO_HTTP2_ANSWER: &str = " (no HTTP/2 answer from this sink yet: --sink-protocol http2 needs a server that speaks HTTP/2; one that speaks only HTTP/1.1 fails this way)";

/// What a failed request says about the sink's protocol: a hint when the sink speaks HTTP/2, never
/// answered, and the connection failed after it was opened (not refused, not timed out).
fn protocol_hint(protocol: Protocol, ever_answered: bool, opened_then_failed: bool) -> &'static str {
    if protocol == Protocol::Http2 && !ever_answered && opened_then_failed { NO_HTTP2_ANSWER } else { "" }
}

pub struct HttpSink {
    client: reqwest::Client,
    protocol: Protocol,
    url: Url,
    shown_url: String,
    source: String,
    headers: Option<HeaderFiles>,
    /// Whether the sink ever answered (any status): its protocol is then not in doubt.
    answered: AtomicBool,
}

impl HttpSink {
    pub fn new(url: &Url, protocol: Protocol, source: String, headers: Option<HeaderFiles>) -> Result<HttpSink, crate::Error> {
        Ok(HttpSink {
            client: client(protocol)?,
            protocol,
            url: url.clone(),
            shown_url: redact(url),
            source,
            headers,
            answered: AtomicBool::new(false),
        })
    }

    /// The events' `source`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The URL as it may be shown.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// One message in binary mode.
    pub async fn post(&self, message: &IotMessage, timeout: Duration) -> Attempt {
        self.send(cloudevent_headers(message, &self.source), message.payload.clone(), timeout).await
    }

    /// One POST of `body` with `headers` (and the configured ones); what its answer means.
    pub async fn send(&self, headers: HeaderMap, body: Vec<u8>, timeout: Duration) -> Attempt {
        let mut all = self.headers.as_ref().map(HeaderFiles::current).unwrap_or_default();
        all.extend(headers);
        let sent = self.client.post(self.url.clone()).headers(all).body(body).timeout(timeout).send().await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                let hint = protocol_hint(self.protocol, self.answered.load(Ordering::Relaxed), !e.is_connect() && !e.is_timeout());
                return Attempt::unreachable(format!("POST {}: {}{hint}", self.shown_url, transport_error(&e)));
            }
        };
        self.answered.store(true, Ordering::Relaxed);
        let status = response.status();
        if status.is_success() {
            return Attempt::taken();
        }
        let headers = response.headers().clone();
        let snippet = if classify_status(status.as_u16()) == Class::Rejected {
            let body = response.text().await.unwrap_or_default();
            body.chars().take(200).collect()
        } else {
            String::new()
        };
        judge(status, &headers, &snippet, &self.shown_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> IotMessage {
        crate::message::sample("42", b" {\"x\":1}", "application/json")
    }

    #[test]
    fn headers_follow_the_binary_mode() {
        let h = cloudevent_headers(&message(), &ce_source("iot-1", "G"));
        assert_eq!(h["ce-specversion"], "1.0");
        assert_eq!(h["ce-id"], "42");
        assert_eq!(h["ce-subject"], "/pk/dn/thing/event/property/post");
        assert_eq!(h["ce-time"], "2019-11-11T16:18:08.171Z");
        assert_eq!(h["ce-source"], "/aliyun/iot/iot-1/G");
        assert_eq!(h["ce-type"], CE_TYPE);
        assert_eq!(h[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn a_generate_time_that_is_not_a_time_goes_to_an_extension() {
        let mut m = message();
        m.generate_time = Some(GenerateTime::Text("yesterday".into()));
        let h = cloudevent_headers(&m, "s");
        assert!(!h.contains_key("ce-time"));
        assert_eq!(h["ce-generatetime"], "yesterday");
        m.generate_time = Some(GenerateTime::Text("2019-11-11T16:18:08Z".into()));
        assert_eq!(cloudevent_headers(&m, "s")["ce-time"], "2019-11-11T16:18:08Z");
        m.generate_time = Some(GenerateTime::Text("1573489088171".into()));
        assert_eq!(cloudevent_headers(&m, "s")["ce-time"], "2019-11-11T16:18:08.171Z", "milliseconds sent as text");
    }

    #[test]
    fn control_characters_are_percent_encoded() {
        assert_eq!(percent_encode_controls("a\nb"), "a%0Ab");
    }

    #[test]
    fn a_redirect_is_a_sink_failure_naming_its_location() {
        let mut headers = HeaderMap::new();
        headers.insert(LOCATION, HeaderValue::from_static("/landing"));
        let a = judge(reqwest::StatusCode::FOUND, &headers, "", "http://s/events");
        assert_eq!((a.class, a.status), (Class::SinkDown, Some(302)));
        assert!(a.detail.contains("Location: /landing") && a.detail.contains("not followed"), "{}", a.detail);
    }

    #[test]
    fn only_an_http2_sink_that_never_answered_is_suspected_of_speaking_http1() {
        assert_eq!(protocol_hint(Protocol::Http2, false, true), NO_HTTP2_ANSWER);
        assert_eq!(protocol_hint(Protocol::Http2, true, true), "", "it answered over HTTP/2 before: a reset is a reset");
        assert_eq!(protocol_hint(Protocol::Http2, false, false), "", "refused or timed out: nothing was said");
        assert_eq!(protocol_hint(Protocol::Http1, false, true), "");
    }

    #[test]
    fn retry_after_is_read_from_the_answer() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        let a = judge(reqwest::StatusCode::TOO_MANY_REQUESTS, &headers, "", "u");
        assert_eq!((a.class, a.retry_after), (Class::Transient, Some(Duration::from_secs(2))));
    }
}
