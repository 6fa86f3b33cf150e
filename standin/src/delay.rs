//! Service times not rounded up to a millisecond.
//!
//! Tokio's timer rounds every deadline up to its next millisecond tick, so `sleep(1 ms)` takes
//! 1–2 ms (2.5 ms per round trip measured on a loaded machine, 1.46 ms with this timer).
//! [`Delayer`] keeps the deadlines in a heap on a thread of its own that waits on a condition
//! variable with the deadline (nanosecond timeouts; the kernel's timer slack is about 50 µs) and
//! wakes each request's task when its time has come.

use std::{
    cmp::Ordering,
    collections::BinaryHeap,
    sync::{Arc, Condvar, Mutex, PoisonError},
    thread,
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

#[derive(Clone)]
pub struct Delayer {
    shared: Arc<Shared>,
}

struct Shared {
    due: Mutex<BinaryHeap<Due>>,
    changed: Condvar,
}

struct Due {
    at: Instant,
    wake: oneshot::Sender<()>,
}

// The heap is a max-heap: the earliest deadline ranks highest.
impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Due {}

impl Delayer {
    pub fn start() -> anyhow::Result<Delayer> {
        let shared = Arc::new(Shared { due: Mutex::new(BinaryHeap::new()), changed: Condvar::new() });
        let timer = shared.clone();
        thread::Builder::new().name("service-timer".into()).spawn(move || run(&timer))?;
        Ok(Delayer { shared })
    }

    /// Returns `duration` after the call (at once for zero).
    pub async fn sleep(&self, duration: Duration) {
        if duration.is_zero() {
            return;
        }
        let (wake, woken) = oneshot::channel();
        let at = Instant::now() + duration;
        {
            let mut due = self.shared.due.lock().unwrap_or_else(PoisonError::into_inner);
            let earliest = due.peek().is_none_or(|first| at < first.at);
            due.push(Due { at, wake });
            if earliest {
                self.shared.changed.notify_one();
            }
        }
        let _ = woken.await;
    }
}

fn run(shared: &Shared) {
    let mut fired = Vec::new();
    let mut due = shared.due.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let now = Instant::now();
        while due.peek().is_some_and(|first| first.at <= now) {
            fired.extend(due.pop());
        }
        if !fired.is_empty() {
            // Woken outside the lock, so requests arriving meanwhile are not held up.
            drop(due);
            for Due { wake, .. } in fired.drain(..) {
                let _ = wake.send(());
            }
            due = shared.due.lock().unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        due = match due.peek().map(|first| first.at - now) {
            Some(wait) => shared.changed.wait_timeout(due, wait).unwrap_or_else(PoisonError::into_inner).0,
            None => shared.changed.wait(due).unwrap_or_else(PoisonError::into_inner),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleeps_end_no_sooner_than_asked_and_in_deadline_order() {
        let delayer = Delayer::start().unwrap();
        let started = Instant::now();
        let (done, mut order) = tokio::sync::mpsc::unbounded_channel();
        for ms in [30u64, 10, 20] {
            let (delayer, done) = (delayer.clone(), done.clone());
            tokio::spawn(async move {
                delayer.sleep(Duration::from_millis(ms)).await;
                let _ = done.send((ms, started.elapsed()));
            });
        }
        for expected in [10, 20, 30] {
            let (ms, took) = order.recv().await.unwrap();
            assert_eq!(ms, expected);
            assert!(took >= Duration::from_millis(ms), "{ms} ms sleep ended after {took:?}");
        }
    }
}
