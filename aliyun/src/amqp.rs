//! The SASL PLAIN credentials of a server-side subscription.
//!
//! ```text
//! username = clientId|authMode=aksign,signMethod=hmacsha1,timestamp=…,authId=…,iotInstanceId=…,consumerGroupId=…|
//! password = base64(HMAC_signMethod(accessKeySecret, "authId=…[&securityToken=…]&timestamp=…"))
//! ```

use std::{fmt, str::FromStr};

use iotsub_common::Secret;
use serde::{Deserialize, Serialize};

use crate::{Error, hmac_sign};

/// The platform's limit on a clientId.
pub const MAX_CLIENT_ID_CHARS: usize = 64;

/// How a login is authorized: `aksign` (an account or a directly authorized RAM user signs with
/// its AccessKey) or `ststoken` (a RAM user through a RAM role: the STS token is signed too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    AkSign,
    StsToken,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::AkSign => "aksign",
            AuthMode::StsToken => "ststoken",
        }
    }
}

impl FromStr for AuthMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "aksign" => Ok(AuthMode::AkSign),
            "ststoken" => Ok(AuthMode::StsToken),
            _ => Err(Error::UnknownAuthMode(s.to_owned())),
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HMAC of the SASL password.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum SignMethod {
    #[default]
    HmacSha1,
    HmacSha256,
    HmacMd5,
}

impl SignMethod {
    pub const ALL: [SignMethod; 3] = [SignMethod::HmacSha1, SignMethod::HmacSha256, SignMethod::HmacMd5];

    pub fn as_str(self) -> &'static str {
        match self {
            SignMethod::HmacSha1 => "hmacsha1",
            SignMethod::HmacSha256 => "hmacsha256",
            SignMethod::HmacMd5 => "hmacmd5",
        }
    }
}

impl FromStr for SignMethod {
    type Err = Error;
    /// Any case: the platform's Go sample writes `Hmacsha1`.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "hmacsha1" => Ok(SignMethod::HmacSha1),
            "hmacsha256" => Ok(SignMethod::HmacSha256),
            "hmacmd5" => Ok(SignMethod::HmacMd5),
            _ => Err(Error::UnknownSignMethod(s.to_owned())),
        }
    }
}

impl fmt::Display for SignMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An AccessKey pair, with the STS token of a RAM role when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: Secret<String>,
    pub security_token: Option<Secret<String>>,
}

/// Who connects, to which consumer group, and how it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub client_id: String,
    /// `None` (or empty) for legacy public instances.
    pub instance_id: Option<String>,
    pub consumer_group_id: String,
    pub auth_mode: AuthMode,
    pub sign_method: SignMethod,
}

/// A SASL PLAIN username and password, ready for one connection attempt. The username carries
/// the STS token in ststoken mode, so neither half is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedLogin {
    pub username: Secret<String>,
    pub password: Secret<String>,
}

/// Signs a login for `timestamp_ms`. Call it afresh at every connection attempt.
pub fn sign_login(subscriber: &Subscriber, key: &AccessKey, timestamp_ms: u64) -> Result<SignedLogin, Error> {
    let security_token = match (subscriber.auth_mode, &key.security_token) {
        (AuthMode::StsToken, Some(token)) if !token.expose().is_empty() => Some(token.clone()),
        (AuthMode::StsToken, _) => return Err(Error::SecurityTokenMissing),
        (AuthMode::AkSign, _) => None,
    };
    let username = Username {
        client_id: subscriber.client_id.clone(),
        auth_mode: subscriber.auth_mode,
        sign_method: subscriber.sign_method,
        timestamp: timestamp_ms.to_string(),
        auth_id: key.id.clone(),
        instance_id: subscriber.instance_id.clone().filter(|id| !id.is_empty()),
        consumer_group_id: subscriber.consumer_group_id.clone(),
        security_token,
    };
    username.validate()?;
    let password = username.password(key.secret.expose());
    Ok(SignedLogin { username: username.to_string().into(), password: password.into() })
}

/// A parsed username. The key=value pairs may come in any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    pub client_id: String,
    pub auth_mode: AuthMode,
    pub sign_method: SignMethod,
    /// As written by the client: the signature covers this text, not its numeric value.
    pub timestamp: String,
    pub auth_id: String,
    pub instance_id: Option<String>,
    pub consumer_group_id: String,
    pub security_token: Option<Secret<String>>,
}

impl Username {
    /// `authId=…[&securityToken=…]&timestamp=…`: the signed keys, sorted by name.
    pub fn string_to_sign(&self) -> String {
        match &self.security_token {
            Some(token) => format!("authId={}&securityToken={}&timestamp={}", self.auth_id, token.expose(), self.timestamp),
            None => format!("authId={}&timestamp={}", self.auth_id, self.timestamp),
        }
    }

    /// The password this username needs with `secret`.
    pub fn password(&self, secret: &str) -> String {
        hmac_sign::sign_base64(self.sign_method, secret.as_bytes(), self.string_to_sign().as_bytes())
    }

    /// Checks `password` against `secret` in constant time.
    pub fn verify_password(&self, password: &str, secret: &str) -> Result<(), Error> {
        let ok = hmac_sign::verify_base64(self.sign_method, secret.as_bytes(), self.string_to_sign().as_bytes(), password);
        if ok { Ok(()) } else { Err(Error::SignatureMismatch) }
    }

    pub fn timestamp_ms(&self) -> u64 {
        // validate() guarantees digits; overlong values saturate rather than wrap.
        self.timestamp.parse().unwrap_or(u64::MAX)
    }

    fn validate(&self) -> Result<(), Error> {
        let chars = self.client_id.chars().count();
        if chars == 0 {
            return Err(Error::EmptyClientId);
        }
        if chars > MAX_CLIENT_ID_CHARS {
            return Err(Error::ClientIdTooLong(chars));
        }
        if self.client_id.contains('|') {
            return Err(Error::ClientIdHasPipe);
        }
        if self.timestamp.is_empty() || !self.timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidTimestamp(self.timestamp.clone()));
        }
        for (name, value) in [
            ("authId", Some(&self.auth_id)),
            ("consumerGroupId", Some(&self.consumer_group_id)),
            ("iotInstanceId", self.instance_id.as_ref()),
            ("securityToken", self.security_token.as_ref().map(Secret::expose)),
        ] {
            if value.is_some_and(|v| v.contains([',', '|'])) || (name != "securityToken" && value.is_some_and(|v| v.contains('='))) {
                return Err(Error::ReservedCharacter(name));
            }
        }
        if self.auth_id.is_empty() {
            return Err(Error::MissingField("authId"));
        }
        if self.consumer_group_id.is_empty() {
            return Err(Error::MissingField("consumerGroupId"));
        }
        match (self.auth_mode, &self.security_token) {
            (AuthMode::StsToken, None) => Err(Error::SecurityTokenMissing),
            (AuthMode::AkSign, Some(_)) => Err(Error::UnexpectedSecurityToken),
            _ => Ok(()),
        }
    }
}

impl FromStr for Username {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let malformed = |why: &str| Error::MalformedUsername(why.to_owned());
        let (client_id, rest) = s.split_once('|').ok_or_else(|| malformed("expected `clientId|key=value,…|`"))?;
        let params = rest.strip_suffix('|').ok_or_else(|| malformed("the parameter block must end with `|`"))?;
        if params.contains('|') {
            return Err(malformed("more than two `|` separators"));
        }

        let mut fields = Fields::default();
        for pair in params.split(',').filter(|p| !p.is_empty()) {
            // Split at the first `=` only: STS tokens may end in base64 padding.
            let (key, value) =
                pair.split_once('=').ok_or_else(|| Error::MalformedUsername(format!("`{}` is not key=value", key_only(pair))))?;
            fields.set(key, value)?;
        }

        let username = Username {
            client_id: client_id.to_owned(),
            auth_mode: fields.auth_mode.ok_or(Error::MissingField("authMode"))?.parse()?,
            sign_method: fields.sign_method.ok_or(Error::MissingField("signMethod"))?.parse()?,
            timestamp: fields.timestamp.ok_or(Error::MissingField("timestamp"))?,
            auth_id: fields.auth_id.ok_or(Error::MissingField("authId"))?,
            instance_id: fields.instance_id.filter(|v| !v.is_empty()),
            consumer_group_id: fields.consumer_group_id.ok_or(Error::MissingField("consumerGroupId"))?,
            security_token: fields.security_token.filter(|v| !v.is_empty()).map(Secret::new),
        };
        username.validate()?;
        Ok(username)
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}|authMode={},signMethod={},timestamp={},authId={}",
            self.client_id, self.auth_mode, self.sign_method, self.timestamp, self.auth_id
        )?;
        if let Some(instance) = &self.instance_id {
            write!(f, ",iotInstanceId={instance}")?;
        }
        write!(f, ",consumerGroupId={}", self.consumer_group_id)?;
        if let Some(token) = &self.security_token {
            write!(f, ",securityToken={}", token.expose())?;
        }
        f.write_str("|")
    }
}

/// Never echo a value in an error: it may be a security token.
fn key_only(pair: &str) -> &str {
    let shown: &str = pair.split('=').next().unwrap_or("");
    if shown.len() > 32 { "<long value>" } else { shown }
}

#[derive(Default)]
struct Fields {
    auth_mode: Option<String>,
    sign_method: Option<String>,
    timestamp: Option<String>,
    auth_id: Option<String>,
    instance_id: Option<String>,
    consumer_group_id: Option<String>,
    security_token: Option<String>,
}

impl Fields {
    fn set(&mut self, key: &str, value: &str) -> Result<(), Error> {
        let slot = match key {
            "authMode" => &mut self.auth_mode,
            "signMethod" => &mut self.sign_method,
            "timestamp" => &mut self.timestamp,
            "authId" => &mut self.auth_id,
            "iotInstanceId" => &mut self.instance_id,
            "consumerGroupId" => &mut self.consumer_group_id,
            "securityToken" => &mut self.security_token,
            // Unknown keys are ignored, as a forward-compatible server would.
            _ => return Ok(()),
        };
        if slot.replace(value.to_owned()).is_some() {
            return Err(Error::DuplicateField(key.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "LTAI5tDemoKey";
    const SECRET: &str = "DemoSecret0123";
    const TS: u64 = 1573489088171;

    fn subscriber(auth_mode: AuthMode, sign_method: SignMethod) -> Subscriber {
        Subscriber {
            client_id: "worker-0".into(),
            instance_id: Some("iot-cn-test".into()),
            consumer_group_id: "DEFAULT_GROUP".into(),
            auth_mode,
            sign_method,
        }
    }

    fn key(token: Option<&str>) -> AccessKey {
        AccessKey { id: ID.into(), secret: SECRET.to_owned().into(), security_token: token.map(|t| t.to_owned().into()) }
    }

    /// PLATFORM.md's known answers.
    #[test]
    fn passwords_match_the_known_answers() {
        for (method, expected) in [
            (SignMethod::HmacSha1, "OBqn06z9WxOWRrKr4jjsEz31euE="),
            (SignMethod::HmacSha256, "MwT2FRFmMx6L4CH5VUQ5W6XVakBa8PgnpkwOMhRSMZU="),
            (SignMethod::HmacMd5, "TDOW8wRiI1y+mZzqlfJhPQ=="),
        ] {
            let login = sign_login(&subscriber(AuthMode::AkSign, method), &key(None), TS).unwrap();
            assert_eq!(login.password.expose(), expected, "{method}");
        }
        let sts = sign_login(&subscriber(AuthMode::StsToken, SignMethod::HmacSha1), &key(Some("STS.demoToken")), TS).unwrap();
        assert_eq!(sts.password.expose(), "/lRfnA4xQepNd4yT0cH1N26gwA0=");
    }

    #[test]
    fn string_to_sign_sorts_keys() {
        let sts = sign_login(&subscriber(AuthMode::StsToken, SignMethod::HmacSha1), &key(Some("STS.demoToken")), TS).unwrap();
        let parsed: Username = sts.username.expose().parse().unwrap();
        assert_eq!(parsed.string_to_sign(), "authId=LTAI5tDemoKey&securityToken=STS.demoToken&timestamp=1573489088171");
    }

    #[test]
    fn sign_parse_verify_round_trips_in_every_mode() {
        for mode in [AuthMode::AkSign, AuthMode::StsToken] {
            for method in SignMethod::ALL {
                let key = key((mode == AuthMode::StsToken).then_some("STS.tok/en+with=padding=="));
                let login = sign_login(&subscriber(mode, method), &key, TS).unwrap();
                let parsed: Username = login.username.expose().parse().unwrap();
                assert_eq!(parsed.auth_mode, mode);
                assert_eq!(parsed.sign_method, method);
                assert_eq!(parsed.client_id, "worker-0");
                assert_eq!(parsed.instance_id.as_deref(), Some("iot-cn-test"));
                assert_eq!(parsed.timestamp_ms(), TS);
                assert_eq!(parsed.security_token, key.security_token);
                parsed.verify_password(login.password.expose(), SECRET).unwrap();
                assert_eq!(parsed.verify_password(login.password.expose(), "other"), Err(Error::SignatureMismatch));
                assert_eq!(&parsed.to_string(), login.username.expose());
            }
        }
    }

    #[test]
    fn the_seed_documents_username_parses_in_its_own_order() {
        let text = "c1|iotInstanceId=iot-1,authMode=ststoken,securityToken=STS.demoToken,signMethod=Hmacsha1,consumerGroupId=G,authId=LTAI5tDemoKey,timestamp=1573489088171|";
        let parsed: Username = text.parse().unwrap();
        assert_eq!(parsed.sign_method, SignMethod::HmacSha1);
        assert_eq!(parsed.consumer_group_id, "G");
        parsed.verify_password("/lRfnA4xQepNd4yT0cH1N26gwA0=", SECRET).unwrap();
    }

    #[test]
    fn empty_or_missing_instance_is_legacy() {
        let text = "c|authMode=aksign,signMethod=hmacsha1,timestamp=1,authId=a,iotInstanceId=,consumerGroupId=G|";
        assert_eq!(text.parse::<Username>().unwrap().instance_id, None);
    }

    #[test]
    fn malformed_usernames_say_what_is_wrong() {
        let ok = "c|authMode=aksign,signMethod=hmacsha1,timestamp=1,authId=a,consumerGroupId=G|";
        assert!(ok.parse::<Username>().is_ok());
        let cases: &[(&str, Error)] = &[
            ("no pipes", Error::MalformedUsername("expected `clientId|key=value,…|`".into())),
            ("c|authMode=aksign", Error::MalformedUsername("the parameter block must end with `|`".into())),
            ("c|authMode=aksign,signMethod=hmacsha1,timestamp=1,authId=a|", Error::MissingField("consumerGroupId")),
            ("c|authMode=aksign,signMethod=sha9,timestamp=1,authId=a,consumerGroupId=G|", Error::UnknownSignMethod("sha9".into())),
            ("c|authMode=token,signMethod=hmacsha1,timestamp=1,authId=a,consumerGroupId=G|", Error::UnknownAuthMode("token".into())),
            ("c|authMode=aksign,signMethod=hmacsha1,timestamp=soon,authId=a,consumerGroupId=G|", Error::InvalidTimestamp("soon".into())),
            ("c|authMode=ststoken,signMethod=hmacsha1,timestamp=1,authId=a,consumerGroupId=G|", Error::SecurityTokenMissing),
            (
                "c|authMode=aksign,authMode=aksign,signMethod=hmacsha1,timestamp=1,authId=a,consumerGroupId=G|",
                Error::DuplicateField("authMode".into()),
            ),
            ("|authMode=aksign,signMethod=hmacsha1,timestamp=1,authId=a,consumerGroupId=G|", Error::EmptyClientId),
            ("c|authMode=aksign,garbage,timestamp=1|", Error::MalformedUsername("`garbage` is not key=value".into())),
        ];
        for (text, expected) in cases {
            assert_eq!(&text.parse::<Username>().unwrap_err(), expected, "{text}");
        }
        let long = format!("{}|authMode=aksign,signMethod=hmacsha1,timestamp=1,authId=a,consumerGroupId=G|", "x".repeat(65));
        assert_eq!(long.parse::<Username>().unwrap_err(), Error::ClientIdTooLong(65));
    }

    #[test]
    fn signing_refuses_what_the_platform_would() {
        let mut sub = subscriber(AuthMode::AkSign, SignMethod::HmacSha1);
        sub.client_id = "a|b".into();
        assert_eq!(sign_login(&sub, &key(None), TS).unwrap_err(), Error::ClientIdHasPipe);
        sub.client_id = "c".into();
        sub.consumer_group_id = "G,x".into();
        assert_eq!(sign_login(&sub, &key(None), TS).unwrap_err(), Error::ReservedCharacter("consumerGroupId"));
        let sts = subscriber(AuthMode::StsToken, SignMethod::HmacSha1);
        assert_eq!(sign_login(&sts, &key(None), TS).unwrap_err(), Error::SecurityTokenMissing);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let login = sign_login(&subscriber(AuthMode::StsToken, SignMethod::HmacSha1), &key(Some("STS.secretToken")), TS).unwrap();
        let parsed: Username = login.username.expose().parse().unwrap();
        for shown in [format!("{login:?}"), format!("{parsed:?}"), format!("{:?}", key(Some("STS.secretToken")))] {
            assert!(
                !shown.contains("STS.secretToken") && !shown.contains(SECRET) && !shown.contains(login.password.expose().as_str()),
                "{shown}"
            );
        }
    }
}
