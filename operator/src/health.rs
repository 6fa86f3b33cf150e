//! Liveness from the controller's heartbeat: `/healthz` fails when the leading replica's
//! controller stopped making progress (its caches never filled, or no reconcile finished for
//! minutes while subscriptions exist), so the kubelet restarts it and a standby takes over.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use iotsub_crds::ConsumerGroupSubscription;
use kube::runtime::reflector::Store;

/// Every subscription is reconciled at least once a minute; three minutes without a finished
/// reconcile means the loop is stuck.
const STUCK_AFTER: Duration = Duration::from_secs(180);
/// The first full list of every watch takes seconds; two minutes means the watches are stuck.
const FILLED_WITHIN: Duration = Duration::from_secs(120);

#[derive(Default)]
pub struct Health(Mutex<State>);

#[derive(Default)]
struct State {
    leading_since: Option<Instant>,
    filled_at: Option<Instant>,
    last_reconcile: Option<Instant>,
    subscriptions: Option<Store<ConsumerGroupSubscription>>,
}

/// What [`verdict`] judges, read at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub leading_for: Option<Duration>,
    pub filled: bool,
    /// Since the last finished reconcile, or since the caches filled when none finished yet.
    pub since_progress: Option<Duration>,
    pub subscriptions: usize,
}

impl Health {
    pub fn leading(&self, subscriptions: Store<ConsumerGroupSubscription>) {
        let mut state = self.lock();
        state.leading_since = Some(Instant::now());
        state.subscriptions = Some(subscriptions);
    }

    pub fn caches_filled(&self) {
        self.lock().filled_at = Some(Instant::now());
    }

    /// The heartbeat: a reconcile finished (whatever its outcome).
    pub fn reconciled(&self) {
        self.lock().last_reconcile = Some(Instant::now());
    }

    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let state = self.lock();
        let progress = state.last_reconcile.max(state.filled_at);
        Snapshot {
            leading_for: state.leading_since.map(|t| now.saturating_duration_since(t)),
            filled: state.filled_at.is_some(),
            since_progress: progress.map(|t| now.saturating_duration_since(t)),
            subscriptions: state.subscriptions.as_ref().map_or(0, |s| s.state().len()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().expect("health lock")
    }
}

/// `Ok` while the controller makes progress (a standby always is); else what is stuck.
pub fn verdict(s: &Snapshot) -> Result<(), String> {
    let Some(leading_for) = s.leading_for else { return Ok(()) };
    if !s.filled {
        return if leading_for > FILLED_WITHIN {
            Err(format!("leading for {} s and the watch caches are still not filled", leading_for.as_secs()))
        } else {
            Ok(())
        };
    }
    match s.since_progress {
        Some(since) if s.subscriptions > 0 && since > STUCK_AFTER => {
            Err(format!("no reconcile finished in {} s with {} subscriptions", since.as_secs(), s.subscriptions))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_follows_the_heartbeat() {
        let secs = Duration::from_secs;
        let snap = |leading_for: Option<u64>, filled: bool, since_progress: Option<u64>, subscriptions: usize| Snapshot {
            leading_for: leading_for.map(secs),
            filled,
            since_progress: since_progress.map(secs),
            subscriptions,
        };
        // name, snapshot, healthy
        let table = [
            ("a standby", snap(None, false, None, 0), true),
            ("leading, caches filling", snap(Some(30), false, None, 0), true),
            ("leading, caches stuck", snap(Some(121), false, None, 3), false),
            ("filled, reconciling", snap(Some(600), true, Some(20), 3), true),
            ("filled, nothing to reconcile for long", snap(Some(600), true, Some(600), 0), true),
            ("filled, no reconcile for minutes", snap(Some(600), true, Some(181), 3), false),
        ];
        for (name, snapshot, healthy) in table {
            assert_eq!(verdict(&snapshot).is_ok(), healthy, "{name}: {:?}", verdict(&snapshot));
        }
    }

    #[test]
    fn progress_counts_from_the_fill_then_from_each_reconcile() {
        let health = Health::default();
        assert_eq!(health.snapshot(Instant::now()), Snapshot { leading_for: None, filled: false, since_progress: None, subscriptions: 0 });
        health.leading(kube::runtime::reflector::store().0);
        health.caches_filled();
        let in_200_s = Instant::now() + Duration::from_secs(200);
        assert!(health.snapshot(in_200_s).since_progress.is_some_and(|d| d >= Duration::from_secs(200)));
        health.reconciled();
        assert!(health.snapshot(Instant::now()).since_progress.is_some_and(|d| d < Duration::from_secs(1)));
    }
}
