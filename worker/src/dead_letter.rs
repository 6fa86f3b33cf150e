//! Dead letters: the full record of a message the worker acknowledges without its sink having taken
//! it, so nothing is ever dropped without a trace.
//!
//! - `log` (the default): one JSON line on stderr, beside the diagnostics and apart from the log
//!   sink's stdout: `{"deadLetter":true,"reason":…,"detail":…,"lastStatus":…,"deliveryCount":…,
//!   "clientId":…,"messageId":…,"topic":…,"generateTime":…,"dataContentType":…,"payloadBase64":…,"time":…}`.
//! - `http`: the message as a CloudEvent (binary mode, the sink's attributes) POSTed to
//!   `--dead-letter-url`, with the extension attributes `deadletterreason`, `deadletterstatus` (the
//!   last HTTP status, when there was one), `deliverycount` and `deadletterdetail`. Only a 2xx counts.
//!
//! A dead letter that cannot be written is not acknowledged: the message is released and comes back.

use std::time::Duration;

use base64::Engine;
use reqwest::{
    Url,
    header::{HeaderMap, HeaderName, HeaderValue},
};
use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    message::{GenerateTime, IotMessage},
    sink::{
        http::{Protocol, client, cloudevent_headers, transport_error},
        log::LogSink,
        url::redact,
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The receiver said the message is bad (HTTP 400, 413, 415, 422).
    Rejected,
    /// Delivered `--max-deliveries` times without being taken.
    MaxDeliveries,
    /// The delivery could not be decoded as an AMQP message.
    Undecodable,
    /// Larger than `--max-message-bytes`.
    TooLarge,
}

impl Reason {
    pub const ALL: [Reason; 4] = [Reason::Rejected, Reason::MaxDeliveries, Reason::Undecodable, Reason::TooLarge];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::MaxDeliveries => "max-deliveries",
            Reason::Undecodable => "undecodable",
            Reason::TooLarge => "too-large",
        }
    }
}

pub struct DeadLetter<'a> {
    pub message: &'a IotMessage,
    pub client_id: &'a str,
    pub reason: Reason,
    /// Why, for a reader (no secret: URLs are redacted, header values never shown).
    pub detail: String,
    pub last_status: Option<u16>,
    /// Deliveries of this messageId so far, this one included.
    pub delivery_count: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    dead_letter: bool,
    time: String,
    reason: Reason,
    detail: &'a str,
    last_status: Option<u16>,
    delivery_count: u32,
    client_id: &'a str,
    message_id: &'a str,
    topic: &'a str,
    generate_time: Option<&'a GenerateTime>,
    data_content_type: &'a str,
    payload_base64: String,
}

/// The log record, with its trailing newline (pure).
pub fn log_line(letter: &DeadLetter<'_>, at: OffsetDateTime) -> Vec<u8> {
    let m = letter.message;
    let line = Line {
        dead_letter: true,
        time: at.format(&Rfc3339).unwrap_or_default(),
        reason: letter.reason,
        detail: &letter.detail,
        last_status: letter.last_status,
        delivery_count: letter.delivery_count,
        client_id: letter.client_id,
        message_id: &m.message_id,
        topic: &m.topic,
        generate_time: m.generate_time.as_ref(),
        data_content_type: &m.data_content_type,
        payload_base64: base64::engine::general_purpose::STANDARD.encode(&m.payload),
    };
    let mut out = serde_json::to_vec(&line).expect("serializing to a Vec cannot fail");
    out.push(b'\n');
    out
}

/// The CloudEvent headers of the dead letter: the message's own, plus the extension attributes (pure).
pub fn cloudevent(letter: &DeadLetter<'_>, source: &str) -> HeaderMap {
    let mut headers = cloudevent_headers(letter.message, source);
    let mut put = |name: &'static str, value: String| {
        let value = HeaderValue::from_str(&value).unwrap_or_else(|_| {
            HeaderValue::from_str(&value.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect::<String>())
                .expect("printable ASCII is a valid header")
        });
        headers.insert(HeaderName::from_static(name), value);
    };
    put("ce-deadletterreason", letter.reason.as_str().to_owned());
    if let Some(status) = letter.last_status {
        put("ce-deadletterstatus", status.to_string());
    }
    put("ce-deliverycount", letter.delivery_count.to_string());
    put("ce-deadletterdetail", letter.detail.chars().take(500).collect());
    headers
}

pub enum DeadLetterSink {
    Log(LogSink),
    Http { client: reqwest::Client, url: Url, shown_url: String, source: String, timeout: Duration },
}

impl DeadLetterSink {
    pub fn log() -> DeadLetterSink {
        DeadLetterSink::Log(LogSink::start_fd(std::io::stderr()))
    }

    pub fn http(url: &Url, source: String, timeout: Duration) -> Result<DeadLetterSink, crate::Error> {
        Ok(DeadLetterSink::Http { client: client(Protocol::Http1)?, url: url.clone(), shown_url: redact(url), source, timeout })
    }

    pub fn describe(&self) -> String {
        match self {
            DeadLetterSink::Log(_) => "log (stderr)".into(),
            DeadLetterSink::Http { shown_url, .. } => format!("http {shown_url}"),
        }
    }

    /// Writes the dead letter; `Err` says why it could not be written.
    pub async fn write(&self, letter: &DeadLetter<'_>) -> Result<(), String> {
        match self {
            DeadLetterSink::Log(writer) => writer.write_line(log_line(letter, OffsetDateTime::now_utc())).await,
            DeadLetterSink::Http { client, url, shown_url, source, timeout } => {
                let sent = client
                    .post(url.clone())
                    .headers(cloudevent(letter, source))
                    .body(letter.message.payload.clone())
                    .timeout(*timeout)
                    .send()
                    .await
                    .map_err(|e| format!("POST {shown_url}: {}", transport_error(&e)))?;
                let status = sent.status();
                if status.is_success() { Ok(()) } else { Err(format!("POST {shown_url} answered {status}")) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> IotMessage {
        crate::message::sample("m-1", &[0xff, 0x00, b'{'], "application/octet-stream")
    }

    fn letter(message: &IotMessage) -> DeadLetter<'_> {
        DeadLetter {
            message,
            client_id: "w-0",
            reason: Reason::Rejected,
            detail: "POST http://s/events answered 422 Unprocessable Entity: bad\nfield".into(),
            last_status: Some(422),
            delivery_count: 2,
        }
    }

    #[test]
    fn the_log_line_holds_the_whole_message_with_the_payload_in_base64() {
        let m = message();
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let line = log_line(&letter(&m), at);
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["deadLetter"], true);
        assert_eq!(v["reason"], "rejected");
        assert_eq!(v["lastStatus"], 422);
        assert_eq!(v["deliveryCount"], 2);
        assert_eq!(v["messageId"], "m-1");
        assert_eq!(v["topic"], "/pk/dn/thing/event/property/post");
        assert_eq!(v["generateTime"], 1_573_489_088_171i64);
        assert_eq!(v["clientId"], "w-0");
        assert_eq!(v["payloadBase64"], "/wB7");
        assert_eq!(v["time"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn the_cloudevent_carries_reason_status_and_count_as_extensions() {
        let m = message();
        let h = cloudevent(&letter(&m), "/aliyun/iot//G");
        assert_eq!(h["ce-id"], "m-1");
        assert_eq!(h["ce-source"], "/aliyun/iot//G");
        assert_eq!(h["ce-deadletterreason"], "rejected");
        assert_eq!(h["ce-deadletterstatus"], "422");
        assert_eq!(h["ce-deliverycount"], "2");
        assert!(h["ce-deadletterdetail"].to_str().unwrap().contains("422 Unprocessable Entity: bad?field"));
        let mut no_status = letter(&m);
        no_status.last_status = None;
        no_status.reason = Reason::Undecodable;
        let h = cloudevent(&no_status, "s");
        assert!(!h.contains_key("ce-deadletterstatus"));
        assert_eq!(h["ce-deadletterreason"], "undecodable");
    }
}
