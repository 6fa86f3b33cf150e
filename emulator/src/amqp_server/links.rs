//! A connection's links: the one receiver link it may attach, on whichever session, and the
//! refusal of every other link.

use fe2o3_amqp::{
    Sender,
    acceptor::{LinkAcceptor, LinkEndpoint, ListenerConnectionHandle, ListenerSessionHandle, SessionAcceptor},
};
use fe2o3_amqp_types::{definitions::Role, performatives::Attach};
use tokio::{
    sync::mpsc,
    time::{Instant, timeout, timeout_at},
};

use super::{CLOSE_GRACE, ClientEnd, Peer, admission::Condition, amqp_error};
use crate::admin::Stage;

/// A session and the first Attach it received (`None`: the session ended first).
type SessionAttach = (ListenerSessionHandle, Option<Attach>);

/// The client's receiver link, our sender.
pub struct ReceiverLink {
    pub session: ListenerSessionHandle,
    pub sender: Sender,
    /// What the client advertised; recorded, not obeyed (see [`accept_receiver`]).
    pub max_message_size: Option<u64>,
    /// The client's other sessions, each with the first Attach it receives.
    pub other_sessions: mpsc::UnboundedReceiver<SessionAttach>,
}

/// Accepts sessions until one of them attaches a receiver link, refusing sender links meanwhile.
///
/// A client may begin several sessions before it attaches its receiver: Qpid JMS (the platform's
/// Java sample) begins a connection-level session first and attaches the consumer in a second one.
/// Every session is watched for the first receiver link; the others refuse links from then on.
pub async fn await_receiver(connection: &mut ListenerConnectionHandle, peer: &Peer, deadline: Instant) -> Result<ReceiverLink, ClientEnd> {
    let deadline_ms = peer.platform.limits.link_deadline_ms;
    let no_link = || ClientEnd::Refused {
        condition: Condition::ConnectionForced,
        reason: format!("no receiver link attached within {deadline_ms} ms of connecting"),
    };
    let (found_tx, mut found_rx) = mpsc::unbounded_channel::<SessionAttach>();
    let mut sessions = 0usize;
    loop {
        tokio::select! {
            incoming = connection.next_incoming_session() => match incoming {
                Some(incoming) => match timeout_at(deadline, SessionAcceptor::new().accept_incoming_session(incoming, connection)).await {
                    Ok(Ok(session)) => {
                        sessions += 1;
                        watch(session, found_tx.clone());
                    }
                    Ok(Err(e)) => return Err(ClientEnd::Gone(format!("session not begun: {e}"))),
                    Err(_) => return Err(no_link()),
                },
                None => return Err(ClientEnd::Gone("connection closed before a link attached".into())),
            },
            Some((mut session, attach)) = found_rx.recv() => match attach {
                None => {
                    sessions -= 1;
                    if sessions == 0 {
                        return Err(ClientEnd::Gone("session ended before a link attached".into()));
                    }
                }
                Some(attach) if attach.role == Role::Receiver => {
                    let (sender, max_message_size) = accept_receiver(attach, &mut session).await?;
                    return Ok(ReceiverLink { session, sender, max_message_size, other_sessions: found_rx });
                }
                Some(attach) => {
                    refuse_link(attach, &mut session, peer).await;
                    watch(session, found_tx.clone());
                }
            },
            () = tokio::time::sleep_until(deadline) => return Err(no_link()),
        }
    }
}

/// Reports the session's first Attach (or its end) on `found`.
fn watch(mut session: ListenerSessionHandle, found: mpsc::UnboundedSender<SessionAttach>) {
    tokio::spawn(async move {
        let attach = session.next_incoming_attach().await;
        let _ = found.send((session, attach));
    });
}

/// Attaches our sender to the client's receiver link.
async fn accept_receiver(mut attach: Attach, session: &mut ListenerSessionHandle) -> Result<(Sender, Option<u64>), ClientEnd> {
    // Recorded, not obeyed: fe2o3's sender would refuse a larger message locally, and a client must
    // be able to meet one (the platform documents no such limit).
    let max_message_size = attach.max_message_size.take().filter(|&size| size > 0);
    match LinkAcceptor::new().accept_incoming_attach(attach, session).await {
        Ok(LinkEndpoint::Sender(sender)) => Ok((sender, max_message_size)),
        Ok(LinkEndpoint::Receiver(_)) => unreachable!("a remote receiver attaches our sender"),
        Err(e) => Err(ClientEnd::Gone(format!("link attach failed: {e}"))),
    }
}

/// Once the receiver link is attached: every link attached on the client's other sessions is refused.
pub fn refuse_later_links(mut other_sessions: mpsc::UnboundedReceiver<SessionAttach>, peer: Peer) {
    tokio::spawn(async move {
        while let Some((mut other, attach)) = other_sessions.recv().await {
            if let Some(attach) = attach {
                refuse_link(attach, &mut other, &peer).await;
                tokio::spawn(refuse_all_links(other, peer.clone()));
            }
        }
    });
}

pub async fn refuse_all_links(mut session: ListenerSessionHandle, peer: Peer) {
    while let Some(attach) = session.next_incoming_attach().await {
        refuse_link(attach, &mut session, &peer).await;
    }
}

/// Attaches then detaches the link with the reason: the way AMQP refuses a link.
pub async fn refuse_link(attach: Attach, session: &mut ListenerSessionHandle, peer: &Peer) {
    let reason = match attach.role {
        Role::Sender => "sender links are not allowed: messages only flow from the platform to the client",
        Role::Receiver => "only one receiver link is allowed per connection",
    };
    peer.refuse(Stage::Link, Condition::NotAllowed, reason.into());
    let error = amqp_error(Condition::NotAllowed, reason);
    let closed = match LinkAcceptor::new().accept_incoming_attach(attach, session).await {
        // A peer that never answers the detach must not stall the connection.
        Ok(LinkEndpoint::Sender(link)) => {
            timeout(CLOSE_GRACE, link.close_with_error(error)).await.ok().and_then(Result::err).map(|e| e.to_string())
        }
        Ok(LinkEndpoint::Receiver(link)) => {
            timeout(CLOSE_GRACE, link.close_with_error(error)).await.ok().and_then(Result::err).map(|e| e.to_string())
        }
        Err(e) => Some(e.to_string()),
    };
    if let Some(e) = closed {
        tracing::debug!(remote = %peer.remote, error = %e, "refused link did not close cleanly");
    }
}
