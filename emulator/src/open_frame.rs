//! Reads the client's Open frame off the wire as the bytes pass by.
//!
//! fe2o3-amqp's acceptor keeps the remote Open to itself, and the platform's first rule is about a
//! field of it (idle-time-out), so the TLS stream is wrapped in [`OpenObserver`], which feeds what
//! the connection reads into [`OpenScanner`] until the Open has been seen.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use fe2o3_amqp_types::performatives::Open;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::{batched_write::BatchedWrites, wire_clock::WireClock};

/// What the scanner found in the client's Open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOpen {
    pub container_id: String,
    pub idle_time_out_ms: Option<u32>,
}

/// Gives up on frames larger than this before the Open: a client can't make us buffer more.
const MAX_PRE_OPEN_FRAME: usize = 64 * 1024;

/// Walks protocol headers (`AMQP` + 4 bytes) and frames (size, doff, type, channel, body) and decodes
/// the first AMQP frame with a body, which the protocol requires to be the Open.
#[derive(Debug, Default)]
pub struct OpenScanner {
    buffer: Vec<u8>,
    done: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ScanResult {
    NeedMore,
    Found(RemoteOpen),
    /// Not AMQP as we know it: stop looking (the connection engine will fail on its own).
    GaveUp(String),
}

impl OpenScanner {
    pub fn feed(&mut self, bytes: &[u8]) -> ScanResult {
        if self.done {
            return ScanResult::NeedMore;
        }
        self.buffer.extend_from_slice(bytes);
        let result = self.scan();
        if !matches!(result, ScanResult::NeedMore) {
            self.done = true;
            self.buffer = Vec::new();
        }
        result
    }

    fn scan(&mut self) -> ScanResult {
        loop {
            if self.buffer.len() < 8 {
                return ScanResult::NeedMore;
            }
            if &self.buffer[..4] == b"AMQP" {
                self.buffer.drain(..8);
                continue;
            }
            let size = u32::from_be_bytes(self.buffer[..4].try_into().expect("4 bytes")) as usize;
            if !(8..=MAX_PRE_OPEN_FRAME).contains(&size) {
                return ScanResult::GaveUp(format!("frame of {size} bytes before the Open"));
            }
            if self.buffer.len() < size {
                return ScanResult::NeedMore;
            }
            let doff = self.buffer[4] as usize * 4;
            let frame_type = self.buffer[5];
            let frame: Vec<u8> = self.buffer.drain(..size).collect();
            // SASL frames (type 1) and empty heartbeat frames come before the Open.
            if frame_type != 0 || doff >= size {
                continue;
            }
            if doff < 8 {
                return ScanResult::GaveUp(format!("data offset {doff} is below the header size"));
            }
            return match serde_amqp::from_slice::<Open>(&frame[doff..]) {
                Ok(open) => ScanResult::Found(RemoteOpen { container_id: open.container_id, idle_time_out_ms: open.idle_time_out }),
                Err(e) => ScanResult::GaveUp(format!("first AMQP frame is not an Open: {e}")),
            };
        }
    }
}

/// A stream that reports the client's Open into `seen` as the connection reads it, and reads EOF
/// once `cut` is cancelled: fe2o3-amqp's engine keeps the socket open after sending a Close until
/// the peer answers, and clients such as Qpid Proton wait for the server to drop the socket instead.
/// It also shows every byte written and read to the connection's [`WireClock`], and writes through
/// [`BatchedWrites`], so the frames the engine has ready share a write.
pub struct OpenObserver<S> {
    inner: ReadHalf<S>,
    writes: BatchedWrites,
    scanner: Option<OpenScanner>,
    seen: Arc<OnceLock<RemoteOpen>>,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    clock: Arc<WireClock>,
}

impl<S> std::fmt::Debug for OpenObserver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenObserver").field("seen", &self.seen.get()).finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> OpenObserver<S> {
    pub fn new(stream: S, cut: CancellationToken, clock: Arc<WireClock>) -> (Self, Arc<OnceLock<RemoteOpen>>) {
        let seen = Arc::new(OnceLock::new());
        let (inner, out) = tokio::io::split(stream);
        let writes = BatchedWrites::spawn(out, clock.clone());
        let observer = OpenObserver {
            inner,
            writes,
            scanner: Some(OpenScanner::default()),
            seen: seen.clone(),
            cut: Box::pin(cut.cancelled_owned()),
            clock,
        };
        (observer, seen)
    }
}

impl<S: AsyncRead> AsyncRead for OpenObserver<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if result.is_ready() && buf.filled().len() > before {
            this.clock.read(&buf.filled()[before..], Instant::now());
        }
        if let (Poll::Ready(Ok(())), Some(scanner)) = (&result, this.scanner.as_mut()) {
            match scanner.feed(&buf.filled()[before..]) {
                ScanResult::NeedMore => {}
                ScanResult::Found(open) => {
                    let _ = this.seen.set(open);
                    this.scanner = None;
                }
                ScanResult::GaveUp(why) => {
                    tracing::debug!(%why, "stopped looking for the Open frame");
                    this.scanner = None;
                }
            }
        }
        result
    }
}

impl<S> AsyncWrite for OpenObserver<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.writes.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writes.poll_flush()
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writes.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amqp_frame(frame_type: u8, body: &[u8]) -> Vec<u8> {
        let size = (8 + body.len()) as u32;
        let mut frame = size.to_be_bytes().to_vec();
        frame.extend_from_slice(&[2, frame_type, 0, 0]);
        frame.extend_from_slice(body);
        frame
    }

    fn open_body(idle: Option<u32>) -> Vec<u8> {
        let open = Open {
            container_id: "client-1".into(),
            hostname: None,
            max_frame_size: Default::default(),
            channel_max: Default::default(),
            idle_time_out: idle,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        serde_amqp::to_vec(&open).unwrap()
    }

    fn wire(idle: Option<u32>) -> Vec<u8> {
        let mut bytes = b"AMQP\x03\x01\x00\x00".to_vec();
        bytes.extend(amqp_frame(1, b"\x00\x53\x41\xc0\x03\x01\xa3\x00")); // a SASL frame, opaque here
        bytes.extend(b"AMQP\x00\x01\x00\x00");
        bytes.extend(amqp_frame(0, &[])); // an empty (heartbeat) frame
        bytes.extend(amqp_frame(0, &open_body(idle)));
        bytes
    }

    #[test]
    fn finds_the_idle_time_out_through_sasl_and_heartbeats() {
        let mut scanner = OpenScanner::default();
        let found = scanner.feed(&wire(Some(60_000)));
        assert_eq!(found, ScanResult::Found(RemoteOpen { container_id: "client-1".into(), idle_time_out_ms: Some(60_000) }));
    }

    #[test]
    fn works_one_byte_at_a_time_and_reports_a_missing_idle_time_out() {
        let mut scanner = OpenScanner::default();
        let bytes = wire(None);
        let results: Vec<_> = bytes.iter().map(|b| scanner.feed(&[*b])).collect();
        assert!(results[..bytes.len() - 1].iter().all(|r| *r == ScanResult::NeedMore));
        assert_eq!(results.last().unwrap(), &ScanResult::Found(RemoteOpen { container_id: "client-1".into(), idle_time_out_ms: None }));
    }

    #[test]
    fn gives_up_on_garbage() {
        let mut scanner = OpenScanner::default();
        assert!(matches!(scanner.feed(&[0xff; 16]), ScanResult::GaveUp(_)));
    }
}
