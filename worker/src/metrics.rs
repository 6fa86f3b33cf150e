//! Prometheus metrics (prometheus-client), all prefixed `iotsub_worker_`.

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{breaker::BreakerState, dead_letter::Reason, status::ConnectionState};

type ClientLabels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    pub received: Counter,
    pub acknowledged: Counter,
    pub released: Counter,
    pub duplicates: Counter,
    pub poison: Counter,
    pub sink_errors: Counter,
    /// Times the sink's circuit opened.
    pub sink_circuit_opens: Counter,
    /// Dead letters that could not be written (their messages were released, not acknowledged).
    pub dead_letter_failures: Counter,
    /// From the hand-over to the sink to its answer, for each attempt that succeeded.
    pub sink_latency: Histogram,
    /// From the sender's `x-opt-sent-at-us` annotation (when present) to the acknowledgement.
    pub ack_latency: Histogram,
    /// Events per POST of the http sink's batched mode.
    pub sink_batch_events: Histogram,
    /// 1 for each connection's current state, 0 for the others.
    connection_state: Family<ClientLabels, Gauge>,
    reconnects: Family<ClientLabels, Counter>,
    login_refusals: Family<ClientLabels, Counter>,
    dead_letters: Family<ClientLabels, Counter>,
    /// 1 for the sink circuit's current state, 0 for the others.
    sink_circuit_state: Family<ClientLabels, Gauge>,
}

/// Fine buckets around the 5 ms latency target, coarse beyond.
const LATENCY_BUCKETS: [f64; 18] =
    [0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];

const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("iotsub_worker");
        let m = Metrics {
            received: Counter::default(),
            acknowledged: Counter::default(),
            released: Counter::default(),
            duplicates: Counter::default(),
            poison: Counter::default(),
            sink_errors: Counter::default(),
            sink_circuit_opens: Counter::default(),
            dead_letter_failures: Counter::default(),
            sink_latency: Histogram::new(LATENCY_BUCKETS),
            ack_latency: Histogram::new(LATENCY_BUCKETS),
            sink_batch_events: Histogram::new(BATCH_BUCKETS),
            connection_state: Family::default(),
            reconnects: Family::default(),
            login_refusals: Family::default(),
            dead_letters: Family::default(),
            sink_circuit_state: Family::default(),
            registry: Registry::default(),
        };
        registry.register("messages_received", "Deliveries received", m.received.clone());
        registry.register("messages_acknowledged", "Deliveries accepted (acknowledged)", m.acknowledged.clone());
        registry.register("messages_released", "Deliveries released back to the platform", m.released.clone());
        registry.register("messages_duplicate", "Duplicate deliveries acknowledged without a second delivery", m.duplicates.clone());
        registry.register(
            "messages_poison",
            "Messages the sink rejected (HTTP 400, 413, 415, 422): dead letters, then acknowledged",
            m.poison.clone(),
        );
        registry.register("dead_letters", "Dead letters written, by reason", m.dead_letters.clone());
        registry.register(
            "dead_letter_failures",
            "Dead letters that could not be written (the message was released)",
            m.dead_letter_failures.clone(),
        );
        registry.register(
            "sink_circuit_state",
            "1 for the current state of the sink's circuit breaker (ok, open, half-open)",
            m.sink_circuit_state.clone(),
        );
        registry.register("sink_circuit_opens", "Times the sink's circuit opened (no new credit while open)", m.sink_circuit_opens.clone());
        registry.register("sink_errors", "Failed sink attempts (each retried or released)", m.sink_errors.clone());
        registry.register("sink_latency_seconds", "Time the sink took to take a message", m.sink_latency.clone());
        registry.register(
            "ack_latency_seconds",
            "From the sender's x-opt-sent-at-us annotation to the acknowledgement",
            m.ack_latency.clone(),
        );
        registry.register("sink_batch_events", "Events per POST of the http sink's batched mode", m.sink_batch_events.clone());
        registry.register("connection_state", "1 for the current state of each connection", m.connection_state.clone());
        registry.register("reconnects", "Reconnection attempts after a lost or failed connection", m.reconnects.clone());
        registry.register("login_refusals", "Connection attempts refused for credentials or limits", m.login_refusals.clone());
        Metrics { registry, ..m }
    }

    pub fn set_state(&self, client_id: &str, state: ConnectionState) {
        for s in ConnectionState::ALL {
            self.connection_state
                .get_or_create(&vec![("client_id".into(), client_id.into()), ("state".into(), s.as_str().into())])
                .set(i64::from(s == state));
        }
    }

    pub fn reconnect(&self, client_id: &str, reason: &str) {
        self.reconnects.get_or_create(&vec![("client_id".into(), client_id.into()), ("reason".into(), reason.into())]).inc();
    }

    pub fn login_refused(&self, client_id: &str) {
        self.login_refusals.get_or_create(&vec![("client_id".into(), client_id.into())]).inc();
    }

    pub fn dead_letter(&self, reason: Reason) {
        self.dead_letters.get_or_create(&vec![("reason".into(), reason.as_str().into())]).inc();
    }

    pub fn set_sink_state(&self, state: BreakerState) {
        for s in BreakerState::ALL {
            self.sink_circuit_state.get_or_create(&vec![("state".into(), s.as_str().into())]).set(i64::from(s == state));
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("encoding metrics into a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::new();
        m.received.inc();
        m.set_state("w-0", ConnectionState::Attached);
        m.reconnect("w-0", "receive");
        m.ack_latency.observe(0.002);
        m.sink_batch_events.observe(7.0);
        m.dead_letter(Reason::MaxDeliveries);
        m.set_sink_state(BreakerState::Open);
        let text = m.render();
        for name in [
            "iotsub_worker_messages_received_total 1",
            "iotsub_worker_messages_acknowledged_total 0",
            "iotsub_worker_messages_released_total",
            "iotsub_worker_messages_duplicate_total",
            "iotsub_worker_messages_poison_total",
            "iotsub_worker_sink_latency_seconds_bucket",
            "iotsub_worker_connection_state{client_id=\"w-0\",state=\"attached\"} 1",
            "iotsub_worker_connection_state{client_id=\"w-0\",state=\"connecting\"} 0",
            "iotsub_worker_reconnects_total{client_id=\"w-0\",reason=\"receive\"} 1",
            "iotsub_worker_ack_latency_seconds_bucket{le=\"0.003\"} 1",
            "iotsub_worker_sink_batch_events_bucket{le=\"10.0\"} 1",
            "iotsub_worker_dead_letters_total{reason=\"max-deliveries\"} 1",
            "iotsub_worker_sink_circuit_state{state=\"open\"} 1",
            "iotsub_worker_sink_circuit_state{state=\"ok\"} 0",
            "iotsub_worker_sink_circuit_opens_total 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
