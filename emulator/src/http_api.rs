//! HTTP on `--api-addr`: the OpenAPI at `/` and the admin API under `/admin`.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{groups::Group, message::StoredMessage, platform::Platform, rpc::OpenApi};

#[derive(Clone)]
struct Api {
    platform: Arc<Platform>,
    openapi: Arc<OpenApi>,
}

pub fn router(platform: Arc<Platform>) -> Router {
    let api = Api { openapi: Arc::new(OpenApi::new(platform.clone())), platform };
    Router::new()
        .route("/", get(openapi))
        .route("/healthz", get(|| async { "ok" }))
        .route("/admin/messages", post(publish))
        .route("/admin/traffic", post(traffic))
        .route("/admin/consumer-groups", get(list_groups))
        .route("/admin/consumer-groups/{id}", get(group_status))
        .route("/admin/faults", post(fault))
        .route("/admin/refusals", get(refusals))
        .route("/admin/openapi-calls", get(openapi_calls))
        .with_state(api)
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

async fn openapi(State(api): State<Api>, Query(pairs): Query<Vec<(String, String)>>) -> Response {
    let (status, body) = api.openapi.handle(pairs);
    (status, Json(body)).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PublishRequest {
    #[serde(default)]
    instance_id: String,
    consumer_group_id: String,
    topic: String,
    payload: String,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

/// At most this many messages per admin call, so one request can't exhaust memory by accident.
const MAX_PUBLISH: u32 = 1_000_000;

fn find_group(api: &Api, instance: &str, group: &str) -> Result<Arc<Group>, Response> {
    api.platform
        .group(instance, group)
        .cloned()
        .ok_or_else(|| problem(StatusCode::NOT_FOUND, format!("no consumer group `{group}` in instance `{instance}`")))
}

async fn publish(State(api): State<Api>, body: Result<Json<PublishRequest>, axum::extract::rejection::JsonRejection>) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if request.count == 0 || request.count > MAX_PUBLISH {
        return problem(StatusCode::BAD_REQUEST, format!("count must be within 1..={MAX_PUBLISH}"));
    }
    let group = match find_group(&api, &request.instance_id, &request.consumer_group_id) {
        Ok(group) => group,
        Err(response) => return response,
    };
    let messages: Vec<Arc<StoredMessage>> = (0..request.count)
        .map(|_| Arc::new(StoredMessage::new(api.platform.message_ids.next(), request.topic.clone(), request.payload.clone().into_bytes())))
        .collect();
    let ids: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
    group.publish(messages);
    Json(json!({"messageIds": ids})).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TrafficRequest {
    #[serde(default)]
    instance_id: String,
    consumer_group_id: String,
    rate_per_second: u32,
    #[serde(default = "twenty")]
    devices: u32,
    seconds: u32,
}

fn twenty() -> u32 {
    20
}

async fn traffic(State(api): State<Api>, body: Result<Json<TrafficRequest>, axum::extract::rejection::JsonRejection>) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if request.rate_per_second == 0 || request.seconds == 0 || request.devices == 0 {
        return problem(StatusCode::BAD_REQUEST, "ratePerSecond, devices and seconds must be positive");
    }
    let group = match find_group(&api, &request.instance_id, &request.consumer_group_id) {
        Ok(group) => group,
        Err(response) => return response,
    };
    tokio::spawn(crate::traffic::run(group, api.platform.clone(), request.rate_per_second, request.devices, request.seconds));
    let total = request.rate_per_second as u64 * request.seconds as u64;
    (StatusCode::ACCEPTED, Json(json!({"started": true, "messages": total}))).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstanceQuery {
    #[serde(default)]
    instance_id: String,
}

async fn group_status(State(api): State<Api>, Path(id): Path<String>, Query(q): Query<InstanceQuery>) -> Response {
    match find_group(&api, &q.instance_id, &id) {
        Ok(group) => Json(group.snapshot()).into_response(),
        Err(response) => response,
    }
}

async fn list_groups(State(api): State<Api>) -> Response {
    Json(api.platform.groups().map(|g| g.snapshot()).collect::<Vec<_>>()).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultRequest {
    action: String,
    consumer_group_id: String,
    #[serde(default)]
    instance_id: String,
}

async fn fault(State(api): State<Api>, body: Result<Json<FaultRequest>, axum::extract::rejection::JsonRejection>) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let group = match find_group(&api, &request.instance_id, &request.consumer_group_id) {
        Ok(group) => group,
        Err(response) => return response,
    };
    let result: Value = match request.action.as_str() {
        "drop-connections" => json!({"dropped": group.drop_connections()}),
        "refuse-logins" => {
            group.set_refuse_logins(true);
            json!({"refusingLogins": true})
        }
        "pause-delivery" => {
            group.set_paused(true);
            json!({"paused": true})
        }
        "resume" => {
            group.set_refuse_logins(false);
            group.set_paused(false);
            json!({"refusingLogins": false, "paused": false})
        }
        other => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("unknown action `{other}`: expected drop-connections, refuse-logins, pause-delivery or resume"),
            );
        }
    };
    tracing::info!(action = %request.action, group = %request.consumer_group_id, "fault injected");
    Json(result).into_response()
}

async fn openapi_calls(State(api): State<Api>) -> Response {
    Json(api.openapi.calls()).into_response()
}

async fn refusals(State(api): State<Api>) -> Response {
    Json(api.platform.refusals()).into_response()
}
