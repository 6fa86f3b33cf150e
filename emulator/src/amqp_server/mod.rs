//! The AMQP 1.0 endpoint: plain TLS on connect, SASL PLAIN, then the platform's connection rules,
//! then pushes to the one receiver link a connection may have.
//!
//! One connection's steps, each a function: [`tls_handshake`], [`open`] (SASL and the AMQP Open),
//! [`admission::admit`] (the platform's rules), [`links::await_receiver`], [`serve_client`],
//! [`finish`].

mod admission;
mod delivery;
mod links;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use fe2o3_amqp::{
    Sender,
    acceptor::{ConnectionAcceptor, ListenerConnectionHandle, ListenerSessionHandle, SessionAcceptor},
};
use fe2o3_amqp_types::definitions;
use iotsub_aliyun::amqp::Username;
use tokio::{
    net::{TcpListener, TcpStream},
    time::{Instant, timeout, timeout_at},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

use self::admission::{Admitted, Condition};
use crate::{
    admin::Stage,
    groups::{ConnId, Group},
    open_frame::OpenObserver,
    platform::{Login, Platform, refusal},
    sasl::{PlatformSasl, SaslDecision},
    wire_clock::WireClock,
};

pub async fn serve(listener: TcpListener, tls: TlsAcceptor, platform: Arc<Platform>) {
    loop {
        let (tcp, remote) = iotsub_common::net::accept(&listener).await;
        tokio::spawn(handle_connection(tcp, remote, tls.clone(), platform.clone()));
    }
}

fn amqp_error(condition: impl Into<definitions::ErrorCondition>, description: &str) -> definitions::Error {
    definitions::Error::new(condition, Some(description.to_owned()), None)
}

/// Who is on the other end of an authenticated connection: what refusals and logs name.
#[derive(Clone)]
struct Peer {
    platform: Arc<Platform>,
    username: Username,
    remote: SocketAddr,
}

impl Peer {
    fn refuse(&self, stage: Stage, condition: Condition, reason: String) {
        self.platform.refuse(refusal(self.remote, Some(&self.username), stage, condition.as_str(), reason));
    }
}

/// One TCP connection, from TLS to close.
async fn handle_connection(tcp: TcpStream, remote: SocketAddr, tls: TlsAcceptor, platform: Arc<Platform>) {
    // The platform's 15 s covers authentication and the receiver link alike.
    let deadline = Instant::now() + Duration::from_millis(platform.limits.link_deadline_ms);
    let Some(stream) = tls_handshake(tcp, remote, &tls, deadline).await else { return };
    let cut = CancellationToken::new();
    let _cut_on_exit = cut.clone().drop_guard();
    let Some(Opened { mut connection, login, idle_time_out_ms, clock }) = open(stream, remote, &platform, deadline, &cut).await else {
        return;
    };
    let peer = Peer { platform: platform.clone(), username: login.username.clone(), remote };
    let admitted = match admission::admit(&platform, &login, remote, idle_time_out_ms) {
        Ok(admitted) => admitted,
        Err(refused) => {
            peer.refuse(Stage::Open, refused.condition, refused.reason.clone());
            return close_and_cut(&mut connection, amqp_error(refused.condition, &refused.reason), &cut).await;
        }
    };
    let client = AdmittedClient { peer, admitted, deadline, cut, clock };
    let end = run_client(&mut connection, &client).await;
    finish(&mut connection, &client, end).await;
}

/// TLS from the first byte (no AMQP TLS upgrade), within the connection's deadline.
async fn tls_handshake(tcp: TcpStream, remote: SocketAddr, tls: &TlsAcceptor, deadline: Instant) -> Option<TlsStream<TcpStream>> {
    match timeout_at(deadline, tls.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::info!(%remote, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(%remote, "TLS handshake did not finish before the deadline");
            None
        }
    }
}

/// An AMQP connection past SASL and Open.
struct Opened {
    connection: ListenerConnectionHandle,
    login: Login,
    /// What the client's Open frame carried.
    idle_time_out_ms: Option<u32>,
    /// The wire times of its transfers and dispositions.
    clock: Arc<WireClock>,
}

/// SASL PLAIN against the platform's accounts, then the AMQP Open exchange. A refused login is
/// recorded; anything else that ends the connection here is only logged.
async fn open(
    stream: TlsStream<TcpStream>,
    remote: SocketAddr,
    platform: &Arc<Platform>,
    deadline: Instant,
    cut: &CancellationToken,
) -> Option<Opened> {
    let clock = Arc::new(WireClock::default());
    let (stream, remote_open) = OpenObserver::new(stream, cut.clone(), clock.clone());
    let sasl = PlatformSasl::new(platform.clone(), remote);
    let decision = sasl.decision.clone();
    let acceptor = ConnectionAcceptor::builder()
        .container_id("iotsub-emulator")
        .idle_time_out(platform.limits.server_idle_timeout_ms)
        .sasl_acceptor(sasl)
        .build();
    let accepted = timeout_at(deadline, acceptor.accept(stream)).await;
    let login = match decision.get() {
        Some(SaslDecision::Accepted(login)) => login.clone(),
        Some(SaslDecision::Refused { username, reason }) => {
            platform.refuse(refusal(remote, username.as_ref(), Stage::Sasl, "sasl:auth", reason.clone()));
            return None;
        }
        None => {
            tracing::info!(%remote, "connection closed before SASL PLAIN completed");
            return None;
        }
    };
    let client_id = &login.username.client_id;
    match accepted {
        Ok(Ok(connection)) => {
            let idle_time_out_ms = remote_open.get().and_then(|open| open.idle_time_out_ms);
            Some(Opened { connection, login, idle_time_out_ms, clock })
        }
        Ok(Err(e)) => {
            tracing::info!(%remote, %client_id, error = %e, "AMQP open failed");
            None
        }
        Err(_) => {
            tracing::info!(%remote, %client_id, "AMQP open did not finish before the deadline");
            None
        }
    }
}

/// A client the platform's rules let in, counted in its group until dropped.
struct AdmittedClient {
    peer: Peer,
    admitted: Admitted,
    /// For the receiver link to attach.
    deadline: Instant,
    /// Cuts the socket (after a Close, or when the connection task ends).
    cut: CancellationToken,
    clock: Arc<WireClock>,
}

impl AdmittedClient {
    fn group(&self) -> &Arc<Group> {
        &self.admitted.registration.group
    }

    fn conn(&self) -> ConnId {
        self.admitted.registration.conn
    }
}

/// How a client's connection ended.
enum ClientEnd {
    /// The emulator refuses it: closed with the condition and reason, which are recorded.
    Refused { condition: Condition, reason: String },
    /// The client went away, or its link or session did.
    Gone(String),
    /// Already closed, with the reason recorded.
    Closed,
}

/// Waits for the client's receiver link, then pushes the group's messages to it.
async fn run_client(connection: &mut ListenerConnectionHandle, client: &AdmittedClient) -> ClientEnd {
    let receiver = match links::await_receiver(connection, &client.peer, client.deadline).await {
        Ok(receiver) => receiver,
        Err(end) => return end,
    };
    links::refuse_later_links(receiver.other_sessions, client.peer.clone());
    client.group().attach(client.conn(), receiver.max_message_size);
    let Peer { username, remote, .. } = &client.peer;
    tracing::info!(%remote, client_id = %username.client_id, group = %username.consumer_group_id, "client connected");
    serve_client(connection, receiver.session, receiver.sender, client).await
}

/// Pushes deliveries until the client, its link or the emulator ends the connection; refuses any
/// other link the client attaches meanwhile.
async fn serve_client(
    connection: &mut ListenerConnectionHandle,
    mut session: ListenerSessionHandle,
    mut sender: Sender,
    client: &AdmittedClient,
) -> ClientEnd {
    let peer = &client.peer;
    let ack_timeout = Duration::from_millis(peer.platform.limits.ack_timeout_ms);
    let deliver = delivery::deliver(&mut sender, client.group(), client.conn(), ack_timeout, &client.clock);
    tokio::pin!(deliver);
    loop {
        tokio::select! {
            why = &mut deliver => return ClientEnd::Gone(why),
            attach = session.next_incoming_attach() => match attach {
                Some(attach) => links::refuse_link(attach, &mut session, peer).await,
                None => return ClientEnd::Gone("session ended".into()),
            },
            incoming = connection.next_incoming_session() => match incoming {
                Some(incoming) => match SessionAcceptor::new().accept_incoming_session(incoming, connection).await {
                    Ok(extra) => {
                        tokio::spawn(links::refuse_all_links(extra, peer.clone()));
                    }
                    Err(e) => return ClientEnd::Gone(format!("extra session failed: {e}")),
                },
                None => return ClientEnd::Gone("connection closed by the client".into()),
            },
            () = client.admitted.dropped.cancelled() => {
                // Close while the link and session still exist: dropping them first would detach the
                // link (closed) ahead of the Close, and a client such as Proton would then reconnect
                // without its receiver.
                let reason = "connection dropped by the emulator (drop-connections fault)";
                peer.refuse(Stage::Link, Condition::ConnectionForced, reason.into());
                close_and_cut(connection, amqp_error(Condition::ConnectionForced, reason), &client.cut).await;
                return ClientEnd::Closed;
            }
        }
    }
}

/// Records and logs how the client ended, and closes what is still open.
async fn finish(connection: &mut ListenerConnectionHandle, client: &AdmittedClient, end: ClientEnd) {
    let Peer { username, remote, .. } = &client.peer;
    match end {
        ClientEnd::Refused { condition, reason } => {
            client.peer.refuse(Stage::Link, condition, reason.clone());
            close_and_cut(connection, amqp_error(condition, &reason), &client.cut).await;
        }
        ClientEnd::Gone(why) => {
            tracing::info!(%remote, client_id = %username.client_id, group = %username.consumer_group_id, why = %why, "client disconnected");
            let _ = timeout(CLOSE_GRACE, connection.close()).await;
            client.cut.cancel();
        }
        ClientEnd::Closed => {}
    }
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
