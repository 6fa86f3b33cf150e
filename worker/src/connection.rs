//! One connection, one client of the consumer group: connect (sign → TCP → TLS → SASL PLAIN and Open
//! with the idle-time-out → session → receiver), then receive → sink → settle until the connection
//! is lost or the worker stops; reconnect with jittered backoff inside the pod's attempt budget.
//!
//! Credit is managed by hand ([`CreditBook`]): at most `--credit` messages are unsettled at once,
//! SIGTERM stops granting it, and so does an open sink circuit (the platform then stacks the messages
//! instead of redelivering them in a loop). Credit is never withdrawn, only left to run out (see
//! [`crate::credit`]).

use std::{
    sync::Arc,
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
        primitives::{LazyValue, Symbol},
    },
};
use iotsub_aliyun::amqp::{SignedLogin, sign_login};
use rustls::pki_types::ServerName;
use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
    time::{Instant, timeout},
};
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{
    backoff::Backoff,
    breaker::BreakerState,
    credit::{CreditBook, Mode},
    dead_letter::Reason,
    dedup::Begin,
    delivery::{dead_letter, deliver},
    error::{Error, redact},
    message::IotMessage,
    shared::Shared,
    sink::retry::settle_deadline,
    status::ConnectionState,
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
/// While draining with nothing in flight but credit left with the peer (it had nothing to send):
/// wait this long for a transfer already on the wire before closing. One that arrives after we
/// detach goes back to the platform, which redelivers it. A drained link (no credit left) closes
/// at once.
const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// Removes the secrets from a text (held across awaits, hence `Sync`).
type Redact<'a> = dyn Fn(String) -> String + Sync + 'a;

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

/// An attached link and what belongs to it.
struct Attached {
    connection: ConnectionHandle<()>,
    session: SessionHandle<()>,
    receiver: Receiver,
}

/// Runs connection `index` until `stop`, then drains it.
pub async fn run(index: usize, shared: Arc<Shared>, stop: CancellationToken) {
    let config = shared.config.clone();
    let client_id = config.client_ids[index].clone();
    let mut backoff = Backoff::new(config.reconnect_backoff, Duration::from_secs(30));
    let mut login_backoff = Backoff::new(config.login_backoff, Duration::from_secs(300));
    loop {
        if !wait_for_budget(index, &shared, &stop).await {
            break;
        }
        shared.set_state(index, ConnectionState::Connecting, |s| s.attempts += 1);
        let (error, long) = match connect(index, &shared).await {
            Ok(attached) => {
                login_backoff.reset();
                match receive(index, &shared, attached, &stop).await {
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
        let unit = iotsub_common::jitter::unit();
        let (state, delay) = if long {
            (ConnectionState::LoginRefused, login_backoff.next_delay(unit))
        } else {
            (ConnectionState::Backoff, backoff.next_delay(unit))
        };
        let retry_in_ms = delay.as_millis() as u64;
        if long {
            shared.metrics.login_refused(&client_id);
            error!(client_id, error = %message, kind = error.kind(), retry_in_ms, "connection refused");
        } else {
            warn!(client_id, error = %message, kind = error.kind(), retry_in_ms, "connection lost or failed");
        }
        shared.set_state(index, state, |s| {
            s.last_error = Some(message.clone());
            s.in_flight = 0;
        });
        shared.metrics.reconnect(&client_id, error.kind());
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => break,
        }
    }
    shared.set_state(index, ConnectionState::Closed, |s| s.in_flight = 0);
    info!(client_id, "connection closed");
}

/// Takes one attempt from the pod's budget, waiting while it is used up. `false`: stopping.
async fn wait_for_budget(index: usize, shared: &Shared, stop: &CancellationToken) -> bool {
    loop {
        if stop.is_cancelled() {
            return false;
        }
        let taken = shared.attempts.lock().expect("attempt budget lock").take(Instant::now());
        let Err(wait) = taken else { return true };
        let client_id = &shared.config.client_ids[index];
        warn!(
            client_id,
            per_minute = shared.config.reconnect_attempts_per_minute,
            retry_in_ms = wait.as_millis() as u64,
            "the pod's connection attempts for this minute are used up; waiting"
        );
        shared.status.update(index, |s| s.last_error = Some("waiting for the pod's connection-attempt budget".into()));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return false,
        }
    }
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

/// One attempt: a fresh signature, TCP and TLS, SASL PLAIN and Open, a session, the receiver link.
async fn connect(index: usize, shared: &Shared) -> Result<Attached, Error> {
    let config = &shared.config;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let access_key = shared.credentials.current().await?;
    let login = sign_login(&config.subscriber(index), &access_key, now_ms)?;
    let secrets = shared.secrets();
    let redacted = |text: String| redact(&redact(&text, &secrets), &[login.password.expose().as_str()]);

    let tls = open_tls(shared).await?;
    let mut connection = open_amqp(index, shared, tls, &login, &redacted).await?;
    let mut session = match begin_session(&mut connection, &redacted).await {
        Ok(session) => session,
        Err(e) => {
            let _ = timeout(CLOSE_TIMEOUT, connection.close()).await;
            return Err(e);
        }
    };
    match attach_receiver(index, shared, &mut session, &redacted).await {
        Ok(receiver) => Ok(Attached { connection, session, receiver }),
        Err(e) => {
            let _ = timeout(CLOSE_TIMEOUT, session.end()).await;
            let _ = timeout(CLOSE_TIMEOUT, connection.close()).await;
            Err(e)
        }
    }
}

async fn open_tls(shared: &Shared) -> Result<TlsStream<TcpStream>, Error> {
    let config = &shared.config;
    let addr = format!("{}:{}", config.host, config.port);
    debug!(%addr, "connecting");
    let tcp =
        within("TCP connect", TCP_TIMEOUT, TcpStream::connect(addr.as_str()), |e| Error::Tcp { addr: addr.clone(), detail: e.to_string() })
            .await?;
    let _ = tcp.set_nodelay(true);
    let server_name = ServerName::try_from(config.host.clone())
        .map_err(|e| Error::Tls { host: config.host.clone(), detail: format!("not a valid server name: {e}") })?;
    within("TLS handshake", TLS_TIMEOUT, shared.tls.connector().connect(server_name, tcp), |e| Error::Tls {
        host: config.host.clone(),
        detail: e.to_string(),
    })
    .await
}

/// The TLS stream is ours, so the AMQP layer runs plain over it ("amqp" scheme): that is the
/// platform's way (TLS first, no AMQP TLS header), the same as `alt_tls_establishment(true)`.
/// fe2o3-amqp advertises half of the value given to `idle_time_out` in the Open frame.
async fn open_amqp(
    index: usize,
    shared: &Shared,
    tls: TlsStream<TcpStream>,
    login: &SignedLogin,
    redacted: &Redact<'_>,
) -> Result<ConnectionHandle<()>, Error> {
    let config = &shared.config;
    within(
        "AMQP open",
        OPEN_TIMEOUT,
        Connection::builder()
            .container_id(config.client_ids[index].as_str())
            .hostname(config.host.as_str())
            .scheme("amqp")
            .sasl_profile(SaslProfile::Plain { username: login.username.expose().clone(), password: login.password.expose().clone() })
            .idle_time_out(2 * config.idle_timeout.as_millis() as u32)
            .open_with_stream(tls),
        |e| open_error(e, redacted),
    )
    .await
}

async fn begin_session(connection: &mut ConnectionHandle<()>, redacted: &Redact<'_>) -> Result<SessionHandle<()>, Error> {
    within("session begin", ATTACH_TIMEOUT, Session::begin(connection), |e| peer_failure(&e, redacted, Error::Session)).await
}

async fn attach_receiver(index: usize, shared: &Shared, session: &mut SessionHandle<()>, redacted: &Redact<'_>) -> Result<Receiver, Error> {
    let config = &shared.config;
    within(
        "receiver attach",
        ATTACH_TIMEOUT,
        Receiver::builder()
            .name(format!("{}-receiver", config.client_ids[index]))
            .source(config.source_address.as_str())
            .credit_mode(CreditMode::Manual)
            .auto_accept(false)
            .attach(session),
        |e| peer_failure(&e, redacted, Error::Attach),
    )
    .await
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
        other => peer_failure(&other, redacted, Error::Open),
    }
}

/// An error of a connection phase that may carry the AMQP error the peer closed with.
trait PeerError: std::fmt::Display {
    fn peer(&self) -> Option<&definitions::Error>;
}

impl PeerError for OpenError {
    fn peer(&self) -> Option<&definitions::Error> {
        match self {
            OpenError::RemoteClosedWithError(error) => Some(error),
            _ => None,
        }
    }
}

impl PeerError for BeginError {
    fn peer(&self) -> Option<&definitions::Error> {
        match self {
            BeginError::ConnectionStopped(reason) => connection_peer_error(reason),
            BeginError::RemoteEndedWithError(error) => Some(error),
            _ => None,
        }
    }
}

impl PeerError for ReceiverAttachError {
    fn peer(&self) -> Option<&definitions::Error> {
        match self {
            ReceiverAttachError::SessionStopped(reason) => session_peer_error(reason),
            ReceiverAttachError::RemoteClosedWithError(error) => Some(error),
            _ => None,
        }
    }
}

impl PeerError for RecvError {
    fn peer(&self) -> Option<&definitions::Error> {
        match self {
            RecvError::LinkStateError(LinkStateError::RemoteDetachedWithError(error) | LinkStateError::RemoteClosedWithError(error)) => {
                Some(error)
            }
            RecvError::LinkStateError(LinkStateError::SessionStopped(reason)) => session_peer_error(reason),
            _ => None,
        }
    }
}

/// The one mapping of a failed phase: the peer's AMQP error when it gave one (sorted by
/// [`condition_error`]), else the local error; both redacted.
fn peer_failure(e: &dyn PeerError, redacted: &dyn Fn(String) -> String, phase: fn(String) -> Error) -> Error {
    match e.peer() {
        Some(error) => condition_error(error, redacted, phase),
        None => phase(redacted(e.to_string())),
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

fn describe(error: &definitions::Error) -> String {
    format!("{}: {}", condition_name(&error.condition), error.description.as_deref().unwrap_or("(no description)"))
}

/// The credit mode that follows the sink's circuit.
fn mode_for(state: BreakerState) -> Mode {
    match state {
        BreakerState::Ok => Mode::Flowing,
        BreakerState::HalfOpen => Mode::Probing,
        BreakerState::Open => Mode::Paused,
    }
}

/// The receive loop of one attached link.
struct Link<'a> {
    index: usize,
    shared: &'a Arc<Shared>,
    client_id: String,
    receiver: Receiver,
    book: CreditBook,
    done_tx: mpsc::UnboundedSender<Completion>,
    /// Stops sink retries of this link's deliveries at shutdown or when the connection is lost.
    local_stop: CancellationToken,
}

impl Link<'_> {
    async fn grant(&mut self, credit: Option<u32>) -> Result<(), Error> {
        match credit {
            Some(credit) => self.receiver.set_credit(credit).await.map_err(|e| Error::Receive(format!("granting credit {credit}: {e}"))),
            None => Ok(()),
        }
    }

    fn show_in_flight(&self) {
        let in_flight = self.book.in_flight() as usize;
        self.shared.status.update(self.index, |s| s.in_flight = in_flight);
    }

    async fn start_draining(&mut self) -> Result<(), Error> {
        self.shared.set_state(self.index, ConnectionState::Draining, |_| {});
        info!(client_id = self.client_id, in_flight = self.book.in_flight(), "draining: no new credit, finishing what is in flight");
        let credit = self.book.set_mode(Mode::Draining);
        self.grant(credit).await
    }

    async fn follow_sink(&mut self, state: BreakerState) -> Result<(), Error> {
        let credit = self.book.set_mode(mode_for(state));
        if credit.is_some() {
            debug!(client_id = self.client_id, sink = state.as_str(), credit, "credit follows the sink's circuit");
        }
        self.grant(credit).await
    }

    async fn completed(&mut self, first: Completion, rest: &mut mpsc::UnboundedReceiver<Completion>) -> Result<(), Error> {
        let mut done = Some(first);
        while let Some(completion) = done {
            settle(self.shared, &self.receiver, completion).await?;
            let credit = self.book.settled();
            self.grant(credit).await?;
            done = rest.try_recv().ok();
        }
        self.show_in_flight();
        Ok(())
    }

    async fn received(&mut self, received: Result<fe2o3_amqp::link::delivery::Delivery<Body<LazyValue>>, RecvError>) -> Result<(), Error> {
        let shared = self.shared;
        let (info, message) = match received {
            Ok(delivery) => {
                let tag = delivery.delivery_tag().to_vec();
                let (info, message) = delivery.into_parts();
                (info, IotMessage::from_amqp(message, &tag))
            }
            // What could not be decoded becomes a dead letter with what is known; the link stays up.
            Err(RecvError::MessageDecode(e)) => {
                self.book.received();
                shared.metrics.received.inc();
                let message = IotMessage::undecodable(e.info.delivery_tag());
                warn!(client_id = self.client_id, message_id = %message.message_id, error = %e.source, "a delivery could not be decoded");
                let detail = format!("the delivery could not be decoded as an AMQP message: {}", e.source);
                let (shared, client_id, done_tx) = (shared.clone(), self.client_id.clone(), self.done_tx.clone());
                tokio::spawn(async move {
                    let accept = dead_letter(&shared, &client_id, &message, Reason::Undecodable, detail, None, 1).await;
                    let _ = done_tx.send(Completion { info: e.info, message_id: message.message_id, sent_at_us: None, accept });
                });
                self.show_in_flight();
                return Ok(());
            }
            Err(e) => {
                return Err(peer_failure(&e, &|text| redact(&text, &shared.secrets()), |text| {
                    Error::Receive(format!("closed by the peer: {text}"))
                }));
            }
        };
        self.book.received();
        shared.metrics.received.inc();
        if let Some(error) = message.body_error.clone() {
            // The properties were read, the body was not: a dead letter with what could be read.
            warn!(client_id = self.client_id, message_id = %message.message_id, error = %error, "a message body could not be decoded");
            let (shared, client_id, done_tx) = (shared.clone(), self.client_id.clone(), self.done_tx.clone());
            tokio::spawn(async move {
                let accept = dead_letter(&shared, &client_id, &message, Reason::Undecodable, error, None, message.delivery_count + 1).await;
                let _ = done_tx.send(Completion { info, message_id: message.message_id, sent_at_us: None, accept });
            });
            self.show_in_flight();
            return Ok(());
        }
        let done = |accept: bool| Completion {
            info: info.clone(),
            message_id: message.message_id.clone(),
            sent_at_us: message.sent_at_us,
            accept,
        };
        if !self.book.admits() {
            // On the wire before the credit stop reached the peer: back to the platform untouched.
            debug!(client_id = self.client_id, message_id = %message.message_id, "released: the sink's circuit is open");
            let completion = done(false);
            settle(shared, &self.receiver, completion).await?;
            let credit = self.book.settled();
            return self.grant(credit).await;
        }
        let begin = shared.dedup.lock().expect("dedup lock").begin(&message.message_id);
        match begin {
            Begin::Duplicate => {
                shared.metrics.duplicates.inc();
                debug!(client_id = self.client_id, message_id = %message.message_id, "duplicate acknowledged without a second delivery");
                settle(shared, &self.receiver, done(true)).await?;
                let credit = self.book.settled();
                self.grant(credit).await?;
            }
            Begin::Pending(outcome) => {
                shared.metrics.duplicates.inc();
                let done_tx = self.done_tx.clone();
                let mut completion = done(false);
                tokio::spawn(async move {
                    // The copy with the sink decides: taken → acknowledge this one too.
                    completion.accept = outcome.await.unwrap_or(false);
                    let _ = done_tx.send(completion);
                });
            }
            Begin::New => {
                let deadline = settle_deadline(Instant::now(), shared.config.ack_window);
                let (shared, done_tx, stop, client_id) =
                    (shared.clone(), self.done_tx.clone(), self.local_stop.clone(), self.client_id.clone());
                let mut completion = done(false);
                tokio::spawn(async move {
                    completion.accept = deliver(&shared, &client_id, &message, deadline, &stop).await;
                    let _ = done_tx.send(completion);
                });
            }
        }
        self.show_in_flight();
        Ok(())
    }
}

/// Receives until the connection is lost or `stop`; then drains and closes.
async fn receive(index: usize, shared: &Arc<Shared>, attached: Attached, stop: &CancellationToken) -> End {
    let Attached { mut connection, mut session, receiver } = attached;
    let config = &shared.config;
    let attached_at = Instant::now();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Completion>();
    let mut sink_state: watch::Receiver<BreakerState> = shared.sink_health.subscribe();
    let mode = mode_for(*sink_state.borrow_and_update());
    let mut link = Link {
        index,
        shared,
        client_id: config.client_ids[index].clone(),
        receiver,
        book: CreditBook::new(config.credit, mode),
        done_tx,
        local_stop: stop.child_token(),
    };
    let credit = link.book.initial();
    if let Err(e) = link.grant(credit).await {
        return End::Lost { error: Error::Attach(e.to_string()), attached_for: Duration::ZERO };
    }
    shared.set_state(index, ConnectionState::Attached, |s| s.last_error = None);
    info!(
        client_id = link.client_id,
        credit = config.credit,
        idle_timeout_ms = config.idle_timeout.as_millis() as u64,
        "receiver attached"
    );

    let shutdown_deadline = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(shutdown_deadline);
    let mut draining = false;
    let mut drained_at: Option<Instant> = None;

    let error = loop {
        // Draining: close once the peer can send nothing more; with credit left but nothing in
        // flight, after a quiet moment.
        if draining && link.book.is_drained() {
            break None;
        }
        let quiet_until = if draining && link.book.in_flight() == 0 {
            Some(*drained_at.get_or_insert_with(|| Instant::now() + DRAIN_QUIET))
        } else {
            drained_at = None;
            None
        };
        let step = tokio::select! {
            biased;
            () = tokio::time::sleep_until(quiet_until.unwrap_or_else(Instant::now)), if quiet_until.is_some() => break None,
            () = stop.cancelled(), if !draining => {
                draining = true;
                shutdown_deadline.as_mut().reset(Instant::now() + config.shutdown_timeout);
                link.start_draining().await
            }
            () = &mut shutdown_deadline => {
                warn!(client_id = link.client_id, in_flight = link.book.in_flight(), "shutdown timeout: closing with deliveries in flight (the platform redelivers them)");
                break None;
            }
            Some(done) = done_rx.recv() => link.completed(done, &mut done_rx).await,
            Ok(()) = sink_state.changed() => {
                let state = *sink_state.borrow_and_update();
                link.follow_sink(state).await
            }
            received = link.receiver.recv::<Body<LazyValue>>() => link.received(received).await,
        };
        if let Err(e) = step {
            break Some(e);
        }
    };
    link.local_stop.cancel();
    let attached_for = attached_at.elapsed();
    match error {
        Some(error) => {
            // The connection is gone: whatever was in flight is redelivered by the platform.
            let _ = timeout(CLOSE_TIMEOUT, connection.close()).await;
            End::Lost { error, attached_for }
        }
        None => {
            info!(client_id = link.client_id, "drained: detaching and closing");
            shared.set_state(index, ConnectionState::Closed, |_| {});
            if let Err(e) = timeout(CLOSE_TIMEOUT, link.receiver.close())
                .await
                .map_err(|_| "timed out".to_string())
                .and_then(|r| r.map_err(|e| format!("{e:?}")))
            {
                debug!(client_id = link.client_id, error = %e, "detach");
            }
            let _ = timeout(CLOSE_TIMEOUT, session.end()).await;
            let _ = timeout(CLOSE_TIMEOUT, connection.close()).await;
            End::Stopped
        }
    }
}

/// Accepts or releases one delivery.
async fn settle(shared: &Shared, receiver: &Receiver, done: Completion) -> Result<(), Error> {
    if done.accept {
        receiver.accept(done.info).await.map_err(|e| Error::Settle(format!("accept {}: {e:?}", done.message_id)))?;
        shared.metrics.acknowledged.inc();
        if let Some(sent_at_us) = done.sent_at_us {
            let now_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
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
    fn every_phase_maps_the_peers_error_the_same_way() {
        let limit = definitions::Error::new(AmqpError::ResourceLimitExceeded, Some("64 clients".to_string()), None);
        let open = OpenError::RemoteClosedWithError(limit.clone());
        let begin = BeginError::RemoteEndedWithError(limit.clone());
        let attach = ReceiverAttachError::RemoteClosedWithError(limit.clone());
        let recv = RecvError::LinkStateError(LinkStateError::RemoteDetachedWithError(limit));
        for e in [&open as &dyn PeerError, &begin, &attach, &recv] {
            let mapped = peer_failure(e, &keep, Error::Receive);
            assert!(matches!(&mapped, Error::Throttled(t) if t == "amqp:resource-limit-exceeded: 64 clients"), "{mapped}");
        }
        let local = peer_failure(&RecvError::TransferLimitExceeded, &keep, Error::Receive);
        assert!(matches!(local, Error::Receive(_)));
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

    #[test]
    fn credit_follows_the_sinks_circuit() {
        assert_eq!(mode_for(BreakerState::Ok), Mode::Flowing);
        assert_eq!(mode_for(BreakerState::HalfOpen), Mode::Probing);
        assert_eq!(mode_for(BreakerState::Open), Mode::Paused);
    }
}
