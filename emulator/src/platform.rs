//! The emulated platform: accounts, instances, consumer groups, and the login rules.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use iotsub_aliyun::amqp::{AuthMode, Username};

use crate::{
    admin::{GroupKey, Refusal, Stage},
    config::{Account, Config, Limits, StsConfig},
    groups::Group,
    message::{MessageIds, epoch_ms},
    sts::Issued,
};

/// How many refusals `/admin/refusals` remembers.
const REFUSALS_KEPT: usize = 256;

pub struct Platform {
    pub limits: Arc<Limits>,
    accounts: HashMap<String, Account>,
    /// Credentials STS issued (`AssumeRoleWithOIDC`), valid until they expire.
    issued: Mutex<HashMap<String, Issued>>,
    pub sts: StsConfig,
    groups: BTreeMap<GroupKey, Arc<Group>>,
    instance_connections: HashMap<String, AtomicUsize>,
    pub message_ids: MessageIds,
    next_conn: AtomicU64,
    refusals: Mutex<VecDeque<Refusal>>,
}

/// A login the platform refuses: who it named, if that could be read, and why (safe to log).
#[derive(Debug, Clone)]
pub struct LoginRefused {
    pub username: Option<Box<Username>>,
    pub reason: String,
}

/// A login the SASL layer accepted.
#[derive(Debug, Clone)]
pub struct Login {
    pub username: Username,
    pub group: Arc<Group>,
    /// Attempts naming this group in the last minute, this one included.
    pub attempts_last_minute: usize,
}

impl Platform {
    pub fn new(config: &Config) -> Arc<Platform> {
        let limits = Arc::new(config.limits.clone());
        let mut groups = BTreeMap::new();
        for instance in &config.instances {
            for group in &instance.consumer_groups {
                let key = GroupKey { instance_id: instance.id.clone(), consumer_group_id: group.clone() };
                groups.insert(key.clone(), Group::new(key, limits.clone()));
            }
        }
        Arc::new(Platform {
            accounts: config.accounts.iter().map(|a| (a.access_key_id.clone(), a.clone())).collect(),
            issued: Mutex::default(),
            sts: config.sts.clone(),
            instance_connections: config.instances.iter().map(|i| (i.id.clone(), AtomicUsize::new(0))).collect(),
            groups,
            limits,
            message_ids: MessageIds::new(),
            next_conn: AtomicU64::new(1),
            refusals: Mutex::new(VecDeque::new()),
        })
    }

    pub fn groups(&self) -> impl Iterator<Item = &Arc<Group>> {
        self.groups.values()
    }

    pub fn group(&self, instance_id: &str, group_id: &str) -> Option<&Arc<Group>> {
        self.groups.get(&GroupKey { instance_id: instance_id.to_owned(), consumer_group_id: group_id.to_owned() })
    }

    pub fn has_instance(&self, instance_id: &str) -> bool {
        self.instance_connections.contains_key(instance_id)
    }

    /// The account of an AccessKey: configured, or issued by STS (with its expiry).
    pub fn account(&self, access_key_id: &str) -> Option<Account> {
        if let Some(account) = self.accounts.get(access_key_id) {
            return Some(account.clone());
        }
        let issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        issued.get(access_key_id).map(|i| Account {
            access_key_id: i.access_key_id.clone(),
            access_key_secret: i.access_key_secret.clone(),
            security_token: Some(i.security_token.clone()),
            expires_at_ms: Some(i.expires_at_ms),
        })
    }

    /// Keeps credentials STS issued (and forgets those expired for an hour).
    pub fn issue(&self, issued: Issued) {
        let mut all = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        let now = epoch_ms();
        all.retain(|_, i| i.expires_at_ms + 3_600_000 > now);
        all.insert(issued.access_key_id.clone(), issued);
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Checks a SASL PLAIN login as the platform would.
    pub fn authenticate(&self, username: &str, password: &str) -> Result<Login, LoginRefused> {
        let parsed: Username = username.parse().map_err(|e| LoginRefused { username: None, reason: format!("{e}") })?;
        let refuse = |reason: String| Err(LoginRefused { username: Some(Box::new(parsed.clone())), reason });
        let instance = parsed.instance_id.clone().unwrap_or_default();
        if !self.has_instance(&instance) {
            return refuse(format!("unknown iotInstanceId `{instance}`"));
        }
        let Some(group) = self.group(&instance, &parsed.consumer_group_id) else {
            return refuse(format!("unknown consumerGroupId `{}` in instance `{instance}`", parsed.consumer_group_id));
        };
        let attempts_last_minute = group.record_attempt();
        let Some(account) = self.account(&parsed.auth_id) else {
            return refuse(format!("unknown accessKeyId (authId) `{}`", parsed.auth_id));
        };
        if parsed.verify_password(password, &account.access_key_secret).is_err() {
            return refuse(format!(
                "signature mismatch for authId `{}` ({}, signed `{}`): check the AccessKey secret",
                parsed.auth_id,
                parsed.sign_method,
                redacted_string_to_sign(&parsed)
            ));
        }
        if parsed.auth_mode == AuthMode::StsToken
            && account.security_token.as_deref() != parsed.security_token.as_ref().map(|t| t.expose().as_str())
        {
            return refuse(format!("securityToken of authId `{}` is not valid (expired or never issued)", parsed.auth_id));
        }
        if let Some(expired_at) = account.expires_at_ms.filter(|at| *at <= epoch_ms()) {
            return refuse(format!(
                "the STS credentials of authId `{}` expired at {} (epoch ms): assume the role again",
                parsed.auth_id, expired_at
            ));
        }
        let skew = self.limits.max_timestamp_skew_ms;
        if skew > 0 && (epoch_ms() - parsed.timestamp_ms() as i64).unsigned_abs() > skew {
            return refuse(format!("timestamp {} is more than {skew} ms from the platform's clock", parsed.timestamp));
        }
        if group.refusing_logins() {
            return refuse("logins to this consumer group are refused (refuse-logins fault)".into());
        }
        Ok(Login { username: parsed, group: group.clone(), attempts_last_minute })
    }

    /// Counts a connection against its instance's cap; `None` when the cap is reached.
    pub fn open_instance_connection(self: &Arc<Self>, instance_id: &str) -> Option<InstanceConnection> {
        let counter = self.instance_connections.get(instance_id)?;
        let cap = self.limits.connection_cap_per_instance;
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1))
            .ok()
            .map(|_| InstanceConnection { platform: self.clone(), instance_id: instance_id.to_owned() })
    }

    pub fn refuse(&self, refusal: Refusal) {
        tracing::warn!(
            remote = %refusal.remote,
            client_id = refusal.client_id.as_deref().unwrap_or("-"),
            instance_id = refusal.instance_id.as_deref().unwrap_or("-"),
            consumer_group_id = refusal.consumer_group_id.as_deref().unwrap_or("-"),
            stage = refusal.stage.as_str(),
            condition = %refusal.condition,
            reason = %refusal.reason,
            "connection refused"
        );
        let mut refusals = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        if refusals.len() == REFUSALS_KEPT {
            refusals.pop_front();
        }
        refusals.push_back(refusal);
    }

    pub fn refusals(&self) -> Vec<Refusal> {
        self.refusals.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }
}

/// The signed text with the STS token masked: enough to debug a clock or key mix-up, nothing secret.
fn redacted_string_to_sign(username: &Username) -> String {
    match username.security_token {
        Some(_) => format!("authId={}&securityToken=<redacted>&timestamp={}", username.auth_id, username.timestamp),
        None => username.string_to_sign(),
    }
}

/// A connection counted against its instance's cap until dropped.
pub struct InstanceConnection {
    platform: Arc<Platform>,
    instance_id: String,
}

impl Drop for InstanceConnection {
    fn drop(&mut self) {
        if let Some(counter) = self.platform.instance_connections.get(&self.instance_id) {
            counter.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

pub fn refusal(remote: SocketAddr, username: Option<&Username>, stage: Stage, condition: &str, reason: String) -> Refusal {
    Refusal {
        at: epoch_ms(),
        remote: remote.to_string(),
        client_id: username.map(|u| u.client_id.clone()),
        instance_id: username.map(|u| u.instance_id.clone().unwrap_or_default()),
        consumer_group_id: username.map(|u| u.consumer_group_id.clone()),
        stage,
        condition: condition.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use iotsub_aliyun::amqp::{AccessKey, SignMethod, Subscriber, sign_login};

    use super::*;
    use crate::config::Instance;

    fn platform() -> Arc<Platform> {
        let mut config = Config::default();
        config.accounts.push(Account {
            access_key_id: "sts".into(),
            access_key_secret: "sts-secret".into(),
            security_token: Some("STS.good".into()),
            expires_at_ms: None,
        });
        config.instances.push(Instance { id: "iot-1".into(), consumer_groups: vec!["G1".into()] });
        Platform::new(&config)
    }

    fn login(instance: Option<&str>, group: &str, key: &AccessKey, mode: AuthMode) -> (String, String) {
        let sub = Subscriber {
            client_id: "c".into(),
            instance_id: instance.map(Into::into),
            consumer_group_id: group.into(),
            auth_mode: mode,
            sign_method: SignMethod::HmacSha256,
        };
        let signed = sign_login(&sub, key, epoch_ms() as u64).unwrap();
        (signed.username.into_inner(), signed.password.into_inner())
    }

    fn demo() -> AccessKey {
        AccessKey { id: "demo".into(), secret: "demo-secret".to_owned().into(), security_token: None }
    }

    #[test]
    fn accepts_good_logins_and_names_what_is_wrong_with_bad_ones() {
        let p = platform();
        let (u, pw) = login(None, "DEFAULT_GROUP", &demo(), AuthMode::AkSign);
        assert!(p.authenticate(&u, &pw).is_ok());
        let (u, pw) = login(Some("iot-1"), "G1", &demo(), AuthMode::AkSign);
        assert!(p.authenticate(&u, &pw).is_ok());

        let reason = |u: &str, pw: &str| p.authenticate(u, pw).unwrap_err().reason;
        let (u, _) = login(None, "DEFAULT_GROUP", &demo(), AuthMode::AkSign);
        assert!(reason(&u, "AAAA").contains("signature mismatch"));
        let (u, pw) = login(Some("iot-404"), "G1", &demo(), AuthMode::AkSign);
        assert!(reason(&u, &pw).contains("unknown iotInstanceId `iot-404`"));
        let (u, pw) = login(None, "NOPE", &demo(), AuthMode::AkSign);
        assert!(reason(&u, &pw).contains("unknown consumerGroupId `NOPE`"));
        let stranger = AccessKey { id: "who".into(), secret: "x".to_owned().into(), security_token: None };
        let (u, pw) = login(None, "DEFAULT_GROUP", &stranger, AuthMode::AkSign);
        assert!(reason(&u, &pw).contains("unknown accessKeyId"));
        assert!(reason("garbage", "x").contains("malformed"));
    }

    #[test]
    fn sts_logins_need_the_issued_token_and_never_log_it() {
        let p = platform();
        let good =
            AccessKey { id: "sts".into(), secret: "sts-secret".to_owned().into(), security_token: Some("STS.good".to_owned().into()) };
        let (u, pw) = login(None, "DEFAULT_GROUP", &good, AuthMode::StsToken);
        assert!(p.authenticate(&u, &pw).is_ok());
        let stale = AccessKey { security_token: Some("STS.stale".to_owned().into()), ..good };
        let (u, pw) = login(None, "DEFAULT_GROUP", &stale, AuthMode::StsToken);
        let why = p.authenticate(&u, &pw).unwrap_err().reason;
        assert!(why.contains("securityToken") && !why.contains("STS.stale"), "{why}");
        let (u, _) = login(None, "DEFAULT_GROUP", &stale, AuthMode::StsToken);
        let why = p.authenticate(&u, "AAAA").unwrap_err().reason;
        assert!(!why.contains("STS.stale") && !why.contains("sts-secret"), "{why}");
    }

    #[test]
    fn instance_connection_cap_is_released_on_drop() {
        let mut config = Config::default();
        config.limits.connection_cap_per_instance = 1;
        let p = Platform::new(&config);
        let first = p.open_instance_connection("").unwrap();
        assert!(p.open_instance_connection("").is_none());
        drop(first);
        assert!(p.open_instance_connection("").is_some());
    }
}
