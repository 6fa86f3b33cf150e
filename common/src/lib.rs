//! What every iotsub crate shares: [`Secret`] (a value whose `Debug` and `Display` never show it),
//! [`jitter`], behind the `telemetry` feature the binaries' log setup, and behind `net` the servers'
//! accept.

pub mod jitter;
#[cfg(feature = "net")]
pub mod net;
pub mod secret;
pub mod sink;
#[cfg(feature = "telemetry")]
pub mod telemetry;

pub use secret::Secret;
