//! iotsub-worker: an authenticated AMQP 1.0 receiver of an IoT Platform consumer group that
//! acknowledges each message only after its sink took it.
//!
//! Pure parts ([`config`], [`backoff`], [`dedup`], [`message`], the formats of the sinks, the retry
//! policy) are apart from the I/O ([`connection`], [`sink`], [`server`], [`shutdown`]).

pub mod backoff;
pub mod config;
pub mod connection;
pub mod dedup;
pub mod error;
pub mod message;
pub mod metrics;
pub mod run;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod status;
pub mod tls;

pub use error::Error;
