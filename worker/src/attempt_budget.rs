//! The pod's share of the consumer group's connection attempts (pure, time passed in).
//!
//! The platform allows 100 connection attempts per minute per consumer group, shared by every client
//! of the group, ours and other teams'. The operator gives each pod its share
//! (`--reconnect-attempts-per-minute`); every connection of the pod draws from it, so after an outage
//! the pods together stay under the group's limit however their backoffs line up.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

pub const WINDOW: Duration = Duration::from_secs(60);
/// The platform counts an attempt when it reaches it (after TCP, TLS and SASL), which on a busy
/// machine is seconds after the worker started it: the worker remembers each attempt this much
/// longer than a minute, so an old attempt never leaves our window before it leaves the platform's.
pub const MARGIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct AttemptBudget {
    per_minute: u32,
    /// Start times of the attempts of the last minute, oldest first.
    recent: VecDeque<Instant>,
}

impl AttemptBudget {
    pub fn new(per_minute: u32) -> AttemptBudget {
        AttemptBudget { per_minute: per_minute.max(1), recent: VecDeque::new() }
    }

    fn forget_old(&mut self, now: Instant) {
        while self.recent.front().is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW + MARGIN) {
            self.recent.pop_front();
        }
    }

    /// Takes one attempt at `now` if the budget allows it; else how long until it does.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.forget_old(now);
        if (self.recent.len() as u32) < self.per_minute {
            self.recent.push_back(now);
            return Ok(());
        }
        let oldest = *self.recent.front().expect("a full budget has attempts");
        Err((oldest + WINDOW + MARGIN).saturating_duration_since(now).max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_n_attempts_in_any_minute() {
        let start = Instant::now();
        let mut budget = AttemptBudget::new(3);
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(budget.take(at(0)), Ok(()));
        assert_eq!(budget.take(at(1)), Ok(()));
        assert_eq!(budget.take(at(2)), Ok(()));
        assert_eq!(budget.take(at(3)), Err(Duration::from_secs(62)), "the fourth waits for the first to age out, with the margin");
        assert_eq!(budget.take(at(64)), Err(Duration::from_secs(1)));
        assert_eq!(budget.take(at(65)), Ok(()));
        assert_eq!(budget.take(at(65)), Err(Duration::from_secs(1)));
        assert_eq!(budget.take(at(67)), Ok(()));
    }

    #[test]
    fn sixty_four_pods_hammering_with_their_share_stay_under_the_groups_100() {
        // The operator's share for 64 clients: floor(100 / 64) = 1 attempt per minute each. Every pod
        // retries every 100 ms for three minutes; no minute sees more than 100 attempts of the group.
        let start = Instant::now();
        let mut pods: Vec<AttemptBudget> = (0..64).map(|_| AttemptBudget::new(100 / 64)).collect();
        let mut attempts: Vec<Instant> = Vec::new();
        for ms in (0..180_000).step_by(100) {
            let now = start + Duration::from_millis(ms);
            for pod in &mut pods {
                if pod.take(now).is_ok() {
                    attempts.push(now);
                }
            }
        }
        for (i, first) in attempts.iter().enumerate() {
            let in_minute = attempts[i..].iter().take_while(|t| **t - *first < WINDOW).count();
            assert!(in_minute <= 100, "{in_minute} attempts in the minute from {:?}", *first - start);
        }
        assert_eq!(attempts.len(), 64 * 3, "each pod still gets its attempt every 65 s");
    }
}
