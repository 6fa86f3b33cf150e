//! The AMQP 1.0 endpoint: plain TLS on connect, SASL PLAIN, then the platform's connection rules,
//! then pushes to the one receiver link a connection may have.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use fe2o3_amqp::{
    Sender,
    acceptor::{ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerConnectionHandle, ListenerSessionHandle, SessionAcceptor},
    link::{SendError, delivery::DeliveryFut},
};
use fe2o3_amqp_types::{
    definitions::{self, AmqpError, ConnectionError, Role},
    messaging::{Outcome, Source, Target},
    performatives::Attach,
};
use iotsub_aliyun::amqp::Username;
use tokio::{
    net::{TcpListener, TcpStream},
    time::{Instant, timeout, timeout_at},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::{
    admin::Stage,
    groups::{ConnId, Delivery, Group, NewClient, Settlement},
    message::Outgoing,
    open_frame::OpenObserver,
    platform::{Platform, refusal},
    sasl::{PlatformSasl, SaslDecision},
};

pub async fn serve(listener: TcpListener, tls: TlsAcceptor, platform: Arc<Platform>) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(handle_connection(tcp, remote, tls.clone(), platform.clone()));
    }
}

fn amqp_error(condition: impl Into<definitions::ErrorCondition>, description: &str) -> definitions::Error {
    definitions::Error::new(condition, Some(description.to_owned()), None)
}

/// One TCP connection, from TLS to close.
async fn handle_connection(tcp: TcpStream, remote: SocketAddr, tls: TlsAcceptor, platform: Arc<Platform>) {
    let limits = platform.limits.clone();
    // The platform's 15 s covers authentication and the receiver link alike.
    let deadline = Instant::now() + Duration::from_millis(limits.link_deadline_ms);
    let stream = match timeout_at(deadline, tls.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return tracing::info!(%remote, error = %e, "TLS handshake failed"),
        Err(_) => return tracing::info!(%remote, "TLS handshake did not finish before the deadline"),
    };
    let cut = CancellationToken::new();
    let _cut_on_exit = cut.clone().drop_guard();
    let (stream, remote_open) = OpenObserver::new(stream, cut.clone());
    let sasl = PlatformSasl::new(platform.clone(), remote);
    let decision = sasl.decision.clone();
    let acceptor = ConnectionAcceptor::builder()
        .container_id("iotsub-emulator")
        .idle_time_out(limits.server_idle_timeout_ms)
        .sasl_acceptor(sasl)
        .build();
    let accepted = timeout_at(deadline, acceptor.accept(stream)).await;
    let login = match decision.get() {
        Some(SaslDecision::Accepted(login)) => login.clone(),
        Some(SaslDecision::Refused { username, reason }) => {
            return platform.refuse(refusal(remote, username.as_ref(), Stage::Sasl, "sasl:auth", reason.clone()));
        }
        None => return tracing::info!(%remote, "connection closed before SASL PLAIN completed"),
    };
    let mut connection = match accepted {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => return tracing::info!(%remote, client_id = %login.username.client_id, error = %e, "AMQP open failed"),
        Err(_) => return tracing::info!(%remote, client_id = %login.username.client_id, "AMQP open did not finish before the deadline"),
    };

    let username = &login.username;
    let refuse_open = |condition: &str, reason: String| platform.refuse(refusal(remote, Some(username), Stage::Open, condition, reason));
    let idle = remote_open.get().and_then(|open| open.idle_time_out_ms);
    if let Some(reason) = idle_time_out_problem(idle, limits.idle_timeout_min_ms, limits.idle_timeout_max_ms) {
        refuse_open("amqp:invalid-field", reason.clone());
        return close_and_cut(&mut connection, amqp_error(AmqpError::InvalidField, &reason), &cut).await;
    }
    if login.attempts_last_minute > limits.connection_attempts_per_minute {
        let reason = format!(
            "too many connection attempts for consumer group {}: {} in the last minute, the limit is {}",
            username.consumer_group_id, login.attempts_last_minute, limits.connection_attempts_per_minute
        );
        refuse_open("amqp:resource-limit-exceeded", reason.clone());
        return close_and_cut(&mut connection, amqp_error(AmqpError::ResourceLimitExceeded, &reason), &cut).await;
    }
    let instance_id = username.instance_id.clone().unwrap_or_default();
    let Some(_instance_slot) = platform.open_instance_connection(&instance_id) else {
        let reason = format!("instance `{instance_id}` has {} connections, the limit", limits.connection_cap_per_instance);
        refuse_open("amqp:resource-limit-exceeded", reason.clone());
        return close_and_cut(&mut connection, amqp_error(AmqpError::ResourceLimitExceeded, &reason), &cut).await;
    };
    let conn = platform.next_conn_id();
    let group = login.group.clone();
    let dropped = match group.register(NewClient { conn, client_id: username.client_id.clone(), remote, idle_time_out_ms: idle }) {
        Ok(token) => token,
        Err(_) => {
            let reason =
                format!("consumer group {} already has {} clients, the limit", username.consumer_group_id, limits.client_cap_per_group);
            refuse_open("amqp:resource-limit-exceeded", reason.clone());
            return close_and_cut(&mut connection, amqp_error(AmqpError::ResourceLimitExceeded, &reason), &cut).await;
        }
    };
    let registration = Registration { group: group.clone(), conn };

    let outcome = run_client(&mut connection, &platform, &registration, username, remote, deadline, dropped, &cut).await;
    match &outcome {
        ClientEnd::Refused { condition, reason } => {
            platform.refuse(refusal(remote, Some(username), Stage::Link, condition, reason.clone()));
        }
        ClientEnd::Gone(why) => {
            tracing::info!(%remote, client_id = %username.client_id, group = %username.consumer_group_id, why = %why, "client disconnected")
        }
        ClientEnd::Closed => {}
    }
    match outcome {
        ClientEnd::Refused { condition, reason } => {
            let condition: definitions::ErrorCondition =
                if condition == "amqp:connection:forced" { ConnectionError::ConnectionForced.into() } else { AmqpError::NotAllowed.into() };
            close_and_cut(&mut connection, amqp_error(condition, &reason), &cut).await;
        }
        ClientEnd::Gone(_) => {
            let _ = timeout(CLOSE_GRACE, connection.close()).await;
            cut.cancel();
        }
        ClientEnd::Closed => {}
    }
    drop(registration);
}

/// How long a peer gets to answer our Close before the socket is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Sends Close with the error, gives the peer a moment to answer, then drops the socket: a refused
/// client must see the reason, and must not be left hanging on a half-closed connection.
async fn close_and_cut(connection: &mut ListenerConnectionHandle, error: definitions::Error, cut: &CancellationToken) {
    let _ = timeout(CLOSE_GRACE, connection.close_with_error(error)).await;
    cut.cancel();
}

/// Unregisters the client from its group when the connection ends, however it ends.
struct Registration {
    group: Arc<Group>,
    conn: ConnId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.group.unregister(self.conn);
    }
}

enum ClientEnd {
    Refused {
        condition: &'static str,
        reason: String,
    },
    Gone(String),
    /// Already closed, with the reason recorded.
    Closed,
}

/// The idle-time-out rule, or `None` when the Open frame obeys it.
pub fn idle_time_out_problem(idle: Option<u32>, min: u32, max: u32) -> Option<String> {
    match idle {
        None => Some(format!("the Open frame must carry an idle-time-out between {min} and {max} ms; it carried none")),
        Some(ms) if ms < min || ms > max => Some(format!("idle-time-out {ms} ms is outside {min}..{max} ms")),
        Some(_) => None,
    }
}

async fn run_client(
    connection: &mut ListenerConnectionHandle,
    platform: &Arc<Platform>,
    registration: &Registration,
    username: &Username,
    remote: SocketAddr,
    deadline: Instant,
    dropped: CancellationToken,
    cut: &CancellationToken,
) -> ClientEnd {
    let deadline_ms = platform.limits.link_deadline_ms;
    let no_link = || ClientEnd::Refused {
        condition: "amqp:connection:forced",
        reason: format!("no receiver link attached within {deadline_ms} ms of connecting"),
    };
    let link_acceptor = LinkAcceptor::new();
    // A client may begin several sessions before it attaches its receiver: Qpid JMS (the platform's
    // Java sample) begins a connection-level session first and attaches the consumer in a second one.
    // Every session is watched for the first receiver link; the others refuse links from then on.
    let (found_tx, mut found_rx) = tokio::sync::mpsc::unbounded_channel::<(ListenerSessionHandle, Option<Attach>)>();
    let watch = |mut session: ListenerSessionHandle, tx: tokio::sync::mpsc::UnboundedSender<(ListenerSessionHandle, Option<Attach>)>| {
        tokio::spawn(async move {
            let attach = session.next_incoming_attach().await;
            let _ = tx.send((session, attach));
        });
    };
    let mut sessions = 0usize;
    let mut max_message_size = None;
    let (mut session, mut sender) = loop {
        tokio::select! {
            incoming = connection.next_incoming_session() => match incoming {
                Some(incoming) => match timeout_at(deadline, SessionAcceptor::new().accept_incoming_session(incoming, connection)).await {
                    Ok(Ok(session)) => {
                        sessions += 1;
                        watch(session, found_tx.clone());
                    }
                    Ok(Err(e)) => return ClientEnd::Gone(format!("session not begun: {e}")),
                    Err(_) => return no_link(),
                },
                None => return ClientEnd::Gone("connection closed before a link attached".into()),
            },
            Some((mut session, attach)) = found_rx.recv() => match attach {
                None => {
                    sessions -= 1;
                    if sessions == 0 {
                        return ClientEnd::Gone("session ended before a link attached".into());
                    }
                }
                Some(mut attach) if attach.role == Role::Receiver => {
                    // Recorded, not obeyed: the sender would refuse a larger message locally, and a
                    // client must be able to meet one (the platform documents no such limit).
                    max_message_size = attach.max_message_size.take().filter(|&size| size > 0);
                    match link_acceptor.accept_incoming_attach(attach, &mut session).await {
                    Ok(LinkEndpoint::Sender(sender)) => break (session, sender),
                    Ok(LinkEndpoint::Receiver(_)) => unreachable!("a remote receiver attaches our sender"),
                    Err(e) => return ClientEnd::Gone(format!("link attach failed: {e}")),
                }},
                Some(attach) => {
                    refuse_link(&link_acceptor, attach, &mut session, platform, username, remote).await;
                    watch(session, found_tx.clone());
                }
            },
            _ = tokio::time::sleep_until(deadline) => return no_link(),
        }
    };
    drop(found_tx);
    {
        let (platform, username) = (platform.clone(), username.clone());
        tokio::spawn(async move {
            let acceptor = LinkAcceptor::new();
            while let Some((mut other, attach)) = found_rx.recv().await {
                if let Some(attach) = attach {
                    refuse_link(&acceptor, attach, &mut other, &platform, &username, remote).await;
                    tokio::spawn(refuse_all_links(other, platform.clone(), username.clone(), remote));
                }
            }
        });
    }

    let group = &registration.group;
    group.attach(registration.conn, max_message_size);
    tracing::info!(%remote, client_id = %username.client_id, group = %username.consumer_group_id, "client connected");
    let ack_timeout = Duration::from_millis(platform.limits.ack_timeout_ms);
    let deliver = deliver(&mut sender, group, registration.conn, ack_timeout);
    tokio::pin!(deliver);
    loop {
        tokio::select! {
            why = &mut deliver => return ClientEnd::Gone(why),
            attach = session.next_incoming_attach() => match attach {
                Some(attach) => refuse_link(&link_acceptor, attach, &mut session, platform, username, remote).await,
                None => return ClientEnd::Gone("session ended".into()),
            },
            incoming = connection.next_incoming_session() => match incoming {
                Some(incoming) => match SessionAcceptor::new().accept_incoming_session(incoming, connection).await {
                    Ok(extra) => {
                        tokio::spawn(refuse_all_links(extra, platform.clone(), username.clone(), remote));
                    }
                    Err(e) => return ClientEnd::Gone(format!("extra session failed: {e}")),
                },
                None => return ClientEnd::Gone("connection closed by the client".into()),
            },
            _ = dropped.cancelled() => {
                // Close while the link and session still exist: dropping them first would detach the
                // link (closed) ahead of the Close, and a client such as Proton would then reconnect
                // without its receiver.
                let reason = "connection dropped by the emulator (drop-connections fault)";
                platform.refuse(refusal(remote, Some(username), Stage::Link, "amqp:connection:forced", reason.into()));
                close_and_cut(connection, amqp_error(ConnectionError::ConnectionForced, reason), cut).await;
                return ClientEnd::Closed;
            }
        }
    }
}

async fn refuse_all_links(mut session: ListenerSessionHandle, platform: Arc<Platform>, username: Username, remote: SocketAddr) {
    let acceptor = LinkAcceptor::new();
    while let Some(attach) = session.next_incoming_attach().await {
        refuse_link(&acceptor, attach, &mut session, &platform, &username, remote).await;
    }
}

/// Attaches then detaches the link with the reason: the way AMQP refuses a link.
async fn refuse_link(
    acceptor: &LinkAcceptor<fn(Source) -> Option<Source>, fn(Target) -> Option<Target>>,
    attach: Attach,
    session: &mut ListenerSessionHandle,
    platform: &Platform,
    username: &Username,
    remote: SocketAddr,
) {
    let reason = match attach.role {
        Role::Sender => "sender links are not allowed: messages only flow from the platform to the client",
        Role::Receiver => "only one receiver link is allowed per connection",
    };
    platform.refuse(refusal(remote, Some(username), Stage::Link, "amqp:not-allowed", reason.into()));
    let error = amqp_error(AmqpError::NotAllowed, reason);
    let closed = match acceptor.accept_incoming_attach(attach, session).await {
        // A peer that never answers the detach must not stall the connection.
        Ok(LinkEndpoint::Sender(link)) => {
            timeout(CLOSE_GRACE, link.close_with_error(error)).await.ok().and_then(|r| r.err()).map(|e| e.to_string())
        }
        Ok(LinkEndpoint::Receiver(link)) => {
            timeout(CLOSE_GRACE, link.close_with_error(error)).await.ok().and_then(|r| r.err()).map(|e| e.to_string())
        }
        Err(e) => Some(e.to_string()),
    };
    if let Some(e) = closed {
        tracing::debug!(%remote, error = %e, "refused link did not close cleanly");
    }
}

/// Gives a delivery back to the group unless it was sent.
struct Held<'a> {
    group: &'a Group,
    delivery: Option<Delivery>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(delivery) = self.delivery.take() {
            self.group.give_back(delivery);
        }
    }
}

/// How long a message waits for a client's link credit before it goes back to the group.
const CREDIT_WAIT: Duration = Duration::from_millis(100);
/// How long a client that granted no credit is left out before it is offered a message again.
/// Short at first (a busy client's credit comes back soon), doubling up to a second.
const NO_CREDIT_PAUSE: (Duration, Duration) = (Duration::from_millis(20), Duration::from_secs(1));

/// Pushes the group's messages to this client's link, one at a time as credit allows, and watches
/// each outcome within the acknowledgement timeout. Returns why it stopped.
///
/// fe2o3 does not show a sender its link credit, so a client is offered a message and the message
/// goes back to the group when no credit comes within [`CREDIT_WAIT`]; the client is then left out
/// for a while. A client that grants no credit (an idle consumer, a worker draining on SIGTERM)
/// thus never holds a message that others could take.
async fn deliver(sender: &mut Sender, group: &Arc<Group>, conn: ConnId, ack_timeout: Duration) -> String {
    let mut pause = NO_CREDIT_PAUSE.0;
    loop {
        let Some(delivery) = group.next_delivery(conn).await else {
            return "unregistered".into();
        };
        let mut held = Held { group, delivery: Some(delivery) };
        let message = held.delivery.as_ref().expect("just set").message.to_amqp();
        // `send_batchable` is cancel-safe: given up while waiting for credit, nothing was sent.
        let Ok(sent) = timeout(CREDIT_WAIT, send(sender, message)).await else {
            drop(held); // back to the group, at the front
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(NO_CREDIT_PAUSE.1);
            continue;
        };
        pause = NO_CREDIT_PAUSE.0;
        match sent {
            Ok(outcome) => {
                let delivery = held.delivery.take().expect("still held");
                group.sent(conn);
                let group = group.clone();
                let pushed_at = Instant::now();
                tokio::spawn(async move {
                    let settlement = match timeout(ack_timeout, outcome).await {
                        Ok(Ok(Outcome::Accepted(_))) => Settlement::Accepted(pushed_at.elapsed()),
                        Ok(Ok(_)) => Settlement::Refused,
                        Ok(Err(_)) => Settlement::Disconnected,
                        Err(_) => Settlement::TimedOut,
                    };
                    group.settle(conn, delivery, settlement);
                });
            }
            Err(e) => return format!("link closed: {e}"),
        }
    }
}

/// One transfer, whatever the body's type.
async fn send(sender: &mut Sender, message: Outgoing) -> Result<DeliveryFut<Result<Outcome, SendError>>, SendError> {
    match message {
        Outgoing::Data(m) => sender.send_batchable(m).await,
        Outgoing::Value(m) => sender.send_batchable(m).await,
        Outgoing::Sequence(m) => sender.send_batchable(m).await,
        Outgoing::Undecodable(m) => sender.send_batchable(m).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_time_out_rule() {
        assert!(idle_time_out_problem(Some(60_000), 30_000, 300_000).is_none());
        assert!(idle_time_out_problem(Some(30_000), 30_000, 300_000).is_none());
        assert!(idle_time_out_problem(None, 30_000, 300_000).unwrap().contains("carried none"));
        assert!(idle_time_out_problem(Some(10_000), 30_000, 300_000).unwrap().contains("10000 ms is outside 30000..300000"));
        assert!(idle_time_out_problem(Some(300_001), 30_000, 300_000).is_some());
    }
}
