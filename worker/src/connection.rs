//! One connection, one client of the consumer group: connect (TCP → TLS → SASL PLAIN → Open with
//! the idle-time-out), begin a session, attach one receiver, then receive → sink → settle until the
//! connection is lost or the worker stops; reconnect with jittered backoff.
//!
//! Credit is managed by hand so that at most `--credit` messages are unsettled at once and so that
//! SIGTERM can stop granting it: after each settlement the link is topped up to
//! `credit − in flight`, once at least half of the credit has been used.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fe2o3_amqp::{
    Connection, Receiver, Session,
    connection::{ConnectionHandle, ConnectionStopReason, OpenError},
    link::{CreditMode, LinkStateError, ReceiverAttachError, RecvError, SessionStopReason, delivery::DeliveryInfo},
    sasl_profile::SaslProfile,
    session::{BeginError, SessionHandle},
    types::{
        definitions::{self, AmqpError, ErrorCondition},
        messaging::Body,
        primitives::{Symbol, Value},
    },
};
use iotsub_aliyun::amqp::sign_login;
use rustls::pki_types::ServerName;
use tokio::{
    net::TcpStream,
    sync::mpsc,
    time::{Instant, timeout},
};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{
    backoff::{Backoff, jitter},
    config::Config,
    dedup::{Begin, DedupWindow},
    error::{Error, redact},
    message::IotMessage,
    metrics::Metrics,
    sink::{
        Sink, Taken,
        retry::{Final, RetryPolicy, deliver_with_retry, settle_deadline},
    },
    status::{ConnectionState, StatusBoard},
};

/// Limits on each phase of a connection attempt (the platform's own deadline for the receiver link
/// is 15 s from the connection).
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_TIMEOUT: Duration = Duration::from_secs(10);
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection attached at least this long counts as healthy: the next failure starts the backoff over.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// While draining: once nothing is in flight, wait this long for deliveries already on the wire
/// (transfers the peer sent before our credit stop reached it; a busy machine delays them by far
/// more than a round trip, and one that arrives after we detach goes back to the platform).
const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// What every connection of the process shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub tls: TlsConnector,
    pub sink: Arc<Sink>,
    pub dedup: Arc<Mutex<DedupWindow>>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<StatusBoard>,
    pub retry: RetryPolicy,
}

impl Shared {
    fn secrets(&self) -> Vec<&str> {
        let key = &self.config.access_key;
        let mut secrets = vec![key.secret.expose().as_str()];
        if let Some(token) = &key.security_token {
            secrets.push(token.expose().as_str());
        }
        secrets
    }
}

/// A settled outcome, sent back to the connection's loop by a delivery's task.
struct Completion {
    info: DeliveryInfo,
    message_id: String,
    sent_at_us: Option<i64>,
    accept: bool,
}

enum End {
    /// The worker is stopping and this connection drained and closed.
    Stopped,
    /// The connection was lost after it had been attached for `attached_for`.
    Lost { error: Error, attached_for: Duration },
}

/// Runs connection `index` until `stop`, then drains it.
pub async fn run(index: usize, shared: Arc<Shared>, stop: CancellationToken) {
    let config = shared.config.clone();
    let client_id = config.client_ids[index].clone();
    let mut backoff = Backoff::new(config.reconnect_backoff, Duration::from_secs(30));
    let mut login_backoff = Backoff::new(config.login_backoff, Duration::from_secs(300));
    loop {
        if stop.is_cancelled() {
            break;
        }
        shared.status.update(index, |s| {
            s.state = ConnectionState::Connecting;
            s.attempts += 1;
        });
        shared.metrics.set_state(&client_id, ConnectionState::Connecting);
        let (error, long) = match connect(index, &shared).await {
            Ok((connection, session, receiver)) => {
                login_backoff.reset();
                match receive(index, &shared, connection, session, receiver, &stop).await {
                    End::Stopped => break,
                    End::Lost { error, attached_for } => {
                        if attached_for >= HEALTHY_AFTER {
                            backoff.reset();
                        }
                        (error, false)
                    }
                }
            }
            Err(error) => {
                let long = error.wants_long_backoff();
                (error, long)
            }
        };
        let message = redact(&error.to_string(), &shared.secrets());
        let (state, delay) = if long {
            shared.metrics.login_refused(&client_id);
            (ConnectionState::LoginRefused, login_backoff.next_delay(jitter()))
        } else {
            (ConnectionState::Backoff, backoff.next_delay(jitter()))
        };
        if long {
            error!(client_id, error = %message, kind = error.kind(), retry_in_ms = delay.as_millis() as u64, "connection refused");
        } else {
            warn!(client_id, error = %message, kind = error.kind(), retry_in_ms = delay.as_millis() as u64, "connection lost or failed");
        }
        shared.status.update(index, |s| {
            s.state = state;
            s.last_error = Some(message.clone());
            s.in_flight = 0;
        });
        shared.metrics.set_state(&client_id, state);
        shared.metrics.reconnect(&client_id, error.kind());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => break,
        }
    }
    shared.status.update(index, |s| {
        s.state = ConnectionState::Closed;
        s.in_flight = 0;
    });
    shared.metrics.set_state(&client_id, ConnectionState::Closed);
    info!(client_id, "connection closed");
}

async fn within<T, E>(
    phase: &'static str,
    limit: Duration,
    fut: impl Future<Output = Result<T, E>>,
    map: impl FnOnce(E) -> Error,
) -> Result<T, Error> {
    match timeout(limit, fut).await {
        Ok(result) => result.map_err(map),
        Err(_) => Err(Error::Timeout { phase, seconds: limit.as_secs() }),
    }
}

/// One attempt: a fresh signature, TCP, TLS, SASL PLAIN and Open, a session, the receiver link.
async fn connect(index: usize, shared: &Shared) -> Result<(ConnectionHandle<()>, SessionHandle<()>, Receiver), Error> {
    let config = &shared.config;
    let client_id = &config.client_ids[index];
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let login = sign_login(&config.subscriber(index), &config.access_key, now_ms)?;
    let secrets = shared.secrets();
    let redacted = |text: String| redact(&redact(&text, &secrets), &[login.password.expose().as_str()]);

    let addr = format!("{}:{}", config.host, config.port);
    debug!(client_id, %addr, "connecting");
    let tcp =
        within("TCP connect", TCP_TIMEOUT, TcpStream::connect(addr.as_str()), |e| Error::Tcp { addr: addr.clone(), detail: e.to_string() })
            .await?;
    let _ = tcp.set_nodelay(true);
    let server_name = ServerName::try_from(config.host.clone())
        .map_err(|e| Error::Tls { host: config.host.clone(), detail: format!("not a valid server name: {e}") })?;
    let tls = within("TLS handshake", TLS_TIMEOUT, shared.tls.connect(server_name, tcp), |e| Error::Tls {
        host: config.host.clone(),
        detail: e.to_string(),
    })
    .await?;

    // The TLS stream is ours, so the AMQP layer runs plain over it ("amqp" scheme): that is the
    // platform's way (TLS first, no AMQP TLS header), the same as `alt_tls_establishment(true)`.
    // fe2o3-amqp advertises half of the value given to `idle_time_out` in the Open frame.
    let connection = within(
        "AMQP open",
        OPEN_TIMEOUT,
        Connection::builder()
            .container_id(client_id.as_str())
            .hostname(config.host.as_str())
            .scheme("amqp")
            .sasl_profile(SaslProfile::Plain { username: login.username.expose().clone(), password: login.password.expose().clone() })
            .idle_time_out(2 * config.idle_timeout.as_millis() as u32)
            .open_with_stream(tls),
        |e| open_error(e, &redacted),
    )
    .await;
    let mut connection = connection?;
    let mut session = match within("session begin", ATTACH_TIMEOUT, Session::begin(&mut connection), |e| {
        let peer = match &e {
            BeginError::ConnectionStopped(reason) => connection_peer_error(reason),
            BeginError::RemoteEndedWithError(error) => Some(error),
            _ => None,
        };
        match peer {
            Some(error) => condition_error(error, &redacted, Error::Session),
            None => Error::Session(redacted(e.to_string())),
        }
    })
    .await
    {
        Ok(session) => session,
        Err(e) => {
            let _ = timeout(CLOSE_TIMEOUT, connection.close()).await;
            return Err(e);
        }
    };
    let attached = within(
        "receiver attach",
        ATTACH_TIMEOUT,
        Receiver::builder()
            .name(format!("{client_id}-receiver"))
            .source(config.source_address.as_str())
            .credit_mode(CreditMode::Manual)
            .auto_accept(false)
            .attach(&mut session),
        |e| {
            let peer = match &e {
                ReceiverAttachError::SessionStopped(reason) => session_peer_error(reason),
                ReceiverAttachError::RemoteClosedWithError(error) => Some(error),
                _ => None,
            };
            match peer {
                Some(error) => condition_error(error, &redacted, Error::Attach),
                None => Error::Attach(redacted(e.to_string())),
            }
        },
    )
    .await;
    match attached {
        Ok(receiver) => Ok((connection, session, receiver)),
        Err(e) => {
            let _ = timeout(CLOSE_TIMEOUT, session.end()).await;
            let _ = timeout(CLOSE_TIMEOUT, connection.close()).await;
            Err(e)
        }
    }
}

fn open_error(e: OpenError, redacted: &dyn Fn(String) -> String) -> Error {
    match e {
        OpenError::SaslError { code, additional_data } => {
            let data = additional_data.map(|d| String::from_utf8_lossy(&d).into_owned()).unwrap_or_default();
            let outcome = format!("{code:?}").to_lowercase();
            let detail = if data.is_empty() { String::new() } else { format!(" ({data})") };
            Error::LoginRefused(redacted(format!(
                "the endpoint rejected the SASL PLAIN credentials (outcome `{outcome}`){detail}: check the AccessKey, \
                 the sign method, the instance id, the consumer group, and the clock"
            )))
        }
        OpenError::RemoteClosedWithError(error) => condition_error(&error, redacted, Error::Open),
        other => Error::Open(redacted(other.to_string())),
    }
}

/// An AMQP error from the peer, sorted by what it means for the next attempt: refused credentials
/// and limits wait the long backoff; anything else is reported as a failure of `phase`.
fn condition_error(error: &definitions::Error, redacted: &dyn Fn(String) -> String, phase: fn(String) -> Error) -> Error {
    let text = redacted(describe(error));
    match &error.condition {
        ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess) => Error::LoginRefused(text),
        ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded) => Error::Throttled(text),
        _ => phase(text),
    }
}

/// The error the peer closed the connection with, if it gave one.
fn connection_peer_error(reason: &ConnectionStopReason) -> Option<&definitions::Error> {
    match reason {
        ConnectionStopReason::RemoteClosedWithError(error) => Some(error),
        _ => None,
    }
}

/// The error the peer ended the session (or closed the connection) with, if it gave one.
fn session_peer_error(reason: &SessionStopReason) -> Option<&definitions::Error> {
    match reason {
        SessionStopReason::RemoteEndedWithError(error) => Some(error),
        SessionStopReason::ConnectionStopped(reason) => connection_peer_error(reason),
        _ => None,
    }
}

fn condition_name(condition: &ErrorCondition) -> String {
    match condition {
        ErrorCondition::AmqpError(e) => Symbol::from(e).0,
        ErrorCondition::ConnectionError(e) => Symbol::from(e).0,
        ErrorCondition::SessionError(e) => Symbol::from(e).0,
        ErrorCondition::LinkError(e) => Symbol::from(e).0,
        ErrorCondition::Custom(s) => s.0.clone(),
        // Reachable only when a crate in the build enables fe2o3-amqp's `transaction` feature.
        #[allow(unreachable_patterns)]
        other => format!("{other:?}"),
    }
}

fn recv_error(e: RecvError, redacted: &dyn Fn(String) -> String) -> Error {
    let peer = match &e {
        RecvError::LinkStateError(LinkStateError::RemoteDetachedWithError(error) | LinkStateError::RemoteClosedWithError(error)) => {
            Some(error)
        }
        RecvError::LinkStateError(LinkStateError::SessionStopped(reason)) => session_peer_error(reason),
        _ => None,
    };
    match peer {
        Some(error) => condition_error(error, redacted, |text| Error::Receive(format!("closed by the peer: {text}"))),
        None => Error::Receive(redacted(e.to_string())),
    }
}

fn describe(error: &definitions::Error) -> String {
    format!("{}: {}", condition_name(&error.condition), error.description.as_deref().unwrap_or("(no description)"))
}

/// Receives until the connection is lost or `stop`; then drains and closes.
async fn receive(
    index: usize,
    shared: &Arc<Shared>,
    mut connection: ConnectionHandle<()>,
    mut session: SessionHandle<()>,
    mut receiver: Receiver,
    stop: &CancellationToken,
) -> End {
    let config = &shared.config;
    let client_id = config.client_ids[index].clone();
    let credit = config.credit;
    let attached_at = Instant::now();
    let secrets = shared.secrets();
    let redacted = |text: String| redact(&text, &secrets);

    // Stops sink retries of this connection's deliveries at shutdown or when the connection is lost.
    let local_stop = stop.child_token();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Completion>();
    let mut in_flight: usize = 0;
    let mut credit_left: u32 = credit;
    let mut draining = false;
    let mut drained_at: Option<Instant> = None;

    if let Err(e) = receiver.set_credit(credit).await {
        return End::Lost { error: Error::Attach(format!("granting credit: {e}")), attached_for: Duration::ZERO };
    }
    shared.status.update(index, |s| {
        s.state = ConnectionState::Attached;
        s.last_error = None;
    });
    shared.metrics.set_state(&client_id, ConnectionState::Attached);
    info!(client_id, credit, idle_timeout_ms = config.idle_timeout.as_millis() as u64, "receiver attached");

    let shutdown_deadline = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(shutdown_deadline);

    let error = loop {
        // Draining with nothing in flight: wait a moment for deliveries already on the wire before
        // the credit stop reached the peer, then close.
        let quiet_until = if draining && in_flight == 0 {
            Some(*drained_at.get_or_insert_with(|| Instant::now() + DRAIN_QUIET))
        } else {
            drained_at = None;
            None
        };
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(quiet_until.unwrap_or_else(Instant::now)), if quiet_until.is_some() => {
                break None;
            }
            _ = stop.cancelled(), if !draining => {
                draining = true;
                shared.status.update(index, |s| s.state = ConnectionState::Draining);
                shared.metrics.set_state(&client_id, ConnectionState::Draining);
                info!(client_id, in_flight, "draining: no new credit, finishing what is in flight");
                shutdown_deadline.as_mut().reset(Instant::now() + config.shutdown_timeout);
                if let Err(e) = receiver.set_credit(0).await {
                    break Some(Error::Receive(format!("stopping credit: {e}")));
                }
                credit_left = 0;
            }
            _ = &mut shutdown_deadline => {
                warn!(client_id, in_flight, "shutdown timeout: closing with deliveries in flight (the platform redelivers them)");
                break None;
            }
            Some(done) = done_rx.recv() => {
                let mut batch = vec![done];
                while let Ok(more) = done_rx.try_recv() {
                    batch.push(more);
                }
                let mut failed = None;
                for done in batch {
                    in_flight -= 1;
                    if let Err(e) = settle(shared, &receiver, done).await {
                        failed = Some(e);
                        break;
                    }
                }
                if let Some(e) = failed {
                    break Some(e);
                }
                shared.status.update(index, |s| s.in_flight = in_flight);
            }
            received = receiver.recv::<Body<Value>>() => {
                let delivery = match received {
                    Ok(delivery) => delivery,
                    Err(e) => break Some(recv_error(e, &redacted)),
                };
                credit_left = credit_left.saturating_sub(1);
                shared.metrics.received.inc();
                let info = DeliveryInfo::from(&delivery);
                let message = IotMessage::from_amqp(delivery.into_message());
                let begin = shared.dedup.lock().expect("dedup lock").begin(&message.message_id);
                match begin {
                    Begin::Duplicate => {
                        shared.metrics.duplicates.inc();
                        debug!(client_id, message_id = %message.message_id, "duplicate acknowledged without a second delivery");
                        let done = Completion { info, message_id: message.message_id, sent_at_us: message.sent_at_us, accept: true };
                        if let Err(e) = settle(shared, &receiver, done).await {
                            break Some(e);
                        }
                    }
                    Begin::Pending(outcome) => {
                        shared.metrics.duplicates.inc();
                        in_flight += 1;
                        let done_tx = done_tx.clone();
                        tokio::spawn(async move {
                            // The copy with the sink decides: taken → acknowledge this one too.
                            let accept = outcome.await.unwrap_or(false);
                            let _ = done_tx.send(Completion { info, message_id: message.message_id, sent_at_us: message.sent_at_us, accept });
                        });
                    }
                    Begin::New => {
                        in_flight += 1;
                        let deadline = settle_deadline(Instant::now(), config.ack_window);
                        let shared = shared.clone();
                        let done_tx = done_tx.clone();
                        let stop = local_stop.clone();
                        let client_id = client_id.clone();
                        tokio::spawn(async move {
                            let accept = deliver(&shared, &client_id, &message, deadline, &stop).await;
                            let _ = done_tx.send(Completion { info, message_id: message.message_id, sent_at_us: message.sent_at_us, accept });
                        });
                    }
                }
                shared.status.update(index, |s| s.in_flight = in_flight);
            }
        }
        // Top the link up to `credit − in flight` once half of the credit is used (duplicates
        // settled on arrival count too), so unsettled deliveries never exceed `credit`.
        if !draining {
            let target = credit.saturating_sub(in_flight as u32);
            if target >= credit_left + credit.div_ceil(2) {
                if let Err(e) = receiver.set_credit(target).await {
                    break Some(Error::Receive(format!("granting credit: {e}")));
                }
                credit_left = target;
            }
        }
    };
    local_stop.cancel();
    let attached_for = attached_at.elapsed();
    match error {
        Some(error) => {
            // The connection is gone: whatever was in flight is redelivered by the platform.
            let _ = timeout(CLOSE_TIMEOUT, connection.close()).await;
            End::Lost { error, attached_for }
        }
        None => {
            info!(client_id, "drained: detaching and closing");
            shared.status.update(index, |s| s.state = ConnectionState::Closed);
            if let Err(e) = timeout(CLOSE_TIMEOUT, receiver.close())
                .await
                .map_err(|_| "timed out".to_string())
                .and_then(|r| r.map_err(|e| format!("{e:?}")))
            {
                debug!(client_id, error = %e, "detach");
            }
            let _ = timeout(CLOSE_TIMEOUT, session.end()).await;
            let _ = timeout(CLOSE_TIMEOUT, connection.close()).await;
            End::Stopped
        }
    }
}

/// Hands `message` to the sink, retrying inside the acknowledgement window; records the outcome in
/// the dedup window. Returns whether to acknowledge.
async fn deliver(shared: &Shared, client_id: &str, message: &IotMessage, deadline: Instant, stop: &CancellationToken) -> bool {
    let started = Instant::now();
    let metrics = &shared.metrics;
    let outcome = deliver_with_retry(&shared.sink, message, client_id, deadline, &shared.retry, stop, |e, attempt| {
        metrics.sink_errors.inc();
        warn!(client_id, message_id = %message.message_id, attempt, error = %e, "sink failed; retrying");
    })
    .await;
    let accept = match outcome {
        Final::Acknowledge(Taken::Delivered) => {
            metrics.sink_latency.observe(started.elapsed().as_secs_f64());
            true
        }
        Final::Acknowledge(Taken::Poison(reason)) => {
            metrics.poison.inc();
            error!(client_id, message_id = %message.message_id, topic = %message.topic, reason = %reason, "poison message: the sink refused it for good; acknowledged");
            true
        }
        Final::Release(reason) => {
            warn!(client_id, message_id = %message.message_id, reason = %reason, "releasing the message to the platform");
            false
        }
    };
    shared.dedup.lock().expect("dedup lock").finish(&message.message_id, accept);
    accept
}

/// Accepts or releases one delivery.
async fn settle(shared: &Shared, receiver: &Receiver, done: Completion) -> Result<(), Error> {
    if done.accept {
        receiver.accept(done.info).await.map_err(|e| Error::Settle(format!("accept {}: {e:?}", done.message_id)))?;
        shared.metrics.acknowledged.inc();
        if let Some(sent_at_us) = done.sent_at_us {
            let now_us = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
            if now_us >= sent_at_us {
                shared.metrics.ack_latency.observe((now_us - sent_at_us) as f64 / 1e6);
            }
        }
    } else {
        receiver.release(done.info).await.map_err(|e| Error::Settle(format!("release {}: {e:?}", done.message_id)))?;
        shared.metrics.released.inc();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp::types::{definitions::ConnectionError, sasl::SaslCode};

    use super::*;

    fn keep(text: String) -> String {
        text
    }

    #[test]
    fn refusals_are_sorted_by_condition() {
        let unauthorized = definitions::Error::new(AmqpError::UnauthorizedAccess, Some("bad signature".to_string()), None);
        let limit = definitions::Error::new(AmqpError::ResourceLimitExceeded, Some("64 clients".to_string()), None);
        let forced = definitions::Error::new(ConnectionError::ConnectionForced, Some("dropped".to_string()), None);
        let e = condition_error(&unauthorized, &keep, Error::Open);
        assert!(matches!(&e, Error::LoginRefused(t) if t == "amqp:unauthorized-access: bad signature"), "{e}");
        assert!(matches!(condition_error(&limit, &keep, Error::Attach), Error::Throttled(_)));
        let e = condition_error(&forced, &keep, Error::Receive);
        assert!(matches!(&e, Error::Receive(t) if t == "amqp:connection:forced: dropped"), "{e}");
        assert!(!e.wants_long_backoff());
    }

    #[test]
    fn a_failed_sasl_outcome_is_a_refused_login_without_the_password() {
        let password = "c2VjcmV0LXNpZ25hdHVyZQ==".to_string();
        let redacted = |text: String| redact(&text, &[password.as_str()]);
        let e = open_error(
            OpenError::SaslError { code: SaslCode::Auth, additional_data: Some(password.clone().into_bytes().into()) },
            &redacted,
        );
        assert!(e.wants_long_backoff());
        let text = e.to_string();
        assert!(text.contains("outcome `auth`") && !text.contains(&password), "{text}");
    }
}
