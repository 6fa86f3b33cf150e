//! How often each messageId was delivered without being taken, across redeliveries (pure).
//!
//! A message the sink can never take (it keeps answering 5xx for this one) would otherwise loop
//! between the platform and the worker forever; at `--max-deliveries` it becomes a dead letter.
//! Bounded like the duplicate window: the oldest ids are forgotten first.

use std::collections::{HashMap, VecDeque};

use crate::dedup::key;

#[derive(Debug)]
pub struct DeliveryCounts {
    capacity: usize,
    counts: HashMap<u64, u32>,
    order: VecDeque<u64>,
}

impl DeliveryCounts {
    pub fn new(capacity: usize) -> DeliveryCounts {
        DeliveryCounts { capacity: capacity.max(1), counts: HashMap::new(), order: VecDeque::new() }
    }

    /// One more delivery of `message_id` that the sink did not take; returns how many there were,
    /// at least `floor` (the sender's own count, when it keeps one).
    pub fn failed(&mut self, message_id: &str, floor: u32) -> u32 {
        let k = key(message_id);
        match self.counts.get_mut(&k) {
            Some(count) => {
                *count = (*count + 1).max(floor);
                *count
            }
            None => {
                self.counts.insert(k, floor.max(1));
                self.order.push_back(k);
                while self.order.len() > self.capacity {
                    if let Some(old) = self.order.pop_front() {
                        self.counts.remove(&old);
                    }
                }
                floor.max(1)
            }
        }
    }

    /// Deliveries of `message_id` so far that were not taken.
    pub fn get(&self, message_id: &str) -> u32 {
        self.counts.get(&key(message_id)).copied().unwrap_or(0)
    }

    /// The message was taken or dead-lettered: it will not come back.
    pub fn forget(&mut self, message_id: &str) {
        // The id stays in `order` until it ages out; removing it there would cost a scan.
        self.counts.remove(&key(message_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_message_id_across_deliveries() {
        let mut c = DeliveryCounts::new(10);
        assert_eq!(c.failed("a", 0), 1);
        assert_eq!(c.failed("a", 0), 2);
        assert_eq!(c.failed("b", 0), 1);
        assert_eq!(c.get("a"), 2);
        c.forget("a");
        assert_eq!(c.get("a"), 0);
    }

    #[test]
    fn the_senders_count_is_a_floor() {
        let mut c = DeliveryCounts::new(10);
        assert_eq!(c.failed("a", 4), 4);
        assert_eq!(c.failed("a", 0), 5);
    }

    #[test]
    fn bounded_oldest_first() {
        let mut c = DeliveryCounts::new(2);
        c.failed("a", 0);
        c.failed("b", 0);
        c.failed("c", 0);
        assert_eq!((c.get("a"), c.get("b"), c.get("c")), (0, 1, 1));
    }
}
