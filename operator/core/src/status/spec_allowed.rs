//! SpecAllowed: the spec asks only for what the operator's guard rails allow ([`crate::guard`]).

use iotsub_crds::conditions::reason;

use crate::{
    conditions::Condition,
    guard::{Guard, Refusal},
};

pub(crate) fn condition(refusal: Option<&Refusal>, guard: &Guard) -> Condition {
    match refusal {
        None => Condition::holds(reason::ALLOWED, "the worker image, placement and pod annotations are within the operator's guard rails"),
        Some(refusal) => Condition::fails(refusal.reason(), refusal.message(guard)),
    }
}
