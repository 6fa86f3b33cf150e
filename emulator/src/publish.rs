//! `POST /admin/messages` without the HTTP: a request checked and turned into stored messages.

use crate::{
    admin::{BodyType, PublishRequest},
    message::{Body, MessageId, MessageIds, StoredMessage, json_to_amqp, json_to_sequence},
};

/// At most this many messages per admin call, so one request can't exhaust memory by accident.
pub const MAX_PUBLISH: u32 = 1_000_000;
/// The largest `payloadSize`: well past any platform limit, small enough for a test machine.
pub const MAX_PAYLOAD_SIZE: usize = 64 * 1024 * 1024;

/// The messages a request asks for, or what is wrong with it.
pub fn messages(request: &PublishRequest, ids: &MessageIds) -> Result<Vec<StoredMessage>, String> {
    if request.count == 0 || request.count > MAX_PUBLISH {
        return Err(format!("count must be within 1..={MAX_PUBLISH}"));
    }
    let shape = request.shape;
    if shape.undecodable && shape.body != BodyType::Data {
        return Err("shape.undecodable sends its own malformed body: leave shape.body unset".into());
    }
    let body = match (shape.body, request.payload_size) {
        (_, Some(size)) if shape.undecodable => return Err(format!("payloadSize {size} and shape.undecodable exclude each other")),
        (BodyType::Data, Some(size)) if size == 0 || size > MAX_PAYLOAD_SIZE => {
            return Err(format!("payloadSize must be within 1..={MAX_PAYLOAD_SIZE}"));
        }
        (BodyType::Data, Some(size)) => Body::Data(repeated(request.payload.as_bytes(), size).into()),
        (_, Some(_)) => return Err("payloadSize makes a data body: leave shape.body unset".into()),
        _ if shape.undecodable => Body::Undecodable,
        (BodyType::Data, None) => Body::Data(request.payload.as_bytes().into()),
        (BodyType::AmqpValue, None) => Body::Value(json_to_amqp(&request.payload)?),
        (BodyType::AmqpSequence, None) => Body::Sequence(json_to_sequence(&request.payload)?),
    };
    Ok((0..request.count)
        .map(|_| {
            let id = MessageId::new(shape.message_id, ids.next_number());
            StoredMessage::shaped(id, request.topic.clone(), body.clone(), shape.generate_time)
        })
        .collect())
}

/// `pattern` repeated up to exactly `size` bytes (`x` when the pattern is empty).
fn repeated(pattern: &[u8], size: usize) -> Vec<u8> {
    let pattern = if pattern.is_empty() { b"x".as_slice() } else { pattern };
    pattern.iter().copied().cycle().take(size).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{MessageIdType, MessageShape};

    fn request(shape: MessageShape, payload: &str, payload_size: Option<usize>) -> PublishRequest {
        PublishRequest { shape, payload_size, ..PublishRequest::new("G", "/t", payload, 3) }
    }

    #[test]
    fn the_default_request_is_the_platforms_message_with_growing_string_ids() {
        let got = messages(&PublishRequest::new("G", "/t", "x", 3), &MessageIds::new()).unwrap();
        let ids: Vec<u64> = got.iter().map(|m| m.message_id.canonical().unwrap().parse().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
        assert!(got.iter().all(|m| matches!(m.message_id, MessageId::String(_))));
        assert!(matches!(&got[0].body, Body::Data(b) if &**b == b"x"));
    }

    #[test]
    fn a_payload_size_repeats_the_payload_to_exactly_that_many_bytes() {
        let got = messages(&request(MessageShape::default(), "ab", Some(5)), &MessageIds::new()).unwrap();
        assert!(matches!(&got[2].body, Body::Data(b) if &**b == b"ababa"));
        assert_eq!(repeated(b"", 3), b"xxx");
    }

    #[test]
    fn bad_requests_are_named() {
        let ids = MessageIds::new();
        let error = |r: PublishRequest| messages(&r, &ids).err().unwrap_or_default();
        let value = MessageShape { body: BodyType::AmqpValue, ..MessageShape::default() };
        assert!(error(request(value, "{oops", None)).contains("not JSON"));
        assert!(error(request(value, "{}", Some(10))).contains("payloadSize makes a data body"));
        let undecodable = MessageShape { undecodable: true, ..MessageShape::default() };
        assert!(error(request(MessageShape { body: BodyType::AmqpSequence, ..undecodable }, "[]", None)).contains("leave shape.body"));
        assert!(error(request(undecodable, "x", Some(10))).contains("exclude each other"));
        assert!(error(request(MessageShape::default(), "x", Some(0))).contains("payloadSize must be within"));
        assert!(error(PublishRequest { count: 0, ..PublishRequest::new("G", "/t", "x", 1) }).contains("count must be within"));
        let ulong = MessageShape { message_id: MessageIdType::Ulong, ..MessageShape::default() };
        assert!(messages(&request(ulong, "x", None), &ids).is_ok());
    }
}
