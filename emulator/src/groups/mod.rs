//! The delivery engine of one consumer group: a real-time queue and a stacked queue, pushed at
//! random to the group's ready clients within their link credit, acknowledged or redelivered.
//!
//! A client's connection task asks for its next delivery only once the previous one went out (the
//! link had credit), so "ready" means "has credit". Everything the emulator holds for a group is in
//! one [`GroupState`] behind a mutex; a dispatcher task per group matches messages to ready clients
//! and sleeps on the rate limits.

mod clients;
mod queues;
mod snapshot;

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError, atomic::Ordering},
    time::Duration,
};

use rand::Rng;
use tokio::{
    sync::{Notify, oneshot},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

pub use self::clients::{CapExceeded, NewClient};
use self::{clients::Client, snapshot::LatencyWindow};
use crate::{
    admin::{Counters, GroupKey, GroupSnapshot},
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

/// Everything the emulator holds for one group, behind the group's one mutex.
struct GroupState {
    realtime: VecDeque<Arc<StoredMessage>>,
    stacked: VecDeque<Arc<StoredMessage>>,
    clients: BTreeMap<ConnId, Client>,
    /// Clients whose link has credit, each with the channel its next delivery goes to.
    waiting: Vec<(ConnId, oneshot::Sender<Delivery>)>,
    in_flight: u64,
    stacked_bucket: TokenBucket,
    stacked_blocked_until: Option<Instant>,
    paused: bool,
    refuse_logins: bool,
    attempts: SlidingWindow,
    attempts_total: u64,
    /// The most times one message was sent: a redelivery loop shows here.
    max_deliveries_per_message: u32,
    counters: Counters,
    consumed_realtime: PerMinute,
    consumed_stacked: PerMinute,
    last_consumed_ms: Option<i64>,
    ack_latency: LatencyWindow,
    /// Every acknowledged messageId in order, with `Limits::record_acknowledged_ids`.
    acknowledged_ids: Vec<String>,
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
                max_deliveries_per_message: 0,
                counters: Counters::default(),
                consumed_realtime: PerMinute::default(),
                consumed_stacked: PerMinute::default(),
                last_consumed_ms: None,
                ack_latency: LatencyWindow::default(),
                acknowledged_ids: Vec::new(),
            }),
            limits,
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GroupState> {
        // A panic while holding the lock leaves counters at worst stale, never unsafe.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
        self.lock().register(client, &self.limits)
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
        self.lock().unregister(conn);
    }

    /// Messages as devices publish them: real-time when a client is attached, stacked otherwise.
    pub fn publish(&self, messages: impl IntoIterator<Item = Arc<StoredMessage>>) {
        let mut state = self.lock();
        let online = state.any_attached();
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

    /// The client's next delivery: at once when nobody else waits for one, else when the dispatcher
    /// hands it one. Dropping the future is safe: a delivery handed over but not taken goes back to
    /// the queue.
    pub async fn next_delivery(self: &Arc<Self>, conn: ConnId) -> Option<Delivery> {
        let rx = {
            let mut state = self.lock();
            if !state.clients.contains_key(&conn) {
                return None;
            }
            if let Some(delivery) = state.take_now(conn, Instant::now(), Duration::from_secs(self.limits.retention_seconds)) {
                return Some(delivery);
            }
            let (tx, rx) = oneshot::channel();
            state.waiting.push((conn, tx));
            rx
        };
        self.wake.notify_one();
        let mut guard = PendingDelivery { group: self.clone(), rx: Some(rx) };
        let rx = guard.rx.as_mut().expect("set above");
        let delivery = rx.await.ok();
        guard.rx = None;
        delivery
    }

    /// Requeues a delivery the connection task could not send.
    pub fn give_back(&self, delivery: Delivery) {
        self.lock().give_back(delivery);
        self.wake.notify_one();
    }

    /// The delivery went out on the client's link.
    pub fn sent(&self, conn: ConnId, delivery: &Delivery) {
        let times = delivery.message.deliveries.fetch_add(1, Ordering::Relaxed) + 1;
        let mut state = self.lock();
        state.in_flight += 1;
        state.counters.delivered += 1;
        state.max_deliveries_per_message = state.max_deliveries_per_message.max(times);
        if let Some(client) = state.clients.get_mut(&conn) {
            client.in_flight += 1;
            client.delivered += 1;
        }
    }

    /// An acknowledgement whose latency the delivery task timed (see `LatencySummary::task_clocked`).
    pub fn task_clocked(&self) {
        self.lock().ack_latency.task_clocked += 1;
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
        let requeued = match settlement {
            Settlement::Accepted(latency) => self.acknowledged(&mut state, delivery, latency, second),
            Settlement::Refused | Settlement::TimedOut | Settlement::Disconnected => {
                self.failed(&mut state, delivery, settlement);
                true
            }
        };
        drop(state);
        // An acknowledgement gives the dispatcher nothing new to hand out (waking it for each one
        // was a dispatcher pass per message); a message back in a queue does.
        if requeued {
            self.wake.notify_one();
        }
    }

    /// Returns whether the message went back to a queue (an injected duplicate).
    fn acknowledged(&self, state: &mut GroupState, delivery: Delivery, latency: Duration, second: u64) -> bool {
        state.counters.acknowledged += 1;
        if self.limits.record_acknowledged_ids {
            state.acknowledged_ids.push(delivery.message.message_id.canonical().unwrap_or_default());
        }
        state.ack_latency.record(latency);
        if delivery.from_stacked { &mut state.consumed_stacked } else { &mut state.consumed_realtime }.add(second, 1);
        state.last_consumed_ms = Some(epoch_ms());
        let p = self.limits.duplicate_probability;
        if p > 0.0 && rand::rng().random_bool(p) {
            state.counters.duplicates_injected += 1;
            state.realtime.push_back(delivery.message);
            return true;
        }
        false
    }

    /// The acknowledged messageIds from the `from`-th on, at most `limit` (a message without an id
    /// as `""`; acknowledged twice, listed twice), and how many there are in all.
    pub fn acknowledged_ids(&self, from: usize, limit: usize) -> (Vec<String>, usize) {
        let state = self.lock();
        let ids = &state.acknowledged_ids;
        (ids.iter().skip(from).take(limit).cloned().collect(), ids.len())
    }

    /// Back to the stacked queue, as the platform retries a delivery it has no acknowledgement for.
    fn failed(&self, state: &mut GroupState, delivery: Delivery, settlement: Settlement) {
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

    /// `ResetConsumerGroupPosition`: purges the stacked queue.
    pub fn purge(&self) -> u64 {
        self.lock().purge()
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
        let now = Instant::now();
        state.expire(now, Duration::from_secs(self.limits.retention_seconds));
        state.snapshot(&self.key, now, now_second())
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
        NewClient {
            conn,
            client_id: format!("c{conn}"),
            remote: "127.0.0.1:1".parse().unwrap(),
            idle_time_out_ms: Some(60_000),
            access_key_id: "k".into(),
        }
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
            group.sent(1, &d);
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
        group.sent(1, &d);
        group.settle(1, d, Settlement::TimedOut);
        let again = group.next_delivery(1).await.unwrap();
        assert_eq!(again.message.message_id.canonical().as_deref(), Some("7"));
        assert!(again.from_stacked);
        group.sent(1, &again);
        let snap = group.snapshot();
        assert_eq!((snap.counters.redelivered, snap.max_deliveries_per_message), (1, 2), "sent twice");
    }

    #[tokio::test]
    async fn an_abandoned_wait_loses_nothing() {
        let group = Group::new(GroupKey { instance_id: "".into(), consumer_group_id: "G".into() }, limits());
        group.register(client(1)).unwrap();
        group.attach(1, None);
        // No dispatcher and nothing queued: start waiting, publish, hand the message over by hand,
        // then abandon the wait.
        let mut wait = Box::pin(group.next_delivery(1));
        assert!(futures_poll_once(wait.as_mut()).await.is_none());
        group.publish([message(1)]);
        group.lock().dispatch(Instant::now(), Duration::from_secs(60));
        drop(wait);
        assert_eq!(group.snapshot().backlog, 1);
    }

    #[tokio::test]
    async fn a_client_alone_takes_a_queued_message_at_once_and_with_others_waits_for_the_dispatcher() {
        let group = Group::new(GroupKey { instance_id: "".into(), consumer_group_id: "G".into() }, limits());
        group.register(client(1)).unwrap();
        group.attach(1, None);
        group.publish([message(1)]);
        // No dispatcher: client 1, alone, is served from the queue without one.
        let first = futures_poll_once(Box::pin(group.next_delivery(1))).await.flatten().expect("at once");
        assert_eq!(first.message.message_id.canonical().as_deref(), Some("1"));
        // With client 2 attached, the dispatcher chooses: client 1 does not take the next itself.
        group.register(client(2)).unwrap();
        group.attach(2, None);
        group.publish([message(2)]);
        let mut next = Box::pin(group.next_delivery(1));
        assert!(futures_poll_once(next.as_mut()).await.is_none());
        group.lock().dispatch(Instant::now(), Duration::from_secs(60));
        assert_eq!(next.await.expect("dispatched").message.message_id.canonical().as_deref(), Some("2"));
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        tokio::select! { biased; out = f => Some(out), _ = std::future::ready(()) => None }
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
        group.sent(1, &first);
        group.settle(1, first, Settlement::Accepted(Duration::from_micros(250)));
        let again = group.next_delivery(1).await.unwrap();
        assert_eq!(again.message.message_id.canonical().as_deref(), Some("42"));
        assert_eq!(group.snapshot().counters.duplicates_injected, 1);
    }
}
