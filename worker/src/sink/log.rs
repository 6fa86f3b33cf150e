//! The `log` sink: one JSON object per message on stdout.
//!
//! `{"messageId":…,"topic":…,"generateTime":…,"clientId":…,"payload":"<utf-8 text>"}`, or
//! `"payloadBase64"` when the body is not UTF-8; an amqp-value or amqp-sequence body is written as
//! its JSON text, with `"dataContentType":"application/json"` saying so. A message counts as taken once its line has been
//! written to the stdout file descriptor (not merely buffered), so a SIGKILL right after the
//! acknowledgement loses nothing.
//!
//! A line is written by the task that delivers it when that write cannot block (stdout is a file,
//! `/dev/null`, or a pipe with room for it: [`Room`]) and no other write is under way; otherwise
//! it goes to one writer thread, which batches whatever lines are waiting into one write, so a
//! slow reader of stdout never blocks the runtime and the syscall is shared at high rates. The
//! direct write spares each message two thread wake-ups (to the writer thread and back), which on
//! a busy CPU were the worker's latency tail.

use std::{
    io::Write,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    sync::{Arc, Mutex},
};

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

/// Whether a write of a few bytes to the output can return without waiting for its reader.
#[derive(Debug)]
pub enum Room {
    /// A regular file or `/dev/null`: writes never wait for a reader.
    Always,
    /// A pipe (a container's stdout): as long as what is unread leaves room for the line.
    Pipe(OwnedFd),
    /// Anything else (a terminal, a socket, a test's writer): always through the writer thread.
    Never,
}

/// A page of slack: a pipe stores writes in page-sized buffers, so a short line may need a new one.
const PIPE_SLACK: usize = 4096;

impl Room {
    /// What `fd` is, from `fstat`; a pipe keeps a duplicate of `fd` to ask how full it is.
    pub fn of(fd: BorrowedFd<'_>) -> Room {
        use rustix::fs::{FileType, fstat, major, minor};
        let Ok(stat) = fstat(fd) else { return Room::Never };
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => Room::Always,
            FileType::CharacterDevice if (major(stat.st_rdev), minor(stat.st_rdev)) == (1, 3) => Room::Always,
            FileType::Fifo => fd.try_clone_to_owned().map_or(Room::Never, Room::Pipe),
            _ => Room::Never,
        }
    }

    /// Whether `len` more bytes go out without blocking.
    pub fn fits(&self, len: usize) -> bool {
        match self {
            Room::Always => true,
            Room::Never => false,
            Room::Pipe(fd) => match (rustix::io::ioctl_fionread(fd), rustix::pipe::fcntl_getpipe_size(fd)) {
                (Ok(unread), Ok(capacity)) => (unread as usize).saturating_add(len + PIPE_SLACK) <= capacity,
                _ => false,
            },
        }
    }
}

type Out = Arc<Mutex<Box<dyn Write + Send>>>;

#[derive(Clone)]
pub struct LogSink {
    jobs: mpsc::Sender<Job>,
    out: Out,
    room: Arc<Room>,
}

/// Lines written in one batch at most, so a waiting writer never holds back acknowledgements long.
const MAX_BATCH: usize = 512;

fn write_out(out: &mut dyn Write, bytes: &[u8]) -> Result<(), String> {
    out.write_all(bytes).and_then(|()| out.flush()).map_err(|e| e.to_string())
}

impl LogSink {
    /// Writes to a file descriptor (stdout or stderr in the binary), directly when [`Room`] allows.
    pub fn start_fd<W: Write + AsFd + Send + 'static>(out: W) -> LogSink {
        let room = Room::of(out.as_fd());
        LogSink::start_with(out, room)
    }

    /// Every line through the writer thread.
    pub fn start<W: Write + Send + 'static>(out: W) -> LogSink {
        LogSink::start_with(out, Room::Never)
    }

    fn start_with<W: Write + Send + 'static>(out: W, room: Room) -> LogSink {
        let out: Out = Arc::new(Mutex::new(Box::new(out)));
        let (jobs, mut rx) = mpsc::channel::<Job>(4096);
        let writer = out.clone();
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
                    let result = match writer.lock() {
                        Ok(mut out) => write_out(&mut **out, &buffer),
                        Err(_) => Err("the output lock is poisoned".to_owned()),
                    };
                    for (_, done) in batch.drain(..) {
                        let _ = done.send(result.clone());
                    }
                }
            })
            .expect("spawning the log sink thread");
        LogSink { jobs, out, room: Arc::new(room) }
    }

    pub async fn write(&self, message: &IotMessage, client_id: &str) -> Result<(), String> {
        self.write_line(format_line(message, client_id)).await
    }

    /// Writes `line` (with its newline); returns once it is out of the process.
    pub async fn write_line(&self, line: Vec<u8>) -> Result<(), String> {
        if let Some(result) = self.write_directly(&line) {
            return result.map_err(|e| format!("writing: {e}"));
        }
        let (done, wait) = oneshot::channel();
        self.jobs.send((line, done)).await.map_err(|_| "the writer thread stopped".to_owned())?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("writing: {e}")),
            Err(_) => Err("the writer thread stopped".to_owned()),
        }
    }

    /// The line written by the calling task, when that cannot block: nobody else is writing and
    /// the output has room. `None`: left to the writer thread.
    fn write_directly(&self, line: &[u8]) -> Option<Result<(), String>> {
        let mut out = self.out.try_lock().ok()?;
        self.room.fits(line.len()).then(|| write_out(&mut **out, line))
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn files_and_dev_null_always_have_room_pipes_while_unread_bytes_leave_it() {
        let file = tempfile::tempfile().unwrap();
        assert!(matches!(Room::of(file.as_fd()), Room::Always));
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap();
        assert!(matches!(Room::of(null.as_fd()), Room::Always));

        let (_reader, writer) = rustix::pipe::pipe().unwrap();
        let mut writer = std::fs::File::from(writer);
        let room = Room::of(writer.as_fd());
        assert!(matches!(room, Room::Pipe(_)), "{room:?}");
        assert!(room.fits(100));
        let capacity = rustix::pipe::fcntl_getpipe_size(&writer).unwrap();
        // Nobody reads: once the pipe is nearly full, a line no longer fits.
        writer.write_all(&vec![b'x'; capacity - PIPE_SLACK]).unwrap();
        assert!(!room.fits(100));
    }

    /// Polls `future` once, without a runtime: the direct write completes within that poll.
    fn first_poll<F: std::future::Future>(future: F) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        std::pin::pin!(future).poll(&mut cx)
    }

    #[tokio::test]
    async fn a_line_is_written_by_the_delivering_task_when_the_file_has_room_and_by_the_thread_otherwise() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let direct = LogSink::start_fd(file.reopen().unwrap());
        assert!(matches!(first_poll(direct.write(&message(b"direct"), "c")), std::task::Poll::Ready(Ok(()))));
        assert!(std::fs::read_to_string(file.path()).unwrap().contains("\"payload\":\"direct\""));

        let (_reader, writer) = rustix::pipe::pipe().unwrap();
        let mut writer = std::fs::File::from(writer);
        let capacity = rustix::pipe::fcntl_getpipe_size(&writer).unwrap();
        writer.write_all(&vec![b'x'; capacity - PIPE_SLACK]).unwrap();
        let full = LogSink::start_fd(writer);
        assert!(first_poll(full.write(&message(b"queued"), "c")).is_pending(), "a full pipe must not be written by the task");
    }

    #[tokio::test]
    async fn write_errors_are_reported_not_swallowed() {
        let sink = LogSink::start(Broken);
        let err = sink.write(&message(b"x"), "c").await.unwrap_err();
        assert!(err.contains("pipe closed"), "{err}");
    }
}
