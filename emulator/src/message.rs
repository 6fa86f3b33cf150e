//! Device messages as the platform stores and pushes them, and the other shapes a test may ask for.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp_types::{
    messaging::{AmqpSequence, AmqpValue, ApplicationProperties, Data, Message, MessageAnnotations},
    primitives::{Binary, SimpleValue, Value},
};
use serde_amqp::{lazy::LazyValue, read::SliceReader};
use tokio::time::Instant;

use crate::admin::{GenerateTimeType, MessageIdType};

/// Set on every push: when the emulator handed the delivery to the connection, in microseconds since
/// the epoch, so a consumer can measure push-to-acknowledge latency.
pub const SENT_AT_ANNOTATION: &str = "x-opt-sent-at-us";

/// The application properties the platform's samples read.
const TOPIC: &str = "topic";
const MESSAGE_ID: &str = "messageId";
const GENERATE_TIME: &str = "generateTime";

#[derive(Debug)]
pub struct StoredMessage {
    pub message_id: MessageId,
    pub topic: String,
    pub body: Body,
    /// Epoch milliseconds, as the device's message was generated.
    pub generate_time: i64,
    pub generate_time_type: GenerateTimeType,
    pub stored_at: Instant,
    /// How many times it was sent to a client so far.
    pub deliveries: AtomicU32,
}

/// The `messageId` application property, in the AMQP type asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageId {
    String(String),
    Ulong(u64),
    Uuid(uuid::Uuid),
    Binary(Vec<u8>),
    Absent,
}

impl MessageId {
    /// The `n`th id of the run in the type asked for: its decimal digits, the number itself, a
    /// random uuid, or its 8 big-endian bytes.
    pub fn new(kind: MessageIdType, n: u64) -> Self {
        match kind {
            MessageIdType::String => MessageId::String(n.to_string()),
            MessageIdType::Ulong => MessageId::Ulong(n),
            MessageIdType::Uuid => MessageId::Uuid(uuid::Uuid::new_v4()),
            MessageIdType::Binary => MessageId::Binary(n.to_be_bytes().to_vec()),
            MessageIdType::Absent => MessageId::Absent,
        }
    }

    /// The id as a consumer must carry it on: a string as is, a ulong in decimal, a uuid lowercase
    /// and hyphenated, binary in lowercase hex.
    pub fn canonical(&self) -> Option<String> {
        match self {
            MessageId::String(s) => Some(s.clone()),
            MessageId::Ulong(n) => Some(n.to_string()),
            MessageId::Uuid(u) => Some(u.hyphenated().to_string()),
            MessageId::Binary(bytes) => Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
            MessageId::Absent => None,
        }
    }

    fn property(&self) -> Option<SimpleValue> {
        match self {
            MessageId::String(s) => Some(SimpleValue::String(s.clone())),
            MessageId::Ulong(n) => Some(SimpleValue::Ulong(*n)),
            MessageId::Uuid(u) => Some(SimpleValue::Uuid(u.into_bytes().into())),
            MessageId::Binary(bytes) => Some(SimpleValue::Binary(Binary::from(bytes.clone()))),
            MessageId::Absent => None,
        }
    }
}

/// The body section.
#[derive(Debug, Clone)]
pub enum Body {
    /// Shared by every copy of a published batch: an oversized payload is held once.
    Data(Arc<[u8]>),
    Value(Value),
    Sequence(Vec<Value>),
    /// An amqp-value section whose list holds bytes that are no AMQP encoding at all.
    Undecodable,
}

/// An amqp-value section holding a list8 of two elements whose format codes (0xff) AMQP does not
/// define: framed well enough to be sent, impossible to decode.
const UNDECODABLE_VALUE: [u8; 5] = [0xc0, 0x03, 0x02, 0xff, 0xff];

/// A message ready for the sender; fe2o3 needs the body's type statically.
pub enum Outgoing {
    Data(Message<Data>),
    Value(Message<AmqpValue<Value>>),
    Sequence(Message<AmqpSequence<Value>>),
    Undecodable(Message<AmqpValue<LazyValue>>),
}

pub fn epoch_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn epoch_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Decimal ids that grow with time, unique within a run and across restarts a millisecond apart.
pub struct MessageIds(AtomicU64);

impl MessageIds {
    pub fn new() -> Self {
        MessageIds(AtomicU64::new((epoch_ms() as u64) << 20))
    }

    pub fn next_number(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }

    pub fn next(&self) -> String {
        self.next_number().to_string()
    }
}

impl Default for MessageIds {
    fn default() -> Self {
        Self::new()
    }
}

impl StoredMessage {
    /// A message as the platform sends it: a string id, a long generateTime, one data section.
    pub fn new(message_id: String, topic: String, payload: Vec<u8>) -> Self {
        Self::shaped(MessageId::String(message_id), topic, Body::Data(payload.into()), GenerateTimeType::Long)
    }

    pub fn shaped(message_id: MessageId, topic: String, body: Body, generate_time_type: GenerateTimeType) -> Self {
        StoredMessage {
            message_id,
            topic,
            body,
            generate_time: epoch_ms(),
            generate_time_type,
            stored_at: Instant::now(),
            deliveries: AtomicU32::new(0),
        }
    }

    /// The application properties the platform's samples read (`topic`, `messageId` a string,
    /// `generateTime` a long, unless shaped otherwise), the push time annotation, and the body.
    pub fn to_amqp(&self) -> Outgoing {
        self.to_amqp_sent_at(epoch_us())
    }

    fn to_amqp_sent_at(&self, sent_at_us: i64) -> Outgoing {
        let mut properties = ApplicationProperties::builder().insert(TOPIC, SimpleValue::String(self.topic.clone()));
        if let Some(id) = self.message_id.property() {
            properties = properties.insert(MESSAGE_ID, id);
        }
        match self.generate_time_type {
            GenerateTimeType::Long => properties = properties.insert(GENERATE_TIME, SimpleValue::Long(self.generate_time)),
            GenerateTimeType::String => properties = properties.insert(GENERATE_TIME, SimpleValue::String(self.generate_time.to_string())),
            GenerateTimeType::Absent => {}
        }
        let builder = Message::builder()
            .application_properties(properties.build())
            .message_annotations(MessageAnnotations::builder().insert(SENT_AT_ANNOTATION, Value::Long(sent_at_us)).build());
        match &self.body {
            Body::Data(bytes) => Outgoing::Data(builder.data(Binary::from(bytes.to_vec())).build()),
            Body::Value(value) => Outgoing::Value(builder.value(value.clone()).build()),
            Body::Sequence(items) => Outgoing::Sequence(builder.sequence(items.clone()).build()),
            Body::Undecodable => Outgoing::Undecodable(builder.value(undecodable_value()).build()),
        }
    }
}

/// The message a connection pushes, rewritten in place for each delivery of the platform's own
/// shape (a string id, a long generateTime, one data section): the same bytes as
/// [`StoredMessage::to_amqp`], without building (and freeing) its maps, strings and body per push.
pub struct PushBuffer(Sendable<Data>);

const KEEP_BODY_CAPACITY: usize = 64 * 1024;

impl Default for PushBuffer {
    fn default() -> Self {
        let properties = ApplicationProperties::builder()
            .insert(TOPIC, SimpleValue::String(String::new()))
            .insert(MESSAGE_ID, SimpleValue::String(String::new()))
            .insert(GENERATE_TIME, SimpleValue::Long(0))
            .build();
        let message = Message::builder()
            .application_properties(properties)
            .message_annotations(MessageAnnotations::builder().insert(SENT_AT_ANNOTATION, Value::Long(0)).build())
            .data(Binary::from(Vec::new()))
            .build();
        PushBuffer(message.into())
    }
}

impl PushBuffer {
    /// `message` written over the previous one, or `None` when it has another shape (built
    /// whole by [`StoredMessage::to_amqp`] instead).
    pub fn fill(&mut self, message: &StoredMessage) -> Option<&Sendable<Data>> {
        self.fill_sent_at(message, epoch_us())
    }

    fn fill_sent_at(&mut self, message: &StoredMessage, sent_at_us: i64) -> Option<&Sendable<Data>> {
        let (MessageId::String(id), Body::Data(payload), GenerateTimeType::Long) =
            (&message.message_id, &message.body, message.generate_time_type)
        else {
            return None;
        };
        let pushed = &mut self.0.message;
        let properties = &mut pushed.application_properties.as_mut().expect("built with them").0;
        for (key, with) in [(TOPIC, &message.topic), (MESSAGE_ID, id)] {
            if let Some(SimpleValue::String(s)) = properties.get_mut(key) {
                s.clear();
                s.push_str(with);
            }
        }
        if let Some(SimpleValue::Long(time)) = properties.get_mut(GENERATE_TIME) {
            *time = message.generate_time;
        }
        if let Some(Value::Long(at)) = pushed.message_annotations.as_mut().and_then(|a| a.0.values_mut().next()) {
            *at = sent_at_us;
        }
        let body = &mut pushed.body.0;
        if body.capacity() > KEEP_BODY_CAPACITY {
            **body = Vec::new(); // not kept for the connection's lifetime after one large message
        }
        body.clear();
        body.extend_from_slice(payload);
        Some(&self.0)
    }
}

fn undecodable_value() -> LazyValue {
    // The bytes are copied verbatim into the section: LazyValue reads only their framing.
    LazyValue::from_reader(&mut SliceReader::new(&UNDECODABLE_VALUE)).expect("the constant is framed as a list8")
}

/// The payload of `body: amqp-value`: the JSON document as the equivalent AMQP value.
pub fn json_to_amqp(payload: &str) -> Result<Value, String> {
    let json: serde_json::Value = serde_json::from_str(payload).map_err(|e| format!("the payload is not JSON ({e})"))?;
    Ok(Value::from(json))
}

/// The payload of `body: amqp-sequence`: the JSON array's items.
pub fn json_to_sequence(payload: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str(payload).map_err(|e| format!("the payload is not JSON ({e})"))? {
        serde_json::Value::Array(items) => Ok(items.into_iter().map(Value::from).collect()),
        other => Err(format!("an amqp-sequence body needs a JSON array payload, not {other}")),
    }
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp_types::messaging::{Body as AmqpBody, message::__private::Deserializable};
    use serde_amqp::primitives::OrderedMap;

    use super::*;

    fn encode(outgoing: &Outgoing) -> Vec<u8> {
        use fe2o3_amqp_types::messaging::message::__private::Serializable;
        match outgoing {
            Outgoing::Data(m) => serde_amqp::to_vec(&Serializable(m)),
            Outgoing::Value(m) => serde_amqp::to_vec(&Serializable(m)),
            Outgoing::Sequence(m) => serde_amqp::to_vec(&Serializable(m)),
            Outgoing::Undecodable(m) => serde_amqp::to_vec(&Serializable(m)),
        }
        .expect("encodes")
    }

    fn decode(bytes: &[u8]) -> Result<Message<AmqpBody<Value>>, serde_amqp::Error> {
        serde_amqp::from_slice::<Deserializable<Message<AmqpBody<Value>>>>(bytes).map(|d| d.0)
    }

    fn shaped(id: MessageId, body: Body, time: GenerateTimeType) -> Message<AmqpBody<Value>> {
        decode(&encode(&StoredMessage::shaped(id, "/t".into(), body, time).to_amqp())).expect("decodes")
    }

    #[test]
    fn canonical_ids_are_the_forms_a_consumer_carries() {
        assert_eq!(MessageId::new(MessageIdType::String, 42).canonical().as_deref(), Some("42"));
        assert_eq!(MessageId::new(MessageIdType::Ulong, 42).canonical().as_deref(), Some("42"));
        assert_eq!(MessageId::new(MessageIdType::Binary, 0xab).canonical().as_deref(), Some("00000000000000ab"));
        let uuid = MessageId::Uuid(uuid::Uuid::from_u128(0xABCD_EF01_0000_0000_0000_0000_0000_0001));
        assert_eq!(uuid.canonical().as_deref(), Some("abcdef01-0000-0000-0000-000000000001"));
        assert_eq!(MessageId::new(MessageIdType::Absent, 42).canonical(), None);
    }

    #[test]
    fn the_default_shape_is_a_string_id_a_long_time_and_one_data_section() {
        let message = shaped(MessageId::String("7".into()), Body::Data(b"hi".to_vec().into()), GenerateTimeType::Long);
        let props = message.application_properties.expect("present").0;
        assert_eq!(props.get("messageId"), Some(&SimpleValue::String("7".into())));
        assert!(matches!(props.get("generateTime"), Some(SimpleValue::Long(_))));
        assert!(matches!(message.body, AmqpBody::Data(ref batch) if batch.len() == 1 && batch[0].0.as_slice() == b"hi"));
    }

    #[test]
    fn other_shapes_carry_the_types_asked_for() {
        let message =
            shaped(MessageId::Ulong(9), Body::Value(json_to_amqp(r#"{"a": 1, "b": [true, null]}"#).unwrap()), GenerateTimeType::String);
        let props = message.application_properties.expect("present").0;
        assert_eq!(props.get("messageId"), Some(&SimpleValue::Ulong(9)));
        assert!(matches!(props.get("generateTime"), Some(SimpleValue::String(t)) if t.parse::<i64>().is_ok()));
        let mut map = OrderedMap::new();
        map.insert(Value::String("a".into()), Value::Long(1));
        map.insert(Value::String("b".into()), Value::List(vec![Value::Bool(true), Value::Null]));
        assert!(matches!(message.body, AmqpBody::Value(AmqpValue(Value::Map(ref m))) if *m == map), "{:?}", message.body);

        let message = shaped(MessageId::Absent, Body::Sequence(json_to_sequence(r#"[1, "two"]"#).unwrap()), GenerateTimeType::Absent);
        let props = message.application_properties.expect("present").0;
        assert_eq!((props.get("messageId"), props.get("generateTime")), (None, None));
        let AmqpBody::Sequence(batch) = message.body else { panic!("not a sequence: {:?}", message.body) };
        assert_eq!(batch[0].0, vec![Value::Long(1), Value::String("two".into())]);
    }

    #[test]
    fn an_undecodable_message_is_refused_by_a_decoder_after_its_properties() {
        let bytes = encode(
            &StoredMessage::shaped(MessageId::Uuid(uuid::Uuid::new_v4()), "/t".into(), Body::Undecodable, GenerateTimeType::Long).to_amqp(),
        );
        let error = decode(&bytes).expect_err("no decoder reads format code 0xff");
        assert!(error.to_string().to_lowercase().contains("format code"), "{error}");
        assert!(bytes.ends_with(&UNDECODABLE_VALUE));
    }

    fn encode_sendable(sendable: &Sendable<Data>) -> Vec<u8> {
        use fe2o3_amqp_types::messaging::message::__private::Serializable;
        serde_amqp::to_vec(&Serializable(&sendable.message)).expect("encodes")
    }

    #[test]
    fn the_push_buffer_encodes_exactly_what_to_amqp_builds_whatever_came_before() {
        let long = StoredMessage::new("123456789".into(), "/a1/dev/thing/event/property/post".into(), vec![7; 300]);
        let short = StoredMessage::new("1".into(), "/t".into(), b"{}".to_vec());
        let mut buffer = PushBuffer::default();
        for (message, at) in [(&long, 1_700_000_000_000_001), (&short, 2), (&long, 3)] {
            let reused = encode_sendable(buffer.fill_sent_at(message, at).expect("the platform's shape"));
            assert_eq!(reused, encode(&message.to_amqp_sent_at(at)));
        }
        assert_eq!(
            encode_sendable(&Sendable::from(Message::builder().data(Binary::from(vec![])).build())).len(),
            5,
            "sanity: an empty data section"
        );
    }

    #[test]
    fn other_shapes_are_left_to_to_amqp() {
        let mut buffer = PushBuffer::default();
        for (id, body, time) in [
            (MessageId::Ulong(1), Body::Data(b"x".to_vec().into()), GenerateTimeType::Long),
            (MessageId::String("1".into()), Body::Data(b"x".to_vec().into()), GenerateTimeType::String),
            (MessageId::String("1".into()), Body::Value(Value::Long(1)), GenerateTimeType::Long),
            (MessageId::Absent, Body::Undecodable, GenerateTimeType::Absent),
        ] {
            assert!(buffer.fill(&StoredMessage::shaped(id, "/t".into(), body, time)).is_none());
        }
    }

    #[test]
    fn bad_json_for_value_bodies_is_named() {
        assert!(json_to_amqp("{not json").unwrap_err().contains("not JSON"));
        assert!(json_to_sequence(r#"{"a": 1}"#).unwrap_err().contains("needs a JSON array"));
    }
}
