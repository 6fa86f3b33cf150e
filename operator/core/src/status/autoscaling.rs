//! Autoscaling: whether the autoscaler sets the replicas, and why the count is what it is.

use iotsub_crds::conditions::reason;

use crate::conditions::Condition;

/// `explained` is the autoscaler's condition, `None` when autoscaling is disabled; `previous` the
/// condition as last written.
pub(super) fn condition(explained: Option<Condition>, previous: Option<&iotsub_crds::Condition>, desired_replicas: i32) -> Condition {
    let Some(explained) = explained else {
        return Condition::fails(reason::DISABLED, format!("autoscaling is not enabled: spec.replicas ({desired_replicas}) is used"));
    };
    // A steady count keeps the reason of the last change, which says why it is what it is.
    let last_change = previous.and_then(|c| {
        [reason::SCALED_UP, reason::SCALED_DOWN].into_iter().find(|r| *r == c.reason).map(|r| Condition::holds(r, c.message.clone()))
    });
    match last_change {
        Some(last_change) if explained.reason == reason::STEADY => last_change,
        _ => explained,
    }
}
