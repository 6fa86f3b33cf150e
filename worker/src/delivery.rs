//! One message's way through the worker: size check → the sink (with retries) → acknowledge, a dead
//! letter, or release; counted per messageId across redeliveries.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::{
    dead_letter::{DeadLetter, Reason},
    message::IotMessage,
    shared::Shared,
    sink::retry::{Delivery, Final},
};

/// Hands `message` to the sink, retrying inside the acknowledgement window; records the outcome in
/// the duplicate window. Returns whether to acknowledge.
pub async fn deliver(shared: &Shared, client_id: &str, message: &IotMessage, deadline: Instant, stop: &CancellationToken) -> bool {
    let accept = decide(shared, client_id, message, deadline, stop).await;
    shared.dedup.lock().expect("dedup lock").finish(&message.message_id, accept);
    accept
}

async fn decide(shared: &Shared, client_id: &str, message: &IotMessage, deadline: Instant, stop: &CancellationToken) -> bool {
    let max = shared.config.max_message_bytes;
    let count_so_far = || shared.delivery_counts.lock().expect("counts lock").get(&message.message_id);
    if message.payload.len() > max {
        let detail = format!("the message has {} bytes; --max-message-bytes is {max}", message.payload.len());
        return dead_letter(shared, client_id, message, Reason::TooLarge, detail, None, count_so_far() + 1).await;
    }
    let started = Instant::now();
    let metrics = &shared.metrics;
    let delivery = Delivery { sink: &shared.sink, health: &shared.sink_health, policy: &shared.retry, stop };
    let outcome = delivery
        .run(message, client_id, deadline, |failed, attempt| {
            metrics.sink_errors.inc();
            warn!(client_id, message_id = %message.message_id, attempt, status = failed.status, error = %failed.detail, "sink failed; retrying");
        })
        .await;
    let counts_against = outcome.counts_against_the_message();
    match outcome {
        Final::Taken => {
            metrics.sink_latency.observe(started.elapsed().as_secs_f64());
            shared.delivery_counts.lock().expect("counts lock").forget(&message.message_id);
            true
        }
        Final::Rejected(attempt) => {
            metrics.poison.inc();
            error!(client_id, message_id = %message.message_id, topic = %message.topic, status = attempt.status, reason = %attempt.detail,
                "poison message: the sink rejected it; writing a dead letter, then acknowledging");
            dead_letter(shared, client_id, message, Reason::Rejected, attempt.detail, attempt.status, count_so_far() + 1).await
        }
        Final::Release { reason, last } => {
            if counts_against {
                let deliveries =
                    shared.delivery_counts.lock().expect("counts lock").failed(&message.message_id, message.delivery_count + 1);
                if deliveries >= shared.config.max_deliveries {
                    let detail = format!("delivered {deliveries} times without being taken; last: {reason}");
                    let status = last.and_then(|a| a.status);
                    return dead_letter(shared, client_id, message, Reason::MaxDeliveries, detail, status, deliveries).await;
                }
            }
            warn!(client_id, message_id = %message.message_id, reason = %reason, "releasing the message to the platform");
            false
        }
    }
}

/// Writes a dead letter; returns whether to acknowledge (only once it is written).
pub async fn dead_letter(
    shared: &Shared,
    client_id: &str,
    message: &IotMessage,
    reason: Reason,
    detail: String,
    last_status: Option<u16>,
    delivery_count: u32,
) -> bool {
    let letter = DeadLetter { message, client_id, reason, detail, last_status, delivery_count };
    match shared.dead_letters.write(&letter).await {
        Ok(()) => {
            shared.metrics.dead_letter(reason);
            shared.delivery_counts.lock().expect("counts lock").forget(&message.message_id);
            warn!(client_id, message_id = %message.message_id, reason = reason.as_str(), detail = %letter.detail,
                to = %shared.dead_letters.describe(), "dead letter written; acknowledging the message");
            true
        }
        Err(e) => {
            shared.metrics.dead_letter_failures.inc();
            error!(client_id, message_id = %message.message_id, reason = reason.as_str(), error = %e,
                "the dead letter could not be written: releasing the message instead of acknowledging it");
            false
        }
    }
}
