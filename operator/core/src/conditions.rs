//! A condition as the pure code builds it: a status, a reason from
//! [`iotsub_crds::conditions::reason`], a message. Its type, transition time and generation are
//! added when the status is assembled ([`crate::status`]).

use iotsub_crds::conditions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => conditions::TRUE,
            ConditionStatus::False => conditions::FALSE,
            ConditionStatus::Unknown => conditions::UNKNOWN,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub status: ConditionStatus,
    pub reason: &'static str,
    pub message: String,
}

impl Condition {
    /// `status: True`.
    pub fn holds(reason: &'static str, message: impl Into<String>) -> Condition {
        Condition { status: ConditionStatus::True, reason, message: message.into() }
    }

    /// `status: False`.
    pub fn fails(reason: &'static str, message: impl Into<String>) -> Condition {
        Condition { status: ConditionStatus::False, reason, message: message.into() }
    }

    /// `status: Unknown`.
    pub fn unknown(reason: &'static str, message: impl Into<String>) -> Condition {
        Condition { status: ConditionStatus::Unknown, reason, message: message.into() }
    }

    pub fn is_false(&self) -> bool {
        self.status == ConditionStatus::False
    }
}
