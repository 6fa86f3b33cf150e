//! The group's two queues: real-time messages for attached clients, the stacked backlog with its
//! retention, maximum and rate; and the dispatch that matches them to clients waiting with credit.

use std::{sync::Arc, time::Duration};

use rand::Rng;
use tokio::time::Instant;

use super::{ConnId, Delivery, GroupState};
use crate::message::StoredMessage;

impl GroupState {
    pub(super) fn push_stacked(&mut self, message: Arc<StoredMessage>, max: usize) {
        self.stacked.push_back(message);
        while self.stacked.len() > max {
            self.stacked.pop_front();
            self.counters.expired += 1;
        }
    }

    pub(super) fn expire(&mut self, now: Instant, retention: Duration) {
        while self.stacked.front().is_some_and(|m| now.saturating_duration_since(m.stored_at) >= retention) {
            self.stacked.pop_front();
            self.counters.expired += 1;
        }
    }

    /// Back to the front of the queue it came from.
    pub(super) fn give_back(&mut self, delivery: Delivery) {
        if delivery.from_stacked {
            self.stacked.push_front(delivery.message);
        } else {
            self.realtime.push_front(delivery.message);
        }
    }

    /// Empties both queues; returns how many messages were dropped.
    pub(super) fn purge(&mut self) -> u64 {
        let purged = self.backlog();
        self.stacked.clear();
        self.realtime.clear();
        purged
    }

    pub(super) fn backlog(&self) -> u64 {
        (self.stacked.len() + self.realtime.len()) as u64
    }

    /// Hands out as many deliveries as clients and rates allow. Returns how long to sleep before a
    /// rate limit or a blocked queue allows more, or `None` to wait for the next event.
    pub(super) fn dispatch(&mut self, now: Instant, retention: Duration) -> Option<Duration> {
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

    /// A delivery for `conn` at once when it is the group's only attached client: what the
    /// dispatcher would hand it (the same queues, order and rates), without a round trip through the
    /// dispatcher's task, so its deliveries go back to back and share writes. With other clients the
    /// dispatcher chooses at random, as the platform spreads a group's messages: taking directly
    /// then let whichever client the scheduler favoured take nearly all of them.
    pub(super) fn take_now(&mut self, conn: ConnId, now: Instant, retention: Duration) -> Option<Delivery> {
        if self.paused || !self.waiting.is_empty() || self.clients.iter().any(|(c, client)| *c != conn && client.attached) {
            return None;
        }
        self.expire(now, retention);
        let client = self.clients.get_mut(&conn).filter(|c| c.attached)?;
        if !self.realtime.is_empty() {
            if !client.realtime_bucket.take(now) {
                return None;
            }
            return self.realtime.pop_front().map(|message| Delivery { message, from_stacked: false });
        }
        if self.stacked.is_empty() || self.stacked_blocked_until.is_some_and(|until| until > now) || !self.stacked_bucket.take(now) {
            return None;
        }
        self.stacked.pop_front().map(|message| Delivery { message, from_stacked: true })
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

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::{
        admin::GroupKey,
        config::Limits,
        groups::{Group, NewClient, clients::Client},
    };

    fn message(i: usize) -> Arc<StoredMessage> {
        Arc::new(StoredMessage::new(i.to_string(), "/t".into(), vec![]))
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

    #[test]
    fn stacked_push_respects_the_group_rate() {
        let limits = Arc::new(Limits { stacked_rate_per_group: 5, ..Limits::default() });
        let group = Group::new(GroupKey { instance_id: "".into(), consumer_group_id: "G".into() }, limits);
        group.publish((0..20).map(message));
        let mut state = group.lock();
        let new = NewClient {
            conn: 1,
            client_id: "c".into(),
            remote: "127.0.0.1:1".parse().unwrap(),
            idle_time_out_ms: None,
            access_key_id: "k".into(),
        };
        let mut client = Client::new(new, 0, CancellationToken::new());
        client.attached = true;
        state.clients.insert(1, client);
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
