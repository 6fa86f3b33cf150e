//! The state of each connection, for `/readyz`, `/status` and the connection-state metric.

use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionState {
    Connecting,
    Attached,
    /// Waiting before the next attempt after a lost or failed connection.
    Backoff,
    /// The endpoint refused the login (or a limit): waiting the long backoff.
    LoginRefused,
    /// SIGTERM: no new credit, finishing what is in flight.
    Draining,
    Closed,
}

impl ConnectionState {
    pub const ALL: [ConnectionState; 6] = [
        ConnectionState::Connecting,
        ConnectionState::Attached,
        ConnectionState::Backoff,
        ConnectionState::LoginRefused,
        ConnectionState::Draining,
        ConnectionState::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Attached => "attached",
            ConnectionState::Backoff => "backoff",
            ConnectionState::LoginRefused => "login-refused",
            ConnectionState::Draining => "draining",
            ConnectionState::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    pub client_id: String,
    pub state: ConnectionState,
    /// When it entered this state (RFC 3339).
    pub since: String,
    /// The last error, secrets redacted.
    pub last_error: Option<String>,
    pub attempts: u64,
    pub in_flight: usize,
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// One entry per connection, indexed like `Config::client_ids`.
pub struct StatusBoard {
    entries: Mutex<Vec<ConnectionStatus>>,
}

impl StatusBoard {
    pub fn new(client_ids: &[String]) -> StatusBoard {
        let now = now_rfc3339();
        StatusBoard {
            entries: Mutex::new(
                client_ids
                    .iter()
                    .map(|id| ConnectionStatus {
                        client_id: id.clone(),
                        state: ConnectionState::Connecting,
                        since: now.clone(),
                        last_error: None,
                        attempts: 0,
                        in_flight: 0,
                    })
                    .collect(),
            ),
        }
    }

    pub fn update(&self, index: usize, f: impl FnOnce(&mut ConnectionStatus)) {
        let mut entries = self.entries.lock().expect("status lock");
        if let Some(entry) = entries.get_mut(index) {
            let before = entry.state;
            f(entry);
            if entry.state != before {
                entry.since = now_rfc3339();
            }
        }
    }

    pub fn snapshot(&self) -> Vec<ConnectionStatus> {
        self.entries.lock().expect("status lock").clone()
    }

    /// Ready when every connection has its receiver attached.
    pub fn ready(&self) -> bool {
        self.entries.lock().expect("status lock").iter().all(|e| e.state == ConnectionState::Attached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_all_attached() {
        let board = StatusBoard::new(&["a".into(), "b".into()]);
        assert!(!board.ready());
        board.update(0, |e| e.state = ConnectionState::Attached);
        assert!(!board.ready());
        board.update(1, |e| e.state = ConnectionState::Attached);
        assert!(board.ready());
        board.update(1, |e| e.state = ConnectionState::LoginRefused);
        assert!(!board.ready());
        let json = serde_json::to_value(board.snapshot()).unwrap();
        assert_eq!(json[1]["state"], "login-refused");
        assert_eq!(json[0]["clientId"], "a");
    }
}
