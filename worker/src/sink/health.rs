//! The sink's health, shared by every connection: the circuit breaker fed by each attempt, its state
//! for `/status`, `/readyz` and the metrics, and a watch channel the connections follow to stop or
//! resume granting credit.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::{sync::watch, time::Instant};
use tracing::{info, warn};

use super::outcome::Attempt;
use crate::{
    breaker::{Breaker, BreakerState},
    metrics::Metrics,
};

/// `/status`'s `sink` object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkStatus {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// The last failure (a redacted URL, a status, a cause; never a header value).
    pub last_error: Option<String>,
    /// When the state last changed (RFC 3339).
    pub since: String,
}

struct Inner {
    breaker: Breaker,
    last_error: Option<String>,
    since: OffsetDateTime,
}

pub struct SinkHealth {
    inner: Mutex<Inner>,
    state: watch::Sender<BreakerState>,
    metrics: Arc<Metrics>,
    /// How the sink is named in `/readyz` and logs.
    pub name: String,
}

impl SinkHealth {
    pub fn new(threshold: u32, metrics: Arc<Metrics>, name: String) -> Arc<SinkHealth> {
        metrics.set_sink_state(BreakerState::Ok);
        Arc::new(SinkHealth {
            inner: Mutex::new(Inner { breaker: Breaker::new(threshold), last_error: None, since: OffsetDateTime::now_utc() }),
            state: watch::channel(BreakerState::Ok).0,
            metrics,
            name,
        })
    }

    pub fn state(&self) -> BreakerState {
        *self.state.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<BreakerState> {
        self.state.subscribe()
    }

    /// Feeds one attempt's outcome to the breaker.
    pub fn record(self: &Arc<Self>, attempt: &Attempt) {
        let mut inner = self.inner.lock().expect("sink health lock");
        let changed = if attempt.class.sink_works() {
            inner.breaker.success()
        } else {
            inner.last_error = Some(attempt.detail.clone());
            inner.breaker.failure(Instant::now(), iotsub_common::jitter::unit())
        };
        if let Some(to) = changed {
            self.changed(&mut inner, to);
        }
    }

    fn changed(self: &Arc<Self>, inner: &mut Inner, to: BreakerState) {
        inner.since = OffsetDateTime::now_utc();
        self.metrics.set_sink_state(to);
        match to {
            BreakerState::Open => {
                self.metrics.sink_circuit_opens.inc();
                let probe_in_ms = inner.breaker.probe_at().map_or(0, |at| at.saturating_duration_since(Instant::now()).as_millis() as u64);
                warn!(
                    sink = %self.name,
                    consecutive_failures = inner.breaker.consecutive_failures(),
                    last_error = inner.last_error.as_deref().unwrap_or(""),
                    probe_in_ms,
                    "sink circuit open: no new credit, holding messages on the platform until a probe succeeds"
                );
                if let Some(at) = inner.breaker.probe_at() {
                    let health = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at).await;
                        health.poll();
                    });
                }
            }
            BreakerState::HalfOpen => info!(sink = %self.name, "sink circuit half-open: probing with one message per connection"),
            BreakerState::Ok => info!(sink = %self.name, "sink circuit closed: the sink takes messages again"),
        }
        self.state.send_replace(to);
    }

    fn poll(self: &Arc<Self>) {
        let mut inner = self.inner.lock().expect("sink health lock");
        if let Some(to) = inner.breaker.poll(Instant::now()) {
            self.changed(&mut inner, to);
        }
    }

    pub fn snapshot(&self) -> SinkStatus {
        let inner = self.inner.lock().expect("sink health lock");
        SinkStatus {
            state: inner.breaker.state(),
            consecutive_failures: inner.breaker.consecutive_failures(),
            last_error: inner.last_error.clone(),
            since: inner.since.format(&Rfc3339).unwrap_or_default(),
        }
    }
}
