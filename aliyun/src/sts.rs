//! STS `AssumeRoleWithOIDC` (Version 2015-04-01), pure: the request's form and the answer.
//!
//! The call is anonymous (no AccessKey, no signature): the OIDC token is the proof. RRSA on
//! Alibaba Cloud's Kubernetes service projects the pod's ServiceAccount token with audience
//! `sts.aliyuncs.com` and exchanges it here for STS credentials (an AccessKey pair and a
//! SecurityToken that expire).

use iotsub_common::Secret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{amqp::AccessKey, consumer_group::GatewayError};

pub const STS_API_VERSION: &str = "2015-04-01";
pub const DEFAULT_STS_ENDPOINT: &str = "https://sts.aliyuncs.com";
/// The audience of the tokens STS accepts.
pub const STS_AUDIENCE: &str = "sts.aliyuncs.com";
pub const DEFAULT_DURATION_SECONDS: u32 = 3600;

/// Who asks for which role, with which token (the raw JWT, read afresh for each exchange).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRoleWithOidc {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    pub oidc_token: Secret<String>,
    pub role_session_name: String,
    pub duration_seconds: u32,
}

impl AssumeRoleWithOidc {
    /// The form of the POST (`application/x-www-form-urlencoded`), common parameters included.
    pub fn form(&self, at: OffsetDateTime) -> Vec<(&'static str, String)> {
        vec![
            ("Action", "AssumeRoleWithOIDC".into()),
            ("Format", "JSON".into()),
            ("Version", STS_API_VERSION.into()),
            ("Timestamp", crate::openapi::format_timestamp(at)),
            ("RoleArn", self.role_arn.clone()),
            ("OIDCProviderArn", self.oidc_provider_arn.clone()),
            ("OIDCToken", self.oidc_token.expose().clone()),
            ("RoleSessionName", self.role_session_name.clone()),
            ("DurationSeconds", self.duration_seconds.to_string()),
        ]
    }
}

/// A valid `RoleSessionName`: 2–64 characters of letters, digits, `.` `@` `-` `_` (a pod name
/// qualifies; a longer one is cut).
pub fn session_name(text: &str) -> String {
    let mut name: String = text.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '-' | '_')).take(64).collect();
    while name.len() < 2 {
        name.push('_');
    }
    name
}

/// The answer's credentials, as STS writes them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct StsCredentials {
    pub access_key_id: String,
    pub access_key_secret: Secret<String>,
    pub security_token: Secret<String>,
    /// UTC, ISO 8601 (`2026-12-02T07:00:00Z`).
    pub expiration: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AssumeRoleAnswer {
    pub request_id: String,
    pub credentials: StsCredentials,
}

/// Credentials from STS and when they stop working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assumed {
    pub access_key: AccessKey,
    pub expires_at: OffsetDateTime,
}

impl Assumed {
    /// Whether these credentials should be renewed at `now`: they expire within `margin`.
    pub fn expires_within(&self, now: OffsetDateTime, margin: time::Duration) -> bool {
        self.expires_at - now <= margin
    }
}

/// Why an exchange gave no credentials. Never carries the token.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StsError {
    /// STS refused the token or the role (`AuthenticationFail.OIDCToken.Invalid`, `…Expired`,
    /// `EntityNotExist.Role`, `NoPermission…`): asking again with the same token cannot help.
    #[error("STS refused AssumeRoleWithOIDC: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("STS unreachable: {0}")]
    Unreachable(String),
    #[error("STS answered HTTP {status} unreadably: {detail}")]
    Decode { status: u16, detail: String },
    #[error("the OIDC token file {path}: {detail}")]
    TokenFile { path: String, detail: String },
}

/// An HTTP answer of STS as credentials or the error it says.
pub fn parse_answer(status: u16, body: &[u8]) -> Result<Assumed, StsError> {
    let decode = |detail: String| StsError::Decode { status, detail };
    if !(200..300).contains(&status) {
        let error: GatewayError = serde_json::from_slice(body).map_err(|e| decode(e.to_string()))?;
        // The gateway's message may quote the request; only the code and the first sentence stay.
        let message = error.message.split(['\n', ':']).next().unwrap_or_default().trim().to_owned();
        return Err(StsError::Refused { code: error.code, message });
    }
    let answer: AssumeRoleAnswer = serde_json::from_slice(body).map_err(|e| decode(e.to_string()))?;
    let credentials = answer.credentials;
    let expires_at = OffsetDateTime::parse(&credentials.expiration, &time::format_description::well_known::Rfc3339)
        .map_err(|e| decode(format!("Expiration {:?}: {e}", credentials.expiration)))?;
    Ok(Assumed {
        access_key: AccessKey {
            id: credentials.access_key_id,
            secret: credentials.access_key_secret,
            security_token: Some(credentials.security_token),
        },
        expires_at,
    })
}

/// Exchanges the token with STS at `endpoint` (`https://…`, no redirects followed by `http`).
#[cfg(feature = "client")]
pub async fn assume_role_with_oidc(http: &reqwest::Client, endpoint: &str, request: &AssumeRoleWithOidc) -> Result<Assumed, StsError> {
    let form = request.form(OffsetDateTime::now_utc());
    let response = http.post(endpoint).form(&form).send().await.map_err(|e| unreachable(endpoint, e))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| unreachable(endpoint, e))?;
    parse_answer(status, &body)
}

/// Where the exchange failed and why, down to the root cause ("Connection refused"): the
/// endpoint's scheme, host and port (the user's own setting), never the form with the token.
#[cfg(feature = "client")]
fn unreachable(endpoint: &str, e: reqwest::Error) -> StsError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    let e = e.without_url();
    let mut root: &dyn std::error::Error = &e;
    while let Some(next) = root.source() {
        root = next;
    }
    let place = reqwest::Url::parse(endpoint)
        .ok()
        .and_then(|url| Some(format!("{}://{}:{}", url.scheme(), url.host_str()?, url.port_or_known_default()?)))
        .unwrap_or_else(|| "the STS endpoint".to_owned());
    StsError::Unreachable(format!("{place}: {kind}: {root}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_is_anonymous_and_carries_the_token_and_role() {
        let request = AssumeRoleWithOidc {
            role_arn: "acs:ram::1:role/iot".into(),
            oidc_provider_arn: "acs:ram::1:oidc-provider/ack".into(),
            oidc_token: Secret::new("eyJ.x.y".into()),
            role_session_name: "orders-7d9f".into(),
            duration_seconds: 900,
        };
        let form = request.form(OffsetDateTime::UNIX_EPOCH);
        let get = |name: &str| form.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("Action"), Some("AssumeRoleWithOIDC"));
        assert_eq!(get("Version"), Some("2015-04-01"));
        assert_eq!(get("OIDCToken"), Some("eyJ.x.y"));
        assert_eq!(get("DurationSeconds"), Some("900"));
        assert_eq!(get("Timestamp"), Some("1970-01-01T00:00:00Z"));
        for signed in ["AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion"] {
            assert_eq!(get(signed), None, "{signed}: the call is anonymous");
        }
        assert!(!format!("{request:?}").contains("eyJ.x.y"), "Debug hides the token");
    }

    #[test]
    fn session_names_are_made_valid() {
        assert_eq!(session_name("orders-7d9f8-abcde"), "orders-7d9f8-abcde");
        assert_eq!(session_name("a"), "a_");
        assert_eq!(session_name("x/y z"), "xyz");
        assert_eq!(session_name(&"p".repeat(80)).len(), 64);
    }

    #[test]
    fn answers_become_expiring_credentials_or_refusals() {
        let ok = br#"{"RequestId":"r1","Credentials":{"AccessKeyId":"STS.id","AccessKeySecret":"sec","SecurityToken":"tok","Expiration":"2026-12-02T08:00:00Z"},"AssumedRoleUser":{"Arn":"a","AssumedRoleId":"b"}}"#;
        let assumed = parse_answer(200, ok).unwrap();
        assert_eq!(assumed.access_key.id, "STS.id");
        assert_eq!(assumed.access_key.security_token.as_ref().map(|t| t.expose().as_str()), Some("tok"));
        let at = |text: &str| OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
        assert!(!assumed.expires_within(at("2026-12-02T07:54:00Z"), time::Duration::minutes(5)));
        assert!(assumed.expires_within(at("2026-12-02T07:56:00Z"), time::Duration::minutes(5)));

        let refused = br#"{"RequestId":"r2","HostId":"sts.aliyuncs.com","Code":"AuthenticationFail.OIDCToken.Invalid","Message":"Specified OIDC token is not valid: eyJ.x.y"}"#;
        let error = parse_answer(400, refused).unwrap_err();
        assert_eq!(
            error,
            StsError::Refused { code: "AuthenticationFail.OIDCToken.Invalid".into(), message: "Specified OIDC token is not valid".into() }
        );
        assert!(matches!(parse_answer(502, b"<html>"), Err(StsError::Decode { status: 502, .. })));
    }
}
