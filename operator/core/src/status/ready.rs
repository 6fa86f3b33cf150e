//! Ready: all replicas are ready and, where the platform could be asked, connected as clients.

use iotsub_crds::conditions::reason;

use super::plural;
use crate::conditions::Condition;

/// The Deployment's replicas against the ones wanted.
#[derive(Debug, Clone, Copy)]
pub(super) struct Counts {
    pub desired: i32,
    pub replicas: i32,
    pub ready: i32,
    pub updated: i32,
}

/// This subscription's clients as the platform lists them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clients {
    pub connected: usize,
    pub ours: usize,
}

pub(super) struct Input<'a> {
    pub credentials: &'a Condition,
    pub credentials_usable: bool,
    /// SpecAllowed: a refused spec gets no Deployment (nor a change to one).
    pub spec_allowed: &'a Condition,
    pub counts: Counts,
    /// Ready was True before this reconcile.
    pub was_ready: bool,
    /// `None` without an answer from the platform.
    pub clients: Option<Clients>,
    pub backlog: &'a Condition,
}

pub(super) fn condition(input: &Input<'_>) -> Condition {
    let Counts { desired, replicas, ready, updated } = input.counts;
    let rolled_out = replicas == desired && ready == desired && updated == desired;
    // Only the count changes, and it was ready: still ready (a scale step is not an outage).
    let scaling = input.was_ready && ready > 0 && updated == replicas;
    let ready_n = plural(ready.max(0) as usize, "replica");
    if !input.credentials_usable || input.credentials.is_false() {
        return Condition::fails(reason::CREDENTIALS_INVALID, input.credentials.message.clone());
    }
    if input.spec_allowed.is_false() {
        return Condition::fails(reason::SPEC_NOT_ALLOWED, input.spec_allowed.message.clone());
    }
    if desired == 0 && replicas == 0 {
        return Condition::holds(reason::SCALED_TO_ZERO, "no replicas wanted");
    }
    if !rolled_out && scaling {
        return Condition::holds(reason::SCALING, format!("{ready_n} ready, scaling to {desired}"));
    }
    if !rolled_out {
        let waiting = if updated < replicas { format!(", {updated} of {replicas} on the current template") } else { String::new() };
        return Condition::fails(reason::PROGRESSING, format!("{ready} of {} ready{waiting}", plural(desired.max(0) as usize, "replica")));
    }
    match input.clients {
        None => Condition::holds(reason::REPLICAS_READY, format!("{ready_n} ready; connected clients unknown: {}", input.backlog.message)),
        Some(Clients { connected, ours }) if connected == ours => {
            Condition::holds(reason::ALL_CLIENTS_CONNECTED, format!("{ready_n} ready, {} connected", plural(connected, "client")))
        }
        Some(Clients { connected, ours }) => {
            Condition::fails(reason::CLIENTS_NOT_CONNECTED, format!("{connected} of {} connected", plural(ours, "client")))
        }
    }
}
