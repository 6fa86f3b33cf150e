//! HTTP on `--api-addr`: the OpenAPI at `/` and the admin API under `/admin`.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, Query, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    admin::{
        AcknowledgedIds, ErrorReply, FaultReply, FaultRequest, GroupSnapshot, OpenApiCall, PublishReply, PublishRequest, Refusal,
        TrafficReply, TrafficRequest,
    },
    groups::Group,
    platform::Platform,
    publish,
    rpc::OpenApi,
    sts,
};

#[derive(Clone)]
struct Api {
    platform: Arc<Platform>,
    openapi: Arc<OpenApi>,
}

pub fn router(platform: Arc<Platform>) -> Router {
    let api = Api { openapi: Arc::new(OpenApi::new(platform.clone())), platform };
    Router::new()
        .route("/", get(openapi).post(sts))
        .route("/healthz", get(|| async { "ok" }))
        .route("/admin/messages", post(publish))
        .route("/admin/traffic", post(traffic))
        .route("/admin/consumer-groups", get(list_groups))
        .route("/admin/consumer-groups/{id}", get(group_status))
        .route("/admin/consumer-groups/{id}/acknowledged-ids", get(acknowledged_ids))
        .route("/admin/faults", post(fault))
        .route("/admin/refusals", get(refusals))
        .route("/admin/openapi-calls", get(openapi_calls))
        .with_state(api)
}

/// An admin request refused: the status and a message saying what is wrong.
struct Problem(StatusCode, String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorReply { error: self.1 })).into_response()
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        Problem(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}

fn bad_request(message: impl Into<String>) -> Problem {
    Problem(StatusCode::BAD_REQUEST, message.into())
}

async fn openapi(State(api): State<Api>, Query(pairs): Query<Vec<(String, String)>>) -> Response {
    let (status, body) = api.openapi.handle(pairs);
    (status, Json(body)).into_response()
}

/// STS on the same endpoint (the platform's is `https://sts.aliyuncs.com`, POST with a form).
async fn sts(State(api): State<Api>, axum::extract::Form(form): axum::extract::Form<HashMap<String, String>>) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    if form.get("Action").map(String::as_str) != Some("AssumeRoleWithOIDC") {
        let body = json!({"RequestId": request_id, "Code": "InvalidAction.NotFound", "Message": "Specified api is not found, please check your url and method."});
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    }
    match sts::assume_role_with_oidc(&api.platform.sts, &form, crate::message::epoch_ms()) {
        Ok(issued) => {
            tracing::info!(
                role_arn = issued.role_arn,
                subject = issued.subject,
                access_key_id = issued.access_key_id,
                "STS issued credentials"
            );
            let body = sts::answer(&issued, &request_id);
            api.platform.issue(issued);
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(refusal) => {
            tracing::warn!(code = refusal.code, message = refusal.message, "STS refused AssumeRoleWithOIDC");
            let body = json!({"RequestId": request_id, "HostId": "sts.aliyuncs.com", "Code": refusal.code, "Message": refusal.message});
            (refusal.status, Json(body)).into_response()
        }
    }
}

fn find_group(api: &Api, instance: &str, group: &str) -> Result<Arc<Group>, Problem> {
    api.platform
        .group(instance, group)
        .cloned()
        .ok_or_else(|| Problem(StatusCode::NOT_FOUND, format!("no consumer group `{group}` in instance `{instance}`")))
}

async fn publish(State(api): State<Api>, body: Result<Json<PublishRequest>, JsonRejection>) -> Result<Json<PublishReply>, Problem> {
    let Json(request) = body?;
    let messages = publish::messages(&request, &api.platform.message_ids).map_err(bad_request)?;
    let group = find_group(&api, &request.instance_id, &request.consumer_group_id)?;
    let message_ids = messages.iter().map(|m| m.message_id.canonical()).collect();
    group.publish(messages.into_iter().map(Arc::new));
    Ok(Json(PublishReply { message_ids }))
}

async fn traffic(
    State(api): State<Api>,
    body: Result<Json<TrafficRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<TrafficReply>), Problem> {
    let Json(request) = body?;
    if request.rate_per_second == 0 || request.seconds == 0 || request.devices == 0 {
        return Err(bad_request("ratePerSecond, devices and seconds must be positive"));
    }
    let group = find_group(&api, &request.instance_id, &request.consumer_group_id)?;
    tokio::spawn(crate::traffic::run(group, api.platform.clone(), request.rate_per_second, request.devices, request.seconds));
    let messages = u64::from(request.rate_per_second) * u64::from(request.seconds);
    Ok((StatusCode::ACCEPTED, Json(TrafficReply { started: true, messages })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstanceQuery {
    #[serde(default)]
    instance_id: String,
}

async fn group_status(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(q): Query<InstanceQuery>,
) -> Result<Json<GroupSnapshot>, Problem> {
    Ok(Json(find_group(&api, &q.instance_id, &id)?.snapshot()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageQuery {
    #[serde(default)]
    instance_id: String,
    #[serde(default)]
    from: usize,
    #[serde(default = "page_limit")]
    limit: usize,
}

fn page_limit() -> usize {
    100_000
}

async fn acknowledged_ids(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<AcknowledgedIds>, Problem> {
    if !api.platform.limits.record_acknowledged_ids {
        return Err(Problem(StatusCode::CONFLICT, "acknowledged ids are not recorded: set [limits] record_acknowledged_ids = true".into()));
    }
    let (ids, total) = find_group(&api, &q.instance_id, &id)?.acknowledged_ids(q.from, q.limit.min(page_limit()));
    Ok(Json(AcknowledgedIds { from: q.from, ids, total }))
}

async fn list_groups(State(api): State<Api>) -> Json<Vec<GroupSnapshot>> {
    Json(api.platform.groups().map(|g| g.snapshot()).collect())
}

async fn fault(State(api): State<Api>, body: Result<Json<FaultRequest>, JsonRejection>) -> Result<Json<FaultReply>, Problem> {
    let Json(request) = body?;
    let group = find_group(&api, &request.instance_id, &request.consumer_group_id)?;
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
            return Err(bad_request(format!(
                "unknown action `{other}`: expected drop-connections, refuse-logins, pause-delivery or resume"
            )));
        }
    };
    tracing::info!(action = %request.action, group = %request.consumer_group_id, "fault injected");
    Ok(Json(result))
}

async fn openapi_calls(State(api): State<Api>) -> Json<Vec<OpenApiCall>> {
    Json(api.openapi.calls())
}

async fn refusals(State(api): State<Api>) -> Json<Vec<Refusal>> {
    Json(api.platform.refusals())
}
