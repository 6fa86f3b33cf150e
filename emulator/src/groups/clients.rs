//! A group's clients: the cap on how many, and each one's state and counters.

use std::net::SocketAddr;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ConnId, GroupState};
use crate::{
    admin::ClientSnapshot,
    config::Limits,
    message::epoch_ms,
    rate::{PerMinute, TokenBucket},
};

/// Who connects; registered once the connection is open, before its link attaches.
pub struct NewClient {
    pub conn: ConnId,
    pub client_id: String,
    pub remote: SocketAddr,
    pub idle_time_out_ms: Option<u32>,
    /// The AccessKey ID it logged in with (`authId`): tests see which key a client used.
    pub access_key_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapExceeded {
    Clients { cap: usize },
}

pub(super) struct Client {
    client_id: String,
    access_key_id: String,
    remote: SocketAddr,
    connected_since_ms: i64,
    idle_time_out_ms: Option<u32>,
    pub(super) attached: bool,
    pub(super) max_message_size: Option<u64>,
    pub(super) in_flight: u64,
    pub(super) delivered: u64,
    pub(super) acknowledged: u64,
    pub(super) realtime_bucket: TokenBucket,
    pub(super) consumed_realtime: PerMinute,
    pub(super) consumed_stacked: PerMinute,
    /// Cancelled by the drop-connections fault.
    pub(super) drop: CancellationToken,
}

impl Client {
    pub(super) fn new(client: NewClient, realtime_rate: u32, drop: CancellationToken) -> Client {
        Client {
            client_id: client.client_id,
            access_key_id: client.access_key_id,
            remote: client.remote,
            connected_since_ms: epoch_ms(),
            idle_time_out_ms: client.idle_time_out_ms,
            attached: false,
            max_message_size: None,
            in_flight: 0,
            delivered: 0,
            acknowledged: 0,
            realtime_bucket: TokenBucket::new(realtime_rate, Instant::now()),
            consumed_realtime: PerMinute::default(),
            consumed_stacked: PerMinute::default(),
            drop,
        }
    }

    pub(super) fn snapshot(&self, second: u64) -> ClientSnapshot {
        ClientSnapshot {
            client_id: self.client_id.clone(),
            access_key_id: self.access_key_id.clone(),
            remote: self.remote.to_string(),
            connected_since: self.connected_since_ms,
            idle_timeout_ms: self.idle_time_out_ms,
            attached: self.attached,
            max_message_size: self.max_message_size,
            in_flight: self.in_flight,
            delivered: self.delivered,
            acknowledged: self.acknowledged,
            realtime_consumed_per_minute: self.consumed_realtime.total(second),
            stacked_consumed_per_minute: self.consumed_stacked.total(second),
        }
    }
}

impl GroupState {
    /// Counts the client against the group's cap; the token cancels its connection (drop fault).
    pub(super) fn register(&mut self, client: NewClient, limits: &Limits) -> Result<CancellationToken, CapExceeded> {
        let cap = limits.client_cap_per_group;
        if self.clients.len() >= cap {
            return Err(CapExceeded::Clients { cap });
        }
        let drop = CancellationToken::new();
        self.clients.insert(client.conn, Client::new(client, limits.realtime_rate_per_connection, drop.clone()));
        Ok(drop)
    }

    pub(super) fn unregister(&mut self, conn: ConnId) {
        self.clients.remove(&conn);
        self.waiting.retain(|(c, _)| *c != conn);
    }

    pub(super) fn any_attached(&self) -> bool {
        self.clients.values().any(|c| c.attached)
    }
}
