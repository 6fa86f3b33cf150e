//! Every limit and duration of the emulated platform, with the documented defaults (PLATFORM.md).
//! Tests shorten them; a value of 0 for a rate means "no limit".

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub limits: Limits,
    /// Empty: one account, `demo` / `demo-secret`.
    pub accounts: Vec<Account>,
    /// Empty: the legacy instance `""` with the group `DEFAULT_GROUP`.
    pub instances: Vec<Instance>,
    /// STS `AssumeRoleWithOIDC` (RRSA): which tokens are trusted, for which roles.
    pub sts: StsConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StsConfig {
    /// The JSON Web Key Set that signs the OIDC tokens (a cluster's `/openid/v1/jwks`), read at
    /// each call so a test can rotate it. Without one, every token is refused.
    pub jwks_file: Option<std::path::PathBuf>,
    /// The tokens' issuer (`iss`); empty: any.
    pub issuer: String,
    /// How long issued credentials last, overriding the request's `DurationSeconds` (tests use a
    /// minute to see them expire); 0: as requested.
    pub credentials_ttl_seconds: u64,
    pub roles: Vec<StsRole>,
}

/// A RAM role and its trust policy: the OIDC provider it trusts and the token subjects allowed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StsRole {
    /// `acs:ram::<uid>:role/<name>`
    pub arn: String,
    /// `acs:ram::<uid>:oidc-provider/<name>`
    pub oidc_provider_arn: String,
    /// `system:serviceaccount:<namespace>:<name>`; a trailing `*` matches any rest.
    pub subjects: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// AMQP clients consuming one consumer group at once.
    pub client_cap_per_group: usize,
    /// Simultaneous connections to one instance.
    pub connection_cap_per_instance: usize,
    /// Connection attempts per minute naming one consumer group (refused or not).
    pub connection_attempts_per_minute: usize,
    /// Bounds of the idle-time-out a client must carry in its Open frame.
    pub idle_timeout_min_ms: u32,
    pub idle_timeout_max_ms: u32,
    /// The idle-time-out the emulator advertises: a client silent for longer is closed.
    pub server_idle_timeout_ms: u32,
    /// From TCP accept to an attached receiver link (the platform's authentication deadline).
    pub link_deadline_ms: u64,
    /// An unacknowledged delivery goes back to the stacked queue after this.
    pub ack_timeout_ms: u64,
    /// After a delivery failed (timed out, released, rejected), the stacked queue pauses this long.
    pub stacked_retry_after_ms: u64,
    /// Real-time push, per connection (0: no limit).
    pub realtime_rate_per_connection: u32,
    /// Stacked (backlog) push, per consumer group (0: no limit).
    pub stacked_rate_per_group: u32,
    /// Stacked messages older than this expire.
    pub retention_seconds: u64,
    /// Past this many stacked messages, the oldest expire.
    pub max_stacked_per_group: usize,
    /// Probability that an acknowledged message is delivered once more (the platform's occasional duplicates).
    pub duplicate_probability: f64,
    /// Refuse logins whose timestamp is further than this from now (0: don't check; the platform doesn't document it).
    pub max_timestamp_skew_ms: u64,
    /// OpenAPI calls per second per account.
    pub openapi_rate_per_account: u32,
    /// Keep every acknowledged messageId for `GET /admin/consumer-groups/<id>/acknowledged-ids`, so a
    /// test can check that only what a sink took was acknowledged (memory grows with each: tests only).
    pub record_acknowledged_ids: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            client_cap_per_group: 64,
            connection_cap_per_instance: 128,
            connection_attempts_per_minute: 100,
            idle_timeout_min_ms: 30_000,
            idle_timeout_max_ms: 300_000,
            server_idle_timeout_ms: 60_000,
            link_deadline_ms: 15_000,
            ack_timeout_ms: 30_000,
            stacked_retry_after_ms: 60_000,
            realtime_rate_per_connection: 1_000,
            stacked_rate_per_group: 200,
            retention_seconds: 86_400,
            max_stacked_per_group: 100_000_000,
            duplicate_probability: 0.0,
            max_timestamp_skew_ms: 0,
            openapi_rate_per_account: 5,
            record_acknowledged_ids: false,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub access_key_id: String,
    pub access_key_secret: String,
    /// When set, `ststoken` logins of this AccessKey must carry exactly this token.
    #[serde(default)]
    pub security_token: Option<String>,
    /// Epoch ms after which the account is refused (STS-issued credentials).
    #[serde(skip)]
    pub expires_at_ms: Option<i64>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// `""` is the legacy public instance, which logins reach by omitting `iotInstanceId`.
    pub id: String,
    pub consumer_groups: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { limits: Limits::default(), accounts: Vec::new(), instances: Vec::new(), sts: StsConfig::default() }.with_defaults()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse { path: shown.clone(), source })?;
        let config = config.with_defaults();
        config.validate().map_err(|message| ConfigError::Invalid { path: shown, message })?;
        Ok(config)
    }

    fn with_defaults(mut self) -> Config {
        if self.accounts.is_empty() {
            self.accounts.push(Account {
                access_key_id: "demo".into(),
                access_key_secret: "demo-secret".into(),
                security_token: None,
                expires_at_ms: None,
            });
        }
        if self.instances.is_empty() {
            self.instances.push(Instance { id: String::new(), consumer_groups: vec!["DEFAULT_GROUP".into()] });
        }
        self
    }

    fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.idle_timeout_min_ms > l.idle_timeout_max_ms {
            return Err(format!(
                "limits.idle_timeout_min_ms ({}) is above limits.idle_timeout_max_ms ({})",
                l.idle_timeout_min_ms, l.idle_timeout_max_ms
            ));
        }
        if !(0.0..=1.0).contains(&l.duplicate_probability) {
            return Err(format!("limits.duplicate_probability ({}) must be within 0..=1", l.duplicate_probability));
        }
        for (name, value) in [("link_deadline_ms", l.link_deadline_ms), ("ack_timeout_ms", l.ack_timeout_ms)] {
            if value == 0 {
                return Err(format!("limits.{name} must be positive"));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for account in &self.accounts {
            if account.access_key_id.is_empty() || account.access_key_secret.is_empty() {
                return Err("every account needs access_key_id and access_key_secret".into());
            }
            if !ids.insert(&account.access_key_id) {
                return Err(format!("account {} is listed twice", account.access_key_id));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        let dir = tempfile_path(text);
        Config::load(&dir).map_err(|e| e.to_string())
    }

    fn tempfile_path(text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("iotsub-emulator-config-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.limits.client_cap_per_group, 64);
        assert_eq!(config.limits.ack_timeout_ms, 30_000);
        assert_eq!(config.limits.stacked_rate_per_group, 200);
        assert_eq!(config.accounts[0].access_key_id, "demo");
        assert_eq!(config.instances[0].consumer_groups, vec!["DEFAULT_GROUP".to_string()]);
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let err = parse("[limits]\nack_timeout = 5").unwrap_err();
        assert!(err.contains("unknown field `ack_timeout`"), "{err}");
        let err = parse("[limits]\nduplicate_probability = 2.0").unwrap_err();
        assert!(err.contains("limits.duplicate_probability"), "{err}");
        let err = parse("[limits]\nidle_timeout_min_ms = 400000").unwrap_err();
        assert!(err.contains("idle_timeout_min_ms"), "{err}");
    }

    #[test]
    fn debug_hides_the_secret() {
        let config = parse("[[accounts]]\naccess_key_id = \"k\"\naccess_key_secret = \"s3cr3t\"\n").unwrap();
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The README's copy-paste example must load and state the defaults exactly.
    #[test]
    fn the_shipped_example_loads_and_states_the_documented_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/emulator.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(
            serde_json::to_value(&config.limits).unwrap(),
            serde_json::to_value(Limits::default()).unwrap(),
            "examples/emulator.toml and Limits::default() disagree"
        );
        assert_eq!(config.accounts.len(), 2);
        assert_eq!(config.instances[1].consumer_groups, ["orders", "telemetry"]);
        assert_eq!(config.sts.roles[0].subjects, ["system:serviceaccount:iot:*"]);
    }
}
