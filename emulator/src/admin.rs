//! The admin API's requests and answers (`/admin/...`, `endpoints.json`), as the emulator writes
//! them and as tests read them: one definition, so a renamed field breaks the build, not a test.

use serde::{Deserialize, Serialize};

/// `<state-dir>/endpoints.json`, written once both ports listen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    pub amqp: String,
    pub api: String,
}

/// Every error answer of the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

/// `POST /admin/messages`: messages as devices publish them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishRequest {
    #[serde(default)]
    pub instance_id: String,
    pub consumer_group_id: String,
    pub topic: String,
    pub payload: String,
    #[serde(default = "one")]
    pub count: u32,
    /// How the messages are encoded; the default is what the platform sends.
    #[serde(default, skip_serializing_if = "is_default")]
    pub shape: MessageShape,
    /// A data body of exactly this many bytes (the payload repeated), for oversized messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_size: Option<usize>,
}

impl PublishRequest {
    /// `count` messages of `payload` to the group `group` of the legacy instance, as the platform sends them.
    pub fn new(group: &str, topic: &str, payload: &str, count: u32) -> Self {
        PublishRequest {
            instance_id: String::new(),
            consumer_group_id: group.into(),
            topic: topic.into(),
            payload: payload.into(),
            count,
            shape: MessageShape::default(),
            payload_size: None,
        }
    }
}

fn one() -> u32 {
    1
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// The encoding of a published message. The default is the platform's: `messageId` a string,
/// `generateTime` a long, one `data` section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageShape {
    #[serde(default)]
    pub message_id: MessageIdType,
    #[serde(default)]
    pub generate_time: GenerateTimeType,
    #[serde(default)]
    pub body: BodyType,
    /// The body section is not a valid AMQP encoding (the application properties still are).
    #[serde(default)]
    pub undecodable: bool,
}

/// The AMQP type of the `messageId` application property.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageIdType {
    #[default]
    String,
    Ulong,
    Uuid,
    Binary,
    /// No `messageId` property at all.
    Absent,
}

/// The AMQP type of the `generateTime` application property (epoch milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GenerateTimeType {
    #[default]
    Long,
    /// The decimal milliseconds as a string.
    String,
    Absent,
}

/// The body section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BodyType {
    /// The payload's bytes in one data section.
    #[default]
    Data,
    /// The payload parsed as JSON, sent as the equivalent AMQP value (map, list, string, number, bool, null).
    AmqpValue,
    /// The payload's JSON array, its items as one amqp-sequence section.
    AmqpSequence,
}

/// The answer to `POST /admin/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishReply {
    /// Each message's id as a consumer must carry it: a string as is, a ulong in decimal, a uuid
    /// lowercase and hyphenated, binary in lowercase hex; `None` when the message has none.
    pub message_ids: Vec<Option<String>>,
}

/// `POST /admin/traffic`: device traffic at a rate, in the background.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficRequest {
    #[serde(default)]
    pub instance_id: String,
    pub consumer_group_id: String,
    pub rate_per_second: u32,
    #[serde(default = "twenty")]
    pub devices: u32,
    pub seconds: u32,
}

fn twenty() -> u32 {
    20
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficReply {
    pub started: bool,
    /// How many messages the run publishes.
    pub messages: u64,
}

/// `POST /admin/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRequest {
    /// `drop-connections`, `refuse-logins`, `pause-delivery` or `resume`.
    pub action: String,
    pub consumer_group_id: String,
    #[serde(default)]
    pub instance_id: String,
}

/// What a fault changed; only the fields the action touched are present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusing_logins: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupKey {
    pub instance_id: String,
    pub consumer_group_id: String,
}

/// A consumer group's delivery counters since the emulator started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub published: u64,
    pub delivered: u64,
    pub acknowledged: u64,
    /// Deliveries that went back to the stacked queue (timed out, refused, or cut off).
    pub redelivered: u64,
    pub timed_out: u64,
    pub refused_by_client: u64,
    pub returned_on_disconnect: u64,
    pub expired: u64,
    pub duplicates_injected: u64,
}

/// Over the last (up to) 10 000 acknowledgements of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencySummary {
    pub samples: usize,
    pub p50_us: u32,
    pub p90_us: u32,
    pub p99_us: u32,
    pub max_us: u32,
    /// Acknowledgements (since the group began) timed by the emulator's delivery task instead of
    /// on the wire, because the wire clock did not see their transfer or disposition.
    #[serde(default)]
    pub task_clocked: u64,
}

/// Connection attempts that reached SASL naming the group, refused or not (the platform allows
/// 100 a minute per group, shared by all its clients).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionAttempts {
    pub total: u64,
    /// In the sliding minute up to the snapshot.
    pub last_minute: u64,
}

/// `GET /admin/consumer-groups/<id>` (and each item of `GET /admin/consumer-groups`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSnapshot {
    #[serde(flatten)]
    pub key: GroupKey,
    /// Messages waiting: the stacked queue plus real-time messages not yet pushed.
    pub backlog: u64,
    pub stacked: u64,
    pub in_flight: u64,
    pub paused: bool,
    pub refusing_logins: bool,
    #[serde(flatten)]
    pub counters: Counters,
    pub consumed_per_minute: u64,
    pub realtime_consumed_per_minute: u64,
    pub stacked_consumed_per_minute: u64,
    /// Epoch milliseconds of the last acknowledgement.
    pub last_consumed_at: Option<i64>,
    /// Push-to-accept latency over the last acknowledgements.
    pub ack_latency: Option<LatencySummary>,
    /// The most times any one message of the group was sent to a client (a redelivery loop shows
    /// here; injected duplicates count too).
    pub max_deliveries_per_message: u32,
    pub connection_attempts: ConnectionAttempts,
    pub clients: Vec<ClientSnapshot>,
}

impl GroupSnapshot {
    /// Clients whose receiver link is attached.
    pub fn attached_clients(&self) -> usize {
        self.clients.iter().filter(|c| c.attached).count()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientSnapshot {
    pub client_id: String,
    /// The AccessKey ID of its login (an STS key's ID with RRSA); never its secret.
    #[serde(default)]
    pub access_key_id: String,
    pub remote: String,
    /// Epoch milliseconds.
    pub connected_since: i64,
    pub idle_timeout_ms: Option<u32>,
    /// The receiver link is attached: the platform lists the client as connected.
    pub attached: bool,
    /// The max-message-size the client's receiver link advertised (the emulator does not enforce it).
    #[serde(default)]
    pub max_message_size: Option<u64>,
    pub in_flight: u64,
    pub delivered: u64,
    pub acknowledged: u64,
    pub realtime_consumed_per_minute: u64,
    pub stacked_consumed_per_minute: u64,
}

/// `GET /admin/consumer-groups/<id>/acknowledged-ids?from=N&limit=M`, with
/// `[limits] record_acknowledged_ids = true`: acknowledged messageIds in order, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcknowledgedIds {
    /// The position of `ids[0]` in the whole list.
    pub from: usize,
    pub ids: Vec<String>,
    /// How many acknowledgements there are in all (read on from `from + ids.len()`).
    pub total: usize,
}

/// Where in the connection a refusal happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Sasl,
    Open,
    Link,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Sasl => "sasl",
            Stage::Open => "open",
            Stage::Link => "link",
        }
    }
}

/// Why a connection was refused, as `GET /admin/refusals` and the log tell it. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// Epoch milliseconds.
    pub at: i64,
    pub remote: String,
    pub client_id: Option<String>,
    pub instance_id: Option<String>,
    pub consumer_group_id: Option<String>,
    pub stage: Stage,
    /// The AMQP error condition sent, or `sasl:auth` for a refused login.
    pub condition: String,
    pub reason: String,
}

/// One OpenAPI request as answered, for `GET /admin/openapi-calls` (tests count retries and rates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenApiCall {
    /// Unix time, milliseconds.
    pub at_ms: i64,
    pub access_key_id: String,
    pub action: String,
    /// `OK`, or the error code answered.
    pub code: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_request_without_a_shape_is_the_platforms_shape() {
        let request: PublishRequest = serde_json::from_str(r#"{"consumerGroupId": "G", "topic": "/t", "payload": "x"}"#).expect("parses");
        assert_eq!(request, PublishRequest::new("G", "/t", "x", 1));
        assert_eq!(serde_json::to_value(&request).expect("serializes").get("shape"), None);
    }

    #[test]
    fn shapes_are_named_in_kebab_case_and_typos_are_refused() {
        let shape: MessageShape =
            serde_json::from_str(r#"{"messageId": "ulong", "generateTime": "absent", "body": "amqp-sequence", "undecodable": true}"#)
                .expect("parses");
        assert_eq!(
            shape,
            MessageShape {
                message_id: MessageIdType::Ulong,
                generate_time: GenerateTimeType::Absent,
                body: BodyType::AmqpSequence,
                undecodable: true
            }
        );
        let error = serde_json::from_str::<MessageShape>(r#"{"body": "amqp_value"}"#).expect_err("a typo");
        assert!(error.to_string().contains("amqp-value"), "{error}");
        let error = serde_json::from_str::<MessageShape>(r#"{"messageID": "uuid"}"#).expect_err("a typo");
        assert!(error.to_string().contains("messageID"), "{error}");
    }
}
