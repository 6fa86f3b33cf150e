//! BacklogAvailable: the backlog could be read from the platform's OpenAPI.

use iotsub_aliyun::answer::CallError;
use iotsub_crds::conditions::reason;

use crate::{conditions::Condition, observed::PlatformAnswer};

/// `answer` is `None` when the platform was not asked.
pub(super) fn condition(answer: Option<&PlatformAnswer>) -> Condition {
    match answer {
        None => Condition::unknown(reason::NOT_QUERIED, "the credentials are not usable, so the platform was not asked"),
        Some(PlatformAnswer::Status(_)) => Condition::holds(reason::QUERIED, "QueryConsumerGroupStatus answered"),
        // Throttled by our own limiter is "not asked yet", not a failure of the platform.
        Some(PlatformAnswer::Failed(CallError::Throttled)) => Condition::unknown(reason::THROTTLED, CallError::Throttled.to_string()),
        Some(PlatformAnswer::Failed(error)) => Condition::fails(failure_reason(error), error.to_string()),
    }
}

fn failure_reason(error: &CallError) -> &'static str {
    match error {
        CallError::Throttled => reason::THROTTLED,
        CallError::Unreachable(_) | CallError::Untrusted(_) => reason::PLATFORM_UNREACHABLE,
        CallError::Refused { .. } | CallError::Platform { .. } | CallError::Decode { .. } => reason::PLATFORM_ERROR,
    }
}
