//! What the operator remembers of one subscription between reconciles. Kept in memory only: a
//! new leader asks the platform again, and waits a whole stabilization window before it scales
//! anything down.

use std::time::Duration;

use time::OffsetDateTime;

use crate::{autoscale::Recent, observed::PlatformObservation};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    /// The platform's last answer, so the OpenAPI is asked once per poll interval however often
    /// the subscription is reconciled.
    pub platform: Option<PlatformObservation>,
    /// The autoscaler's recent recommendations.
    pub recent: Recent,
}

impl Memory {
    /// The last answer, while it is younger than `interval`.
    pub fn fresh_platform(&self, now: OffsetDateTime, interval: Duration) -> Option<&PlatformObservation> {
        self.platform.as_ref().filter(|p| now - p.at < interval)
    }

    /// Remembers a new answer and says which one to use. A throttled call (our own limiter) is
    /// not an answer: the last one stands, and the next reconcile asks again.
    pub fn remember_platform(&mut self, observation: PlatformObservation) -> PlatformObservation {
        if observation.is_throttled() {
            return self.platform.clone().unwrap_or(observation);
        }
        self.platform = Some(observation.clone());
        observation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fixtures, observed::PlatformAnswer};
    use iotsub_aliyun::answer::CallError;

    #[test]
    fn an_answer_is_reused_for_the_poll_interval_and_a_throttled_call_keeps_it() {
        let now = fixtures::now();
        let mut memory = Memory::default();
        let answered = PlatformObservation { answer: PlatformAnswer::Status(Default::default()), at: now };
        let throttled = PlatformObservation { answer: PlatformAnswer::Failed(CallError::Throttled), at: now };
        assert_eq!(memory.remember_platform(throttled.clone()), throttled, "nothing to fall back on");
        assert_eq!(memory.platform, None);
        memory.remember_platform(answered.clone());
        let later = throttled.clone();
        assert_eq!(memory.remember_platform(later), answered);
        let interval = Duration::from_secs(15);
        assert!(memory.fresh_platform(now + Duration::from_secs(14), interval).is_some());
        assert!(memory.fresh_platform(now + Duration::from_secs(15), interval).is_none());
    }
}
