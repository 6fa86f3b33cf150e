//! What an OpenAPI call answered, pure: the status, or the error that says why there is none.

use crate::consumer_group::{ConsumerGroupStatus, GatewayError};

/// Why a call gave no answer. Messages never carry the secret or the token.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CallError {
    #[error("the local rate limiter for this AccessKey has no call left (5 calls/s)")]
    Throttled,
    #[error("OpenAPI endpoint unreachable: {0}")]
    Unreachable(String),
    /// The gateway refused the credentials or the signature (`InvalidAccessKeyId.NotFound`,
    /// `SignatureDoesNotMatch`, `Forbidden…`).
    #[error("credentials refused: {code}: {message}")]
    Refused { code: String, message: String },
    /// Any other gateway error or `Success: false` (e.g. an unknown consumer group, throttling).
    #[error("{code}: {message}")]
    Platform { code: String, message: String },
    /// Not asked, or the answer not read, for the transport's sake: not `https://`, a
    /// certificate the trusted roots do not vouch for, a redirect. Not retried.
    #[error("OpenAPI endpoint not trusted: {0}")]
    Untrusted(String),
    #[error("unreadable answer (HTTP {status}): {detail}")]
    Decode { status: u16, detail: String },
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
        let gateway: GatewayError = serde_json::from_slice(body).map_err(|e| CallError::Decode { status, detail: e.to_string() })?;
        return Err(if is_credential_code(&gateway.code) {
            CallError::Refused { code: gateway.code, message: gateway.message }
        } else {
            CallError::Platform { code: gateway.code, message: gateway.message }
        });
    }
    let answer: ConsumerGroupStatus = serde_json::from_slice(body).map_err(|e| CallError::Decode { status, detail: e.to_string() })?;
    if !answer.envelope.success {
        let envelope = answer.envelope;
        return Err(CallError::Platform { code: envelope.code.unwrap_or_default(), message: envelope.error_message.unwrap_or_default() });
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried() {
        let platform = |code: &str| CallError::Platform { code: code.into(), message: String::new() };
        assert!(is_transient(&CallError::Unreachable("timed out".into())));
        assert!(is_transient(&CallError::Decode { status: 503, detail: String::new() }));
        assert!(is_transient(&platform("Throttling.User")));
        assert!(is_transient(&platform("ServiceUnavailable")));
        assert!(!is_transient(&CallError::Decode { status: 200, detail: String::new() }));
        assert!(!is_transient(&platform("iot.consumergroup.NotExistedConsumerGroup")));
        assert!(!is_transient(&CallError::Refused { code: "SignatureDoesNotMatch".into(), message: String::new() }));
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
}
