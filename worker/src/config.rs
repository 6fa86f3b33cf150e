//! Command line and environment: every flag `--x-y` also reads `IOTSUB_X_Y`.
//!
//! Secrets (`--access-key-secret`, `--security-token`) are hidden from `--help` and from error
//! messages (`hide_env_values`), and [`Config`]'s `Debug` redacts them.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use iotsub_aliyun::amqp::{AccessKey, AuthMode, MAX_CLIENT_ID_CHARS, SignMethod, Subscriber};

use reqwest::Url;

use crate::{
    credentials::{Rrsa, Source},
    error::Error,
    sink::{batch::BatchLimits, http::Protocol, url::redact},
};

#[derive(Parser, Clone)]
#[command(
    name = "iotsub-worker",
    version,
    about = "Receives an IoT Platform consumer group's messages over AMQP 1.0 and acknowledges each only after its sink took it"
)]
pub struct Args {
    /// AMQP endpoint host, e.g. iot-cn-xxxx.amqp.iothub.aliyuncs.com; also the TLS server name.
    #[arg(long, env = "IOTSUB_HOST")]
    pub host: String,
    #[arg(long, env = "IOTSUB_PORT", default_value_t = 5671)]
    pub port: u16,
    /// IoT instance id; empty for legacy public instances.
    #[arg(long, env = "IOTSUB_INSTANCE_ID", default_value = "")]
    pub instance_id: String,
    #[arg(long, env = "IOTSUB_CONSUMER_GROUP_ID")]
    pub consumer_group_id: String,
    /// aksign | ststoken
    #[arg(long, env = "IOTSUB_AUTH_MODE", default_value = "aksign", value_parser = parse_auth_mode)]
    pub auth_mode: AuthMode,
    /// hmacsha1 | hmacsha256 | hmacmd5
    #[arg(long, env = "IOTSUB_SIGN_METHOD", default_value = "hmacsha1", value_parser = parse_sign_method)]
    pub sign_method: SignMethod,
    /// The AccessKey, fixed for the life of the process (else --credentials-dir or RRSA).
    #[arg(long, env = "IOTSUB_ACCESS_KEY_ID")]
    pub access_key_id: Option<String>,
    #[arg(long, env = "IOTSUB_ACCESS_KEY_SECRET", hide_env_values = true)]
    pub access_key_secret: Option<String>,
    /// The STS token (authMode=ststoken).
    #[arg(long, env = "IOTSUB_SECURITY_TOKEN", hide_env_values = true)]
    pub security_token: Option<String>,
    /// A directory of credential files (a mounted Secret: accessKeyId, accessKeySecret, and
    /// securityToken for ststoken), read again before every connection attempt: a rotation reaches
    /// the pod without a restart.
    #[arg(long, env = "IOTSUB_CREDENTIALS_DIR")]
    pub credentials_dir: Option<PathBuf>,
    /// RRSA: the RAM role to assume with the pod's OIDC token (STS AssumeRoleWithOIDC); needs
    /// --oidc-provider-arn and --oidc-token-file. The names of ACK's pod-identity webhook.
    #[arg(long, env = "ALIBABA_CLOUD_ROLE_ARN")]
    pub role_arn: Option<String>,
    #[arg(long, env = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN")]
    pub oidc_provider_arn: Option<String>,
    /// The projected ServiceAccount token (audience sts.aliyuncs.com), read again at each exchange.
    #[arg(long, env = "ALIBABA_CLOUD_OIDC_TOKEN_FILE")]
    pub oidc_token_file: Option<PathBuf>,
    /// Default: the client id.
    #[arg(long, env = "ALIBABA_CLOUD_ROLE_SESSION_NAME")]
    pub role_session_name: Option<String>,
    #[arg(long, env = "IOTSUB_STS_ENDPOINT", default_value = iotsub_aliyun::sts::DEFAULT_STS_ENDPOINT)]
    pub sts_endpoint: String,
    /// How long the STS credentials last (900 up to the role's maximum).
    #[arg(long, env = "IOTSUB_STS_DURATION_SECONDS", default_value_t = iotsub_aliyun::sts::DEFAULT_DURATION_SECONDS, value_parser = clap::value_parser!(u32).range(900..=43_200))]
    pub sts_duration_seconds: u32,
    /// Default: $POD_NAME, else the hostname. At most 64 characters (with the `-<i>` suffix).
    #[arg(long, env = "IOTSUB_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Connections (clients of the consumer group) this process opens; each is `<client-id>-<i>` when > 1.
    #[arg(long, env = "IOTSUB_CONNECTIONS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=128))]
    pub connections: u32,
    /// The idle-time-out advertised in the Open frame; the platform wants 30000..=300000.
    #[arg(long, env = "IOTSUB_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u32).range(30_000..=300_000))]
    pub idle_timeout_ms: u32,
    /// Link credit per connection: at most this many messages are in flight on one connection.
    #[arg(long, env = "IOTSUB_CREDIT", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub credit: u32,
    /// The receiver's source address: the platform ignores it, other brokers need a queue name.
    #[arg(long, env = "IOTSUB_SOURCE_ADDRESS", default_value = "default")]
    pub source_address: String,
    /// A PEM file of extra trust roots (a private or emulated endpoint), added to the system roots.
    #[arg(long, env = "IOTSUB_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The same as PEM text.
    #[arg(long, env = "IOTSUB_CA_PEM", hide_env_values = true)]
    pub ca_pem: Option<String>,
    #[arg(long, env = "IOTSUB_SINK", value_enum, default_value_t = SinkKind::Log)]
    pub sink: SinkKind,
    /// Where the http sink POSTs its CloudEvents.
    #[arg(long, env = "IOTSUB_SINK_URL")]
    pub sink_url: Option<String>,
    /// Timeout of one http sink request.
    #[arg(long, env = "IOTSUB_SINK_TIMEOUT_MS", default_value_t = 5_000)]
    pub sink_timeout_ms: u64,
    /// A directory of request headers for the http sink (a mounted Secret): each file is one header
    /// named after the file, its value the file's content, trimmed; read again when it changes.
    #[arg(long, env = "IOTSUB_SINK_HEADERS_DIR")]
    pub sink_headers_dir: Option<PathBuf>,
    /// `http1`, or `http2` (one connection, a stream per request: h2c for http://, ALPN h2 for https://).
    #[arg(long, env = "IOTSUB_SINK_PROTOCOL", value_enum, default_value_t = Protocol::Http1)]
    pub sink_protocol: Protocol,
    /// `binary`: one POST per message (a CloudEvent in binary mode); `batch`: many per POST
    /// (`application/cloudevents-batch+json`), all acknowledged by its 2xx.
    #[arg(long, env = "IOTSUB_SINK_MODE", value_enum, default_value_t = SinkMode::Binary)]
    pub sink_mode: SinkMode,
    /// Batched mode: most events per POST.
    #[arg(long, env = "IOTSUB_SINK_BATCH_MAX_EVENTS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub sink_batch_max_events: u32,
    /// Batched mode: most bytes per POST body (an event larger than this is sent alone).
    #[arg(long, env = "IOTSUB_SINK_BATCH_MAX_BYTES", default_value_t = 1_048_576, value_parser = clap::value_parser!(u64).range(1_024..=67_108_864))]
    pub sink_batch_max_bytes: u64,
    /// Batched mode: how long a batch's first event may wait for more (0: send what has queued up).
    #[arg(long, env = "IOTSUB_SINK_BATCH_LINGER_MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub sink_batch_linger_ms: u64,
    /// Consecutive failed sink attempts that open the circuit: no new credit until a probe succeeds.
    #[arg(long, env = "IOTSUB_SINK_FAILURE_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub sink_failure_threshold: u32,
    /// Where dead letters go: `log` (one JSON line on stderr) or `http` (a CloudEvent to --dead-letter-url).
    #[arg(long, env = "IOTSUB_DEAD_LETTER", value_enum, default_value_t = DeadLetterKind::Log)]
    pub dead_letter: DeadLetterKind,
    #[arg(long, env = "IOTSUB_DEAD_LETTER_URL")]
    pub dead_letter_url: Option<String>,
    /// Deliveries of one messageId (across redeliveries) that the sink failed before it becomes a dead letter.
    #[arg(long, env = "IOTSUB_MAX_DELIVERIES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_deliveries: u32,
    /// A larger message is not given to the sink: it becomes a dead letter.
    #[arg(long, env = "IOTSUB_MAX_MESSAGE_BYTES", default_value_t = 1_048_576, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_message_bytes: u64,
    /// Health, readiness, metrics and status.
    #[arg(long, env = "IOTSUB_HTTP_ADDR", default_value = "0.0.0.0:9090")]
    pub http_addr: SocketAddr,
    /// Writes the bound HTTP address (e.g. `127.0.0.1:41234`) to this file once it listens:
    /// useful with port 0.
    #[arg(long, env = "IOTSUB_HTTP_ADDR_FILE")]
    pub http_addr_file: Option<PathBuf>,
    /// How many recent messageIds are remembered to drop duplicates (0 turns it off).
    #[arg(long, env = "IOTSUB_DEDUP_WINDOW", default_value_t = 100_000)]
    pub dedup_window: usize,
    /// The platform's acknowledgement timeout: sink retries stop in time to release before it.
    #[arg(long, env = "IOTSUB_ACK_WINDOW_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1_000..))]
    pub ack_window_ms: u64,
    /// On SIGTERM, how long in-flight messages may take before the worker closes anyway.
    #[arg(long, env = "IOTSUB_SHUTDOWN_TIMEOUT_MS", default_value_t = 25_000)]
    pub shutdown_timeout_ms: u64,
    /// First reconnect delay after a dropped connection; doubles up to 30 s, each jittered to
    /// 50–100 %, so at least 2000 (the first attempt comes after 1 s at the earliest).
    #[arg(long, env = "IOTSUB_RECONNECT_BACKOFF_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(2_000..))]
    pub reconnect_backoff_ms: u64,
    /// Connection attempts this pod may make in any minute, all its connections together: its share
    /// of the consumer group's 100 (the operator sets it from the group's client count). Default:
    /// twice the connections, at least 10, at most 100.
    #[arg(long, env = "IOTSUB_RECONNECT_ATTEMPTS_PER_MINUTE", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub reconnect_attempts_per_minute: Option<u32>,
    /// First retry delay after a refused login or a throttled attempt; doubles (with jitter) up to 5 min.
    #[arg(long, env = "IOTSUB_LOGIN_BACKOFF_MS", default_value_t = 15_000)]
    pub login_backoff_ms: u64,
}

fn parse_auth_mode(s: &str) -> Result<AuthMode, String> {
    s.parse().map_err(|e: iotsub_aliyun::Error| e.to_string())
}

fn parse_sign_method(s: &str) -> Result<SignMethod, String> {
    s.parse().map_err(|e: iotsub_aliyun::Error| e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    Log,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkMode {
    Binary,
    Batch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeadLetterKind {
    Log,
    Http,
}

/// Everything the worker needs, checked.
#[derive(Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub instance_id: String,
    pub consumer_group_id: String,
    pub auth_mode: AuthMode,
    pub sign_method: SignMethod,
    pub credentials: Source,
    /// One per connection, `<client-id>-<i>` when there are several.
    pub client_ids: Vec<String>,
    pub idle_timeout: Duration,
    pub credit: u32,
    pub source_address: String,
    /// Extra trust roots, PEM, and the file they were read from (read again at each attempt).
    pub extra_ca_pem: Option<Vec<u8>>,
    pub ca_file: Option<PathBuf>,
    pub sink: SinkConfig,
    pub sink_failure_threshold: u32,
    pub dead_letter: DeadLetterConfig,
    pub max_deliveries: u32,
    pub max_message_bytes: usize,
    pub http_addr: SocketAddr,
    pub http_addr_file: Option<PathBuf>,
    pub dedup_window: usize,
    pub ack_window: Duration,
    pub shutdown_timeout: Duration,
    pub reconnect_backoff: Duration,
    pub reconnect_attempts_per_minute: u32,
    pub login_backoff: Duration,
}

#[derive(Clone)]
pub enum SinkConfig {
    Log,
    Http {
        url: Url,
        timeout: Duration,
        headers_dir: Option<PathBuf>,
        protocol: Protocol,
        /// Batched mode's limits; `None`: one message per POST.
        batch: Option<BatchLimits>,
    },
}

#[derive(Clone)]
pub enum DeadLetterConfig {
    Log,
    Http { url: Url },
}

// URLs may carry credentials in their userinfo or query: shown redacted.
impl std::fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkConfig::Log => f.write_str("Log"),
            SinkConfig::Http { url, timeout, headers_dir, protocol, batch } => f
                .debug_struct("Http")
                .field("url", &redact(url))
                .field("timeout", timeout)
                .field("headers_dir", headers_dir)
                .field("protocol", protocol)
                .field("batch", batch)
                .finish(),
        }
    }
}

impl std::fmt::Debug for DeadLetterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeadLetterConfig::Log => f.write_str("Log"),
            DeadLetterConfig::Http { url } => f.debug_struct("Http").field("url", &redact(url)).finish(),
        }
    }
}

/// `value` as an http(s) URL; errors name `flag` and never echo the value (it may hold a credential).
fn http_url(flag: &str, value: Option<String>, needed_by: &str) -> Result<Url, Error> {
    let value = value.filter(|u| !u.is_empty()).ok_or_else(|| Error::Config(format!("{needed_by} needs {flag}")))?;
    let url: Url = value.parse().map_err(|e| Error::Config(format!("{flag} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config(format!("{flag} must be http or https")));
    }
    Ok(url)
}

/// An https URL: the OIDC token travels in the request.
fn https_url(flag: &str, value: &str) -> Result<String, Error> {
    let url = http_url(flag, Some(value.to_owned()), "RRSA")?;
    if url.scheme() != "https" {
        return Err(Error::Config(format!("{flag} must be https: the OIDC token travels in the request")));
    }
    Ok(url.to_string())
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("instance_id", &self.instance_id)
            .field("consumer_group_id", &self.consumer_group_id)
            .field("auth_mode", &self.auth_mode)
            .field("sign_method", &self.sign_method)
            .field("credentials", &self.credentials) // AccessKey's Debug redacts
            .field("client_ids", &self.client_ids)
            .field("idle_timeout", &self.idle_timeout)
            .field("credit", &self.credit)
            .field("source_address", &self.source_address)
            .field("extra_ca", &self.extra_ca_pem.is_some())
            .field("sink", &self.sink)
            .field("sink_failure_threshold", &self.sink_failure_threshold)
            .field("dead_letter", &self.dead_letter)
            .field("max_deliveries", &self.max_deliveries)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("http_addr", &self.http_addr)
            .field("dedup_window", &self.dedup_window)
            .field("ack_window", &self.ack_window)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("reconnect_backoff", &self.reconnect_backoff)
            .field("reconnect_attempts_per_minute", &self.reconnect_attempts_per_minute)
            .field("login_backoff", &self.login_backoff)
            .finish()
    }
}

impl Config {
    /// Checks `args`; `env_client_id` is what stands in for `--client-id` when it is absent
    /// (`POD_NAME`, else the hostname), passed in so the rule is testable.
    pub fn from_args(args: Args, env_client_id: impl FnOnce() -> Option<String>) -> Result<Config, Error> {
        let base = args
            .client_id
            .clone()
            .filter(|id| !id.trim().is_empty())
            .or_else(env_client_id)
            .ok_or_else(|| Error::Config("no --client-id, POD_NAME or hostname to name the client".into()))?;
        let client_ids = client_ids(&base, args.connections)?;
        if args.consumer_group_id.is_empty() {
            return Err(Error::Config("--consumer-group-id must not be empty".into()));
        }
        let (credentials, auth_mode) = credentials(&args, &client_ids[0])?;
        let sink = match args.sink {
            SinkKind::Log => SinkConfig::Log,
            SinkKind::Http => SinkConfig::Http {
                url: http_url("--sink-url", args.sink_url, "--sink http")?,
                timeout: Duration::from_millis(args.sink_timeout_ms.max(1)),
                headers_dir: args.sink_headers_dir,
                protocol: args.sink_protocol,
                batch: (args.sink_mode == SinkMode::Batch).then(|| BatchLimits {
                    max_events: args.sink_batch_max_events as usize,
                    max_bytes: usize::try_from(args.sink_batch_max_bytes).unwrap_or(usize::MAX),
                    linger: Duration::from_millis(args.sink_batch_linger_ms),
                }),
            },
        };
        let dead_letter = match args.dead_letter {
            DeadLetterKind::Log => DeadLetterConfig::Log,
            DeadLetterKind::Http => {
                DeadLetterConfig::Http { url: http_url("--dead-letter-url", args.dead_letter_url, "--dead-letter http")? }
            }
        };
        let extra_ca_pem = match (&args.ca_file, &args.ca_pem) {
            (Some(path), _) => Some(std::fs::read(path).map_err(|e| Error::Config(format!("--ca-file {}: {e}", path.display())))?),
            (None, Some(pem)) if !pem.trim().is_empty() => Some(pem.clone().into_bytes()),
            _ => None,
        };
        Ok(Config {
            host: args.host,
            port: args.port,
            instance_id: args.instance_id,
            consumer_group_id: args.consumer_group_id,
            auth_mode,
            sign_method: args.sign_method,
            credentials,
            client_ids,
            idle_timeout: Duration::from_millis(args.idle_timeout_ms.into()),
            credit: args.credit,
            source_address: args.source_address,
            extra_ca_pem,
            ca_file: args.ca_file,
            sink,
            sink_failure_threshold: args.sink_failure_threshold,
            dead_letter,
            max_deliveries: args.max_deliveries,
            max_message_bytes: usize::try_from(args.max_message_bytes).unwrap_or(usize::MAX),
            http_addr: args.http_addr,
            http_addr_file: args.http_addr_file,
            dedup_window: args.dedup_window,
            ack_window: Duration::from_millis(args.ack_window_ms),
            shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
            reconnect_backoff: Duration::from_millis(args.reconnect_backoff_ms),
            reconnect_attempts_per_minute: args.reconnect_attempts_per_minute.unwrap_or_else(|| (2 * args.connections).clamp(10, 100)),
            login_backoff: Duration::from_millis(args.login_backoff_ms.max(1)),
        })
    }

    /// Who connection `index` is, for signing.
    pub fn subscriber(&self, index: usize) -> Subscriber {
        Subscriber {
            client_id: self.client_ids[index].clone(),
            instance_id: Some(self.instance_id.clone()).filter(|id| !id.is_empty()),
            consumer_group_id: self.consumer_group_id.clone(),
            auth_mode: self.auth_mode,
            sign_method: self.sign_method,
        }
    }
}

/// The one source of credentials the flags name, and the auth mode it logs in with (RRSA's
/// credentials are STS tokens: `ststoken`).
fn credentials(args: &Args, client_id: &str) -> Result<(Source, AuthMode), Error> {
    let fixed = args.access_key_id.as_deref().is_some_and(|id| !id.is_empty());
    let rrsa = [args.role_arn.is_some(), args.oidc_provider_arn.is_some(), args.oidc_token_file.is_some()];
    let named = [fixed, args.credentials_dir.is_some(), rrsa.iter().any(|set| *set)];
    match named.iter().filter(|set| **set).count() {
        0 => return Err(Error::Config("no credentials: give --access-key-id/--access-key-secret, --credentials-dir, or RRSA (--role-arn, --oidc-provider-arn, --oidc-token-file)".into())),
        1 => {}
        _ => return Err(Error::Config("give exactly one of --access-key-id, --credentials-dir, or RRSA (--role-arn…)".into())),
    }
    if let Some(dir) = &args.credentials_dir {
        crate::credentials::read_directory(dir).map_err(|e| Error::Config(format!("--credentials-dir: {e}")))?;
        return Ok((Source::Directory(dir.clone()), args.auth_mode));
    }
    if let (Some(role_arn), Some(oidc_provider_arn), Some(oidc_token_file)) =
        (&args.role_arn, &args.oidc_provider_arn, &args.oidc_token_file)
    {
        let session = args.role_session_name.as_deref().filter(|s| !s.is_empty()).unwrap_or(client_id);
        let rrsa = Rrsa {
            role_arn: role_arn.clone(),
            oidc_provider_arn: oidc_provider_arn.clone(),
            oidc_token_file: oidc_token_file.clone(),
            role_session_name: iotsub_aliyun::sts::session_name(session),
            duration_seconds: args.sts_duration_seconds,
            sts_endpoint: https_url("--sts-endpoint", &args.sts_endpoint)?,
        };
        return Ok((Source::Rrsa(rrsa), AuthMode::StsToken));
    }
    if rrsa.iter().any(|set| *set) {
        return Err(Error::Config("RRSA needs all three of --role-arn, --oidc-provider-arn and --oidc-token-file (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE)".into()));
    }
    let secret = args
        .access_key_secret
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Config("--access-key-id needs --access-key-secret".into()))?;
    let security_token = args.security_token.clone().filter(|t| !t.is_empty());
    if args.auth_mode == AuthMode::StsToken && security_token.is_none() {
        return Err(Error::Config("--auth-mode ststoken needs --security-token".into()));
    }
    let id = args.access_key_id.clone().unwrap_or_default();
    Ok((Source::Fixed(AccessKey { id, secret: secret.into(), security_token: security_token.map(Into::into) }), args.auth_mode))
}

/// `base` alone for one connection, else `base-0` … `base-<n-1>`; each at most 64 characters.
pub fn client_ids(base: &str, connections: u32) -> Result<Vec<String>, Error> {
    let ids: Vec<String> = if connections <= 1 { vec![base.to_owned()] } else { (0..connections).map(|i| format!("{base}-{i}")).collect() };
    for id in &ids {
        let chars = id.chars().count();
        if chars > MAX_CLIENT_ID_CHARS {
            return Err(Error::Config(format!("clientId `{id}` is {chars} characters; the platform allows at most {MAX_CLIENT_ID_CHARS}")));
        }
        if id.contains('|') {
            return Err(Error::Config(format!("clientId `{id}` must not contain `|`")));
        }
    }
    Ok(ids)
}

/// `POD_NAME`, else the kernel's hostname.
pub fn default_client_id() -> Option<String> {
    std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        parse(extra).unwrap()
    }

    /// The required flags and then `extra`, parsed.
    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec![
            "iotsub-worker",
            "--host",
            "localhost",
            "--consumer-group-id",
            "G",
            "--access-key-id",
            "demo",
            "--access-key-secret",
            "demo-secret",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    }

    #[test]
    fn the_http_sink_sends_one_message_per_http1_post_unless_told_otherwise() {
        let http = |extra: &[&str]| {
            let mut argv = vec!["--sink", "http", "--sink-url", "http://127.0.0.1:1/e"];
            argv.extend_from_slice(extra);
            match Config::from_args(args(&argv), || Some("p".into())).unwrap().sink {
                SinkConfig::Http { protocol, batch, .. } => (protocol, batch),
                SinkConfig::Log => unreachable!("an http sink"),
            }
        };
        assert_eq!(http(&[]), (Protocol::Http1, None));
        let limits = BatchLimits { max_events: 100, max_bytes: 1_048_576, linger: Duration::ZERO };
        assert_eq!(http(&["--sink-mode", "batch"]), (Protocol::Http1, Some(limits)));
        let (protocol, batch) = http(&[
            "--sink-protocol",
            "http2",
            "--sink-mode",
            "batch",
            "--sink-batch-max-events",
            "500",
            "--sink-batch-max-bytes",
            "65536",
            "--sink-batch-linger-ms",
            "5",
        ]);
        assert_eq!(protocol, Protocol::Http2);
        assert_eq!(batch, Some(BatchLimits { max_events: 500, max_bytes: 65_536, linger: Duration::from_millis(5) }));
        let err = parse(&["--sink-batch-max-events", "0"]).err().unwrap().to_string();
        assert!(err.contains("--sink-batch-max-events"), "{err}");
        let err = parse(&["--sink-protocol", "spdy"]).err().unwrap().to_string();
        assert!(err.contains("http1") && err.contains("http2"), "names the choices: {err}");
    }

    #[test]
    fn defaults_match_the_design() {
        let config = Config::from_args(args(&[]), || Some("pod-a".into())).unwrap();
        assert_eq!(config.port, 5671);
        assert_eq!(config.client_ids, vec!["pod-a"]);
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.credit, 100);
        assert_eq!(config.source_address, "default");
        assert_eq!(config.http_addr, "0.0.0.0:9090".parse().unwrap());
        assert_eq!(config.ack_window, Duration::from_secs(30));
        assert_eq!(config.auth_mode, AuthMode::AkSign);
        assert_eq!(config.sign_method, SignMethod::HmacSha1);
        assert!(matches!(config.sink, SinkConfig::Log));
        assert!(matches!(config.dead_letter, DeadLetterConfig::Log));
        assert_eq!(config.max_deliveries, 10);
        assert_eq!(config.max_message_bytes, 1_048_576);
        assert_eq!(config.sink_failure_threshold, 5);
        assert_eq!(config.reconnect_backoff, Duration::from_secs(2), "jittered to 1–2 s: never sooner than 1 s");
        assert_eq!(config.reconnect_attempts_per_minute, 10);
        let many = Config::from_args(args(&["--connections", "16"]), || Some("p".into())).unwrap();
        assert_eq!(many.reconnect_attempts_per_minute, 32, "every connection can connect at start and once more");
    }

    #[test]
    fn dead_letters_over_http_need_a_url_and_urls_are_never_echoed() {
        let err = Config::from_args(args(&["--dead-letter", "http"]), || Some("p".into())).unwrap_err().to_string();
        assert!(err.contains("--dead-letter-url"), "{err}");
        let err =
            Config::from_args(args(&["--sink", "http", "--sink-url", "ftp://u:pw@h/x"]), || Some("p".into())).unwrap_err().to_string();
        assert!(err.contains("http or https") && !err.contains("pw"), "{err}");
        let config = Config::from_args(
            args(&[
                "--sink",
                "http",
                "--sink-url",
                "https://user:pw@h/events?key=k1",
                "--dead-letter",
                "http",
                "--dead-letter-url",
                "http://d/?t=k2",
            ]),
            || Some("p".into()),
        )
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("pw") && !shown.contains("k1") && !shown.contains("k2"), "{shown}");
        assert!(shown.contains("https://<redacted>@h/events?<redacted>"), "{shown}");
    }

    #[test]
    fn a_first_reconnect_under_a_second_is_refused() {
        assert!(parse(&["--reconnect-backoff-ms", "100"]).is_err());
    }

    #[test]
    fn several_connections_are_numbered() {
        let config = Config::from_args(args(&["--client-id", "w", "--connections", "3"]), || None).unwrap();
        assert_eq!(config.client_ids, vec!["w-0", "w-1", "w-2"]);
    }

    #[test]
    fn client_id_longer_than_64_with_suffix_is_refused() {
        let base = "x".repeat(63);
        assert!(client_ids(&base, 1).is_ok());
        let err = client_ids(&base, 2).unwrap_err().to_string();
        assert!(err.contains("at most 64"), "{err}");
    }

    #[test]
    fn idle_timeout_outside_the_platform_range_is_refused() {
        assert!(parse(&["--idle-timeout-ms", "10000"]).is_err());
    }

    /// The required flags but the credentials, then `extra`.
    fn without_key(extra: &[&str]) -> Result<Config, Error> {
        let mut argv = vec!["iotsub-worker", "--host", "localhost", "--consumer-group-id", "G"];
        argv.extend_from_slice(extra);
        Config::from_args(Args::try_parse_from(argv).unwrap(), || Some("pod-a".into()))
    }

    #[test]
    fn exactly_one_source_of_credentials_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("accessKeyId"), "demo").unwrap();
        std::fs::write(dir.path().join("accessKeySecret"), "demo-secret").unwrap();
        let dir_arg = dir.path().to_str().unwrap();
        let rrsa = ["--role-arn", "acs:ram::1:role/r", "--oidc-provider-arn", "acs:ram::1:oidc-provider/p", "--oidc-token-file", "/t"];
        let config = without_key(&["--credentials-dir", dir_arg]).unwrap();
        assert!(matches!(config.credentials, Source::Directory(_)));
        let config = without_key(&rrsa).unwrap();
        let Source::Rrsa(r) = &config.credentials else { panic!("{:?}", config.credentials) };
        assert_eq!((r.role_session_name.as_str(), r.sts_endpoint.as_str()), ("pod-a", "https://sts.aliyuncs.com/"));
        assert_eq!(config.auth_mode, AuthMode::StsToken, "RRSA logs in with STS tokens");

        // what is given, the error names
        let table: &[(&[&str], &str)] = &[
            (&[], "no credentials"),
            (&["--credentials-dir", dir_arg, "--access-key-id", "a", "--access-key-secret", "b"], "exactly one"),
            (&["--role-arn", "acs:ram::1:role/r"], "all three"),
            (&["--access-key-id", "a"], "--access-key-secret"),
            (&["--credentials-dir", "/nonexistent-dir"], "accessKeyId"),
            (&[&rrsa[..], &["--sts-endpoint", "http://sts.local"]].concat(), "must be https"),
        ];
        for (given, named) in table {
            let error = without_key(given).unwrap_err().to_string();
            assert!(error.contains(named), "{given:?}: {error}");
        }
    }

    #[test]
    fn ststoken_needs_a_token_and_http_needs_a_url() {
        let err = Config::from_args(args(&["--auth-mode", "ststoken"]), || Some("p".into())).unwrap_err();
        assert!(err.to_string().contains("--security-token"));
        let err = Config::from_args(args(&["--sink", "http"]), || Some("p".into())).unwrap_err();
        assert!(err.to_string().contains("--sink-url"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let config =
            Config::from_args(args(&["--auth-mode", "ststoken", "--security-token", "STS.topsecret"]), || Some("p".into())).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("demo-secret") && !shown.contains("STS.topsecret"), "{shown}");
    }

    #[test]
    fn sign_method_accepts_any_case() {
        let config = Config::from_args(args(&["--sign-method", "HmacSHA256"]), || Some("p".into())).unwrap();
        assert_eq!(config.sign_method, SignMethod::HmacSha256);
    }
}
