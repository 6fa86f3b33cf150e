//! Pushing the group's messages down the client's receiver link and watching each outcome.

use std::{sync::Arc, time::Duration};

use fe2o3_amqp::{
    Sender,
    link::{SendError, delivery::DeliveryFut},
};
use fe2o3_amqp_types::messaging::Outcome;
use futures_util::{StreamExt, stream::FuturesUnordered};
use tokio::time::{Instant, error::Elapsed, timeout};

use crate::{
    groups::{ConnId, Delivery, Group, Settlement},
    message::{Outgoing, PushBuffer, StoredMessage},
    wire_clock::{Tag, WireClock},
};

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
///
/// The outcomes are watched here, beside the pushes ([`Unanswered`]), not by a task per delivery:
/// a spawned task and its wake-ups per message were a visible part of the emulator's cost.
pub async fn deliver(sender: &mut Sender, group: &Arc<Group>, conn: ConnId, ack_timeout: Duration, clock: &Arc<WireClock>) -> String {
    let mut pause = NO_CREDIT_PAUSE.0;
    let mut buffer = PushBuffer::default();
    let mut unanswered = Unanswered { pending: FuturesUnordered::new(), group: group.clone(), conn, clock: clock.clone() };
    loop {
        let Some(delivery) = unanswered.settling_while(group.next_delivery(conn)).await else {
            return "unregistered".into();
        };
        let mut held = Held { group, delivery: Some(delivery) };
        let message = held.delivery.as_ref().expect("just set").message.clone();
        // `send_batchable` is cancel-safe: given up while waiting for credit, nothing was sent.
        // Pinned here and lent: moving the send future (fe2o3's message is ~650 bytes, held more
        // than once in it) through each wrapper showed as memmove in the profile.
        let sending = timeout(CREDIT_WAIT, send(sender, message, &mut buffer));
        tokio::pin!(sending);
        let Ok(sent) = unanswered.settling_while(sending.as_mut()).await else {
            drop(held); // back to the group, at the front
            unanswered.settling_while(tokio::time::sleep(pause)).await;
            pause = (pause * 2).min(NO_CREDIT_PAUSE.1);
            continue;
        };
        pause = NO_CREDIT_PAUSE.0;
        match sent {
            Ok(outcome) => {
                let delivery = held.delivery.take().expect("still held");
                group.sent(conn, &delivery);
                unanswered.pending.push(answer(delivery, outcome, ack_timeout));
            }
            Err(e) => return format!("link closed: {e}"),
        }
    }
}

/// A delivery sent, and what became of it within the acknowledgement timeout.
struct Answered {
    delivery: Delivery,
    tag: Option<Tag>,
    pushed_at: Instant,
    outcome: Result<Result<Outcome, SendError>, Elapsed>,
}

/// Waits for the client's outcome of a delivery sent just now, up to the acknowledgement timeout.
fn answer(
    delivery: Delivery,
    outcome: DeliveryFut<Result<Outcome, SendError>>,
    ack_timeout: Duration,
) -> impl Future<Output = Answered> + Send + 'static {
    let pushed_at = Instant::now();
    let tag = Tag::new(outcome.delivery_tag());
    async move { Answered { delivery, tag, pushed_at, outcome: timeout(ack_timeout, outcome).await } }
}

/// The connection's deliveries awaiting their outcomes. Dropped with some still unanswered (the
/// connection ended), it leaves them to a task of their own: each still ends as the client or the
/// link decides, and goes back to the group unless it was accepted.
struct Unanswered<F: Future<Output = Answered> + Send + 'static> {
    pending: FuturesUnordered<F>,
    group: Arc<Group>,
    conn: ConnId,
    clock: Arc<WireClock>,
}

impl<F: Future<Output = Answered> + Send + 'static> Unanswered<F> {
    /// Runs `work`, settling the outcomes that arrive meanwhile.
    async fn settling_while<W: Future>(&mut self, work: W) -> W::Output {
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                Some(answered) = self.pending.next() => self.settle(answered),
                out = &mut work => return out,
            }
        }
    }

    /// Its latency is the wire's: from the transfer's write to the disposition's read
    /// ([`WireClock`]), so neither the emulator's own queueing nor this task's wake-up is counted; a
    /// delivery the clock did not see falls back to the time from the hand-off to fe2o3 to its
    /// outcome's arrival here.
    fn settle(&self, Answered { delivery, tag, pushed_at, outcome }: Answered) {
        let wire = tag.as_ref().and_then(|tag| self.clock.take(tag));
        if let (None, Some(tag)) = (wire, &tag) {
            self.clock.forget(tag);
        }
        let settlement = match outcome {
            Ok(Ok(Outcome::Accepted(_))) => Settlement::Accepted(wire.unwrap_or_else(|| {
                self.group.task_clocked();
                pushed_at.elapsed()
            })),
            Ok(Ok(_)) => Settlement::Refused,
            Ok(Err(_)) => Settlement::Disconnected,
            Err(_) => Settlement::TimedOut,
        };
        self.group.settle(self.conn, delivery, settlement);
    }
}

impl<F: Future<Output = Answered> + Send + 'static> Drop for Unanswered<F> {
    fn drop(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let mut rest = Unanswered {
            pending: std::mem::take(&mut self.pending),
            group: self.group.clone(),
            conn: self.conn,
            clock: self.clock.clone(),
        };
        runtime.spawn(async move {
            while let Some(answered) = rest.pending.next().await {
                rest.settle(answered);
            }
        });
    }
}

/// One transfer, whatever the body's type: the platform's shape from the connection's
/// [`PushBuffer`], others built whole.
async fn send(
    sender: &mut Sender,
    message: Arc<StoredMessage>,
    buffer: &mut PushBuffer,
) -> Result<DeliveryFut<Result<Outcome, SendError>>, SendError> {
    if let Some(reused) = buffer.fill(&message) {
        return sender.send_batchable_ref(reused).await;
    }
    match message.to_amqp() {
        Outgoing::Data(m) => sender.send_batchable(m).await,
        Outgoing::Value(m) => sender.send_batchable(m).await,
        Outgoing::Sequence(m) => sender.send_batchable(m).await,
        Outgoing::Undecodable(m) => sender.send_batchable(m).await,
    }
}
