//! Device messages as the platform stores and pushes them.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use fe2o3_amqp_types::{
    messaging::{ApplicationProperties, Data, Message, MessageAnnotations},
    primitives::{Binary, SimpleValue, Value},
};
use tokio::time::Instant;

/// Set on every push: when the emulator handed the delivery to the connection, in microseconds since
/// the epoch, so a consumer can measure push-to-acknowledge latency.
pub const SENT_AT_ANNOTATION: &str = "x-opt-sent-at-us";

#[derive(Debug)]
pub struct StoredMessage {
    pub message_id: String,
    pub topic: String,
    pub payload: Vec<u8>,
    /// Epoch milliseconds, as the device's message was generated.
    pub generate_time: i64,
    pub stored_at: Instant,
}

pub fn epoch_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn epoch_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Decimal ids that grow with time, unique within a run and across restarts a millisecond apart.
pub struct MessageIds(AtomicU64);

impl MessageIds {
    pub fn new() -> Self {
        MessageIds(AtomicU64::new((epoch_ms() as u64) << 20))
    }

    pub fn next(&self) -> String {
        self.0.fetch_add(1, Ordering::Relaxed).to_string()
    }
}

impl Default for MessageIds {
    fn default() -> Self {
        Self::new()
    }
}

impl StoredMessage {
    pub fn new(message_id: String, topic: String, payload: Vec<u8>) -> Self {
        StoredMessage { message_id, topic, payload, generate_time: epoch_ms(), stored_at: Instant::now() }
    }

    /// One `data` section and the application properties the platform's samples read:
    /// `topic` and `messageId` as strings, `generateTime` as a long.
    pub fn to_amqp(&self) -> Message<Data> {
        Message::builder()
            .application_properties(
                ApplicationProperties::builder()
                    .insert("topic", SimpleValue::String(self.topic.clone()))
                    .insert("messageId", SimpleValue::String(self.message_id.clone()))
                    .insert("generateTime", SimpleValue::Long(self.generate_time))
                    .build(),
            )
            .message_annotations(MessageAnnotations::builder().insert(SENT_AT_ANNOTATION, Value::Long(epoch_us())).build())
            .data(Binary::from(self.payload.clone()))
            .build()
    }
}
