//! An injected fault: every event request answered with a given status until a deadline, as a
//! business server that is down (503) or refuses the worker's credentials (401).

use std::{sync::Mutex, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// What `POST /admin/fault` takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultRequest {
    /// The status to answer, 400–599.
    pub status: u16,
    /// For how long; absent: until `DELETE /admin/fault`.
    pub seconds: Option<f64>,
    /// A `Retry-After` header to send with it, in seconds.
    pub retry_after: Option<u32>,
}

/// The fault as `GET /admin/stats` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultView {
    pub status: u16,
    /// Seconds left; absent: until cleared.
    pub remaining_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
pub struct Active {
    pub status: u16,
    pub until: Option<Instant>,
    pub retry_after: Option<u32>,
}

impl FaultRequest {
    /// Checks the request and turns it into a fault starting `now`.
    pub fn activate(&self, now: Instant) -> Result<Active, String> {
        if !(400..=599).contains(&self.status) {
            return Err(format!("status {} is not an error status (400–599)", self.status));
        }
        let until = match self.seconds {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Some(now + Duration::from_secs_f64(s)),
            Some(s) => return Err(format!("seconds {s} must be above 0 and at most 86400")),
        };
        Ok(Active { status: self.status, until, retry_after: self.retry_after })
    }
}

#[derive(Debug, Default)]
pub struct Fault(Mutex<Option<Active>>);

impl Fault {
    pub fn set(&self, active: Option<Active>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = active;
    }

    /// The fault in force at `now`, if any (an expired one is cleared).
    pub fn current(&self, now: Instant) -> Option<Active> {
        let mut slot = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match *slot {
            Some(active) if active.until.is_none_or(|until| now < until) => Some(active),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    pub fn view(&self, now: Instant) -> Option<FaultView> {
        self.current(now).map(|a| FaultView {
            status: a.status,
            remaining_seconds: a.until.map(|until| until.saturating_duration_since(now).as_secs_f64()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(status: u16, seconds: Option<f64>) -> FaultRequest {
        FaultRequest { status, seconds, retry_after: None }
    }

    #[test]
    fn a_fault_holds_until_its_deadline_then_clears_itself() {
        let now = Instant::now();
        let fault = Fault::default();
        fault.set(Some(request(503, Some(2.0)).activate(now).unwrap()));
        assert_eq!(fault.current(now + Duration::from_secs(1)).map(|a| a.status), Some(503));
        assert!(fault.current(now + Duration::from_secs(2)).is_none());
        assert!(fault.current(now).is_none(), "cleared once expired");
    }

    #[test]
    fn a_fault_without_seconds_holds_until_cleared() {
        let now = Instant::now();
        let fault = Fault::default();
        fault.set(Some(request(401, None).activate(now).unwrap()));
        assert_eq!(fault.view(now + Duration::from_secs(3600)), Some(FaultView { status: 401, remaining_seconds: None }));
        fault.set(None);
        assert!(fault.current(now).is_none());
    }

    #[test]
    fn a_success_status_or_a_bad_duration_is_refused_with_the_reason() {
        let now = Instant::now();
        assert!(request(200, None).activate(now).unwrap_err().contains("status 200"));
        assert!(request(503, Some(-1.0)).activate(now).unwrap_err().contains("seconds -1"));
    }
}
