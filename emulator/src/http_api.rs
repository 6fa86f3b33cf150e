//! HTTP on `--api-addr`: the OpenAPI at `/` and the admin API under `/admin`.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, Query, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;

use crate::{
    admin::{ErrorReply, FaultReply, FaultRequest, PublishReply, PublishRequest, TrafficReply, TrafficRequest},
    groups::Group,
    platform::Platform,
    publish,
    rpc::OpenApi,
};

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
    (status, Json(ErrorReply { error: message.into() })).into_response()
}

async fn openapi(State(api): State<Api>, Query(pairs): Query<Vec<(String, String)>>) -> Response {
    let (status, body) = api.openapi.handle(pairs);
    (status, Json(body)).into_response()
}

fn find_group(api: &Api, instance: &str, group: &str) -> Result<Arc<Group>, Response> {
    api.platform
        .group(instance, group)
        .cloned()
        .ok_or_else(|| problem(StatusCode::NOT_FOUND, format!("no consumer group `{group}` in instance `{instance}`")))
}

async fn publish(State(api): State<Api>, body: Result<Json<PublishRequest>, JsonRejection>) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let messages = match publish::messages(&request, &api.platform.message_ids) {
        Ok(messages) => messages,
        Err(why) => return problem(StatusCode::BAD_REQUEST, why),
    };
    let group = match find_group(&api, &request.instance_id, &request.consumer_group_id) {
        Ok(group) => group,
        Err(response) => return response,
    };
    let message_ids = messages.iter().map(|m| m.message_id.canonical()).collect();
    group.publish(messages.into_iter().map(Arc::new));
    Json(PublishReply { message_ids }).into_response()
}

async fn traffic(State(api): State<Api>, body: Result<Json<TrafficRequest>, JsonRejection>) -> Response {
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
    let messages = u64::from(request.rate_per_second) * u64::from(request.seconds);
    (StatusCode::ACCEPTED, Json(TrafficReply { started: true, messages })).into_response()
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

async fn fault(State(api): State<Api>, body: Result<Json<FaultRequest>, JsonRejection>) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let group = match find_group(&api, &request.instance_id, &request.consumer_group_id) {
        Ok(group) => group,
        Err(response) => return response,
    };
    let result = match request.action.as_str() {
        "drop-connections" => FaultReply { dropped: Some(group.drop_connections()), ..FaultReply::default() },
        "refuse-logins" => {
            group.set_refuse_logins(true);
            FaultReply { refusing_logins: Some(true), ..FaultReply::default() }
        }
        "pause-delivery" => {
            group.set_paused(true);
            FaultReply { paused: Some(true), ..FaultReply::default() }
        }
        "resume" => {
            group.set_refuse_logins(false);
            group.set_paused(false);
            FaultReply { refusing_logins: Some(false), paused: Some(false), ..FaultReply::default() }
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
