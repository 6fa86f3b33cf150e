//! Pushing the group's messages down the client's receiver link and watching each outcome.

use std::{sync::Arc, time::Duration};

use fe2o3_amqp::{
    Sender,
    link::{SendError, delivery::DeliveryFut},
};
use fe2o3_amqp_types::messaging::Outcome;
use tokio::time::{Instant, timeout};

use crate::{
    groups::{ConnId, Delivery, Group, Settlement},
    message::Outgoing,
    wire_clock::WireClock,
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
pub async fn deliver(sender: &mut Sender, group: &Arc<Group>, conn: ConnId, ack_timeout: Duration, clock: &Arc<WireClock>) -> String {
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
                group.sent(conn, &delivery);
                tokio::spawn(settle_when_answered(group.clone(), conn, delivery, outcome, ack_timeout, clock.clone()));
            }
            Err(e) => return format!("link closed: {e}"),
        }
    }
}

/// Waits for the client's outcome of a delivery sent just now, up to the acknowledgement timeout.
///
/// Its latency is the wire's: from the transfer's write to the disposition's read ([`WireClock`]),
/// so neither the emulator's own queueing nor this task's wake-up is counted; a delivery the clock
/// did not see falls back to the time from the hand-off to fe2o3 to this task's wake-up.
fn settle_when_answered(
    group: Arc<Group>,
    conn: ConnId,
    delivery: Delivery,
    outcome: DeliveryFut<Result<Outcome, SendError>>,
    ack_timeout: Duration,
    clock: Arc<WireClock>,
) -> impl Future<Output = ()> {
    let pushed_at = Instant::now();
    let tag = outcome.delivery_tag().to_vec();
    async move {
        let answer = timeout(ack_timeout, outcome).await;
        let wire = clock.take(&tag);
        if wire.is_none() {
            clock.forget(&tag);
        }
        let settlement = match answer {
            Ok(Ok(Outcome::Accepted(_))) => Settlement::Accepted(wire.unwrap_or_else(|| {
                group.task_clocked();
                pushed_at.elapsed()
            })),
            Ok(Ok(_)) => Settlement::Refused,
            Ok(Err(_)) => Settlement::Disconnected,
            Err(_) => Settlement::TimedOut,
        };
        group.settle(conn, delivery, settlement);
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
