//! CredentialsValid: the Secret holds every key the auth mode needs (or, with RRSA, STS gave
//! credentials for the role), and the platform did not refuse them.

use iotsub_aliyun::answer::CallError;
use iotsub_crds::conditions::reason;

use crate::{
    conditions::Condition,
    guard::flag,
    names::{CREDENTIALS_LABEL, CREDENTIALS_LABEL_VALUE},
    observed::{Credentials, PlatformAnswer},
};

pub(super) fn condition(credentials: &Credentials, answer: Option<&PlatformAnswer>) -> Condition {
    match credentials {
        Credentials::SecretNotFound { secret } => secret_not_found(secret),
        Credentials::KeyMissing { secret, key } => key_missing(secret, key),
        Credentials::NotLabelled { secret } => not_labelled(secret),
        Credentials::RoleNotAssumed(refusal) => Condition::fails(refusal.reason, refusal.message.clone()),
        Credentials::Valid { assumed, .. } => match answer {
            Some(PlatformAnswer::Failed(CallError::Refused { code, .. })) => refused(code),
            Some(PlatformAnswer::Status(_)) => {
                Condition::holds(reason::ACCEPTED_BY_PLATFORM, "the platform's OpenAPI accepted the credentials")
            }
            _ if *assumed => Condition::holds(reason::ROLE_ASSUMED, "STS gave credentials for the role (RRSA)"),
            _ => Condition::holds(reason::SECRET_FOUND, "the Secret holds every key the auth mode needs"),
        },
    }
}

fn secret_not_found(secret: &str) -> Condition {
    Condition::fails(reason::SECRET_NOT_FOUND, format!("Secret {secret} not found"))
}

fn key_missing(secret: &str, key: &str) -> Condition {
    Condition::fails(reason::SECRET_KEY_MISSING, format!("Secret {secret} has no key {key}"))
}

fn not_labelled(secret: &str) -> Condition {
    Condition::fails(
        reason::SECRET_NOT_LABELLED,
        format!(
            "Secret {secret} lacks the label {CREDENTIALS_LABEL}={CREDENTIALS_LABEL_VALUE}, which every Secret a subscription references \
             must carry before the operator reads it (label it, or run the operator with {}=false)",
            flag::REQUIRE_SECRET_LABEL
        ),
    )
}

fn refused(code: &str) -> Condition {
    Condition::fails(reason::REFUSED_BY_PLATFORM, format!("the platform's OpenAPI refused the credentials: {code}"))
}
