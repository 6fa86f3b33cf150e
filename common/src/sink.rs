//! The worker's sink health as it travels on `/status`: written by the worker, read by the operator.

/// The worker's circuit breaker around its sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "kebab-case"))]
pub enum BreakerState {
    Ok,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [BreakerState::Ok, BreakerState::Open, BreakerState::HalfOpen];

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Ok => "ok",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}
