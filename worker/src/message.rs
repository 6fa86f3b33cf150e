//! A received IoT Platform message, taken out of its AMQP envelope (pure).
//!
//! The platform sends one `data` body section and the application properties `topic` (string),
//! `messageId` (string) and `generateTime` (long, epoch ms). Other brokers may not: the message-id
//! and subject properties stand in, so the worker still works against them.

use fe2o3_amqp::types::{
    messaging::{Body, Message, MessageId, annotations::OwnedKey},
    primitives::{SimpleValue, Symbol, Value},
};

/// The emulator's send time (i64 µs since the epoch), for measuring latency to the acknowledgement.
pub const SENT_AT_ANNOTATION: &str = "x-opt-sent-at-us";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IotMessage {
    pub message_id: String,
    pub topic: String,
    pub generate_time: Option<i64>,
    pub payload: Vec<u8>,
    pub sent_at_us: Option<i64>,
}

impl IotMessage {
    pub fn from_amqp(message: Message<Body<Value>>) -> IotMessage {
        let app = message.application_properties.as_ref().map(|p| &p.0);
        let string_prop = |name: &str| match app.and_then(|p| p.get(name)) {
            Some(SimpleValue::String(s)) => Some(s.clone()),
            Some(SimpleValue::Symbol(s)) => Some(s.0.clone()),
            _ => None,
        };
        let message_id = string_prop("messageId")
            .or_else(|| message.properties.as_ref().and_then(|p| p.message_id.as_ref()).map(message_id_text))
            .unwrap_or_default();
        let topic = string_prop("topic").or_else(|| message.properties.as_ref().and_then(|p| p.subject.clone())).unwrap_or_default();
        let generate_time = match app.and_then(|p| p.get("generateTime")) {
            Some(SimpleValue::Long(v)) => Some(*v),
            Some(SimpleValue::Int(v)) => Some(i64::from(*v)),
            Some(SimpleValue::Ulong(v)) => i64::try_from(*v).ok(),
            Some(SimpleValue::Timestamp(t)) => Some(t.milliseconds()),
            Some(SimpleValue::String(s)) => s.parse().ok(),
            _ => None,
        };
        let sent_at_us =
            message.message_annotations.as_ref().and_then(|a| match a.0.get(&OwnedKey::Symbol(Symbol::from(SENT_AT_ANNOTATION))) {
                Some(Value::Long(v)) => Some(*v),
                Some(Value::Ulong(v)) => i64::try_from(*v).ok(),
                Some(Value::Timestamp(t)) => Some(t.milliseconds() * 1000),
                _ => None,
            });
        IotMessage { message_id, topic, generate_time, payload: body_bytes(message.body), sent_at_us }
    }
}

fn message_id_text(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => format!("{u:?}"),
        MessageId::Binary(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

fn body_bytes(body: Body<Value>) -> Vec<u8> {
    match body {
        Body::Data(batch) => {
            let mut sections = batch.into_iter();
            match (sections.next(), sections.next()) {
                (None, _) => Vec::new(),
                (Some(only), None) => only.0.into_vec(),
                (Some(first), Some(second)) => {
                    let mut out = first.0.into_vec();
                    out.extend_from_slice(&second.0);
                    for section in sections {
                        out.extend_from_slice(&section.0);
                    }
                    out
                }
            }
        }
        Body::Value(value) => match value.0 {
            Value::Binary(b) => b.into_vec(),
            Value::String(s) => s.into_bytes(),
            Value::Null => Vec::new(),
            other => format!("{other:?}").into_bytes(),
        },
        Body::Sequence(seq) => format!("{seq:?}").into_bytes(),
        Body::Empty => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp::types::{
        messaging::{ApplicationProperties, Data, MessageAnnotations, Properties},
        primitives::Binary,
    };

    use super::*;

    fn platform_message() -> Message<Body<Value>> {
        Message::builder()
            .application_properties(
                ApplicationProperties::builder()
                    .insert("topic", "/pk/dn/thing/event/property/post")
                    .insert("messageId", "1234567890")
                    .insert("generateTime", 1_573_489_088_171i64)
                    .build(),
            )
            .message_annotations(MessageAnnotations::builder().insert(SENT_AT_ANNOTATION, 1_700_000_000_000_000i64).build())
            .body(Body::Data(vec![Data(Binary::from(b"{\"a\":1}".to_vec()))].into()))
            .build()
    }

    #[test]
    fn reads_the_platform_properties() {
        let m = IotMessage::from_amqp(platform_message());
        assert_eq!(m.message_id, "1234567890");
        assert_eq!(m.topic, "/pk/dn/thing/event/property/post");
        assert_eq!(m.generate_time, Some(1_573_489_088_171));
        assert_eq!(m.payload, b"{\"a\":1}");
        assert_eq!(m.sent_at_us, Some(1_700_000_000_000_000));
    }

    #[test]
    fn falls_back_to_standard_properties() {
        let message: Message<Body<Value>> = Message::builder()
            .properties(Properties::builder().message_id(String::from("abc")).subject("t/1").build())
            .body(Body::Value(fe2o3_amqp::types::messaging::AmqpValue(Value::String("hi".into()))))
            .build();
        let m = IotMessage::from_amqp(message);
        assert_eq!((m.message_id.as_str(), m.topic.as_str(), m.generate_time), ("abc", "t/1", None));
        assert_eq!(m.payload, b"hi");
    }
}
