//! The condition vocabulary of `ConsumerGroupSubscription.status.conditions`: types and reasons.

/// All replicas are ready and, where the platform could be asked, connected as clients.
pub const READY: &str = "Ready";
/// The Secret holds every key the auth mode needs, and the platform did not refuse it.
pub const CREDENTIALS_VALID: &str = "CredentialsValid";
/// The autoscaler reads the backlog and sets the replicas (True), or does not (False: disabled,
/// or the backlog can't be read and the count is held).
pub const AUTOSCALING: &str = "Autoscaling";
/// The backlog could be read from the platform's OpenAPI.
pub const BACKLOG_AVAILABLE: &str = "BacklogAvailable";
/// No worker reports its sink failing (its circuit breaker open or half-open).
pub const SINK_AVAILABLE: &str = "SinkAvailable";
/// The spec asks only for what the operator's guard rails allow (worker image, placement, pod
/// annotations); when False nothing is created or changed for it.
pub const SPEC_ALLOWED: &str = "SpecAllowed";

pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
pub const UNKNOWN: &str = "Unknown";

pub mod reason {
    // Ready
    pub const ALL_CLIENTS_CONNECTED: &str = "AllClientsConnected";
    pub const REPLICAS_READY: &str = "ReplicasReady";
    pub const PROGRESSING: &str = "Progressing";
    pub const SCALING: &str = "Scaling";
    pub const CLIENTS_NOT_CONNECTED: &str = "ClientsNotConnected";
    pub const CREDENTIALS_INVALID: &str = "CredentialsInvalid";
    pub const SCALED_TO_ZERO: &str = "ScaledToZero";
    pub const SPEC_NOT_ALLOWED: &str = "SpecNotAllowed";
    // CredentialsValid
    pub const SECRET_FOUND: &str = "SecretFound";
    pub const ACCEPTED_BY_PLATFORM: &str = "AcceptedByPlatform";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const SECRET_KEY_MISSING: &str = "SecretKeyMissing";
    pub const REFUSED_BY_PLATFORM: &str = "RefusedByPlatform";
    pub const SECRET_NOT_LABELLED: &str = "SecretNotLabelled";
    /// RRSA: STS gave credentials for the role (and the reasons it did not).
    pub const ROLE_ASSUMED: &str = "RoleAssumed";
    pub const SERVICE_ACCOUNT_NOT_FOUND: &str = "ServiceAccountNotFound";
    pub const TOKEN_REQUEST_FAILED: &str = "TokenRequestFailed";
    pub const ROLE_REFUSED: &str = "RoleRefused";
    pub const STS_UNREACHABLE: &str = "StsUnreachable";
    // BacklogAvailable
    pub const QUERIED: &str = "Queried";
    pub const PLATFORM_UNREACHABLE: &str = "PlatformUnreachable";
    pub const PLATFORM_ERROR: &str = "PlatformError";
    pub const THROTTLED: &str = "Throttled";
    pub const NOT_QUERIED: &str = "NotQueried";
    // Autoscaling
    pub const SCALED_UP: &str = "ScaledUp";
    pub const SCALED_DOWN: &str = "ScaledDown";
    pub const CAPPED_BY_CLIENT_LIMIT: &str = "CappedByClientLimit";
    pub const STABILIZING_SCALE_DOWN: &str = "StabilizingScaleDown";
    pub const STEADY: &str = "Steady";
    pub const BACKLOG_UNAVAILABLE: &str = "BacklogUnavailable";
    pub const DISABLED: &str = "Disabled";
    // SinkAvailable
    pub const SINK_TAKING: &str = "SinkTaking";
    pub const SINK_FAILING: &str = "SinkFailing";
    pub const SINK_UNKNOWN: &str = "SinkUnknown";
    // SpecAllowed
    pub const ALLOWED: &str = "Allowed";
    pub const WORKER_IMAGE_NOT_ALLOWED: &str = "WorkerImageNotAllowed";
    pub const WORKER_PLACEMENT_NOT_ALLOWED: &str = "WorkerPlacementNotAllowed";
    pub const POD_ANNOTATIONS_NOT_ALLOWED: &str = "PodAnnotationsNotAllowed";
}
