//! A received IoT Platform message, taken out of its AMQP envelope (pure).
//!
//! The platform sends one `data` body section and the application properties `topic` (string),
//! `messageId` (string) and `generateTime` (long, epoch ms). Other senders may not, and nothing of
//! what they send is dropped or garbled:
//! - a `messageId` (application property, else the message-id property) of another type is carried as
//!   a string: ulong (any integer) in decimal, uuid lowercase hyphenated, binary lowercase hex; when
//!   there is none, the delivery tag (hex) stands in, so it is never empty;
//! - a `generateTime` that is not an integer is kept as its text ([`GenerateTime::Text`]);
//! - amqp-value and amqp-sequence bodies are encoded as JSON (`dataContentType` `application/json`),
//!   a data body keeps its bytes (its `content-type` property, else `application/json` when it looks
//!   like JSON, else `application/octet-stream`).

use base64::Engine;
use fe2o3_amqp::types::{
    messaging::{Body, Message, MessageId, annotations::OwnedKey},
    primitives::{LazyValue, SimpleValue, Symbol, Uuid, Value},
};
use serde::Serialize;

/// The emulator's send time (i64 µs since the epoch), for measuring latency to the acknowledgement.
pub const SENT_AT_ANNOTATION: &str = "x-opt-sent-at-us";

pub const JSON: &str = "application/json";
pub const OCTETS: &str = "application/octet-stream";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IotMessage {
    pub message_id: String,
    pub topic: String,
    pub generate_time: Option<GenerateTime>,
    pub payload: Vec<u8>,
    /// What `payload` is: the `content-type` header of the http sink, `dataContentType` elsewhere.
    pub data_content_type: String,
    /// The payload was encoded by the worker (JSON of an amqp-value or amqp-sequence body), not sent
    /// as bytes: the log sink then says so with `dataContentType`.
    pub encoded: bool,
    /// The AMQP header's delivery-count (earlier unsuccessful deliveries), when the sender keeps one.
    pub delivery_count: u32,
    pub sent_at_us: Option<i64>,
    /// Why the body could not be decoded (then `payload` holds the section's raw bytes): the message
    /// becomes a dead letter with what could be read.
    pub body_error: Option<String>,
}

/// `generateTime` as sent: epoch milliseconds (the platform's `long`), or the text of anything else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum GenerateTime {
    Millis(i64),
    Text(String),
}

impl GenerateTime {
    pub fn millis(&self) -> Option<i64> {
        match self {
            GenerateTime::Millis(ms) => Some(*ms),
            GenerateTime::Text(text) => text.trim().parse().ok(),
        }
    }
}

impl IotMessage {
    /// `delivery_tag` stands in for an absent messageId. The body arrives undecoded (an amqp-value or
    /// amqp-sequence section is framed but not read), so a body that is no AMQP encoding leaves the
    /// properties readable.
    pub fn from_amqp(message: Message<Body<LazyValue>>, delivery_tag: &[u8]) -> IotMessage {
        let app = message.application_properties.as_ref().map(|p| &p.0);
        let prop = |name: &str| app.and_then(|p| p.get(name));
        let message_id = prop("messageId")
            .and_then(simple_id_text)
            .or_else(|| message.properties.as_ref().and_then(|p| p.message_id.as_ref()).map(message_id_text))
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| tag_id(delivery_tag));
        let topic = match prop("topic") {
            Some(SimpleValue::String(s)) => Some(s.clone()),
            Some(SimpleValue::Symbol(s)) => Some(s.0.clone()),
            _ => None,
        }
        .or_else(|| message.properties.as_ref().and_then(|p| p.subject.clone()))
        .unwrap_or_default();
        let generate_time = prop("generateTime").and_then(generate_time);
        let sent_at_us =
            message.message_annotations.as_ref().and_then(|a| match a.0.get(&OwnedKey::Symbol(Symbol::from(SENT_AT_ANNOTATION))) {
                Some(Value::Long(v)) => Some(*v),
                Some(Value::Ulong(v)) => i64::try_from(*v).ok(),
                Some(Value::Timestamp(t)) => Some(t.milliseconds() * 1000),
                _ => None,
            });
        let delivery_count = message.header.as_ref().map_or(0, |h| h.delivery_count);
        let content_type = message.properties.as_ref().and_then(|p| p.content_type.as_ref()).map(|s| s.0.clone());
        let (payload, data_content_type, encoded, body_error) = match body(message.body, content_type.as_deref()) {
            Ok((payload, kind, encoded)) => (payload, kind, encoded, None),
            Err(Undecodable { raw, error }) => (raw, OCTETS.to_owned(), false, Some(error)),
        };
        IotMessage { message_id, topic, generate_time, payload, data_content_type, encoded, delivery_count, sent_at_us, body_error }
    }

    /// What stands in for a delivery that could not be decoded: only its tag is known.
    pub fn undecodable(delivery_tag: &[u8]) -> IotMessage {
        IotMessage {
            message_id: tag_id(delivery_tag),
            topic: String::new(),
            generate_time: None,
            payload: Vec::new(),
            data_content_type: OCTETS.into(),
            encoded: false,
            delivery_count: 0,
            sent_at_us: None,
            body_error: None,
        }
    }
}

/// A platform message as the unit tests of the sinks and dead letters use it: topic and generateTime
/// as the platform sends them, the rest given.
#[cfg(test)]
pub(crate) fn sample(message_id: &str, payload: &[u8], data_content_type: &str) -> IotMessage {
    IotMessage {
        message_id: message_id.into(),
        topic: "/pk/dn/thing/event/property/post".into(),
        generate_time: Some(GenerateTime::Millis(1_573_489_088_171)),
        payload: payload.to_vec(),
        data_content_type: data_content_type.into(),
        encoded: false,
        delivery_count: 0,
        sent_at_us: None,
        body_error: None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The delivery tag as a messageId: lowercase hex (`tag-` plus a random id for an empty tag).
pub fn tag_id(tag: &[u8]) -> String {
    if tag.is_empty() { format!("tag-{:016x}", rand::random::<u64>()) } else { hex(tag) }
}

fn uuid_text(u: &Uuid) -> String {
    let h = hex(u.as_inner());
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn simple_id_text(value: &SimpleValue) -> Option<String> {
    Some(match value {
        SimpleValue::String(s) => s.clone(),
        SimpleValue::Symbol(s) => s.0.clone(),
        SimpleValue::Ulong(n) => n.to_string(),
        SimpleValue::Long(n) => n.to_string(),
        SimpleValue::Uint(n) => n.to_string(),
        SimpleValue::Int(n) => n.to_string(),
        SimpleValue::Ushort(n) => n.to_string(),
        SimpleValue::Short(n) => n.to_string(),
        SimpleValue::Ubyte(n) => n.to_string(),
        SimpleValue::Byte(n) => n.to_string(),
        SimpleValue::Uuid(u) => uuid_text(u),
        SimpleValue::Binary(b) => hex(b),
        _ => return None,
    })
}

fn message_id_text(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => uuid_text(u),
        MessageId::Binary(b) => hex(b),
    }
}

fn generate_time(value: &SimpleValue) -> Option<GenerateTime> {
    Some(match value {
        SimpleValue::Long(v) => GenerateTime::Millis(*v),
        SimpleValue::Int(v) => GenerateTime::Millis(i64::from(*v)),
        SimpleValue::Uint(v) => GenerateTime::Millis(i64::from(*v)),
        SimpleValue::Ulong(v) => i64::try_from(*v).map_or_else(|_| GenerateTime::Text(v.to_string()), GenerateTime::Millis),
        SimpleValue::Timestamp(t) => GenerateTime::Millis(t.milliseconds()),
        SimpleValue::Null => return None,
        SimpleValue::String(s) => GenerateTime::Text(s.clone()),
        SimpleValue::Symbol(s) => GenerateTime::Text(s.0.clone()),
        other => GenerateTime::Text(json_of_simple(other).to_string()),
    })
}

/// Looks like JSON: the first non-blank byte opens an object or an array.
fn looks_json(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| matches!(b, b'{' | b'['))
}

/// A body section that is framed but no AMQP encoding.
struct Undecodable {
    raw: Vec<u8>,
    error: String,
}

fn decode(value: &LazyValue) -> Result<Value, Undecodable> {
    serde_amqp::from_slice(value.as_slice())
        .map_err(|e| Undecodable { raw: value.as_slice().to_vec(), error: format!("the body is no AMQP encoding: {e}") })
}

/// The payload, its content type, and whether the worker encoded it.
fn body(body: Body<LazyValue>, content_type: Option<&str>) -> Result<(Vec<u8>, String, bool), Undecodable> {
    let data_type = |bytes: &[u8]| content_type.unwrap_or(if looks_json(bytes) { JSON } else { OCTETS }).to_owned();
    Ok(match body {
        Body::Data(batch) => {
            let mut out = Vec::new();
            for section in batch {
                if out.is_empty() {
                    out = section.0.into_vec();
                } else {
                    out.extend_from_slice(&section.0);
                }
            }
            let kind = data_type(&out);
            (out, kind, false)
        }
        // A binary value is a payload sent the other way; its bytes are kept as they are.
        Body::Value(value) => match decode(&value.0)? {
            Value::Binary(b) => {
                let bytes = b.into_vec();
                let kind = data_type(&bytes);
                (bytes, kind, false)
            }
            other => (json_bytes(&json_of(other)), JSON.into(), true),
        },
        Body::Sequence(sections) => {
            let mut items = Vec::new();
            for item in sections.into_iter().flat_map(|s| s.0) {
                items.push(json_of(decode(&item)?));
            }
            (json_bytes(&serde_json::Value::Array(items)), JSON.into(), true)
        }
        Body::Empty => (Vec::new(), OCTETS.into(), false),
    })
}

fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serializing a JSON value cannot fail")
}

fn number(n: f64) -> serde_json::Value {
    serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// An AMQP value as JSON: maps become objects (a key that is not a string is written as its JSON
/// text), lists and arrays arrays, binary base64, timestamps epoch milliseconds, uuids their text.
pub fn json_of(value: Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(b),
        Value::Ubyte(n) => n.into(),
        Value::Ushort(n) => n.into(),
        Value::Uint(n) => n.into(),
        Value::Ulong(n) => n.into(),
        Value::Byte(n) => n.into(),
        Value::Short(n) => n.into(),
        Value::Int(n) => n.into(),
        Value::Long(n) => n.into(),
        Value::Float(f) => number(f64::from(f.0)),
        Value::Double(f) => number(f.0),
        Value::Char(c) => J::String(c.to_string()),
        Value::Timestamp(t) => t.milliseconds().into(),
        Value::Uuid(u) => J::String(uuid_text(&u)),
        Value::Binary(b) => J::String(base64::engine::general_purpose::STANDARD.encode(&b)),
        Value::String(s) => J::String(s),
        Value::Symbol(s) => J::String(s.0),
        Value::List(items) => J::Array(items.into_iter().map(json_of).collect()),
        Value::Array(items) => J::Array(items.0.into_iter().map(json_of).collect()),
        Value::Map(map) => J::Object(
            map.into_inner()
                .into_iter()
                .map(|(k, v)| {
                    let key = match json_of(k) {
                        J::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, json_of(v))
                })
                .collect(),
        ),
        Value::Described(d) => json_of(d.value),
        other => J::String(format!("{other:?}")),
    }
}

fn json_of_simple(value: &SimpleValue) -> serde_json::Value {
    match value {
        SimpleValue::Bool(b) => serde_json::Value::Bool(*b),
        SimpleValue::Double(f) => number(f.0),
        SimpleValue::Float(f) => number(f64::from(f.0)),
        other => serde_json::Value::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp::types::{
        messaging::{AmqpSequence, AmqpValue, ApplicationProperties, Data, Header, MessageAnnotations, Properties},
        primitives::{Binary, OrderedMap},
    };

    use super::*;

    /// The message as the receiver gets it: value and sequence sections framed, not decoded.
    fn lazy(m: Message<Body<Value>>) -> Message<Body<LazyValue>> {
        let to_lazy = |v: &Value| serde_amqp::lazy::to_lazy_value(v).unwrap();
        let body = match m.body {
            Body::Data(d) => Body::Data(d),
            Body::Value(v) => Body::Value(AmqpValue(to_lazy(&v.0))),
            Body::Sequence(s) => Body::Sequence(s.into_iter().map(|s| AmqpSequence(s.0.iter().map(to_lazy).collect())).collect()),
            Body::Empty => Body::Empty,
        };
        Message {
            header: m.header,
            delivery_annotations: m.delivery_annotations,
            message_annotations: m.message_annotations,
            properties: m.properties,
            application_properties: m.application_properties,
            body,
            footer: m.footer,
        }
    }

    fn read(m: Message<Body<Value>>, tag: &[u8]) -> IotMessage {
        IotMessage::from_amqp(lazy(m), tag)
    }

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

    fn with_id(id: impl Into<SimpleValue>) -> Message<Body<Value>> {
        Message::builder()
            .application_properties(ApplicationProperties::builder().insert("messageId", id.into()).build())
            .body(Body::Data(vec![Data(Binary::from(b"x".to_vec()))].into()))
            .build()
    }

    #[test]
    fn reads_the_platform_properties() {
        let m = read(platform_message(), b"t");
        assert_eq!(m.message_id, "1234567890");
        assert_eq!(m.topic, "/pk/dn/thing/event/property/post");
        assert_eq!(m.generate_time, Some(GenerateTime::Millis(1_573_489_088_171)));
        assert_eq!(m.payload, b"{\"a\":1}");
        assert_eq!(m.data_content_type, JSON);
        assert!(!m.encoded);
        assert_eq!(m.sent_at_us, Some(1_700_000_000_000_000));
    }

    #[test]
    fn message_ids_of_every_type_become_their_canonical_text() {
        let uuid = Uuid::from([0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0x00]);
        let table: Vec<(SimpleValue, &str)> = vec![
            (SimpleValue::String("abc".into()), "abc"),
            (SimpleValue::Ulong(18_446_744_073_709_551_615), "18446744073709551615"),
            (SimpleValue::Long(-7), "-7"),
            (SimpleValue::Uuid(uuid), "123e4567-e89b-12d3-a456-426614174000"),
            (SimpleValue::Binary(vec![0xde, 0xad, 0x0b].into()), "dead0b"),
        ];
        for (id, text) in table {
            assert_eq!(read(with_id(id.clone()), b"t").message_id, text, "{id:?}");
        }
    }

    #[test]
    fn an_absent_message_id_is_the_delivery_tag_never_empty() {
        let message: Message<Body<Value>> = Message::builder().body(Body::Data(vec![Data(Binary::from(b"x".to_vec()))].into())).build();
        assert_eq!(read(message.clone(), &[0, 0, 0, 42]).message_id, "0000002a");
        let id = read(message, &[]).message_id;
        assert!(id.starts_with("tag-") && id.len() > 4, "{id}");
        assert_eq!(read(with_id(SimpleValue::String(String::new())), &[1]).message_id, "01");
    }

    #[test]
    fn falls_back_to_standard_properties() {
        let message: Message<Body<Value>> = Message::builder()
            .properties(Properties::builder().message_id(7u64).subject("t/1").content_type("text/plain").build())
            .body(Body::Data(vec![Data(Binary::from(b"hi".to_vec()))].into()))
            .build();
        let m = read(message, b"t");
        assert_eq!((m.message_id.as_str(), m.topic.as_str(), m.generate_time), ("7", "t/1", None));
        assert_eq!((m.payload.as_slice(), m.data_content_type.as_str()), (&b"hi"[..], "text/plain"));
    }

    #[test]
    fn generate_time_of_another_type_is_kept() {
        let message = |v: SimpleValue| {
            Message::builder()
                .application_properties(ApplicationProperties::builder().insert("generateTime", v).build())
                .body(Body::<Value>::Empty)
                .build()
        };
        let m = read(message(SimpleValue::String("2019-11-11T16:18:08Z".into())), b"t");
        assert_eq!(m.generate_time, Some(GenerateTime::Text("2019-11-11T16:18:08Z".into())));
        let m = read(message(SimpleValue::String("1573489088171".into())), b"t");
        assert_eq!(m.generate_time.and_then(|g| g.millis()), Some(1_573_489_088_171));
        let m = read(message(SimpleValue::Int(5)), b"t");
        assert_eq!(m.generate_time, Some(GenerateTime::Millis(5)));
    }

    #[test]
    fn amqp_value_and_sequence_bodies_are_json() {
        let mut map = OrderedMap::new();
        map.insert(Value::String("a".into()), Value::Long(1));
        map.insert(Value::String("b".into()), Value::List(vec![Value::Bool(true), Value::String("x".into()), Value::Null]));
        let message: Message<Body<Value>> = Message::builder().body(Body::Value(AmqpValue(Value::Map(map)))).build();
        let m = read(message, b"t");
        assert_eq!(String::from_utf8(m.payload).unwrap(), r#"{"a":1,"b":[true,"x",null]}"#);
        assert_eq!(m.data_content_type, JSON);
        assert!(m.encoded);

        let message: Message<Body<Value>> = Message::builder().body(Body::Value(AmqpValue(Value::String("hi".into())))).build();
        assert_eq!(read(message, b"t").payload, br#""hi""#);
        let message: Message<Body<Value>> = Message::builder().body(Body::Value(AmqpValue(Value::Double(2.5.into())))).build();
        assert_eq!(read(message, b"t").payload, b"2.5");

        let sequence = Body::Sequence(vec![AmqpSequence(vec![Value::Int(1), Value::String("two".into())])].into());
        let message: Message<Body<Value>> = Message::builder().body(sequence).build();
        let m = read(message, b"t");
        assert_eq!((m.payload.as_slice(), m.data_content_type.as_str()), (&br#"[1,"two"]"#[..], JSON));
    }

    #[test]
    fn a_body_that_is_no_amqp_encoding_keeps_the_properties_readable() {
        // A list8 of two items whose format codes AMQP does not define.
        let raw = [0xc0, 0x03, 0x02, 0xff, 0xff];
        let value = LazyValue::from_reader(&mut serde_amqp::read::SliceReader::new(&raw)).unwrap();
        let mut message = lazy(platform_message());
        message.body = Body::Value(AmqpValue(value));
        let m = IotMessage::from_amqp(message, b"t");
        assert_eq!(m.message_id, "1234567890");
        assert_eq!(m.topic, "/pk/dn/thing/event/property/post");
        assert_eq!(m.payload, raw);
        assert!(m.body_error.as_deref().is_some_and(|e| e.contains("no AMQP encoding")), "{:?}", m.body_error);
    }

    #[test]
    fn the_header_delivery_count_is_read() {
        let mut message = platform_message();
        message.header = Some(Header { delivery_count: 3, ..Header::default() });
        assert_eq!(read(message, b"t").delivery_count, 3);
    }
}
