//! An OIDC issuer for RRSA tests: an ES256 key whose JWKS the emulator's STS trusts, and
//! ServiceAccount-like tokens signed with it (what a cluster projects into a pod).

use std::path::{Path, PathBuf};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
pub const ROLE_ARN: &str = "acs:ram::1234567890:role/iotsub-worker";
pub const PROVIDER_ARN: &str = "acs:ram::1234567890:oidc-provider/localkube";

pub struct Issuer {
    key: EncodingKey,
    pub jwks_file: PathBuf,
}

impl Issuer {
    /// A new key; its JWKS written to `dir/jwks.json`.
    pub fn new(dir: &Path) -> anyhow::Result<Issuer> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let point = pair.public_key_raw(); // 0x04 || X || Y
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "test-key", "alg": "ES256", "use": "sig", "x": b64(&point[1..33]), "y": b64(&point[33..])}]});
        let jwks_file = dir.join("jwks.json");
        std::fs::write(&jwks_file, jwks.to_string())?;
        Ok(Issuer { key: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes())?, jwks_file })
    }

    /// A token for ServiceAccount `namespace/name` with `audience`, valid for `seconds`.
    pub fn token(&self, namespace: &str, name: &str, audience: &str, seconds: i64) -> anyhow::Result<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = json!({
            "iss": ISSUER, "aud": [audience], "sub": format!("system:serviceaccount:{namespace}:{name}"),
            "iat": now, "nbf": now, "exp": now + seconds,
        });
        Ok(jsonwebtoken::encode(&Header { kid: Some("test-key".into()), ..Header::new(Algorithm::ES256) }, &claims, &self.key)?)
    }

    /// The emulator's `[sts]` table: this issuer trusted for [`ROLE_ARN`] by ServiceAccounts of
    /// `namespace`, credentials lasting `ttl_seconds`.
    pub fn emulator_config(&self, namespace: &str, ttl_seconds: u64) -> String {
        format!(
            "[sts]\njwks_file = {jwks:?}\nissuer = {ISSUER:?}\ncredentials_ttl_seconds = {ttl_seconds}\n\n[[sts.roles]]\narn = {ROLE_ARN:?}\noidc_provider_arn = {PROVIDER_ARN:?}\nsubjects = [\"system:serviceaccount:{namespace}:*\"]\n",
            jwks = self.jwks_file.display().to_string(),
        )
    }
}

/// The flags of a worker that assumes [`ROLE_ARN`] with the token in `token_file` at `sts`.
pub fn rrsa_args(token_file: &Path, sts: &str) -> Vec<(String, String)> {
    [
        ("--role-arn", ROLE_ARN.to_owned()),
        ("--oidc-provider-arn", PROVIDER_ARN.to_owned()),
        ("--oidc-token-file", token_file.display().to_string()),
        ("--sts-endpoint", sts.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
