//! iotsub-worker: an authenticated AMQP 1.0 receiver of an IoT Platform consumer group that
//! acknowledges each message only after its sink took it (or it was recorded as a dead letter).
//!
//! Pure parts ([`config`], [`backoff`], [`breaker`], [`credit`], [`attempt_budget`],
//! [`delivery_count`], [`dedup`], [`message`], [`sink::outcome`], the formats of the sinks and of
//! dead letters, the retry policy) are apart from the I/O ([`connection`], [`delivery`], [`sink`],
//! [`server`], [`shutdown`]).

pub mod attempt_budget;
pub mod backoff;
pub mod breaker;
pub mod config;
pub mod connection;
pub mod credentials;
pub mod credit;
pub mod dead_letter;
pub mod dedup;
pub mod delivery;
pub mod delivery_count;
pub mod error;
pub mod message;
pub mod metrics;
pub mod run;
pub mod server;
pub mod shared;
pub mod shutdown;
pub mod sink;
pub mod status;
pub mod tls;

pub use error::Error;
