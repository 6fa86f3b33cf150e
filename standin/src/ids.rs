//! The CloudEvent ids a request carries, and the file they are recorded in.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
};

use hyper::{HeaderMap, header::CONTENT_TYPE};
use serde::Deserialize;

pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdsError {
    #[error("the {0} body is not valid JSON of CloudEvents with string ids: {1}")]
    Body(&'static str, String),
    #[error("the request carries no CloudEvent id (no ce-id header, no {BATCH_CONTENT_TYPE} or {STRUCTURED_CONTENT_TYPE} body)")]
    Missing,
}

#[derive(Deserialize)]
struct EventId {
    id: String,
}

/// The ids of one request: each event of a batch body, the one of a structured body, else the
/// binary mode's `ce-id` header.
pub fn event_ids(headers: &HeaderMap, body: &[u8]) -> Result<Vec<String>, IdsError> {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case(BATCH_CONTENT_TYPE) {
        let events: Vec<EventId> = serde_json::from_slice(body).map_err(|e| IdsError::Body("batch", e.to_string()))?;
        return Ok(events.into_iter().map(|e| e.id).collect());
    }
    if media_type.eq_ignore_ascii_case(STRUCTURED_CONTENT_TYPE) {
        let event: EventId = serde_json::from_slice(body).map_err(|e| IdsError::Body("structured", e.to_string()))?;
        return Ok(vec![event.id]);
    }
    match headers.get("ce-id").and_then(|v| v.to_str().ok()) {
        Some(id) => Ok(vec![id.to_owned()]),
        None => Err(IdsError::Missing),
    }
}

/// Hands ids to a writer thread, which writes whatever has queued up and flushes once the queue is
/// empty: one write and flush per batch, however many requests arrive meanwhile.
/// One request's ids and when they were taken (Unix milliseconds).
type Taken = (i64, Vec<String>);

#[derive(Clone)]
pub struct IdRecorder {
    queue: Option<mpsc::Sender<Taken>>,
    /// Ids on disk (written and flushed), so a reader of the file knows how far it may read.
    flushed: Arc<AtomicU64>,
}

impl IdRecorder {
    /// Records into `path` (appended to), or nowhere; with `times`, each id is followed by a tab and
    /// the Unix milliseconds it was taken at (for end-to-end latency).
    pub fn start(path: Option<&Path>, times: bool) -> anyhow::Result<IdRecorder> {
        let flushed = Arc::new(AtomicU64::new(0));
        let Some(path) = path else { return Ok(IdRecorder { queue: None, flushed }) };
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("opening the ids file {}: {e}", path.display()))?;
        let (queue, batches) = mpsc::channel::<Taken>();
        let counter = flushed.clone();
        let path = path.to_path_buf();
        thread::Builder::new().name("ids-writer".into()).spawn(move || {
            if let Err(e) = write_batches(&batches, BufWriter::with_capacity(64 * 1024, file), times, &counter) {
                tracing::error!(file = %path.display(), error = %e, "writing the ids file failed; ids are no longer recorded");
            }
        })?;
        Ok(IdRecorder { queue: Some(queue), flushed })
    }

    pub fn record(&self, ids: Vec<String>) {
        if let Some(queue) = &self.queue {
            let _ = queue.send((now_ms(), ids));
        }
    }

    pub fn is_recording(&self) -> bool {
        self.queue.is_some()
    }

    pub fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::Relaxed)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn write_batches(batches: &mpsc::Receiver<Taken>, mut out: impl Write, times: bool, flushed: &AtomicU64) -> std::io::Result<()> {
    while let Ok(first) = batches.recv() {
        let mut count = 0;
        let mut next = Some(first);
        while let Some((at, ids)) = next {
            for id in &ids {
                out.write_all(id.as_bytes())?;
                if times {
                    write!(out, "\t{at}")?;
                }
                out.write_all(b"\n")?;
            }
            count += ids.len() as u64;
            next = batches.try_recv().ok();
        }
        out.flush()?;
        flushed.fetch_add(count, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_binary_mode_request_has_the_id_of_its_ce_id_header() {
        let ids = event_ids(&headers(&[("ce-id", "m-1"), ("content-type", "application/json")]), b"{}").unwrap();
        assert_eq!(ids, ["m-1"]);
    }

    #[test]
    fn a_batch_has_each_of_its_events_ids_in_order() {
        let body = br#"[{"id":"a","specversion":"1.0"},{"id":"b","data":{"x":1}}]"#;
        let ids = event_ids(&headers(&[("content-type", "application/cloudevents-batch+json; charset=utf-8")]), body).unwrap();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn a_structured_event_has_the_id_of_its_body() {
        let ids = event_ids(&headers(&[("content-type", "application/cloudevents+json")]), br#"{"id":"s-1"}"#).unwrap();
        assert_eq!(ids, ["s-1"]);
    }

    #[test]
    fn a_batch_that_is_not_json_is_named_as_such() {
        let error = event_ids(&headers(&[("content-type", BATCH_CONTENT_TYPE)]), b"[{").unwrap_err();
        assert!(matches!(error, IdsError::Body("batch", _)), "{error}");
    }

    #[test]
    fn a_request_without_any_id_is_an_error() {
        assert_eq!(event_ids(&headers(&[]), b"{}").unwrap_err(), IdsError::Missing);
    }

    #[test]
    fn queued_batches_are_written_one_a_line_and_counted_after_the_flush() {
        let (queue, batches) = mpsc::channel();
        queue.send((1, vec!["a".to_owned(), "b".to_owned()])).unwrap();
        queue.send((2, vec!["c".to_owned()])).unwrap();
        drop(queue);
        let flushed = AtomicU64::new(0);
        let mut out = Vec::new();
        write_batches(&batches, &mut out, false, &flushed).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a\nb\nc\n");
        assert_eq!(flushed.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn with_times_each_id_carries_when_it_was_taken() {
        let (queue, batches) = mpsc::channel();
        queue.send((1_700_000_000_123, vec!["a".to_owned(), "b".to_owned()])).unwrap();
        drop(queue);
        let mut out = Vec::new();
        write_batches(&batches, &mut out, true, &AtomicU64::new(0)).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a\t1700000000123\nb\t1700000000123\n");
    }
}
