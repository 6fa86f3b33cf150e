//! STS `AssumeRoleWithOIDC` as the platform's STS answers it: the OIDC token (a JWT) is verified
//! against the configured JWKS — signature, issuer, audience `sts.aliyuncs.com`, expiry — and its
//! `sub` against the role's trust; the answer is an AccessKey pair and a SecurityToken that expire,
//! which the AMQP endpoint and the OpenAPI then accept until they do.

use std::collections::HashMap;

use axum::http::StatusCode;
use iotsub_aliyun::sts::{STS_API_VERSION, STS_AUDIENCE};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use rand::{Rng, distr::Alphanumeric};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{StsConfig, StsRole};

/// Credentials issued for a role; valid until `expires_at_ms`.
#[derive(Clone)]
pub struct Issued {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: String,
    pub expires_at_ms: i64,
    pub role_arn: String,
    pub subject: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("access_key_id", &self.access_key_id).field("role_arn", &self.role_arn).finish_non_exhaustive()
    }
}

/// A refused call: the HTTP status, the platform's error code and a message that never quotes the
/// token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { status, code, message: message.into() }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

/// Answers one call (the POST's form fields) at `now_ms`.
pub fn assume_role_with_oidc(config: &StsConfig, form: &HashMap<String, String>, now_ms: i64) -> Result<Issued, Refusal> {
    let get = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let bad = StatusCode::BAD_REQUEST;
    if get("Version") != Some(STS_API_VERSION) {
        return Err(refuse(bad, "InvalidVersion", format!("Specified parameter Version is not valid; expected {STS_API_VERSION}.")));
    }
    for required in ["RoleArn", "OIDCProviderArn", "OIDCToken", "RoleSessionName"] {
        if get(required).is_none() {
            return Err(refuse(
                bad,
                "MissingParameter",
                format!("The input parameter {required} that is mandatory for processing this request is not supplied."),
            ));
        }
    }
    let session = get("RoleSessionName").unwrap_or_default();
    if !(2..=64).contains(&session.len()) || !session.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '-' | '_')) {
        return Err(refuse(
            bad,
            "InvalidParameter.RoleSessionName",
            "RoleSessionName must be 2-64 characters of letters, digits, . @ - _.",
        ));
    }
    let duration = match get("DurationSeconds").map(str::parse::<i64>) {
        None => 3600,
        Some(Ok(seconds)) if (900..=43_200).contains(&seconds) => seconds,
        Some(_) => return Err(refuse(bad, "InvalidParameter.DurationSeconds", "DurationSeconds must be between 900 and 43200.")),
    };
    let role_arn = get("RoleArn").unwrap_or_default();
    let Some(role) = config.roles.iter().find(|r| r.arn == role_arn) else {
        return Err(refuse(StatusCode::NOT_FOUND, "EntityNotExist.Role", format!("The role {role_arn} does not exist.")));
    };
    let provider = get("OIDCProviderArn").unwrap_or_default();
    if role.oidc_provider_arn != provider {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "AuthenticationFail.OIDCProvider.NotTrusted",
            format!("The trust policy of role {role_arn} does not trust the OIDC provider {provider}."),
        ));
    }
    let subject = verify_token(config, get("OIDCToken").unwrap_or_default())?;
    if !trusts(role, &subject) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "AuthenticationFail.OIDCToken.SubjectNotAllowed",
            format!("The trust policy of role {role_arn} does not allow the subject {subject}."),
        ));
    }
    let ttl_ms = if config.credentials_ttl_seconds > 0 { config.credentials_ttl_seconds as i64 } else { duration } * 1000;
    Ok(Issued {
        access_key_id: format!("STS.{}", random(24)),
        access_key_secret: random(40),
        security_token: format!("CAIS{}", random(120)),
        expires_at_ms: now_ms + ttl_ms,
        role_arn: role_arn.to_owned(),
        subject,
    })
}

/// The token's subject once its signature, issuer, audience and expiry hold.
fn verify_token(config: &StsConfig, token: &str) -> Result<String, Refusal> {
    let invalid = |why: String| {
        refuse(StatusCode::BAD_REQUEST, "AuthenticationFail.OIDCToken.Invalid", format!("Specified OIDC token is not valid: {why}."))
    };
    let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("not a JWT ({e})")))?;
    let Some(path) = &config.jwks_file else { return Err(invalid("the emulator has no JWKS configured".into())) };
    let jwks: JwkSet = std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| invalid(format!("the JWKS {} cannot be read", path.display())))?;
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        None => jwks.keys.first(),
    }
    .ok_or_else(|| invalid(format!("no key {} in the JWKS", header.kid.as_deref().unwrap_or("(none)"))))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
        return Err(invalid(format!("algorithm {:?} is not accepted", header.alg)));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(format!("the JWKS key is unusable ({e})")))?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[STS_AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "aud", "sub", "iss"]);
    validation.leeway = 0;
    if !config.issuer.is_empty() {
        validation.set_issuer(&[&config.issuer]);
    }
    match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
        Ok(data) => Ok(data.claims.sub),
        Err(e) => Err(match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                refuse(StatusCode::BAD_REQUEST, "AuthenticationFail.OIDCToken.Expired", "Specified OIDC token is expired.")
            }
            jsonwebtoken::errors::ErrorKind::InvalidAudience => invalid(format!("its audience is not {STS_AUDIENCE}")),
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => invalid(format!("its issuer is not {}", config.issuer)),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => invalid("its signature does not verify".into()),
            other => invalid(format!("{other:?}")),
        }),
    }
}

fn trusts(role: &StsRole, subject: &str) -> bool {
    role.subjects.iter().any(|allowed| match allowed.strip_suffix('*') {
        Some(prefix) => subject.starts_with(prefix),
        None => subject == allowed,
    })
}

fn random(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// The platform's JSON for issued credentials.
pub fn answer(issued: &Issued, request_id: &str) -> Value {
    let expiration = time::OffsetDateTime::from_unix_timestamp(issued.expires_at_ms / 1000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    json!({
        "RequestId": request_id,
        "OIDCTokenInfo": {"Subject": issued.subject, "Issuer": "", "ClientIds": STS_AUDIENCE},
        "AssumedRoleUser": {"Arn": format!("{}/{}", issued.role_arn, issued.subject), "AssumedRoleId": format!("{}:{}", issued.access_key_id, issued.subject)},
        "Credentials": {
            "AccessKeyId": issued.access_key_id,
            "AccessKeySecret": issued.access_key_secret,
            "SecurityToken": issued.security_token,
            "Expiration": expiration,
        },
    })
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    /// An ES256 key pair: the JWKS (file) and a signer.
    struct Signer {
        key: EncodingKey,
        jwks: tempfile::NamedTempFile,
    }

    fn signer() -> Signer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw(); // 0x04 || X || Y
        let b64 = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig", "x": b64(&point[1..33]), "y": b64(&point[33..])}]});
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, jwks.to_string().as_bytes()).unwrap();
        Signer { key: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(), jwks: file }
    }

    impl Signer {
        fn token(&self, claims: &Value) -> String {
            let header = Header { kid: Some("k1".into()), ..Header::new(Algorithm::ES256) };
            jsonwebtoken::encode(&header, claims, &self.key).unwrap()
        }
    }

    fn now_s() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn config(signer: &Signer) -> StsConfig {
        StsConfig {
            jwks_file: Some(signer.jwks.path().into()),
            issuer: "https://kubernetes.default.svc".into(),
            credentials_ttl_seconds: 60,
            roles: vec![StsRole {
                arn: "acs:ram::1:role/iot".into(),
                oidc_provider_arn: "acs:ram::1:oidc-provider/ack".into(),
                subjects: vec!["system:serviceaccount:team:*".into()],
            }],
        }
    }

    fn form(token: &str) -> HashMap<String, String> {
        [
            ("Action", "AssumeRoleWithOIDC"),
            ("Version", "2015-04-01"),
            ("RoleArn", "acs:ram::1:role/iot"),
            ("OIDCProviderArn", "acs:ram::1:oidc-provider/ack"),
            ("OIDCToken", token),
            ("RoleSessionName", "orders-0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn a_valid_token_of_a_trusted_subject_gets_credentials_that_expire() {
        let signer = signer();
        let claims = json!({"iss": "https://kubernetes.default.svc", "aud": ["sts.aliyuncs.com"], "sub": "system:serviceaccount:team:orders", "exp": now_s() + 600});
        let issued = assume_role_with_oidc(&config(&signer), &form(&signer.token(&claims)), 1_000).unwrap();
        assert!(issued.access_key_id.starts_with("STS."));
        assert_eq!(issued.expires_at_ms, 61_000, "the configured lifetime");
        assert_eq!(issued.subject, "system:serviceaccount:team:orders");
        let answer = answer(&issued, "r1");
        let parsed = iotsub_aliyun::sts::parse_answer(200, answer.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.access_key.id, issued.access_key_id);
    }

    #[test]
    fn every_wrong_token_and_request_is_refused_with_the_platforms_code() {
        let signer = signer();
        let other = signer_with_other_key();
        let good = json!({"iss": "https://kubernetes.default.svc", "aud": "sts.aliyuncs.com", "sub": "system:serviceaccount:team:orders", "exp": now_s() + 600});
        let with = |key: &str, value: Value| {
            let mut claims = good.clone();
            claims[key] = value;
            signer.token(&claims)
        };
        let config = config(&signer);
        // what is wrong, the form, the code
        let table: Vec<(&str, HashMap<String, String>, &str)> = vec![
            ("expired", form(&with("exp", json!(now_s() - 10))), "AuthenticationFail.OIDCToken.Expired"),
            ("the wrong audience", form(&with("aud", json!("kubernetes"))), "AuthenticationFail.OIDCToken.Invalid"),
            ("another issuer", form(&with("iss", json!("https://evil"))), "AuthenticationFail.OIDCToken.Invalid"),
            (
                "another ServiceAccount's namespace",
                form(&with("sub", json!("system:serviceaccount:other:x"))),
                "AuthenticationFail.OIDCToken.SubjectNotAllowed",
            ),
            ("signed by another key", form(&other.token(&good)), "AuthenticationFail.OIDCToken.Invalid"),
            ("not a JWT", form("not-a-jwt"), "AuthenticationFail.OIDCToken.Invalid"),
            (
                "an unknown role",
                {
                    let mut f = form(&signer.token(&good));
                    f.insert("RoleArn".into(), "acs:ram::1:role/x".into());
                    f
                },
                "EntityNotExist.Role",
            ),
            (
                "an untrusted provider",
                {
                    let mut f = form(&signer.token(&good));
                    f.insert("OIDCProviderArn".into(), "acs:ram::1:oidc-provider/x".into());
                    f
                },
                "AuthenticationFail.OIDCProvider.NotTrusted",
            ),
            (
                "no session name",
                {
                    let mut f = form(&signer.token(&good));
                    f.remove("RoleSessionName");
                    f
                },
                "MissingParameter",
            ),
            (
                "a short duration",
                {
                    let mut f = form(&signer.token(&good));
                    f.insert("DurationSeconds".into(), "60".into());
                    f
                },
                "InvalidParameter.DurationSeconds",
            ),
        ];
        for (what, form, code) in table {
            let refusal = assume_role_with_oidc(&config, &form, 0).unwrap_err();
            assert_eq!(refusal.code, code, "{what}: {}", refusal.message);
            assert!(
                !refusal.message.contains(form["OIDCToken"].as_str()) || form["OIDCToken"].len() < 12,
                "{what}: the token in the message"
            );
        }
    }

    fn signer_with_other_key() -> Signer {
        signer()
    }
}
