//! JSON bodies of the consumer-group OpenAPI actions, with the platform's field names.

use serde::{Deserialize, Serialize};

/// What every action answers besides its own fields; all of `ResetConsumerGroupPosition`'s answer,
/// and the shape of a business error (`Success: false`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope {
    pub request_id: String,
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// `ResetConsumerGroupPosition`: the envelope alone.
pub type ActionResult = Envelope;

/// `QueryConsumerGroupStatus`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConsumerGroupStatus {
    #[serde(flatten)]
    pub envelope: Envelope,
    /// Messages in the stacked queue.
    #[serde(default)]
    pub accumulation_count: i64,
    /// Messages consumed per minute.
    #[serde(default)]
    pub consumer_speed: i64,
    #[serde(default)]
    pub accumulated_consume_count_per_minute: i64,
    #[serde(default)]
    pub real_time_consume_count_per_minute: i64,
    /// e.g. `2020-05-29T03:37:56.000Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_consumer_time: Option<String>,
    #[serde(default)]
    pub client_connection_status_list: ClientConnectionStatusList,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientConnectionStatusList {
    #[serde(rename = "ConsumerGroupClientConnectionInfo", default)]
    pub clients: Vec<ClientConnectionInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClientConnectionInfo {
    pub client_id: String,
    /// `ip:port` of the client as the platform sees it.
    pub client_ip_port: String,
    /// Epoch milliseconds.
    pub online_time: i64,
    #[serde(default)]
    pub real_time_consume_count_per_minute: i64,
    #[serde(default)]
    pub accumulated_consume_count_per_minute: i64,
}

/// `QueryConsumerGroupList`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConsumerGroupList {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(default)]
    pub current_page: u32,
    #[serde(default)]
    pub page_size: u32,
    #[serde(default)]
    pub page_count: u32,
    #[serde(default)]
    pub total: u32,
    #[serde(default)]
    pub data: ConsumerGroupListData,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumerGroupListData {
    #[serde(rename = "ConsumerGroupDTO", default)]
    pub groups: Vec<ConsumerGroupDto>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConsumerGroupDto {
    pub group_id: String,
    pub group_name: String,
    /// e.g. `2020-05-29 11:37:56`.
    pub create_time: String,
}

/// What the API gateway answers (HTTP 4xx/5xx) when a request is refused before the action runs:
/// a bad signature, an unknown AccessKey, throttling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GatewayError {
    pub request_id: String,
    #[serde(default)]
    pub host_id: String,
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub recommend: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_the_platform_json() {
        let json = r#"{"RequestId":"r","Success":true,"AccumulationCount":1200,"ConsumerSpeed":30,
            "LastConsumerTime":"2020-05-29T03:37:56.000Z",
            "ClientConnectionStatusList":{"ConsumerGroupClientConnectionInfo":[
              {"ClientId":"w-0","ClientIpPort":"10.0.0.1:5000","OnlineTime":1590723476000,"RealTimeConsumeCountPerMinute":3}]}}"#;
        let status: ConsumerGroupStatus = serde_json::from_str(json).unwrap();
        assert_eq!(status.accumulation_count, 1200);
        assert_eq!((status.envelope.request_id.as_str(), status.envelope.success), ("r", true));
        assert_eq!(status.client_connection_status_list.clients[0].client_id, "w-0");
        let back = serde_json::to_value(&status).unwrap();
        assert_eq!(back["ClientConnectionStatusList"]["ConsumerGroupClientConnectionInfo"][0]["OnlineTime"], 1590723476000i64);
        assert_eq!((back["RequestId"].as_str(), back["Success"].as_bool()), (Some("r"), Some(true)), "the envelope is flat");
    }
}
