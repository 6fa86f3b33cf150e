//! CredentialsValid: the Secret holds every key the auth mode needs, and the platform did not
//! refuse it.

use iotsub_aliyun::answer::CallError;
use iotsub_crds::conditions::reason;

use crate::{
    conditions::Condition,
    observed::{Credentials, PlatformAnswer},
};

pub(super) fn condition(credentials: &Credentials, answer: Option<&PlatformAnswer>) -> Condition {
    match credentials {
        Credentials::SecretNotFound { secret } => secret_not_found(secret),
        Credentials::KeyMissing { secret, key } => key_missing(secret, key),
        Credentials::Valid { .. } => match answer {
            Some(PlatformAnswer::Failed(CallError::Refused { code, .. })) => refused(code),
            Some(PlatformAnswer::Status(_)) => {
                Condition::holds(reason::ACCEPTED_BY_PLATFORM, "the platform's OpenAPI accepted the credentials")
            }
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

fn refused(code: &str) -> Condition {
    Condition::fails(reason::REFUSED_BY_PLATFORM, format!("the platform's OpenAPI refused the credentials: {code}"))
}
