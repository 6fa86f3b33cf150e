//! What every connection of the process shares, and the one place a connection's state changes.

use std::sync::{Arc, Mutex};

use crate::{
    attempt_budget::AttemptBudget,
    config::Config,
    credentials::Credentials,
    dead_letter::DeadLetterSink,
    dedup::DedupWindow,
    delivery_count::DeliveryCounts,
    metrics::Metrics,
    sink::{Sink, health::SinkHealth, retry::RetryPolicy},
    status::{ConnectionState, ConnectionStatus, StatusBoard},
    tls::Trust,
};

pub struct Shared {
    pub config: Arc<Config>,
    /// Asked before every connection attempt ([`Credentials::current`]).
    pub credentials: Credentials,
    pub tls: Trust,
    pub sink: Sink,
    pub sink_health: Arc<SinkHealth>,
    pub dead_letters: DeadLetterSink,
    pub dedup: Mutex<DedupWindow>,
    pub delivery_counts: Mutex<DeliveryCounts>,
    /// The pod's share of the consumer group's connection attempts, for all its connections.
    pub attempts: Mutex<AttemptBudget>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<StatusBoard>,
    pub retry: RetryPolicy,
}

impl Shared {
    /// The values no log or error may show (every generation of credentials read so far).
    pub fn secrets(&self) -> Vec<String> {
        self.credentials.secrets()
    }

    /// Connection `index` enters `state` (`/status` and the state metric together); `also` updates
    /// the rest of its entry.
    pub fn set_state(&self, index: usize, state: ConnectionState, also: impl FnOnce(&mut ConnectionStatus)) {
        self.status.update(index, |s| {
            s.state = state;
            also(s);
        });
        self.metrics.set_state(&self.config.client_ids[index], state);
    }
}
