//! RRSA for the operator's own OpenAPI calls: no AccessKey anywhere. A token of the subscription's
//! ServiceAccount from the TokenRequest API (audience STS, 10 minutes, never stored) is exchanged
//! with STS `AssumeRoleWithOIDC` for credentials, held until 5 minutes before they expire. The
//! same role and trust as the workers': a refusal here is the one the workers would meet, and it
//! becomes `CredentialsValid=False` with STS's reason. A failure is remembered for a minute, so a
//! refused role is not asked again at every reconcile.

use std::{collections::HashMap, sync::Mutex};

use iotsub_aliyun::{
    amqp::AccessKey,
    sts::{self, AssumeRoleWithOidc, Assumed, StsError},
};
use iotsub_crds::{ConsumerGroupSubscription, Rrsa, conditions::reason};
use iotsub_operator_core::{observed::RoleRefusal, owned_service_account, service_account};
use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
};
use kube::{Api, ResourceExt, api::PostParams, runtime::reflector::ObjectRef};
use time::OffsetDateTime;

use crate::{apply, context::Context, metrics::StsLabels};

/// Held credentials are renewed this long before they expire.
const RENEW_WITHIN: time::Duration = time::Duration::minutes(5);
/// A failed exchange is not tried again for this long.
const RETRY_AFTER: time::Duration = time::Duration::minutes(1);
/// The TokenRequest token's lifetime: only for the exchange that follows at once (the API's
/// minimum is 10 minutes).
const TOKEN_SECONDS: i64 = 600;

/// Per subscription: the last exchange's outcome, for which role and account, and when.
#[derive(Default)]
pub struct Roles(Mutex<HashMap<ObjectRef<ConsumerGroupSubscription>, Held>>);

struct Held {
    /// What was asked (role, provider, account, endpoint): another question asks again.
    asked: String,
    outcome: Result<Assumed, (RoleRefusal, OffsetDateTime)>,
}

impl Roles {
    pub fn forget(&self, cgs: &ConsumerGroupSubscription) {
        self.lock().remove(&ObjectRef::from_obj(cgs));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<ConsumerGroupSubscription>, Held>> {
        self.0.lock().expect("roles lock")
    }

    /// What is held for `asked`, unless it is due for a new exchange at `now`.
    fn usable(
        &self,
        key: &ObjectRef<ConsumerGroupSubscription>,
        asked: &str,
        now: OffsetDateTime,
    ) -> Option<Result<AccessKey, RoleRefusal>> {
        let held = self.lock();
        let held = held.get(key).filter(|h| h.asked == asked)?;
        match &held.outcome {
            Ok(assumed) if !assumed.expires_within(now, RENEW_WITHIN) => Some(Ok(assumed.access_key.clone())),
            Err((refusal, at)) if now - *at < RETRY_AFTER => Some(Err(refusal.clone())),
            _ => None,
        }
    }
}

/// STS credentials for `cgs`'s role: held ones, or a new exchange. `ca` is trusted for an
/// `stsEndpoint` override.
pub async fn credentials(ctx: &Context, cgs: &ConsumerGroupSubscription, rrsa: &Rrsa, ca: Option<&[u8]>) -> Result<AccessKey, RoleRefusal> {
    let key = ObjectRef::from_obj(cgs);
    let account = service_account(cgs).unwrap_or_default();
    let endpoint = if rrsa.sts_endpoint.is_empty() { sts::DEFAULT_STS_ENDPOINT } else { rrsa.sts_endpoint.as_str() };
    let asked = serde_json::json!([rrsa, account, endpoint]).to_string();
    let now = OffsetDateTime::now_utc();
    if let Some(held) = ctx.roles.usable(&key, &asked, now) {
        return held;
    }
    let outcome = exchange(ctx, cgs, rrsa, &account, endpoint, ca).await;
    let label = match &outcome {
        Ok(_) => "ok",
        Err(refusal) => refusal.reason,
    };
    ctx.metrics.sts_exchanges.get_or_create(&StsLabels { outcome: label.into() }).inc();
    let result = outcome.as_ref().map(|a| a.access_key.clone()).map_err(Clone::clone);
    ctx.roles.lock().insert(key, Held { asked, outcome: outcome.map_err(|refusal| (refusal, now)) });
    result
}

async fn exchange(
    ctx: &Context,
    cgs: &ConsumerGroupSubscription,
    rrsa: &Rrsa,
    account: &str,
    endpoint: &str,
    ca: Option<&[u8]>,
) -> Result<Assumed, RoleRefusal> {
    let namespace = cgs.namespace().unwrap_or_default();
    // The account the operator makes is applied before its first token, and again if it was
    // deleted: no watch needed for something asked about once an hour.
    if let Some(owned) = owned_service_account(cgs) {
        apply::service_account(&ctx.client, &owned).await.map_err(|e| RoleRefusal {
            reason: reason::TOKEN_REQUEST_FAILED,
            message: format!("applying ServiceAccount {namespace}/{account}: {}", describe(&e)),
        })?;
    }
    let token = token(&ctx.client, &namespace, account).await?;
    let request = AssumeRoleWithOidc {
        role_arn: rrsa.role_arn.clone(),
        oidc_provider_arn: rrsa.oidc_provider_arn.clone(),
        oidc_token: token.into(),
        role_session_name: sts::session_name(rrsa.role_session_name.as_deref().unwrap_or("iotsub-operator")),
        duration_seconds: u32::try_from(rrsa.duration_seconds).unwrap_or(sts::DEFAULT_DURATION_SECONDS),
    };
    ctx.openapi.assume_role_with_oidc(endpoint, ca, &request).await.map_err(|error| match error {
        StsError::Refused { code, message } => RoleRefusal {
            reason: reason::ROLE_REFUSED,
            message: format!(
                "STS refused role {} for ServiceAccount {namespace}/{account} (trusted by {}?): {code}: {message}",
                rrsa.role_arn, rrsa.oidc_provider_arn
            ),
        },
        other => RoleRefusal { reason: reason::STS_UNREACHABLE, message: other.to_string() },
    })
}

/// A token of `namespace/account` for STS.
async fn token(client: &kube::Client, namespace: &str, account: &str) -> Result<String, RoleRefusal> {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![sts::STS_AUDIENCE.into()]),
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: None,
        }),
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    match api.create_token_request(account, &PostParams::default(), &request).await {
        Ok(answer) => answer.status.and_then(|s| s.token).filter(|t| !t.is_empty()).ok_or_else(|| RoleRefusal {
            reason: reason::TOKEN_REQUEST_FAILED,
            message: format!("the TokenRequest for ServiceAccount {namespace}/{account} returned no token"),
        }),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(RoleRefusal {
            reason: reason::SERVICE_ACCOUNT_NOT_FOUND,
            message: format!("ServiceAccount {namespace}/{account} not found"),
        }),
        Err(e) => Err(RoleRefusal {
            reason: reason::TOKEN_REQUEST_FAILED,
            message: format!("a token for ServiceAccount {namespace}/{account}: {}", describe(&e)),
        }),
    }
}

/// The API server's reason, without the request (which carries no secret here, but is long).
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}
