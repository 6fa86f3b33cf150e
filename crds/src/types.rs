//! Spec and status of `ConsumerGroupSubscription`. Bounds the API server can check are in the schema
//! (ranges, enums, CEL rules that name the field); what only the operator can see (the Secret, the
//! platform) becomes status conditions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use iotsub_aliyun::{AuthMode, SignMethod};

/// The platform's limit of clients of one consumer group (PLATFORM.md; another page says 128).
/// A macro too, so the CRD's CEL rule is written with the same number.
macro_rules! default_client_cap {
    () => {
        64
    };
}
pub const DEFAULT_CLIENT_CAP: i32 = default_client_cap!();

/// The most unacknowledged messages one worker pod may hold: `credit × connectionsPerPod`. The
/// same as one connection's largest credit, so several connections never multiply what a pod must
/// keep in memory and hand to its sink within the platform's 30 s acknowledgement window (at the
/// default 1 MiB `maxMessageBytes`, up to 10 GiB in the worst case already). A macro too, for the
/// CEL rule.
macro_rules! max_credit_per_pod {
    () => {
        10000
    };
}
pub const MAX_CREDIT_PER_POD: i32 = max_credit_per_pod!();

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "iotsub.dev",
    version = "v1alpha1",
    kind = "ConsumerGroupSubscription",
    plural = "consumergroupsubscriptions",
    shortname = "cgs",
    namespaced,
    status = "ConsumerGroupSubscriptionStatus",
    derive = "PartialEq",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.consumerGroupId"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.desiredReplicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Backlog", type_ = "integer", json_path = ".status.backlog.messages"),
    printcolumn(name = "Clients", type_ = "integer", json_path = ".status.connectedClients"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // Pod names (the clientIds) add 17 characters to this name, and `-<i>` with several
    // connections; the platform allows 64.
    validation = Rule::new("size(self.metadata.name) <= 44").message("metadata.name must be at most 44 characters: pod names become clientIds, which the platform limits to 64")
)]
#[x_kube(validation = Rule::new(
    "!has(self.autoscaling) || !self.autoscaling.enabled || self.autoscaling.maxReplicas * self.connection.connectionsPerPod <= self.autoscaling.clientCap"
).message("autoscaling.maxReplicas × connection.connectionsPerPod must not exceed autoscaling.clientCap (clients per consumer group)").field_path(".autoscaling.maxReplicas"))]
#[x_kube(validation = Rule::new(concat!(
    "(has(self.autoscaling) && self.autoscaling.enabled) || self.replicas * self.connection.connectionsPerPod <= (has(self.autoscaling) ? self.autoscaling.clientCap : ",
    default_client_cap!(),
    ")"
)).message("replicas × connection.connectionsPerPod must not exceed autoscaling.clientCap (clients per consumer group)").field_path(".replicas"))]
#[x_kube(validation = Rule::new(concat!("self.connection.credit * self.connection.connectionsPerPod <= ", max_credit_per_pod!()))
    .message(concat!("connection.credit × connection.connectionsPerPod must not exceed ", max_credit_per_pod!(), ": the unacknowledged messages one worker pod may hold"))
    .field_path(".connection.credit"))]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupSubscriptionSpec {
    pub endpoint: Endpoint,
    /// Empty or absent for legacy public instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("!self.matches('[,=|]')").message("iotInstanceId must not contain `,`, `=` or `|`: they separate the fields of the AMQP username"))]
    pub iot_instance_id: Option<String>,
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("!self.matches('[,=|]')").message("consumerGroupId must not contain `,`, `=` or `|`: they separate the fields of the AMQP username"))]
    pub consumer_group_id: String,
    /// For the OpenAPI endpoint `iot.<regionId>.aliyuncs.com`.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9-]+$"))]
    pub region_id: String,
    pub credentials: Credentials,
    #[serde(default)]
    pub connection: Connection,
    /// Used when autoscaling is off; `kubectl scale` writes it.
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 128))]
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    #[serde(default)]
    pub sink: Sink,
    #[serde(default)]
    pub worker: WorkerTemplate,
    /// The worker pods' ServiceAccount. Default: none (the namespace's `default`, with no token
    /// mounted), or with `credentials.rrsa` one named after the subscription, which the operator
    /// creates — the subject `system:serviceaccount:<namespace>:<name>` the role must trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
}

fn yes() -> bool {
    true
}

fn one() -> i32 {
    1
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// AMQP host, also the TLS server name: a DNS name (RFC 1123 labels) or an IPv4 address.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?([.][A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$')")
        .message("endpoint.host must be a host name or an IPv4 address, without scheme, port or path (e.g. iot-cn-xxxx.amqp.iothub.aliyuncs.com)"))]
    pub host: String,
    #[serde(default = "amqps_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// An extra trust root (a private or emulated endpoint), for this AMQP endpoint and for
    /// `autoscaling.apiEndpoint` when set; the default roots stay trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

fn amqps_port() -> i32 {
    5671
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// A key of the Secret's data: letters, digits, `-`, `_` and `.` (Kubernetes' rule for keys).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$')").message("endpoint.caSecretRef.key must be a Secret data key: letters, digits, `-`, `_` and `.`"))]
    pub key: String,
}

/// Where the workers' (and the operator's) credentials come from: a Secret, or RRSA.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.secretName) != has(self.rrsa)").message("credentials: set exactly one of secretName (an AccessKey or STS token in a Secret) and rrsa (a RAM role for the worker's ServiceAccount)"))]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// A Secret in the same namespace with `accessKeyId`, `accessKeySecret` (and `securityToken`
    /// for `ststoken`), mounted into the workers: a change reaches running pods without a restart
    /// and is used from their next connection attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// No AccessKey at all: the worker's ServiceAccount token is exchanged with STS
    /// `AssumeRoleWithOIDC` for credentials that expire (logins use `ststoken`; `authMode` is not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrsa: Option<Rrsa>,
    #[serde(default)]
    pub auth_mode: AuthMode,
    #[serde(default)]
    pub sign_method: SignMethod,
}

/// RRSA (RAM Roles for Service Accounts): the role the worker pods' ServiceAccount may assume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rrsa {
    /// `acs:ram::<account>:role/<name>`.
    #[schemars(length(max = 512), regex(pattern = r"^acs:ram::[0-9]+:role/.+$"))]
    pub role_arn: String,
    /// `acs:ram::<account>:oidc-provider/<name>`: the cluster's OIDC provider in RAM.
    #[schemars(length(max = 512), regex(pattern = r"^acs:ram::[0-9]+:oidc-provider/.+$"))]
    pub oidc_provider_arn: String,
    /// Shown in the platform's audit as the session; default: the pod name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), regex(pattern = r"^[-a-zA-Z0-9.@_]+$"))]
    pub role_session_name: Option<String>,
    /// How long each set of STS credentials lasts, up to the role's maximum session duration.
    #[serde(default = "sts_duration_seconds")]
    #[schemars(range(min = 900, max = 43200))]
    pub duration_seconds: i32,
    /// The STS endpoint; default `https://sts.aliyuncs.com`. Over HTTPS, trusting
    /// `endpoint.caSecretRef` too when set (a private endpoint, or the emulator).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.startsWith('https://')").message("credentials.rrsa.stsEndpoint must be an https:// URL"))]
    pub sts_endpoint: String,
}

fn sts_duration_seconds() -> i32 {
    3600
}

impl Credentials {
    /// The Secret named by `secretName`, when the credentials come from one.
    pub fn secret(&self) -> Option<&str> {
        self.secret_name.as_deref()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// Each connection is one client of the consumer group.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 64))]
    pub connections_per_pod: i32,
    /// Advertised in the AMQP Open frame; the platform wants 30000..=300000.
    #[serde(default = "idle_timeout_ms")]
    #[schemars(range(min = 30000, max = 300000))]
    pub idle_timeout_ms: i32,
    /// Link credit per connection.
    #[serde(default = "credit")]
    #[schemars(range(min = 1, max = 10000))]
    pub credit: i32,
    /// The largest message the link accepts; a larger one becomes a dead letter.
    #[serde(default = "max_message_bytes")]
    #[schemars(range(min = 1024, max = 67_108_864))]
    pub max_message_bytes: i64,
}

fn idle_timeout_ms() -> i32 {
    60_000
}

fn credit() -> i32 {
    100
}

fn max_message_bytes() -> i64 {
    1_048_576
}

impl Default for Connection {
    fn default() -> Self {
        Connection { connections_per_pod: 1, idle_timeout_ms: idle_timeout_ms(), credit: credit(), max_message_bytes: max_message_bytes() }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed autoscaling.maxReplicas").field_path(".minReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Writing an `autoscaling` block turns it on; `false` keeps the block and uses `spec.replicas`.
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 128))]
    pub min_replicas: i32,
    #[serde(default = "max_replicas")]
    #[schemars(range(min = 1, max = 128))]
    pub max_replicas: i32,
    /// The platform's limit of clients per consumer group.
    #[serde(default = "client_cap")]
    #[schemars(range(min = 1, max = 128))]
    pub client_cap: i32,
    #[serde(default = "target_backlog")]
    #[schemars(range(min = 1))]
    pub target_backlog_per_replica: i64,
    /// How often the platform's OpenAPI is asked for the backlog and the connected clients.
    #[serde(default = "poll_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub poll_interval_seconds: i32,
    #[serde(default = "stabilization")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_stabilization_seconds: i32,
    /// Overrides `https://iot.<regionId>.aliyuncs.com` (a private endpoint, the emulator). Must be
    /// `https://`: the query carries the signature and the SecurityToken. Redirects are not
    /// followed. The CA of `endpoint.caSecretRef` is trusted for it besides the default roots.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self == '' || (isURL(self) && url(self).getScheme() == 'https' && url(self).getHost() != '')").message("autoscaling.apiEndpoint must be an https:// URL: the signed request and the security token never travel in clear"))]
    pub api_endpoint: String,
}

fn max_replicas() -> i32 {
    16
}
fn client_cap() -> i32 {
    DEFAULT_CLIENT_CAP
}
fn target_backlog() -> i64 {
    1000
}
fn poll_interval() -> i32 {
    15
}
fn stabilization() -> i32 {
    300
}

impl Default for Autoscaling {
    fn default() -> Self {
        Autoscaling {
            enabled: true,
            min_replicas: 1,
            max_replicas: max_replicas(),
            client_cap: client_cap(),
            target_backlog_per_replica: target_backlog(),
            poll_interval_seconds: poll_interval(),
            scale_down_stabilization_seconds: stabilization(),
            api_endpoint: String::new(),
        }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.type != 'http' || (has(self.http) && has(self.http.url))").message("sink.http.url is required when sink.type is http").field_path(".http"))]
#[serde(rename_all = "camelCase")]
pub struct Sink {
    #[serde(default, rename = "type")]
    pub kind: SinkKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSink>,
    /// Where a message the sink refuses for good (or never takes) is recorded before it is
    /// acknowledged.
    #[serde(default)]
    pub dead_letter: DeadLetter,
    /// Deliveries of one messageId (across redeliveries) before it becomes a dead letter.
    #[serde(default = "max_deliveries")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_deliveries: i32,
}

fn max_deliveries() -> i32 {
    10
}

impl Default for Sink {
    fn default() -> Self {
        Sink { kind: SinkKind::default(), http: None, dead_letter: DeadLetter::default(), max_deliveries: max_deliveries() }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("self.type != 'http' || (has(self.url) && self.url != '')").message("sink.deadLetter.url is required when sink.deadLetter.type is http").field_path(".url"))]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// `log`: one JSON line with the whole message (payload base64) on the worker's stdout;
    /// `http`: a CloudEvent to `url`.
    #[serde(default, rename = "type")]
    pub kind: DeadLetterKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[x_kube(validation = Rule::new("self == '' || self.startsWith('http://') || self.startsWith('https://')").message("sink.deadLetter.url must be an http(s) URL"))]
    pub url: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterKind {
    #[default]
    Log,
    Http,
}

impl DeadLetterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Log => "log",
            DeadLetterKind::Http => "http",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    #[default]
    Log,
    Http,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.batch) || (has(self.mode) && self.mode == 'batch')").message("sink.http.batch is read only with sink.http.mode: batch").field_path(".batch"))]
#[serde(rename_all = "camelCase")]
pub struct HttpSink {
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("sink.http.url must be an http(s) URL"))]
    pub url: String,
    #[serde(default = "sink_timeout")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: i32,
    /// A Secret of the namespace whose keys become request headers (e.g. `Authorization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_from: Option<HeadersFrom>,
    /// `http1`: HTTP/1.1, a pooled keep-alive connection per request in flight; `http2`: one
    /// connection, a stream per request (h2c by prior knowledge for `http://`, ALPN `h2` for `https://`).
    #[serde(default)]
    pub protocol: HttpProtocol,
    /// `binary`: one POST per message, a CloudEvent in binary mode; `batch`: many messages per POST as
    /// `application/cloudevents-batch+json`, all acknowledged by its 2xx.
    #[serde(default)]
    pub mode: HttpMode,
    /// Limits of a batch (with `mode: batch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<HttpBatch>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HttpProtocol {
    #[default]
    Http1,
    Http2,
}

impl HttpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpProtocol::Http1 => "http1",
            HttpProtocol::Http2 => "http2",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HttpMode {
    #[default]
    Binary,
    Batch,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpBatch {
    /// Most events per POST.
    #[serde(default = "batch_max_events")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_events: i32,
    /// Most bytes per POST body (nginx refuses more than 1 MiB by default); a larger event goes alone.
    #[serde(default = "batch_max_bytes")]
    #[schemars(range(min = 1024, max = 67108864))]
    pub max_bytes: i64,
    /// How long a batch's first event may wait for more; 0 sends whatever has queued up.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10000))]
    pub linger_ms: i32,
}

impl Default for HttpBatch {
    fn default() -> Self {
        HttpBatch { max_events: batch_max_events(), max_bytes: batch_max_bytes(), linger_ms: 0 }
    }
}

fn batch_max_events() -> i32 {
    100
}

fn batch_max_bytes() -> i64 {
    1_048_576
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeadersFrom {
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

fn sink_timeout() -> i32 {
    5
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerTemplate {
    /// Overrides the operator's `--worker-image`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupSubscriptionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub desired_replicas: i32,
    /// The pods' label selector, for the scale subresource.
    #[serde(default)]
    pub selector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<Backlog>,
    /// Each expected clientId, joined with the platform's list of connected clients.
    #[serde(default)]
    pub clients: Vec<ClientStatus>,
    /// How many of `clients` the platform lists as connected (the Clients column).
    #[serde(default)]
    pub connected_clients: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backlog {
    pub messages: i64,
    pub consumed_per_minute: i64,
    /// RFC 3339.
    pub observed_at: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientStatus {
    pub client_id: String,
    /// The pod that opens this client; empty for a client of the group that is not one of ours.
    #[serde(default)]
    pub pod: String,
    pub connected: bool,
    /// RFC 3339, from the platform's `OnlineTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_since: Option<String>,
    /// `ip:port` as the platform sees the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// The shape of `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    pub reason: String,
    pub message: String,
    /// RFC 3339; changes only when `status` changes.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl ConsumerGroupSubscriptionStatus {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

impl ConsumerGroupSubscriptionSpec {
    /// The autoscaling block when it is enabled: the autoscaler sets the replicas, not `replicas`.
    pub fn enabled_autoscaling(&self) -> Option<&Autoscaling> {
        self.autoscaling.as_ref().filter(|a| a.enabled)
    }
}
