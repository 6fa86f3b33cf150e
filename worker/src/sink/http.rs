//! The `http` sink: each message is POSTed as a CloudEvent in HTTP binary mode.
//!
//! `ce-id` = messageId, `ce-subject` = topic, `ce-time` = generateTime (RFC 3339),
//! `ce-source` = `/aliyun/iot/<instance>/<group>`, body = the payload. 2xx = taken;
//! 4xx other than 408/429 = poison; anything else (and any transport error) = retry.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{SinkError, Taken};
use crate::message::IotMessage;

pub const CE_TYPE: &str = "com.aliyun.iot.message";

/// What an HTTP status means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Taken,
    Poison,
    Retry,
}

pub fn classify(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Taken,
        408 | 429 => Verdict::Retry,
        400..=499 => Verdict::Poison,
        _ => Verdict::Retry,
    }
}

pub fn ce_source(instance_id: &str, group: &str) -> String {
    format!("/aliyun/iot/{instance_id}/{group}")
}

/// The CloudEvents headers of `message` (pure).
pub fn cloudevent_headers(message: &IotMessage, source: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        // Header values cannot carry control characters; such a value is percent-encoded instead.
        let value = HeaderValue::from_str(value)
            .unwrap_or_else(|_| HeaderValue::from_str(&percent_encode_controls(value)).expect("percent-encoded value is a valid header"));
        headers.insert(HeaderName::from_static(name), value);
    };
    put("ce-specversion", "1.0");
    put("ce-id", &message.message_id);
    put("ce-source", source);
    put("ce-type", CE_TYPE);
    if !message.topic.is_empty() {
        put("ce-subject", &message.topic);
    }
    let time = message
        .generate_time
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&Rfc3339).ok());
    if let Some(text) = time {
        put("ce-time", &text);
    }
    let looks_json = message.payload.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| matches!(b, b'{' | b'['));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(if looks_json { "application/json" } else { "application/octet-stream" }));
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

pub struct HttpSink {
    client: reqwest::Client,
    url: reqwest::Url,
    source: String,
}

impl HttpSink {
    pub fn new(url: &str, instance_id: &str, group: &str) -> Result<HttpSink, crate::Error> {
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| crate::Error::Sink(format!("building the HTTP client: {e}")))?;
        let url = url.parse().map_err(|e| crate::Error::Config(format!("--sink-url: {e}")))?;
        Ok(HttpSink { client, url, source: ce_source(instance_id, group) })
    }

    pub async fn post(&self, message: &IotMessage, timeout: Duration) -> Result<Taken, SinkError> {
        let response = self
            .client
            .post(self.url.clone())
            .headers(cloudevent_headers(message, &self.source))
            .body(message.payload.clone())
            .timeout(timeout)
            .send()
            .await
            // reqwest's error names the URL but never a header or a body.
            .map_err(|e| SinkError(format!("POST {}: {}", self.url, error_chain(&e))))?;
        let status = response.status();
        match classify(status.as_u16()) {
            Verdict::Taken => Ok(Taken::Delivered),
            Verdict::Poison => {
                let body = response.text().await.unwrap_or_default();
                let snippet: String = body.chars().take(200).collect();
                Ok(Taken::Poison(format!("{status}: {snippet}")))
            }
            Verdict::Retry => Err(SinkError(format!("POST {} answered {status}", self.url))),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_taken_poison_retry() {
        assert_eq!(classify(200), Verdict::Taken);
        assert_eq!(classify(204), Verdict::Taken);
        assert_eq!(classify(400), Verdict::Poison);
        assert_eq!(classify(422), Verdict::Poison);
        assert_eq!(classify(408), Verdict::Retry);
        assert_eq!(classify(429), Verdict::Retry);
        assert_eq!(classify(500), Verdict::Retry);
        assert_eq!(classify(503), Verdict::Retry);
        assert_eq!(classify(302), Verdict::Retry);
    }

    #[test]
    fn headers_follow_the_binary_mode() {
        let message = IotMessage {
            message_id: "42".into(),
            topic: "/pk/dn/thing/event/property/post".into(),
            generate_time: Some(1_573_489_088_171),
            payload: b" {\"x\":1}".to_vec(),
            sent_at_us: None,
        };
        let h = cloudevent_headers(&message, &ce_source("iot-1", "G"));
        assert_eq!(h["ce-specversion"], "1.0");
        assert_eq!(h["ce-id"], "42");
        assert_eq!(h["ce-subject"], "/pk/dn/thing/event/property/post");
        assert_eq!(h["ce-time"], "2019-11-11T16:18:08.171Z");
        assert_eq!(h["ce-source"], "/aliyun/iot/iot-1/G");
        assert_eq!(h["ce-type"], CE_TYPE);
        assert_eq!(h[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn control_characters_are_percent_encoded() {
        assert_eq!(percent_encode_controls("a\nb"), "a%0Ab");
    }
}
