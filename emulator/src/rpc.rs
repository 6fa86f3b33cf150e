//! The platform's RPC-style OpenAPI: signature v1 verified, throttled per account, and the
//! consumer-group actions with the platform's JSON field names.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::http::StatusCode;
use iotsub_aliyun::{
    consumer_group::{
        ClientConnectionInfo, ClientConnectionStatusList, ConsumerGroupDto, ConsumerGroupList, ConsumerGroupListData, ConsumerGroupStatus,
        Envelope, GatewayError,
    },
    openapi::{self, Params},
};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::{admin::OpenApiCall, platform::Platform, rate::TokenBucket};

const HOST_ID: &str = "iot.emulator.local";
/// The gateway refuses a Timestamp further than this from its clock, and a nonce seen within it.
const REPLAY_WINDOW: Duration = Duration::from_secs(15 * 60);

pub struct OpenApi {
    platform: Arc<Platform>,
    buckets: Mutex<HashMap<String, TokenBucket>>,
    nonces: Mutex<HashMap<String, Instant>>,
    calls: Mutex<std::collections::VecDeque<OpenApiCall>>,
}

/// The newest calls kept.
const CALLS_KEPT: usize = 10_000;

type Reply = (StatusCode, Value);

fn gateway_error(status: StatusCode, code: &str, message: String) -> Reply {
    let body = GatewayError {
        request_id: uuid::Uuid::new_v4().to_string().to_uppercase(),
        host_id: HOST_ID.into(),
        code: code.into(),
        message,
        recommend: String::new(),
    };
    (status, serde_json::to_value(body).expect("serializable"))
}

fn business_error(code: &str, message: &str) -> Reply {
    let body = Envelope { request_id: request_id(), success: false, code: Some(code.into()), error_message: Some(message.into()) };
    (StatusCode::OK, serde_json::to_value(body).expect("serializable"))
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

impl OpenApi {
    pub fn new(platform: Arc<Platform>) -> Self {
        OpenApi { platform, buckets: Mutex::new(HashMap::new()), nonces: Mutex::new(HashMap::new()), calls: Default::default() }
    }

    /// The calls answered so far (the newest 10 000), oldest first.
    pub fn calls(&self) -> Vec<OpenApiCall> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }

    /// One GET request's query parameters (decoded; a repeated name is refused), recorded.
    pub fn handle(&self, pairs: Vec<(String, String)>) -> Reply {
        let find = |name: &str| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default();
        let (access_key_id, action) = (find("AccessKeyId"), find("Action"));
        let reply = self.answer(pairs);
        let code = match reply.1.get("Code").and_then(Value::as_str) {
            Some(code) => code.to_owned(),
            None => "OK".to_owned(),
        };
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        if calls.len() == CALLS_KEPT {
            calls.pop_front();
        }
        let at_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        calls.push_back(OpenApiCall { at_ms, access_key_id, action, code });
        reply
    }

    fn answer(&self, pairs: Vec<(String, String)>) -> Reply {
        let mut params = Params::new();
        for (name, value) in pairs {
            if params.insert(name.clone(), value).is_some() {
                return gateway_error(StatusCode::BAD_REQUEST, "InvalidParameter", format!("The parameter {name} is given twice."));
            }
        }
        if let Err(reply) = self.authenticate(&params) {
            return reply;
        }
        let get = |name: &str| params.get(name).map(String::as_str);
        let instance = get("IotInstanceId").unwrap_or("");
        match get("Action").unwrap_or("") {
            "QueryConsumerGroupStatus" => self.query_status(instance, get("GroupId")),
            "ResetConsumerGroupPosition" => self.reset(instance, get("GroupId")),
            "QueryConsumerGroupList" => self.list(instance, get("CurrentPage"), get("PageSize"), get("GroupName"), get("Fuzzy")),
            other => gateway_error(
                StatusCode::NOT_FOUND,
                "InvalidAction.NotFound",
                format!("Specified api is not found, please check your url and method. Action: {other}"),
            ),
        }
    }

    fn authenticate(&self, params: &Params) -> Result<(), Reply> {
        for required in
            ["AccessKeyId", "Signature", "SignatureNonce", "Timestamp", "Action", "Version", "SignatureMethod", "SignatureVersion"]
        {
            if !params.contains_key(required) {
                return Err(gateway_error(
                    StatusCode::BAD_REQUEST,
                    "MissingParameter",
                    format!("The input parameter {required} that is mandatory for processing this request is not supplied."),
                ));
            }
        }
        let access_key_id = &params["AccessKeyId"];
        let Some(account) = self.platform.account(access_key_id) else {
            return Err(gateway_error(StatusCode::NOT_FOUND, "InvalidAccessKeyId.NotFound", "Specified access key is not found.".into()));
        };
        let secret = account.access_key_secret.as_str();
        if params["Version"] != openapi::IOT_API_VERSION {
            return Err(gateway_error(
                StatusCode::BAD_REQUEST,
                "InvalidVersion",
                format!("Specified parameter Version {} is not valid; expected {}.", params["Version"], openapi::IOT_API_VERSION),
            ));
        }
        match openapi::verify("GET", params, secret) {
            Ok(()) => {}
            Err(iotsub_aliyun::Error::SignatureMismatch) => {
                return Err(gateway_error(
                    StatusCode::BAD_REQUEST,
                    "SignatureDoesNotMatch",
                    format!(
                        "Specified signature is not matched with our calculation. server string to sign is:{}",
                        openapi::string_to_sign("GET", params)
                    ),
                ));
            }
            Err(e) => return Err(gateway_error(StatusCode::BAD_REQUEST, "InvalidParameter", e.to_string())),
        }
        // STS credentials: the token must come with them, and they must not have expired.
        if let Some(token) = &account.security_token {
            if params.get("SecurityToken") != Some(token) {
                return Err(gateway_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidSecurityToken.Mismatch",
                    "Specified SecurityToken is not valid.".into(),
                ));
            }
            if account.expires_at_ms.is_some_and(|at| at <= crate::message::epoch_ms()) {
                return Err(gateway_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidSecurityToken.Expired",
                    "Specified SecurityToken is expired.".into(),
                ));
            }
        }
        let now_wall = OffsetDateTime::now_utc();
        match openapi::parse_timestamp(&params["Timestamp"]) {
            None => {
                return Err(gateway_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidTimeStamp.Format",
                    "Specified time stamp or date value is not well formatted.".into(),
                ));
            }
            Some(at) if (now_wall - at).unsigned_abs() > REPLAY_WINDOW => {
                return Err(gateway_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidTimeStamp.Expired",
                    format!("Specified time stamp or date value is expired. Timestamp {}", params["Timestamp"]),
                ));
            }
            Some(_) => {}
        }
        let now = Instant::now();
        {
            let mut nonces = self.nonces.lock().unwrap_or_else(PoisonError::into_inner);
            nonces.retain(|_, seen| now.saturating_duration_since(*seen) < REPLAY_WINDOW);
            if nonces.insert(format!("{access_key_id}/{}", params["SignatureNonce"]), now).is_some() {
                return Err(gateway_error(
                    StatusCode::BAD_REQUEST,
                    "SignatureNonceUsed",
                    "Specified signature nonce was used already.".into(),
                ));
            }
        }
        let rate = self.platform.limits.openapi_rate_per_account;
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(access_key_id.clone()).or_insert_with(|| TokenBucket::new(rate, now));
        if !bucket.take(now) {
            return Err(gateway_error(StatusCode::BAD_REQUEST, "Throttling.User", "Request was denied due to user flow control.".into()));
        }
        Ok(())
    }

    fn query_status(&self, instance: &str, group_id: Option<&str>) -> Reply {
        let Some(group_id) = group_id.filter(|g| !g.is_empty()) else {
            return business_error("iot.common.InvalidParameter", "GroupId is mandatory for this action.");
        };
        let Some(group) = self.platform.group(instance, group_id) else {
            return business_error("iot.consumergroup.NotExistedConsumerGroup", "The consumer group does not exist.");
        };
        let snap = group.snapshot();
        let body = ConsumerGroupStatus {
            envelope: Envelope { request_id: request_id(), success: true, ..Default::default() },
            accumulation_count: snap.backlog as i64,
            consumer_speed: snap.consumed_per_minute as i64,
            accumulated_consume_count_per_minute: snap.stacked_consumed_per_minute as i64,
            real_time_consume_count_per_minute: snap.realtime_consumed_per_minute as i64,
            last_consumer_time: snap.last_consumed_at.map(format_iso_ms),
            client_connection_status_list: ClientConnectionStatusList {
                clients: snap
                    .clients
                    .iter()
                    .filter(|c| c.attached)
                    .map(|c| ClientConnectionInfo {
                        client_id: c.client_id.clone(),
                        client_ip_port: c.remote.clone(),
                        online_time: c.connected_since,
                        real_time_consume_count_per_minute: c.realtime_consumed_per_minute as i64,
                        accumulated_consume_count_per_minute: c.stacked_consumed_per_minute as i64,
                    })
                    .collect(),
            },
        };
        (StatusCode::OK, serde_json::to_value(body).expect("serializable"))
    }

    fn reset(&self, instance: &str, group_id: Option<&str>) -> Reply {
        let Some(group) = group_id.and_then(|g| self.platform.group(instance, g)) else {
            return business_error("iot.consumergroup.NotExistedConsumerGroup", "The consumer group does not exist.");
        };
        let purged = group.purge();
        tracing::info!(group = %group.key.consumer_group_id, purged, "stacked queue purged (ResetConsumerGroupPosition)");
        let body = Envelope { request_id: request_id(), success: true, code: None, error_message: None };
        (StatusCode::OK, serde_json::to_value(body).expect("serializable"))
    }

    fn list(&self, instance: &str, page: Option<&str>, size: Option<&str>, name: Option<&str>, fuzzy: Option<&str>) -> Reply {
        let page: u32 = match page.map_or(Ok(1), str::parse) {
            Ok(p) if p >= 1 => p,
            _ => return business_error("iot.common.InvalidParameter", "CurrentPage must be a positive integer."),
        };
        let size: u32 = match size.map(str::parse) {
            Some(Ok(s)) if (1..=1000).contains(&s) => s,
            _ => return business_error("iot.common.InvalidParameter", "PageSize must be between 1 and 1000."),
        };
        let fuzzy = fuzzy.is_some_and(|f| f.eq_ignore_ascii_case("true"));
        let matching: Vec<ConsumerGroupDto> = self
            .platform
            .groups()
            .filter(|g| g.key.instance_id == instance)
            .filter(|g| match name {
                None | Some("") => true,
                Some(n) if fuzzy => g.key.consumer_group_id.contains(n),
                Some(n) => g.key.consumer_group_id == n,
            })
            .map(|g| ConsumerGroupDto {
                group_id: g.key.consumer_group_id.clone(),
                group_name: g.key.consumer_group_id.clone(),
                create_time: "2026-01-01 00:00:00".into(),
            })
            .collect();
        let total = matching.len() as u32;
        let groups = matching.into_iter().skip(((page - 1) * size) as usize).take(size as usize).collect();
        let body = ConsumerGroupList {
            envelope: Envelope { request_id: request_id(), success: true, ..Default::default() },
            current_page: page,
            page_size: size,
            page_count: total.div_ceil(size),
            total,
            data: ConsumerGroupListData { groups },
        };
        (StatusCode::OK, serde_json::to_value(body).expect("serializable"))
    }
}

/// `2020-05-29T03:37:56.000Z`, the platform's LastConsumerTime format.
fn format_iso_ms(epoch_ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(epoch_ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!("{}.{:03}Z", openapi::format_timestamp(at).trim_end_matches('Z'), at.millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn signed(action: &str, extra: &[(&str, &str)], secret: &str, nonce: &str) -> Vec<(String, String)> {
        let mut params = openapi::common_params(action, "demo", "cn-shanghai", nonce, OffsetDateTime::now_utc());
        for (k, v) in extra {
            params.insert((*k).into(), (*v).into());
        }
        let sig = openapi::signature(secret, &openapi::string_to_sign("GET", &params));
        params.insert("Signature".into(), sig);
        params.into_iter().collect()
    }

    #[test]
    fn status_of_a_known_group_and_errors_in_the_platforms_shape() {
        let api = OpenApi::new(Platform::new(&Config::default()));
        let (status, body) = api.handle(signed("QueryConsumerGroupStatus", &[("GroupId", "DEFAULT_GROUP")], "demo-secret", "n1"));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["Success"], true);
        assert_eq!(body["AccumulationCount"], 0);

        let (status, body) = api.handle(signed("QueryConsumerGroupStatus", &[("GroupId", "DEFAULT_GROUP")], "wrong", "n2"));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["Code"], "SignatureDoesNotMatch");
        assert!(body["RequestId"].is_string());

        let (_, body) = api.handle(signed("QueryConsumerGroupStatus", &[("GroupId", "NOPE")], "demo-secret", "n3"));
        assert_eq!(
            (body["Success"].clone(), body["Code"].clone()),
            (Value::Bool(false), Value::from("iot.consumergroup.NotExistedConsumerGroup"))
        );

        let (status, body) = api.handle(signed("QueryConsumerGroupStatus", &[("GroupId", "DEFAULT_GROUP")], "demo-secret", "n1"));
        assert_eq!((status, body["Code"].as_str()), (StatusCode::BAD_REQUEST, Some("SignatureNonceUsed")));
    }

    #[test]
    fn more_than_the_rate_is_throttled() {
        let api = OpenApi::new(Platform::new(&Config::default()));
        let codes: Vec<_> = (0..8)
            .map(|i| api.handle(signed("QueryConsumerGroupList", &[("PageSize", "10")], "demo-secret", &format!("n{i}"))).1["Code"].clone())
            .collect();
        assert_eq!(codes.iter().filter(|c| c.is_null()).count(), 5, "{codes:?}");
        assert_eq!(codes.iter().filter(|c| *c == "Throttling.User").count(), 3);
    }

    #[test]
    fn iso_time_has_milliseconds() {
        assert_eq!(format_iso_ms(1_590_723_476_123), "2020-05-29T03:37:56.123Z");
    }
}
