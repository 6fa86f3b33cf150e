//! What every iotsub crate shares: [`Secret`] (a value whose `Debug` and `Display` never show it),
//! [`jitter`], and, behind the `telemetry` feature, the binaries' log setup.

pub mod jitter;
pub mod secret;
#[cfg(feature = "telemetry")]
pub mod telemetry;

pub use secret::Secret;
