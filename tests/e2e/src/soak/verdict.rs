//! What a soak's records say (pure): lost messages, acknowledgements the sink never saw, duplicates,
//! end-to-end latency, and how long each fault took to recover from.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

/// A message as the load published it.
#[derive(Debug, Clone)]
pub struct Published {
    pub id: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// One line of the stand-in's ids file: an id it took, and when.
#[derive(Debug, Clone)]
pub struct Taken {
    pub id: String,
    pub at_ms: i64,
}

/// The delivery figures of a run, and the ids that break an invariant (a few, for the report).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub published: usize,
    /// Distinct published ids the sink took.
    pub delivered: usize,
    /// Published ids recorded as dead letters (and not taken by the sink).
    pub dead_letters: usize,
    /// Published ids neither taken nor dead letters.
    pub lost: usize,
    pub lost_examples: Vec<String>,
    /// Requests the sink took for an id it had already taken.
    pub duplicates: usize,
    pub duplicate_percent: f64,
    pub acknowledged: usize,
    /// Acknowledged ids the sink never took and no dead letter holds.
    pub acknowledged_not_taken: usize,
    pub acknowledged_not_taken_examples: Vec<String>,
    /// From the publish to the sink's first take of the id, milliseconds.
    pub latency_p50_ms: i64,
    pub latency_p99_ms: i64,
    pub latency_max_ms: i64,
}

impl Delivery {
    pub fn broken(&self) -> Vec<String> {
        let mut broken = Vec::new();
        if self.lost > 0 {
            broken.push(format!("{} published messages never reached the sink, e.g. {:?}", self.lost, self.lost_examples));
        }
        if self.acknowledged_not_taken > 0 {
            broken.push(format!(
                "{} messages were acknowledged that the sink never took and no dead letter holds, e.g. {:?}",
                self.acknowledged_not_taken, self.acknowledged_not_taken_examples
            ));
        }
        broken
    }
}

const EXAMPLES: usize = 5;

pub fn delivery(published: &[Published], taken: &[Taken], dead_letters: &[String], acknowledged: &[String]) -> Delivery {
    let mut first_take: HashMap<&str, i64> = HashMap::with_capacity(taken.len());
    let mut duplicates = 0;
    for t in taken {
        match first_take.get_mut(t.id.as_str()) {
            Some(at) => {
                duplicates += 1;
                *at = (*at).min(t.at_ms);
            }
            None => {
                first_take.insert(&t.id, t.at_ms);
            }
        }
    }
    let dead: HashSet<&str> = dead_letters.iter().map(String::as_str).collect();
    let mut latencies = Vec::with_capacity(published.len());
    let (mut delivered, mut dead_lettered, mut lost) = (0, 0, Vec::new());
    for p in published {
        if let Some(at) = first_take.get(p.id.as_str()) {
            delivered += 1;
            latencies.push((at - p.at_ms).max(0));
        } else if dead.contains(p.id.as_str()) {
            dead_lettered += 1;
        } else {
            lost.push(p.id.clone());
        }
    }
    let not_taken: Vec<&String> =
        acknowledged.iter().filter(|id| !first_take.contains_key(id.as_str()) && !dead.contains(id.as_str())).collect();
    latencies.sort_unstable();
    Delivery {
        published: published.len(),
        delivered,
        dead_letters: dead_lettered,
        lost: lost.len(),
        lost_examples: lost.into_iter().take(EXAMPLES).collect(),
        duplicates,
        duplicate_percent: if taken.is_empty() { 0.0 } else { 100.0 * duplicates as f64 / taken.len() as f64 },
        acknowledged: acknowledged.len(),
        acknowledged_not_taken: not_taken.len(),
        acknowledged_not_taken_examples: not_taken.into_iter().take(EXAMPLES).cloned().collect(),
        latency_p50_ms: percentile(&latencies, 0.50),
        latency_p99_ms: percentile(&latencies, 0.99),
        latency_max_ms: latencies.last().copied().unwrap_or(0),
    }
}

/// The nearest-rank percentile of sorted values (0 when there are none).
pub fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One second of the run as the watch saw it, reduced to what recovery needs.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    pub t: f64,
    pub all_ready: bool,
    /// Every group moves at least 90 % of its steady load, or has less than a second of it waiting.
    pub flowing: bool,
}

/// Seconds from `ended` (a fault's end, seconds into the run) to the first moment every
/// subscription is Ready and every group flows again; `None` if that never happened.
pub fn recovery(health: &[Health], ended: f64) -> Option<f64> {
    health.iter().find(|h| h.t >= ended && h.all_ready && h.flowing).map(|h| h.t - ended)
}

/// Whether a group flows: its acknowledgements over the last seconds keep up with the steady load,
/// or almost nothing waits.
pub fn flowing(ack_rate: f64, backlog: u64, steady_rate: f64) -> bool {
    ack_rate >= 0.9 * steady_rate || (backlog as f64) < steady_rate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(ids: &[&str]) -> Vec<Published> {
        ids.iter().enumerate().map(|(i, id)| Published { id: (*id).into(), at_ms: 1000 + i as i64 }).collect()
    }

    fn taken(pairs: &[(&str, i64)]) -> Vec<Taken> {
        pairs.iter().map(|(id, at)| Taken { id: (*id).into(), at_ms: *at }).collect()
    }

    fn strings(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn every_published_id_taken_once_is_a_clean_run() {
        let d = delivery(&published(&["a", "b"]), &taken(&[("a", 1010), ("b", 1031)]), &[], &strings(&["a", "b"]));
        assert_eq!((d.delivered, d.lost, d.duplicates, d.acknowledged_not_taken), (2, 0, 0, 0));
        assert_eq!((d.latency_p50_ms, d.latency_max_ms), (10, 30));
        assert!(d.broken().is_empty());
    }

    #[test]
    fn an_id_never_taken_is_lost_unless_a_dead_letter_holds_it() {
        let d = delivery(&published(&["a", "b", "c"]), &taken(&[("a", 1000)]), &strings(&["b"]), &strings(&["a", "b"]));
        assert_eq!((d.delivered, d.dead_letters, d.lost), (1, 1, 1));
        assert_eq!(d.lost_examples, ["c"]);
        assert!(d.broken()[0].contains("1 published messages never reached the sink"), "{:?}", d.broken());
    }

    #[test]
    fn an_acknowledgement_the_sink_never_saw_breaks_the_promise() {
        let d = delivery(&published(&["a", "b"]), &taken(&[("a", 1000), ("b", 1000)]), &[], &strings(&["a", "b", "x"]));
        assert_eq!(d.acknowledged_not_taken, 1);
        assert!(d.broken()[0].contains("acknowledged that the sink never took"), "{:?}", d.broken());
    }

    #[test]
    fn a_second_take_is_a_duplicate_and_latency_counts_the_first() {
        let d = delivery(&published(&["a"]), &taken(&[("a", 1500), ("a", 1100)]), &[], &strings(&["a", "a"]));
        assert_eq!((d.delivered, d.duplicates, d.duplicate_percent), (1, 1, 50.0));
        assert_eq!(d.latency_max_ms, 100);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<i64> = (1..=100).collect();
        assert_eq!((percentile(&values, 0.5), percentile(&values, 0.99), percentile(&values, 1.0)), (50, 99, 100));
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn recovery_is_the_first_ready_and_flowing_moment_after_the_end() {
        let h = |t, all_ready, flowing| Health { t, all_ready, flowing };
        let health = [h(10.0, true, true), h(11.0, false, true), h(12.0, true, false), h(13.0, true, true)];
        assert_eq!(recovery(&health, 10.5), Some(2.5));
        assert_eq!(recovery(&health, 14.0), None);
        assert!(flowing(460.0, 5000, 500.0) && flowing(0.0, 100, 500.0) && !flowing(100.0, 5000, 500.0));
    }
}
