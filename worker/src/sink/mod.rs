//! Where messages go: the `log` sink (JSON lines on stdout) or the `http` sink (CloudEvents).
//!
//! A sink answers [`Taken`] when the message is safely handed over (then, and only then, the worker
//! acknowledges it), or a [`SinkError`] that is worth retrying.

pub mod http;
pub mod log;
pub mod retry;

use std::time::Duration;

use crate::message::IotMessage;

/// The sink has the message: acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    Delivered,
    /// The sink refused it for good (an HTTP 4xx other than 408/429): retrying cannot help, so the
    /// message is logged, counted and acknowledged rather than blocking the queue.
    Poison(String),
}

/// A failure worth retrying (5xx, 408, 429, timeouts, connection errors, a full pipe).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

pub enum Sink {
    Log(log::LogSink),
    Http(http::HttpSink),
}

impl Sink {
    /// One attempt, bounded by `timeout`.
    pub async fn deliver(&self, message: &IotMessage, client_id: &str, timeout: Duration) -> Result<Taken, SinkError> {
        match self {
            Sink::Log(sink) => sink.write(message, client_id).await.map(|()| Taken::Delivered),
            Sink::Http(sink) => sink.post(message, timeout).await,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Sink::Log(_) => "log",
            Sink::Http(_) => "http",
        }
    }
}
