//! The platform's rules for an authenticated connection, checked once its Open frame is in: the
//! idle-time-out, the group's connection attempts per minute, the instance's connection cap and
//! the group's client cap.

use std::net::SocketAddr;

use fe2o3_amqp_types::definitions::{AmqpError, ConnectionError, ErrorCondition};
use tokio_util::sync::CancellationToken;

use super::Registration;
use crate::{
    config::Limits,
    groups::NewClient,
    platform::{InstanceConnection, Login, Platform},
};

/// The AMQP error conditions the emulator closes connections and links with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    InvalidField,
    ResourceLimitExceeded,
    ConnectionForced,
    NotAllowed,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::InvalidField => "amqp:invalid-field",
            Condition::ResourceLimitExceeded => "amqp:resource-limit-exceeded",
            Condition::ConnectionForced => "amqp:connection:forced",
            Condition::NotAllowed => "amqp:not-allowed",
        }
    }
}

impl From<Condition> for ErrorCondition {
    fn from(condition: Condition) -> Self {
        match condition {
            Condition::InvalidField => AmqpError::InvalidField.into(),
            Condition::ResourceLimitExceeded => AmqpError::ResourceLimitExceeded.into(),
            Condition::ConnectionForced => ConnectionError::ConnectionForced.into(),
            Condition::NotAllowed => AmqpError::NotAllowed.into(),
        }
    }
}

/// Why a connection is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub condition: Condition,
    pub reason: String,
}

/// What an admitted connection holds until it ends: its place in the instance and in the group.
pub struct Admitted {
    pub registration: Registration,
    /// Cancelled by the drop-connections fault.
    pub dropped: CancellationToken,
    _instance_slot: InstanceConnection,
}

/// The idle-time-out rule, or `None` when the Open frame obeys it.
pub fn idle_time_out_problem(idle: Option<u32>, min: u32, max: u32) -> Option<String> {
    match idle {
        None => Some(format!("the Open frame must carry an idle-time-out between {min} and {max} ms; it carried none")),
        Some(ms) if ms < min || ms > max => Some(format!("idle-time-out {ms} ms is outside {min}..{max} ms")),
        Some(_) => None,
    }
}

/// The rules that depend only on the login and the Open frame.
fn open_frame_problem(login: &Login, idle: Option<u32>, limits: &Limits) -> Option<Refused> {
    if let Some(reason) = idle_time_out_problem(idle, limits.idle_timeout_min_ms, limits.idle_timeout_max_ms) {
        return Some(Refused { condition: Condition::InvalidField, reason });
    }
    if login.attempts_last_minute > limits.connection_attempts_per_minute {
        let reason = format!(
            "too many connection attempts for consumer group {}: {} in the last minute, the limit is {}",
            login.username.consumer_group_id, login.attempts_last_minute, limits.connection_attempts_per_minute
        );
        return Some(Refused { condition: Condition::ResourceLimitExceeded, reason });
    }
    None
}

/// Checks the rules in the platform's order and, when they all pass, counts the connection in its
/// instance and its client in the group.
pub fn admit(platform: &std::sync::Arc<Platform>, login: &Login, remote: SocketAddr, idle: Option<u32>) -> Result<Admitted, Refused> {
    let limits = &platform.limits;
    if let Some(refused) = open_frame_problem(login, idle, limits) {
        return Err(refused);
    }
    let username = &login.username;
    let instance_id = username.instance_id.clone().unwrap_or_default();
    let Some(instance_slot) = platform.open_instance_connection(&instance_id) else {
        let reason = format!("instance `{instance_id}` has {} connections, the limit", limits.connection_cap_per_instance);
        return Err(Refused { condition: Condition::ResourceLimitExceeded, reason });
    };
    let conn = platform.next_conn_id();
    let client =
        NewClient { conn, client_id: username.client_id.clone(), remote, idle_time_out_ms: idle, access_key_id: username.auth_id.clone() };
    let Ok(dropped) = login.group.register(client) else {
        let reason =
            format!("consumer group {} already has {} clients, the limit", username.consumer_group_id, limits.client_cap_per_group);
        return Err(Refused { condition: Condition::ResourceLimitExceeded, reason });
    };
    Ok(Admitted { registration: Registration { group: login.group.clone(), conn }, dropped, _instance_slot: instance_slot })
}

#[cfg(test)]
mod tests {
    use iotsub_aliyun::amqp::Username;

    use super::*;
    use crate::{admin::GroupKey, groups::Group};

    #[test]
    fn idle_time_out_rule() {
        assert!(idle_time_out_problem(Some(60_000), 30_000, 300_000).is_none());
        assert!(idle_time_out_problem(Some(30_000), 30_000, 300_000).is_none());
        assert!(idle_time_out_problem(None, 30_000, 300_000).unwrap().contains("carried none"));
        assert!(idle_time_out_problem(Some(10_000), 30_000, 300_000).unwrap().contains("10000 ms is outside 30000..300000"));
        assert!(idle_time_out_problem(Some(300_001), 30_000, 300_000).is_some());
    }

    fn login(attempts_last_minute: usize) -> Login {
        let username: Username =
            "c|authMode=aksign,signMethod=hmacsha1,timestamp=1,authId=demo,consumerGroupId=G|".parse().expect("a platform username");
        let group = Group::new(GroupKey { instance_id: String::new(), consumer_group_id: "G".into() }, Default::default());
        Login { username, group, attempts_last_minute }
    }

    #[test]
    fn the_open_frame_rules_name_the_condition_and_the_numbers() {
        let limits = Limits::default();
        assert_eq!(open_frame_problem(&login(100), Some(60_000), &limits), None, "100 a minute is allowed");
        let refused = open_frame_problem(&login(101), Some(60_000), &limits).expect("the 101st is not");
        assert_eq!(refused.condition, Condition::ResourceLimitExceeded);
        assert!(refused.reason.contains("101 in the last minute, the limit is 100"), "{}", refused.reason);
        let refused = open_frame_problem(&login(101), None, &limits).expect("no idle-time-out");
        assert_eq!(refused.condition, Condition::InvalidField, "the idle-time-out is checked first");
    }
}
