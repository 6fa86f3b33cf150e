//! The http sink's batched mode: many messages per POST, as `application/cloudevents-batch+json`
//! (a JSON array of CloudEvents in the JSON event format), all taken by the answer's 2xx.
//!
//! Each delivery encodes its event and hands it to one batcher task, which sends whatever has queued
//! up by the time it runs (or by the linger, when one is set), up to the size limits, and answers
//! each delivery with the batch's outcome; the retries, the breaker and the dead letters stay per
//! message. A batch is all or nothing, since the format carries no per-event answer: a 400, 413, 415
//! or 422 for several events is not taken as every one's fault, so each is sent again in a batch of its
//! own and only the events the receiver still rejects become dead letters.

use std::{sync::Arc, time::Duration};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::{
    http::{CE_TYPE, CeTime, HttpSink, ce_time},
    outcome::{Attempt, Class},
};
use crate::{message::IotMessage, metrics::Metrics};

pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// When a batch is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_events: usize,
    /// Of the whole body; an event larger than this alone is sent alone.
    pub max_bytes: usize,
    /// How long the first event of a batch may wait for more; zero sends what has queued up. Never
    /// more than half the time any of its events' attempts has left.
    pub linger: Duration,
}

/// One CloudEvent in the JSON event format.
#[derive(Serialize)]
struct Event<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    subject: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generatetime: Option<&'a str>,
    datacontenttype: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

fn is_json_media_type(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

/// `message` as one event of a batch (pure): JSON payloads of a JSON content type are the event's
/// `data` as they are, other UTF-8 text of a `text/*` type a string, anything else `data_base64`.
pub fn encode_event(message: &IotMessage, source: &str) -> Vec<u8> {
    let payload = &message.payload;
    let text = std::str::from_utf8(payload).ok();
    let data = match text {
        Some(text) if is_json_media_type(&message.data_content_type) => serde_json::from_str::<&RawValue>(text).ok().map(Data::Json),
        Some(text) if message.data_content_type.trim_start().to_ascii_lowercase().starts_with("text/") => Some(Data::Text(text)),
        _ => None,
    };
    let data_base64 = data.is_none().then(|| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, payload));
    let time = ce_time(message);
    let event = Event {
        specversion: "1.0",
        id: &message.message_id,
        source,
        kind: CE_TYPE,
        subject: &message.topic,
        time: match &time {
            Some(CeTime::Time(t)) => Some(t),
            _ => None,
        },
        generatetime: match &time {
            Some(CeTime::Extension(t)) => Some(t),
            _ => None,
        },
        datacontenttype: &message.data_content_type,
        data,
        data_base64,
    };
    let mut out = Vec::with_capacity(256 + payload.len() * 4 / 3);
    serde_json::to_writer(&mut out, &event).expect("serializing to a Vec cannot fail");
    out
}

/// Events gathered for one POST (pure apart from the answer channels).
struct Batch {
    events: Vec<Pending>,
    bytes: usize,
    /// The earliest of its events' `send_by`: the linger ends there at the latest.
    send_by: Instant,
}

/// One delivery waiting for its batch's answer.
struct Pending {
    event: Vec<u8>,
    /// When its delivery stops waiting for this attempt (time spent in the batcher counts).
    deadline: Instant,
    /// When its batch must be sent, linger or not, so the POST keeps half of the attempt's time: a
    /// linger longer than what an attempt has left (a retry late in the acknowledgement window, or
    /// any attempt when the linger is longer than the sink's timeout) must not spend all of it.
    send_by: Instant,
    answer: oneshot::Sender<Attempt>,
}

impl Pending {
    fn new(event: Vec<u8>, now: Instant, timeout: Duration, answer: oneshot::Sender<Attempt>) -> Pending {
        Pending { event, deadline: now + timeout, send_by: now + timeout / 2, answer }
    }
}

impl Batch {
    fn new(first: Pending) -> Batch {
        let bytes = 2 + first.event.len();
        Batch { send_by: first.send_by, events: vec![first], bytes }
    }

    /// Whether `event` may join without passing a limit (the brackets and a comma counted).
    fn fits(&self, event: &[u8], limits: &BatchLimits) -> bool {
        self.events.len() < limits.max_events && self.bytes + 1 + event.len() <= limits.max_bytes
    }

    fn is_full(&self, limits: &BatchLimits) -> bool {
        self.events.len() >= limits.max_events || self.bytes >= limits.max_bytes
    }

    fn push(&mut self, pending: Pending) {
        self.bytes += 1 + pending.event.len();
        self.send_by = self.send_by.min(pending.send_by);
        self.events.push(pending);
    }

    fn body(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.bytes);
        body.push(b'[');
        for (i, pending) in self.events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&pending.event);
        }
        body.push(b']');
        body
    }

    /// The shortest time any of its deliveries may still wait (each has its own acknowledgement
    /// window), from `now`.
    fn timeout(&self, now: Instant) -> Duration {
        self.events.iter().map(|p| p.deadline.saturating_duration_since(now)).min().unwrap_or_default()
    }
}

/// The batched http sink: deliveries go through one batcher task.
pub struct BatchSink {
    http: Arc<HttpSink>,
    queue: mpsc::UnboundedSender<Pending>,
}

impl BatchSink {
    pub fn start(http: HttpSink, limits: BatchLimits, metrics: Arc<Metrics>) -> BatchSink {
        let http = Arc::new(http);
        let (queue, arrivals) = mpsc::unbounded_channel();
        tokio::spawn(gather(arrivals, http.clone(), limits, metrics));
        BatchSink { http, queue }
    }

    pub fn shown_url(&self) -> &str {
        self.http.shown_url()
    }

    /// One attempt for `message`: its answer is its batch's.
    pub async fn deliver(&self, message: &IotMessage, timeout: Duration) -> Attempt {
        let (answer, answered) = oneshot::channel();
        let pending = Pending::new(encode_event(message, self.http.source()), Instant::now(), timeout, answer);
        if self.queue.send(pending).is_err() {
            return Attempt::unreachable("the batcher has stopped".into());
        }
        answered.await.unwrap_or_else(|_| Attempt::unreachable("the batcher dropped the message's batch".into()))
    }
}

/// Yields to the runtime that bring no new delivery before a batch without linger is cut.
const IDLE_YIELDS: u32 = 2;

/// Gathers deliveries into batches and sends each on its own task, so batches overlap: how many
/// messages are in flight is still the credit's business.
async fn gather(mut arrivals: mpsc::UnboundedReceiver<Pending>, http: Arc<HttpSink>, limits: BatchLimits, metrics: Arc<Metrics>) {
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(pending) => pending,
            None => match arrivals.recv().await {
                Some(pending) => pending,
                None => return,
            },
        };
        let mut batch = Batch::new(first);
        let linger_end = Instant::now() + limits.linger;
        let mut idle_yields = 0;
        while !batch.is_full(&limits) {
            let next = match arrivals.try_recv() {
                Ok(pending) => {
                    idle_yields = 0;
                    pending
                }
                // Without a linger, the deliveries already under way (a burst the connection read
                // at once, still passing through the AMQP session's tasks) get to run before the
                // batch is cut: at once the batcher would be woken by the first and send it alone,
                // and every message of a burst would go in a POST of its own.
                Err(_) if limits.linger.is_zero() && idle_yields < IDLE_YIELDS => {
                    idle_yields += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(_) if limits.linger.is_zero() => break,
                Err(_) => match tokio::time::timeout_at(linger_end.min(batch.send_by), arrivals.recv()).await {
                    Ok(Some(pending)) => pending,
                    Ok(None) | Err(_) => break,
                },
            };
            if batch.fits(&next.event, &limits) {
                batch.push(next);
            } else {
                carried = Some(next);
                break;
            }
        }
        tokio::spawn(send(http.clone(), batch, metrics.clone()));
    }
}

async fn send(http: Arc<HttpSink>, batch: Batch, metrics: Arc<Metrics>) {
    metrics.sink_batch_events.observe(batch.events.len() as f64);
    let attempt = post(&http, &batch).await;
    if attempt.class == Class::Rejected && batch.events.len() > 1 {
        tracing::info!(events = batch.events.len(), detail = %attempt.detail, "the sink rejected a batch: sending each of its events alone");
        for pending in batch.events {
            let http = http.clone();
            metrics.sink_batch_events.observe(1.0);
            tokio::spawn(async move {
                let alone = Batch::new(pending);
                let attempt = post(&http, &alone).await;
                answer(alone, &attempt);
            });
        }
        return;
    }
    answer(batch, &attempt);
}

async fn post(http: &HttpSink, batch: &Batch) -> Attempt {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(BATCH_CONTENT_TYPE));
    http.send(headers, batch.body(), batch.timeout(Instant::now())).await
}

fn answer(batch: Batch, attempt: &Attempt) {
    for pending in batch.events {
        // A delivery that stopped waiting (its own timeout) has nothing left to answer.
        let _ = pending.answer.send(attempt.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{GenerateTime, sample};

    fn event(message: &IotMessage) -> serde_json::Value {
        serde_json::from_slice(&encode_event(message, "/aliyun/iot/iot-1/G")).unwrap()
    }

    #[test]
    fn a_json_payload_is_the_events_data_as_it_is() {
        let v = event(&sample("42", b" {\"x\":1.50}", "application/json"));
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], "42");
        assert_eq!(v["source"], "/aliyun/iot/iot-1/G");
        assert_eq!(v["type"], CE_TYPE);
        assert_eq!(v["subject"], "/pk/dn/thing/event/property/post");
        assert_eq!(v["time"], "2019-11-11T16:18:08.171Z");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["data"], serde_json::json!({"x": 1.5}));
        assert!(v.get("data_base64").is_none());
        let raw = String::from_utf8(encode_event(&sample("42", b"{\"x\":1.50}", "application/json"), "s")).unwrap();
        assert!(raw.contains("\"data\":{\"x\":1.50}"), "the payload's own text, not re-encoded: {raw}");
    }

    #[test]
    fn text_is_a_string_and_anything_else_base64() {
        let text = event(&sample("1", b"on", "text/plain; charset=utf-8"));
        assert_eq!(text["data"], "on");
        let broken_json = event(&sample("2", b"{not json", "application/json"));
        assert_eq!(broken_json["data_base64"], "e25vdCBqc29u", "declared JSON that does not parse is not passed as JSON");
        assert!(broken_json.get("data").is_none());
        let binary = event(&sample("3", &[0xff, 0x00, 0x01], "application/octet-stream"));
        assert_eq!(binary["data_base64"], "/wAB");
    }

    #[test]
    fn a_generate_time_that_is_not_a_time_goes_to_an_extension() {
        let mut m = sample("1", b"{}", "application/json");
        m.generate_time = Some(GenerateTime::Text("yesterday".into()));
        let v = event(&m);
        assert!(v.get("time").is_none());
        assert_eq!(v["generatetime"], "yesterday");
    }

    fn pending(size: usize, timeout_ms: u64) -> Pending {
        Pending::new(vec![b'1'; size], Instant::now(), Duration::from_millis(timeout_ms), oneshot::channel().0)
    }

    #[test]
    fn a_batch_is_sent_while_each_event_keeps_half_of_its_attempts_time() {
        let now = Instant::now();
        let answer = || oneshot::channel().0;
        let mut batch = Batch::new(Pending::new(vec![b'1'], now, Duration::from_secs(5), answer()));
        assert_eq!(batch.send_by - now, Duration::from_millis(2_500), "a linger longer than this is cut here");
        batch.push(Pending::new(vec![b'1'], now + Duration::from_millis(100), Duration::from_millis(200), answer()));
        assert_eq!(batch.send_by - now, Duration::from_millis(200), "a late retry with 200 ms left makes it go by then");
        batch.push(Pending::new(vec![b'1'], now, Duration::from_secs(1), answer()));
        assert_eq!(batch.send_by - now, Duration::from_millis(200), "the earliest one counts");
    }

    #[test]
    fn a_batch_stops_at_either_limit_and_its_body_is_a_json_array() {
        let limits = BatchLimits { max_events: 3, max_bytes: 12, linger: Duration::ZERO };
        let mut batch = Batch::new(pending(3, 500));
        assert!(batch.fits(&[b'1'; 3], &limits), "[111,111] is 9 bytes");
        batch.push(pending(3, 200));
        assert!(!batch.fits(&[b'1'; 3], &limits), "[111,111,111] would be 13 bytes");
        assert!(batch.fits(&[b'1'; 2], &limits));
        batch.push(pending(2, 900));
        assert!(batch.is_full(&limits), "three events");
        assert_eq!(batch.body(), b"[111,111,11]");
        assert_eq!(batch.bytes, batch.body().len());
        let created = batch.events[1].deadline - Duration::from_millis(200);
        assert_eq!(batch.timeout(created), Duration::from_millis(200), "the shortest of its deliveries'");
        assert_eq!(batch.timeout(created + Duration::from_millis(150)), Duration::from_millis(50), "time in the batcher counts");
        assert_eq!(batch.timeout(created + Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn an_event_larger_than_the_byte_limit_still_makes_a_batch_of_its_own() {
        let limits = BatchLimits { max_events: 100, max_bytes: 10, linger: Duration::ZERO };
        let batch = Batch::new(pending(50, 1));
        assert!(batch.is_full(&limits));
        assert!(!batch.fits(b"1", &limits));
    }

    #[test]
    fn json_media_types() {
        for json in ["application/json", "application/json; charset=utf-8", "application/cloudevents+json", "TEXT/JSON"] {
            assert!(is_json_media_type(json), "{json}");
        }
        for other in ["text/plain", "application/octet-stream", "application/jsonl", ""] {
            assert!(!is_json_media_type(other), "{other}");
        }
    }
}
