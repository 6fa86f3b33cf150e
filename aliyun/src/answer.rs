//! What an OpenAPI call answered, pure: the status, or the error that says why there is none.

use crate::{
    consumer_group::{ConsumerGroupStatus, GatewayError},
    redact::Redactor,
};

/// Why a call gave no answer. Messages never carry the secret or the token: the gateway's
/// message is kept only up to where it would echo the request ([`safe_message`]), and an
/// unreadable body is described by where it broke, not by what it said.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CallError {
    #[error("the local rate limiter for this AccessKey has no call left (5 calls/s)")]
    Throttled,
    #[error("OpenAPI endpoint unreachable: {0}")]
    Unreachable(String),
    /// The gateway refused the credentials or the signature (`InvalidAccessKeyId.NotFound`,
    /// `SignatureDoesNotMatch`, `Forbidden…`).
    #[error("credentials refused: {code}: {message} (RequestId {request_id})")]
    Refused { code: String, request_id: String, message: String },
    /// Any other gateway error or `Success: false` (e.g. an unknown consumer group, throttling).
    #[error("{code}: {message} (RequestId {request_id})")]
    Platform { code: String, request_id: String, message: String },
    /// Not asked, or the answer not read, for the transport's sake: not `https://`, a
    /// certificate the trusted roots do not vouch for, a redirect. Not retried.
    #[error("OpenAPI endpoint not trusted: {0}")]
    Untrusted(String),
    #[error("unreadable answer (HTTP {status}): {detail}")]
    Decode { status: u16, detail: String },
}

impl CallError {
    /// The same error with `redactor`'s values hidden in its text.
    #[must_use]
    pub fn redacted(self, redactor: &Redactor) -> CallError {
        match self {
            CallError::Throttled => CallError::Throttled,
            CallError::Unreachable(why) => CallError::Unreachable(redactor.redact(&why)),
            CallError::Refused { code, request_id, message } => CallError::Refused {
                code: redactor.redact(&code),
                request_id: redactor.redact(&request_id),
                message: redactor.redact(&message),
            },
            CallError::Platform { code, request_id, message } => CallError::Platform {
                code: redactor.redact(&code),
                request_id: redactor.redact(&request_id),
                message: redactor.redact(&message),
            },
            CallError::Decode { status, detail } => CallError::Decode { status, detail: redactor.redact(&detail) },
            CallError::Untrusted(why) => CallError::Untrusted(redactor.redact(&why)),
        }
    }
}

/// The longest gateway message kept.
const MESSAGE_LIMIT: usize = 200;

/// The gateway's message without what it echoes of the request: for `SignatureDoesNotMatch` it
/// appends its string to sign (`… server string to sign is:GET&%2F&AccessKeyId…`), which holds
/// every parameter, the percent-encoded `SecurityToken` among them. Everything from such a
/// marker on is dropped, and the rest is cut at [`MESSAGE_LIMIT`] characters.
pub fn safe_message(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let markers = ["string to sign", "stringtosign", "string-to-sign", "canonicalized", "get&%2f&"];
    let marker = markers.iter().filter_map(|m| lower.find(m)).min();
    // Whole sentences only: "… our calculation. server string to sign is:…" keeps "… our calculation."
    let kept = match marker {
        Some(at) => message[..at].rfind(". ").map_or("", |end| &message[..=end]),
        None => message.trim_end(),
    };
    let mut kept: String = kept.chars().take(MESSAGE_LIMIT).collect();
    if marker.is_some() {
        kept.push_str(" (the gateway's string to sign is not shown: it holds the request's parameters)");
    } else if message.trim_end().chars().count() > MESSAGE_LIMIT {
        kept.push('…');
    }
    kept
}

/// Where a body failed to parse, never what it held (a serde message quotes the offending value).
fn decode_error(status: u16, error: &serde_json::Error) -> CallError {
    let what = match error.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "JSON of an unexpected shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    CallError::Decode { status, detail: format!("{what} at line {}, column {}", error.line(), error.column()) }
}

/// Which gateway codes mean "these credentials are not accepted".
pub fn is_credential_code(code: &str) -> bool {
    code.starts_with("InvalidAccessKeyId")
        || code.starts_with("SignatureDoesNotMatch")
        || code.starts_with("InvalidSecurityToken")
        || code.starts_with("Forbidden")
        || code == "IncompleteSignature"
}

/// Whether trying the same call again may give an answer.
pub fn is_transient(error: &CallError) -> bool {
    match error {
        CallError::Unreachable(_) => true,
        CallError::Decode { status, .. } => *status >= 500,
        CallError::Platform { code, .. } => {
            code.starts_with("Throttling") || code.starts_with("ServiceUnavailable") || code.starts_with("InternalError")
        }
        CallError::Throttled | CallError::Refused { .. } | CallError::Untrusted(_) => false,
    }
}

/// Turns an HTTP answer into a status or the error it says.
pub fn parse_answer(status: u16, body: &[u8]) -> Result<ConsumerGroupStatus, CallError> {
    if !(200..300).contains(&status) {
        let gateway: GatewayError = serde_json::from_slice(body).map_err(|e| decode_error(status, &e))?;
        let (code, request_id, message) = (gateway.code, gateway.request_id, safe_message(&gateway.message));
        return Err(if is_credential_code(&code) {
            CallError::Refused { code, request_id, message }
        } else {
            CallError::Platform { code, request_id, message }
        });
    }
    let answer: ConsumerGroupStatus = serde_json::from_slice(body).map_err(|e| decode_error(status, &e))?;
    if !answer.envelope.success {
        let envelope = answer.envelope;
        return Err(CallError::Platform {
            code: envelope.code.unwrap_or_default(),
            request_id: envelope.request_id,
            message: safe_message(&envelope.error_message.unwrap_or_default()),
        });
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried() {
        let platform = |code: &str| CallError::Platform { code: code.into(), request_id: String::new(), message: String::new() };
        assert!(is_transient(&CallError::Unreachable("timed out".into())));
        assert!(is_transient(&CallError::Decode { status: 503, detail: String::new() }));
        assert!(is_transient(&platform("Throttling.User")));
        assert!(is_transient(&platform("ServiceUnavailable")));
        assert!(!is_transient(&CallError::Decode { status: 200, detail: String::new() }));
        assert!(!is_transient(&platform("iot.consumergroup.NotExistedConsumerGroup")));
        let refused = CallError::Refused { code: "SignatureDoesNotMatch".into(), request_id: String::new(), message: String::new() };
        assert!(!is_transient(&refused));
        assert!(!is_transient(&CallError::Throttled), "our own limiter: the caller tries later");
        assert!(!is_transient(&CallError::Untrusted("TLS handshake failed".into())), "a bad certificate stays bad");
    }

    #[test]
    fn answers_become_status_or_typed_errors() {
        let ok = br#"{"RequestId":"r","Success":true,"AccumulationCount":7}"#;
        assert_eq!(parse_answer(200, ok).unwrap().accumulation_count, 7);
        let refused = br#"{"RequestId":"r","HostId":"h","Code":"SignatureDoesNotMatch","Message":"bad"}"#;
        assert!(matches!(parse_answer(400, refused), Err(CallError::Refused { .. })));
        let throttled = br#"{"RequestId":"r","Code":"Throttling.User","Message":"slow down"}"#;
        assert!(matches!(parse_answer(400, throttled), Err(CallError::Platform { .. })));
        let failed = br#"{"RequestId":"r","Success":false,"Code":"iot.consumergroup.NotExistedConsumerGroup","ErrorMessage":"no"}"#;
        assert!(matches!(parse_answer(200, failed), Err(CallError::Platform { code, .. }) if code.contains("NotExisted")));
        assert!(matches!(parse_answer(502, b"<html>"), Err(CallError::Decode { status: 502, .. })));
    }

    /// What the real gateway answers to a refused signature of a call with a SecurityToken:
    /// its string to sign, with the token percent-encoded twice.
    const REFUSED_STS: &str = r#"{"RequestId":"6C5B5C3E-1F6A-4C1B-9D1E-1A2B3C4D5E6F","HostId":"iot.cn-shanghai.aliyuncs.com",
        "Code":"SignatureDoesNotMatch","Message":"Specified signature is not matched with our calculation. server string to sign is:GET&%2F&AccessKeyId%3DSTS.demo%26SecurityToken%3DCAIS%252Bsecret%252Ftoken%253D%26Timestamp%3D2026-01-02T03%253A04%253A05Z",
        "Recommend":"https://api.aliyun.com/troubleshoot?q=SignatureDoesNotMatch"}"#;

    #[test]
    fn a_refused_signature_keeps_code_request_id_and_message_but_not_the_string_to_sign() {
        let Err(error) = parse_answer(400, REFUSED_STS.as_bytes()) else { panic!("refused") };
        let CallError::Refused { code, request_id, message } = &error else { panic!("{error:?}") };
        assert_eq!((code.as_str(), request_id.as_str()), ("SignatureDoesNotMatch", "6C5B5C3E-1F6A-4C1B-9D1E-1A2B3C4D5E6F"));
        assert!(message.starts_with("Specified signature is not matched with our calculation"), "{message}");
        let text = error.to_string();
        for leak in ["CAIS", "secret", "token%253D", "AccessKeyId%3D", "GET&"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        assert!(text.contains("RequestId 6C5B5C3E"), "{text}");
    }

    #[test]
    fn gateway_messages_are_cut_where_they_echo_the_request() {
        let cases = [
            ("Specified access key is not found.", "Specified access key is not found."),
            ("The request signature does not conform. StringToSign: GET&%2F&x", "The request signature does not conform."),
            ("Bad. Really bad. string to sign: GET&%2F&x", "Bad. Really bad. (the gateway"),
            ("", ""),
        ];
        for (message, kept) in cases {
            assert!(safe_message(message).starts_with(kept), "{message:?} → {:?}", safe_message(message));
            assert!(!safe_message(message).contains("GET&"), "{message:?}");
        }
        assert_eq!(safe_message(&"x".repeat(500)).chars().count(), MESSAGE_LIMIT + 1, "long messages are cut");
    }

    #[test]
    fn an_unreadable_body_is_described_without_quoting_it() {
        let body = br#"{"RequestId":"r","Success":true,"AccumulationCount":"STS.token-in-a-string"}"#;
        let Err(error) = parse_answer(200, body) else { panic!("decoded") };
        assert!(!error.to_string().contains("STS.token"), "{error}");
        assert!(matches!(&error, CallError::Decode { status: 200, detail } if detail.contains("line 1")), "{error:?}");
    }
}
