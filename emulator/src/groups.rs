//! The delivery engine of one consumer group: a real-time queue and a stacked queue, pushed at
//! random to the group's ready clients within their link credit, acknowledged or redelivered.
//!
//! A client's connection task asks for its next delivery only once the previous one went out (the
//! link had credit), so "ready" means "has credit". Everything the emulator holds for a group is in
//! one [`GroupState`] behind a mutex; a dispatcher task per group matches messages to ready clients
//! and sleeps on the rate limits.

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use rand::Rng;
use tokio::{
    sync::{Notify, oneshot},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    admin::{ClientSnapshot, ConnectionAttempts, Counters, GroupKey, GroupSnapshot, LatencySummary},
    config::Limits,
    message::{StoredMessage, epoch_ms},
    rate::{PerMinute, SlidingWindow, TokenBucket},
};

pub type ConnId = u64;

/// A message on its way to one client.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<StoredMessage>,
    pub from_stacked: bool,
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// With the time from handing the transfer to the connection to the client's `accepted`.
    Accepted(Duration),
    /// Released, rejected or modified by the client: the platform retries it later.
    Refused,
    /// No outcome within the acknowledgement timeout.
    TimedOut,
    /// The link or connection went away first.
    Disconnected,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("key", &self.key).finish_non_exhaustive()
    }
}

pub struct Group {
    pub key: GroupKey,
    limits: Arc<Limits>,
    state: Mutex<GroupState>,
    wake: Notify,
}

struct GroupState {
    realtime: VecDeque<Arc<StoredMessage>>,
    stacked: VecDeque<Arc<StoredMessage>>,
    clients: BTreeMap<ConnId, Client>,
    waiting: Vec<(ConnId, oneshot::Sender<Delivery>)>,
    in_flight: u64,
    stacked_bucket: TokenBucket,
    stacked_blocked_until: Option<Instant>,
    paused: bool,
    refuse_logins: bool,
    attempts: SlidingWindow,
    attempts_total: u64,
    counters: Counters,
    consumed_realtime: PerMinute,
    consumed_stacked: PerMinute,
    last_consumed_ms: Option<i64>,
    ack_latency: LatencyWindow,
}

/// The last acknowledgements' push-to-accept latencies, for benchmarks of any client.
#[derive(Debug, Default)]
struct LatencyWindow {
    micros: VecDeque<u32>,
}

const LATENCIES_KEPT: usize = 10_000;

impl LatencyWindow {
    fn record(&mut self, latency: Duration) {
        if self.micros.len() == LATENCIES_KEPT {
            self.micros.pop_front();
        }
        self.micros.push_back(latency.as_micros().min(u32::MAX as u128) as u32);
    }

    fn summary(&self) -> Option<LatencySummary> {
        if self.micros.is_empty() {
            return None;
        }
        let mut sorted: Vec<u32> = self.micros.iter().copied().collect();
        sorted.sort_unstable();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        Some(LatencySummary { samples: sorted.len(), p50_us: at(0.5), p90_us: at(0.9), p99_us: at(0.99), max_us: at(1.0) })
    }
}

struct Client {
    client_id: String,
    remote: SocketAddr,
    connected_since_ms: i64,
    idle_time_out_ms: Option<u32>,
    attached: bool,
    max_message_size: Option<u64>,
    in_flight: u64,
    delivered: u64,
    acknowledged: u64,
    realtime_bucket: TokenBucket,
    consumed_realtime: PerMinute,
    consumed_stacked: PerMinute,
    drop: CancellationToken,
}

/// Who connects; registered once the connection is open, before its link attaches.
pub struct NewClient {
    pub conn: ConnId,
    pub client_id: String,
    pub remote: SocketAddr,
    pub idle_time_out_ms: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapExceeded {
    Clients { cap: usize },
}

fn now_second() -> u64 {
    (epoch_ms() / 1000) as u64
}

impl Group {
    pub fn new(key: GroupKey, limits: Arc<Limits>) -> Arc<Group> {
        let now = Instant::now();
        Arc::new(Group {
            key,
            state: Mutex::new(GroupState {
                realtime: VecDeque::new(),
                stacked: VecDeque::new(),
                clients: BTreeMap::new(),
                waiting: Vec::new(),
                in_flight: 0,
                stacked_bucket: TokenBucket::new(limits.stacked_rate_per_group, now),
                stacked_blocked_until: None,
                paused: false,
                refuse_logins: false,
                attempts: SlidingWindow::new(Duration::from_secs(60)),
                attempts_total: 0,
                counters: Counters::default(),
                consumed_realtime: PerMinute::default(),
                consumed_stacked: PerMinute::default(),
                last_consumed_ms: None,
                ack_latency: LatencyWindow::default(),
            }),
            limits,
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GroupState> {
        // A panic while holding the lock leaves counters at worst stale, never unsafe.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a connection attempt; returns the attempts in the last minute, this one included.
    pub fn record_attempt(&self) -> usize {
        let mut state = self.lock();
        state.attempts_total += 1;
        state.attempts.record(Instant::now())
    }

    pub fn refusing_logins(&self) -> bool {
        self.lock().refuse_logins
    }

    /// Counts the client against the group's cap; the token cancels its connection (drop fault).
    pub fn register(&self, client: NewClient) -> Result<CancellationToken, CapExceeded> {
        let mut state = self.lock();
        let cap = self.limits.client_cap_per_group;
        if state.clients.len() >= cap {
            return Err(CapExceeded::Clients { cap });
        }
        let drop = CancellationToken::new();
        state.clients.insert(
            client.conn,
            Client {
                client_id: client.client_id,
                remote: client.remote,
                connected_since_ms: epoch_ms(),
                idle_time_out_ms: client.idle_time_out_ms,
                attached: false,
                max_message_size: None,
                in_flight: 0,
                delivered: 0,
                acknowledged: 0,
                realtime_bucket: TokenBucket::new(self.limits.realtime_rate_per_connection, Instant::now()),
                consumed_realtime: PerMinute::default(),
                consumed_stacked: PerMinute::default(),
                drop: drop.clone(),
            },
        );
        Ok(drop)
    }

    /// The client's receiver link is attached, advertising `max_message_size` (not enforced).
    pub fn attach(&self, conn: ConnId, max_message_size: Option<u64>) {
        if let Some(client) = self.lock().clients.get_mut(&conn) {
            client.attached = true;
            client.max_message_size = max_message_size;
        }
        self.wake.notify_one();
    }

    pub fn unregister(&self, conn: ConnId) {
        let mut state = self.lock();
        state.clients.remove(&conn);
        state.waiting.retain(|(c, _)| *c != conn);
    }

    /// Messages as devices publish them: real-time when a client is attached, stacked otherwise.
    pub fn publish(&self, messages: impl IntoIterator<Item = Arc<StoredMessage>>) {
        let mut state = self.lock();
        let online = state.clients.values().any(|c| c.attached);
        for message in messages {
            state.counters.published += 1;
            if online {
                state.realtime.push_back(message);
            } else {
                state.push_stacked(message, self.limits.max_stacked_per_group);
            }
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Waits until the dispatcher hands this client a delivery. Dropping the future is safe: a
    /// delivery handed over but not taken goes back to the queue.
    pub async fn next_delivery(self: &Arc<Self>, conn: ConnId) -> Option<Delivery> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.lock();
            if !state.clients.contains_key(&conn) {
                return None;
            }
            state.waiting.push((conn, tx));
        }
        self.wake.notify_one();
        let mut guard = PendingDelivery { group: self.clone(), rx: Some(rx) };
        let rx = guard.rx.as_mut().expect("set above");
        let delivery = rx.await.ok();
        guard.rx = None;
        delivery
    }

    /// Requeues a delivery the connection task could not send.
    pub fn give_back(&self, delivery: Delivery) {
        let mut state = self.lock();
        if delivery.from_stacked {
            state.stacked.push_front(delivery.message);
        } else {
            state.realtime.push_front(delivery.message);
        }
        drop(state);
        self.wake.notify_one();
    }

    pub fn sent(&self, conn: ConnId) {
        let mut state = self.lock();
        state.in_flight += 1;
        state.counters.delivered += 1;
        if let Some(client) = state.clients.get_mut(&conn) {
            client.in_flight += 1;
            client.delivered += 1;
        }
    }

    pub fn settle(&self, conn: ConnId, delivery: Delivery, settlement: Settlement) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        let second = now_second();
        if let Some(client) = state.clients.get_mut(&conn) {
            client.in_flight = client.in_flight.saturating_sub(1);
            if matches!(settlement, Settlement::Accepted(_)) {
                client.acknowledged += 1;
                if delivery.from_stacked { &mut client.consumed_stacked } else { &mut client.consumed_realtime }.add(second, 1);
            }
        }
        match settlement {
            Settlement::Accepted(latency) => {
                state.counters.acknowledged += 1;
                state.ack_latency.record(latency);
                if delivery.from_stacked { &mut state.consumed_stacked } else { &mut state.consumed_realtime }.add(second, 1);
                state.last_consumed_ms = Some(epoch_ms());
                let p = self.limits.duplicate_probability;
                if p > 0.0 && rand::rng().random_bool(p) {
                    state.counters.duplicates_injected += 1;
                    state.realtime.push_back(delivery.message);
                }
            }
            Settlement::Refused | Settlement::TimedOut | Settlement::Disconnected => {
                state.counters.redelivered += 1;
                match settlement {
                    Settlement::Refused => state.counters.refused_by_client += 1,
                    Settlement::TimedOut => state.counters.timed_out += 1,
                    _ => state.counters.returned_on_disconnect += 1,
                }
                // A failed push blocks the stacked queue for a while; a cut connection does not.
                if settlement != Settlement::Disconnected && self.limits.stacked_retry_after_ms > 0 {
                    state.stacked_blocked_until = Some(Instant::now() + Duration::from_millis(self.limits.stacked_retry_after_ms));
                }
                state.push_stacked(delivery.message, self.limits.max_stacked_per_group);
            }
        }
        drop(state);
        self.wake.notify_one();
    }

    /// `ResetConsumerGroupPosition`: purges the stacked queue.
    pub fn purge(&self) -> u64 {
        let mut state = self.lock();
        let purged = (state.stacked.len() + state.realtime.len()) as u64;
        state.stacked.clear();
        state.realtime.clear();
        purged
    }

    pub fn drop_connections(&self) -> usize {
        let state = self.lock();
        state.clients.values().for_each(|c| c.drop.cancel());
        state.clients.len()
    }

    pub fn set_refuse_logins(&self, refuse: bool) {
        self.lock().refuse_logins = refuse;
    }

    pub fn set_paused(&self, paused: bool) {
        self.lock().paused = paused;
        self.wake.notify_one();
    }

    pub fn snapshot(&self) -> GroupSnapshot {
        let mut state = self.lock();
        state.expire(Instant::now(), Duration::from_secs(self.limits.retention_seconds));
        let second = now_second();
        let realtime = state.consumed_realtime.total(second);
        let stacked = state.consumed_stacked.total(second);
        GroupSnapshot {
            key: self.key.clone(),
            backlog: (state.stacked.len() + state.realtime.len()) as u64,
            stacked: state.stacked.len() as u64,
            in_flight: state.in_flight,
            paused: state.paused,
            refusing_logins: state.refuse_logins,
            counters: state.counters,
            consumed_per_minute: realtime + stacked,
            realtime_consumed_per_minute: realtime,
            stacked_consumed_per_minute: stacked,
            last_consumed_at: state.last_consumed_ms,
            ack_latency: state.ack_latency.summary(),
            connection_attempts: ConnectionAttempts {
                total: state.attempts_total,
                last_minute: state.attempts.count(Instant::now()) as u64,
            },
            clients: state
                .clients
                .values()
                .map(|c| ClientSnapshot {
                    client_id: c.client_id.clone(),
                    remote: c.remote.to_string(),
                    connected_since: c.connected_since_ms,
                    idle_timeout_ms: c.idle_time_out_ms,
                    attached: c.attached,
                    max_message_size: c.max_message_size,
                    in_flight: c.in_flight,
                    delivered: c.delivered,
                    acknowledged: c.acknowledged,
                    realtime_consumed_per_minute: c.consumed_realtime.total(second),
                    stacked_consumed_per_minute: c.consumed_stacked.total(second),
                })
                .collect(),
        }
    }

    /// The group's dispatcher: runs for the emulator's lifetime.
    pub async fn run_dispatcher(self: Arc<Self>) {
        let retention = Duration::from_secs(self.limits.retention_seconds);
        loop {
            let sleep_for = self.lock().dispatch(Instant::now(), retention);
            match sleep_for {
                Some(delay) => {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }
}

impl GroupState {
    fn push_stacked(&mut self, message: Arc<StoredMessage>, max: usize) {
        self.stacked.push_back(message);
        while self.stacked.len() > max {
            self.stacked.pop_front();
            self.counters.expired += 1;
        }
    }

    fn expire(&mut self, now: Instant, retention: Duration) {
        while self.stacked.front().is_some_and(|m| now.saturating_duration_since(m.stored_at) >= retention) {
            self.stacked.pop_front();
            self.counters.expired += 1;
        }
    }

    /// Hands out as many deliveries as clients and rates allow. Returns how long to sleep before a
    /// rate limit or a blocked queue allows more, or `None` to wait for the next event.
    fn dispatch(&mut self, now: Instant, retention: Duration) -> Option<Duration> {
        self.expire(now, retention);
        let mut rng = rand::rng();
        loop {
            if self.paused || self.waiting.is_empty() {
                return None;
            }
            if !self.realtime.is_empty() {
                // Real-time push: any ready client whose own rate allows one more.
                let candidates: Vec<usize> = (0..self.waiting.len())
                    .filter(|&i| {
                        let conn = self.waiting[i].0;
                        self.clients.get_mut(&conn).is_some_and(|c| c.attached && c.realtime_bucket.has_token(now))
                    })
                    .collect();
                if candidates.is_empty() {
                    return Some(self.soonest_realtime_token(now));
                }
                let pick = candidates[rng.random_range(0..candidates.len())];
                let (conn, tx) = self.waiting.swap_remove(pick);
                if let Some(client) = self.clients.get_mut(&conn) {
                    client.realtime_bucket.take(now);
                }
                let message = self.realtime.pop_front().expect("checked non-empty");
                if let Err(back) = tx.send(Delivery { message, from_stacked: false }) {
                    self.realtime.push_front(back.message);
                }
                continue;
            }
            if self.stacked.is_empty() {
                return None;
            }
            if let Some(until) = self.stacked_blocked_until {
                if until > now {
                    return Some(until - now);
                }
                self.stacked_blocked_until = None;
            }
            if !self.stacked_bucket.take(now) {
                return Some(self.stacked_bucket.wait_time(now).max(Duration::from_millis(1)));
            }
            let attached: Vec<usize> =
                (0..self.waiting.len()).filter(|&i| self.clients.get(&self.waiting[i].0).is_some_and(|c| c.attached)).collect();
            if attached.is_empty() {
                return None;
            }
            let (_, tx) = self.waiting.swap_remove(attached[rng.random_range(0..attached.len())]);
            let message = self.stacked.pop_front().expect("checked non-empty");
            if let Err(back) = tx.send(Delivery { message, from_stacked: true }) {
                self.stacked.push_front(back.message);
            }
        }
    }

    fn soonest_realtime_token(&mut self, now: Instant) -> Duration {
        let waiting: Vec<ConnId> = self.waiting.iter().map(|(c, _)| *c).collect();
        waiting
            .iter()
            .filter_map(|conn| self.clients.get_mut(conn).filter(|c| c.attached).map(|c| c.realtime_bucket.wait_time(now)))
            .min()
            .unwrap_or(Duration::from_millis(10))
            .max(Duration::from_millis(1))
    }
}

/// The receiving half of a pending delivery; if dropped after the dispatcher handed it a message,
/// the message goes back to the front of the real-time queue instead of being lost.
struct PendingDelivery {
    group: Arc<Group>,
    rx: Option<oneshot::Receiver<Delivery>>,
}

impl Drop for PendingDelivery {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if let Ok(delivery) = rx.try_recv() {
                self.group.give_back(delivery);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Arc<Limits> {
        Arc::new(Limits { realtime_rate_per_connection: 0, stacked_rate_per_group: 0, ..Limits::default() })
    }

    fn client(conn: ConnId) -> NewClient {
        NewClient { conn, client_id: format!("c{conn}"), remote: "127.0.0.1:1".parse().unwrap(), idle_time_out_ms: Some(60_000) }
    }

    fn message(i: usize) -> Arc<StoredMessage> {
        Arc::new(StoredMessage::new(i.to_string(), "/t".into(), vec![]))
    }

    #[tokio::test]
    async fn messages_published_offline_stack_up_then_flow() {
        let group = Group::new(GroupKey { instance_id: "".into(), consumer_group_id: "G".into() }, limits());
        tokio::spawn(group.clone().run_dispatcher());
        group.publish((0..3).map(message));
        assert_eq!(group.snapshot().stacked, 3);
        group.register(client(1)).unwrap();
        group.attach(1, None);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let d = group.next_delivery(1).await.unwrap();
            assert!(d.from_stacked);
            group.sent(1);
            seen.push(d.message.message_id.canonical().unwrap());
            group.settle(1, d, Settlement::Accepted(Duration::from_micros(250)));
        }
        seen.sort();
        assert_eq!(seen, ["0", "1", "2"]);
        let snap = group.snapshot();
        assert_eq!((snap.backlog, snap.counters.acknowledged, snap.in_flight), (0, 3, 0));
        assert_eq!(snap.ack_latency.map(|l| (l.samples, l.p99_us)), Some((3, 250)));
    }

    #[tokio::test]
    async fn the_cap_counts_registered_clients() {
        let group = Group::new(
            GroupKey { instance_id: "".into(), consumer_group_id: "G".into() },
            Arc::new(Limits { client_cap_per_group: 2, ..Limits::default() }),
        );
        group.register(client(1)).unwrap();
        group.register(client(2)).unwrap();
        assert_eq!(group.register(client(3)).unwrap_err(), CapExceeded::Clients { cap: 2 });
        group.unregister(1);
        assert!(group.register(client(3)).is_ok());
    }

    #[tokio::test]
    async fn failed_deliveries_come_back_with_the_same_message_id() {
        let group = Group::new(
            GroupKey { instance_id: "".into(), consumer_group_id: "G".into() },
            Arc::new(Limits { stacked_retry_after_ms: 0, ..(*limits()).clone() }),
        );
        tokio::spawn(group.clone().run_dispatcher());
        group.register(client(1)).unwrap();
        group.attach(1, None);
        group.publish([message(7)]);
        let d = group.next_delivery(1).await.unwrap();
        group.sent(1);
        group.settle(1, d, Settlement::TimedOut);
        let again = group.next_delivery(1).await.unwrap();
        assert_eq!(again.message.message_id.canonical().as_deref(), Some("7"));
        assert!(again.from_stacked);
        assert_eq!(group.snapshot().counters.redelivered, 1);
    }

    #[tokio::test]
    async fn an_abandoned_wait_loses_nothing() {
        let group = Group::new(GroupKey { instance_id: "".into(), consumer_group_id: "G".into() }, limits());
        group.register(client(1)).unwrap();
        group.attach(1, None);
        group.publish([message(1)]);
        // No dispatcher yet: start waiting, hand the message over by hand, then abandon the wait.
        let mut wait = Box::pin(group.next_delivery(1));
        assert!(futures_poll_once(wait.as_mut()).await.is_none());
        group.lock().dispatch(Instant::now(), Duration::from_secs(60));
        drop(wait);
        assert_eq!(group.snapshot().backlog, 1);
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        tokio::select! { biased; out = f => Some(out), _ = std::future::ready(()) => None }
    }

    #[test]
    fn latency_percentiles_come_from_the_last_acknowledgements() {
        let mut window = LatencyWindow::default();
        for us in 1..=100 {
            window.record(Duration::from_micros(us));
        }
        assert_eq!(window.summary(), Some(LatencySummary { samples: 100, p50_us: 51, p90_us: 90, p99_us: 99, max_us: 100 }));
        for _ in 0..LATENCIES_KEPT {
            window.record(Duration::from_micros(7));
        }
        assert_eq!(window.summary().map(|s| (s.samples, s.max_us)), Some((LATENCIES_KEPT, 7)));
    }

    #[test]
    fn stacked_messages_expire_after_the_retention_and_past_the_maximum() {
        let key = GroupKey { instance_id: "".into(), consumer_group_id: "G".into() };
        let group = Group::new(key.clone(), Arc::new(Limits { retention_seconds: 0, ..Limits::default() }));
        group.publish((0..5).map(message));
        let snap = group.snapshot();
        assert_eq!((snap.backlog, snap.counters.expired), (0, 5));

        let group = Group::new(key, Arc::new(Limits { max_stacked_per_group: 3, ..Limits::default() }));
        group.publish((0..5).map(message));
        let snap = group.snapshot();
        assert_eq!((snap.stacked, snap.counters.expired), (3, 2));
    }

    #[tokio::test]
    async fn duplicates_come_back_after_the_acknowledgement_when_configured() {
        let limits = Arc::new(Limits { duplicate_probability: 1.0, ..(*limits()).clone() });
        let group = Group::new(GroupKey { instance_id: "".into(), consumer_group_id: "G".into() }, limits);
        tokio::spawn(group.clone().run_dispatcher());
        group.register(client(1)).unwrap();
        group.attach(1, None);
        group.publish([message(42)]);
        let first = group.next_delivery(1).await.unwrap();
        group.sent(1);
        group.settle(1, first, Settlement::Accepted(Duration::from_micros(250)));
        let again = group.next_delivery(1).await.unwrap();
        assert_eq!(again.message.message_id.canonical().as_deref(), Some("42"));
        assert_eq!(group.snapshot().counters.duplicates_injected, 1);
    }

    #[test]
    fn stacked_push_respects_the_group_rate() {
        let limits = Arc::new(Limits { stacked_rate_per_group: 5, ..Limits::default() });
        let group = Group::new(GroupKey { instance_id: "".into(), consumer_group_id: "G".into() }, limits);
        group.publish((0..20).map(message));
        let mut state = group.lock();
        state.clients.insert(
            1,
            Client {
                client_id: "c".into(),
                remote: "127.0.0.1:1".parse().unwrap(),
                connected_since_ms: 0,
                idle_time_out_ms: None,
                attached: true,
                max_message_size: None,
                in_flight: 0,
                delivered: 0,
                acknowledged: 0,
                realtime_bucket: TokenBucket::new(0, Instant::now()),
                consumed_realtime: PerMinute::default(),
                consumed_stacked: PerMinute::default(),
                drop: CancellationToken::new(),
            },
        );
        let mut receivers = Vec::new();
        for _ in 0..20 {
            let (tx, rx) = oneshot::channel();
            state.waiting.push((1, tx));
            receivers.push(rx);
        }
        let wait = state.dispatch(Instant::now(), Duration::from_secs(60));
        assert_eq!(state.stacked.len(), 15, "a second's burst of 5 went out");
        assert!(wait.is_some_and(|d| d <= Duration::from_millis(200)));
    }
}
