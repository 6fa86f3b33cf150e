//! Where messages go: the `log` sink (JSON lines on stdout) or the `http` sink (CloudEvents, one per
//! POST or [`batch`]ed).
//!
//! One attempt answers an [`outcome::Attempt`]: taken (then, and only then, the worker
//! acknowledges), rejected by the receiver (a dead letter), or a failure of the sink (retried, then
//! released). [`health`] turns the attempts into the circuit breaker's state.

pub mod batch;
pub mod headers;
pub mod health;
pub mod http;
pub mod log;
pub mod outcome;
pub mod retry;
pub mod url;

use std::time::Duration;

use crate::message::IotMessage;
use outcome::Attempt;

pub enum Sink {
    Log(log::LogSink),
    Http(Box<http::HttpSink>),
    /// The http sink in batched mode.
    HttpBatch(Box<batch::BatchSink>),
}

impl Sink {
    /// One attempt, bounded by `timeout`.
    pub async fn deliver(&self, message: &IotMessage, client_id: &str, timeout: Duration) -> Attempt {
        match self {
            Sink::Log(sink) => match sink.write(message, client_id).await {
                Ok(()) => Attempt::taken(),
                Err(e) => Attempt::transient(e),
            },
            Sink::Http(sink) => sink.post(message, timeout).await,
            Sink::HttpBatch(sink) => sink.deliver(message, timeout).await,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Sink::Log(_) => "log",
            Sink::Http(_) | Sink::HttpBatch(_) => "http",
        }
    }

    /// How `/readyz` and logs name the sink (a URL without its userinfo and query).
    pub fn describe(&self) -> String {
        match self {
            Sink::Log(_) => "log (stdout)".into(),
            Sink::Http(sink) => format!("http {}", sink.shown_url()),
            Sink::HttpBatch(sink) => format!("http {} (batches)", sink.shown_url()),
        }
    }
}
