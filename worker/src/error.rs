//! The crate's one error type. Messages say what failed and never carry a secret, a password or a
//! security token (server-supplied descriptions pass through [`redact`] first).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("trust roots: {0}")]
    TrustRoots(String),
    #[error("signing the login: {0}")]
    Sign(#[from] iotsub_aliyun::Error),
    #[error("TCP connect to {addr}: {detail}")]
    Tcp { addr: String, detail: String },
    #[error("TLS handshake with {host}: {detail}")]
    Tls { host: String, detail: String },
    /// The endpoint refused the credentials (SASL outcome or `amqp:unauthorized-access`).
    #[error("login refused: {0}")]
    LoginRefused(String),
    /// The endpoint refused for a limit (client cap, connection attempts per minute, …).
    #[error("refused by a limit: {0}")]
    Throttled(String),
    #[error("opening the AMQP connection: {0}")]
    Open(String),
    #[error("{phase} timed out after {seconds} s")]
    Timeout { phase: &'static str, seconds: u64 },
    #[error("beginning the session: {0}")]
    Session(String),
    #[error("attaching the receiver link: {0}")]
    Attach(String),
    #[error("receiving: {0}")]
    Receive(String),
    #[error("settling a delivery: {0}")]
    Settle(String),
    #[error("http server on {addr}: {detail}")]
    HttpServer { addr: String, detail: String },
    #[error("sink: {0}")]
    Sink(String),
    /// The credentials could not be read (a mounted Secret without a key).
    #[error("credentials: {0}")]
    Credentials(String),
    /// STS gave no credentials for the OIDC token (RRSA).
    #[error("credentials from STS: {0}")]
    Sts(#[from] iotsub_aliyun::sts::StsError),
}

impl Error {
    /// A short, stable label for metrics and /status.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::TrustRoots(_) => "trust_roots",
            Error::Sign(_) => "sign",
            Error::Tcp { .. } => "tcp",
            Error::Tls { .. } => "tls",
            Error::LoginRefused(_) => "login_refused",
            Error::Throttled(_) => "throttled",
            Error::Open(_) => "open",
            Error::Timeout { .. } => "timeout",
            Error::Session(_) => "session",
            Error::Attach(_) => "attach",
            Error::Receive(_) => "receive",
            Error::Settle(_) => "settle",
            Error::HttpServer { .. } => "http_server",
            Error::Sink(_) => "sink",
            Error::Credentials(_) => "credentials",
            Error::Sts(_) => "sts",
        }
    }

    /// Whether the next attempt should wait the long (login) backoff: hammering a refusing endpoint
    /// burns the consumer group's shared budget of connection attempts.
    pub fn wants_long_backoff(&self) -> bool {
        matches!(
            self,
            Error::LoginRefused(_) | Error::Throttled(_) | Error::Sign(_) | Error::Sts(iotsub_aliyun::sts::StsError::Refused { .. })
        )
    }
}

/// Replaces every occurrence of each secret (of 4 characters or more) in `text`, raw and in the
/// forms a peer's error text could quote it in: percent-encoded (once, twice) and base64.
pub fn redact(text: &str, secrets: &[impl AsRef<str>]) -> String {
    iotsub_aliyun::redact::Redactor::for_values(secrets.iter().map(AsRef::as_ref).filter(|s| s.len() >= 4)).redact(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_each_secret_in_every_form() {
        let shown = iotsub_aliyun::redact::REDACTED;
        assert_eq!(redact("a demo-secret b STS.x1", &["demo-secret", "STS.x1", ""]), format!("a {shown} b {shown}"));
        // `+/=` percent-encoded, and base64, as a server's error text may quote a signed request.
        assert_eq!(redact("sig=a%2Bb%2Fc%3D", &["a+b/c="]), format!("sig={shown}"));
        assert_eq!(redact("auth ZGVtby1zZWNyZXQ=", &["demo-secret"]), format!("auth {shown}"));
    }

    #[test]
    fn refusals_back_off_long() {
        assert!(Error::LoginRefused("x".into()).wants_long_backoff());
        assert!(!Error::Receive("x".into()).wants_long_backoff());
    }
}
