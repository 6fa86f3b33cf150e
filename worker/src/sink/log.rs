//! The `log` sink: one JSON object per message on stdout.
//!
//! `{"messageId":…,"topic":…,"generateTime":…,"clientId":…,"payload":"<utf-8 text>"}`, or
//! `"payloadBase64"` when the body is not UTF-8; an amqp-value or amqp-sequence body is written as
//! its JSON text, with `"dataContentType":"application/json"` saying so. A message counts as taken once its line has been
//! written to the stdout file descriptor (not merely buffered), so a SIGKILL right after the
//! acknowledgement loses nothing. One writer thread batches whatever lines are waiting into one
//! write, so the cost of the syscall is shared at high rates.

use std::io::Write;

use base64::Engine;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::message::{GenerateTime, IotMessage};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    message_id: &'a str,
    topic: &'a str,
    generate_time: Option<&'a GenerateTime>,
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_content_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

/// The line for `message`, with its trailing newline.
pub fn format_line(message: &IotMessage, client_id: &str) -> Vec<u8> {
    let text = std::str::from_utf8(&message.payload).ok();
    let line = Line {
        message_id: &message.message_id,
        topic: &message.topic,
        generate_time: message.generate_time.as_ref(),
        client_id,
        data_content_type: message.encoded.then_some(message.data_content_type.as_str()),
        payload: text,
        payload_base64: match text {
            Some(_) => None,
            None => Some(base64::engine::general_purpose::STANDARD.encode(&message.payload)),
        },
    };
    let mut out = Vec::with_capacity(128 + message.payload.len());
    serde_json::to_writer(&mut out, &line).expect("serializing to a Vec cannot fail");
    out.push(b'\n');
    out
}

type Job = (Vec<u8>, oneshot::Sender<Result<(), String>>);

#[derive(Clone)]
pub struct LogSink {
    jobs: mpsc::Sender<Job>,
}

/// Lines written in one batch at most, so a waiting writer never holds back acknowledgements long.
const MAX_BATCH: usize = 512;

impl LogSink {
    /// Starts the writer thread on `out` (stdout in the binary).
    pub fn start<W: Write + Send + 'static>(mut out: W) -> LogSink {
        let (jobs, mut rx) = mpsc::channel::<Job>(4096);
        std::thread::Builder::new()
            .name("log-sink".into())
            .spawn(move || {
                let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
                let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
                while let Some(job) = rx.blocking_recv() {
                    batch.push(job);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    buffer.clear();
                    for (line, _) in &batch {
                        buffer.extend_from_slice(line);
                    }
                    let result = out.write_all(&buffer).and_then(|()| out.flush()).map_err(|e| e.to_string());
                    for (_, done) in batch.drain(..) {
                        let _ = done.send(result.clone());
                    }
                }
            })
            .expect("spawning the log sink thread");
        LogSink { jobs }
    }

    pub async fn write(&self, message: &IotMessage, client_id: &str) -> Result<(), String> {
        self.write_line(format_line(message, client_id)).await
    }

    /// Writes `line` (with its newline); returns once it is out of the process.
    pub async fn write_line(&self, line: Vec<u8>) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.jobs.send((line, done)).await.map_err(|_| "the writer thread stopped".to_owned())?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("writing: {e}")),
            Err(_) => Err("the writer thread stopped".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn message(payload: &[u8]) -> IotMessage {
        crate::message::sample("m-1", payload, "application/json")
    }

    #[test]
    fn utf8_payload_is_text() {
        let line = format_line(&message(br#"{"a":"\u00e9"}"#), "c-0");
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"messageId\":\"m-1\",\"topic\":\"/pk/dn/thing/event/property/post\",\"generateTime\":1573489088171,\"clientId\":\"c-0\",\"payload\":\"{\\\"a\\\":\\\"\\\\u00e9\\\"}\"}\n"
        );
    }

    #[test]
    fn binary_payload_is_base64() {
        let line = String::from_utf8(format_line(&message(&[0xff, 0x00, 0x01]), "c")).unwrap();
        assert!(line.ends_with(",\"payloadBase64\":\"/wAB\"}\n"), "{line}");
        assert!(!line.contains("\"payload\":"));
    }

    #[test]
    fn an_encoded_body_says_it_is_json() {
        let mut m = message(br#"{"a":1}"#);
        m.encoded = true;
        let line = String::from_utf8(format_line(&m, "c")).unwrap();
        assert!(line.contains(r#""dataContentType":"application/json","payload":"{\"a\":1}""#), "{line}");
    }

    #[test]
    fn missing_generate_time_is_null() {
        let mut m = message(b"x");
        m.generate_time = None;
        let line = String::from_utf8(format_line(&m, "c")).unwrap();
        assert!(line.contains("\"generateTime\":null"), "{line}");
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn write_returns_after_the_line_is_out() {
        let out = Shared::default();
        let sink = LogSink::start(out.clone());
        sink.write(&message(b"hello"), "c").await.unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("\"payload\":\"hello\""));
    }

    #[tokio::test]
    async fn write_errors_are_reported_not_swallowed() {
        let sink = LogSink::start(Broken);
        let err = sink.write(&message(b"x"), "c").await.unwrap_err();
        assert!(err.contains("pipe closed"), "{err}");
    }
}
