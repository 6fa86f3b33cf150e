//! The operator's pure logic: no client, no clock, no I/O (the crate has no dependency that could
//! do any). A reconcile observes (I/O, in `iotsub-operator`), calls [`decide`], and applies the
//! [`Decision`] (I/O).
//!
//! - [`names`]: labels, annotations, Secret keys, the field manager.
//! - [`guard`]: the guard rails for tenants (worker image, Secret label, placement, annotations).
//! - [`observed`]: what a reconcile observed, the credentials check, the autoscaler's reading, the
//!   workers' sinks (which pods to ask, their `/status` `sink` object).
//! - [`memory`]: what the operator remembers of a subscription between reconciles.
//! - [`disruption`]: the workers' PodDisruptionBudget and their spread over nodes.
//! - [`decide`]: the decision, built from `desired` (the worker Deployment), [`autoscale`] (the
//!   replica count), `rollout` (a new credentials source under the client cap), `status` (one module per
//!   condition) and [`events`]; `owned` tells whether a hand edit undid a field the operator owns.

pub mod autoscale;
mod conditions;
pub mod decide;
mod desired;
pub mod disruption;
pub mod events;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod guard;
pub mod memory;
pub mod names;
pub mod observed;
mod owned;
mod rollout;
mod status;
mod timestamps;

pub use decide::{Decision, Note, Requeue, decide};
pub use desired::{WORKER_PORT, owned_service_account, service_account};
pub use guard::Guard;
pub use memory::Memory;
pub use observed::{Credentials, Observed, PlatformAnswer, PlatformObservation};
