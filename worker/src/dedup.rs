//! The duplicate window: the platform may deliver a message more than once (same messageId) until it
//! is acknowledged. A messageId counts as seen only once its sink took it, so a released message that
//! comes back is delivered again; a copy that arrives while the first is still with the sink waits
//! for that outcome instead of reaching the sink twice.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::{DefaultHasher, Hash, Hasher},
};

use tokio::sync::oneshot;

/// What to do with a delivery, by its messageId.
#[derive(Debug)]
pub enum Begin {
    /// First sight: hand it to the sink, then call [`DedupWindow::finish`].
    New,
    /// Already taken by the sink: acknowledge without delivering.
    Duplicate,
    /// Another copy is with the sink now: `true` arrives if the sink took it (acknowledge this copy),
    /// `false` if it was released (release this copy too).
    Pending(oneshot::Receiver<bool>),
}

/// Remembers the last `capacity` delivered messageIds (as 64-bit hashes: 16 bytes each, not a String).
#[derive(Debug)]
pub struct DedupWindow {
    capacity: usize,
    done: HashSet<u64>,
    order: VecDeque<u64>,
    in_flight: HashMap<u64, Vec<oneshot::Sender<bool>>>,
}

/// A messageId as the bounded per-id memories keep it (this window, the delivery counts).
pub(crate) fn key(message_id: &str) -> u64 {
    // SipHash with fixed keys: stable within the process, which is all the window needs.
    let mut hasher = DefaultHasher::new();
    message_id.hash(&mut hasher);
    hasher.finish()
}

impl DedupWindow {
    pub fn new(capacity: usize) -> DedupWindow {
        DedupWindow { capacity, done: HashSet::new(), order: VecDeque::new(), in_flight: HashMap::new() }
    }

    fn enabled(&self, message_id: &str) -> bool {
        self.capacity > 0 && !message_id.is_empty()
    }

    pub fn begin(&mut self, message_id: &str) -> Begin {
        if !self.enabled(message_id) {
            return Begin::New;
        }
        let k = key(message_id);
        if self.done.contains(&k) {
            return Begin::Duplicate;
        }
        match self.in_flight.get_mut(&k) {
            Some(waiters) => {
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                Begin::Pending(rx)
            }
            None => {
                self.in_flight.insert(k, Vec::new());
                Begin::New
            }
        }
    }

    /// The sink took the message (`delivered`), or it is being released.
    pub fn finish(&mut self, message_id: &str, delivered: bool) {
        if !self.enabled(message_id) {
            return;
        }
        let k = key(message_id);
        let waiters = self.in_flight.remove(&k).unwrap_or_default();
        if delivered && self.done.insert(k) {
            self.order.push_back(k);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.done.remove(&old);
                }
            }
        }
        for waiter in waiters {
            let _ = waiter.send(delivered);
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_copy_after_delivery_is_a_duplicate() {
        let mut w = DedupWindow::new(10);
        assert!(matches!(w.begin("m1"), Begin::New));
        w.finish("m1", true);
        assert!(matches!(w.begin("m1"), Begin::Duplicate));
        assert!(matches!(w.begin("m2"), Begin::New));
    }

    #[test]
    fn released_message_is_delivered_again() {
        let mut w = DedupWindow::new(10);
        assert!(matches!(w.begin("m1"), Begin::New));
        w.finish("m1", false);
        assert!(matches!(w.begin("m1"), Begin::New));
    }

    #[test]
    fn copy_in_flight_waits_for_the_outcome() {
        let mut w = DedupWindow::new(10);
        assert!(matches!(w.begin("m1"), Begin::New));
        let Begin::Pending(mut rx) = w.begin("m1") else { panic!("expected Pending") };
        assert!(rx.try_recv().is_err());
        w.finish("m1", true);
        assert_eq!(rx.try_recv(), Ok(true));

        assert!(matches!(w.begin("m2"), Begin::New));
        let Begin::Pending(mut rx) = w.begin("m2") else { panic!("expected Pending") };
        w.finish("m2", false);
        assert_eq!(rx.try_recv(), Ok(false));
    }

    #[test]
    fn window_is_bounded_oldest_first() {
        let mut w = DedupWindow::new(2);
        for id in ["a", "b", "c"] {
            assert!(matches!(w.begin(id), Begin::New));
            w.finish(id, true);
        }
        assert_eq!(w.len(), 2);
        assert!(matches!(w.begin("a"), Begin::New), "a fell out of the window");
        assert!(matches!(w.begin("c"), Begin::Duplicate));
    }

    #[test]
    fn empty_ids_and_zero_capacity_are_never_duplicates() {
        let mut w = DedupWindow::new(0);
        w.finish("a", true);
        assert!(matches!(w.begin("a"), Begin::New));
        let mut w = DedupWindow::new(5);
        w.finish("", true);
        assert!(matches!(w.begin(""), Begin::New));
        assert!(matches!(w.begin(""), Begin::New));
    }
}
