//! Frames handed over one by one, written together.
//!
//! fe2o3-amqp's connection engine flushes after every frame, so over TLS each transfer would be a
//! record and a `writev` of its own; on loopback that syscall also runs the client's TCP receive
//! path, and it was the largest part of the emulator's cost per message. The connection's stream
//! hands the bytes it is given to [`BatchedWrites`] instead, and a writer task per connection
//! writes whatever accumulated since its last write in one go. Woken by a first frame, the writer
//! goes behind the tasks already runnable (the engines and delivery tasks of this and the other
//! connections), again as long as they hand it more ([`gather`]): with several clients busy, the
//! frames handed over meanwhile join the write (one `writev` per 20 messages with 8 receivers,
//! against one per 5 with a single turn), while on an idle runtime a lone frame still goes out at
//! once. Each transfer is stamped in the [`WireClock`] by the write that carries it.

use std::{
    io,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::Notify,
};
use tokio_util::sync::CancellationToken;

use crate::wire_clock::WireClock;

/// Bytes handed over beyond this wait until the writer took them: the engine then waits, as it
/// waited for the socket before, when a client reads slower than it is sent to.
const MAX_PENDING: usize = 64 * 1024;
/// A buffer grown past this by a large message is not kept for the connection's lifetime.
const KEEP_CAPACITY: usize = 256 * 1024;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// The engine, waiting for room (see [`MAX_PENDING`]) or for the shutdown to finish.
    waiting: Option<Waker>,
    /// The write or shutdown failed: every later call reports it.
    failed: Option<io::ErrorKind>,
    /// The engine asked for a shutdown (after what it handed over).
    closing: bool,
    /// The shutdown is done.
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    writer: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The engine's side: what it writes is queued for the connection's writer task.
pub struct BatchedWrites {
    shared: Arc<Shared>,
    /// Cancelled when this side is dropped: the writer then writes what is left and stops.
    gone: CancellationToken,
}

impl BatchedWrites {
    /// Spawns the writer task on `out`.
    pub fn spawn<W: AsyncWrite + Unpin + Send + 'static>(out: W, clock: Arc<WireClock>) -> Self {
        let shared = Arc::new(Shared { pending: Mutex::new(Pending::default()), writer: Notify::new() });
        let gone = CancellationToken::new();
        tokio::spawn(write_batches(out, shared.clone(), clock, gone.clone()));
        BatchedWrites { shared, gone }
    }

    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut pending = self.shared.lock();
        if let Some(kind) = pending.failed {
            return Poll::Ready(Err(kind.into()));
        }
        if pending.closing {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if pending.bytes.len() >= MAX_PENDING {
            pending.waiting = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let first = pending.bytes.is_empty();
        pending.bytes.extend_from_slice(buf);
        drop(pending);
        if first {
            self.shared.writer.notify_one();
        }
        Poll::Ready(Ok(buf.len()))
    }

    /// Ready at once: what was handed over goes out as soon as the writer runs, without a further
    /// call (this is what lets the engine's frames share a write).
    pub fn poll_flush(&self) -> Poll<io::Result<()>> {
        match self.shared.lock().failed {
            Some(kind) => Poll::Ready(Err(kind.into())),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Writes what was handed over, then shuts the socket's write half down.
    pub fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut pending = self.shared.lock();
        if let Some(kind) = pending.failed {
            return Poll::Ready(Err(kind.into()));
        }
        if pending.closed {
            return Poll::Ready(Ok(()));
        }
        pending.waiting = Some(cx.waker().clone());
        if !pending.closing {
            pending.closing = true;
            drop(pending);
            self.shared.writer.notify_one();
        }
        Poll::Pending
    }
}

impl Drop for BatchedWrites {
    fn drop(&mut self) {
        self.gone.cancel();
    }
}

/// How long the writer still writes what was handed over once the engine's side is gone (a refused
/// login's SASL outcome is written just before the stream is dropped), for a client that reads.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// The writer task: takes everything handed over since its last write and writes it in one go.
/// Once the engine's side is dropped it writes what is left, for [`DRAIN_GRACE`] at most, and
/// ends, dropping the socket's write half.
async fn write_batches<W: AsyncWrite + Unpin>(out: W, shared: Arc<Shared>, clock: Arc<WireClock>, gone: CancellationToken) {
    let grace = async {
        gone.cancelled().await;
        tokio::time::sleep(DRAIN_GRACE).await;
    };
    tokio::select! {
        () = write_until_done(out, &shared, &clock, &gone) => {}
        () = grace => {}
    }
}

async fn write_until_done<W: AsyncWrite + Unpin>(mut out: W, shared: &Shared, clock: &WireClock, gone: &CancellationToken) {
    let mut batch = Vec::new();
    loop {
        let closing = {
            let mut pending = shared.lock();
            std::mem::swap(&mut pending.bytes, &mut batch);
            // Room again; during a shutdown the engine waits for its end instead.
            if !pending.closing
                && let Some(engine) = pending.waiting.take()
            {
                engine.wake();
            }
            pending.closing
        };
        let result = if !batch.is_empty() {
            let written = write_stamped(&mut out, &batch, clock).await;
            batch.clear();
            if batch.capacity() > KEEP_CAPACITY {
                batch = Vec::new();
            }
            written
        } else if closing {
            let result = out.shutdown().await;
            let mut pending = shared.lock();
            match result {
                Ok(()) => pending.closed = true,
                Err(e) => pending.failed = Some(e.kind()),
            }
            if let Some(engine) = pending.waiting.take() {
                engine.wake();
            }
            return;
        } else {
            // Bytes handed over just before the engine's side went away come first.
            tokio::select! {
                biased;
                () = shared.writer.notified() => {
                    gather(shared).await;
                    continue;
                }
                () = gone.cancelled() => return,
            }
        };
        if let Err(e) = result {
            let mut pending = shared.lock();
            pending.failed = Some(e.kind());
            if let Some(engine) = pending.waiting.take() {
                engine.wake();
            }
            return;
        }
    }
}

/// How many times the writer lets the tasks already runnable go first while frames keep coming.
const MAX_GATHER_YIELDS: usize = 4;
/// Enough for a write: the writer stops gathering at this many bytes (a dozen transfers of the
/// platform's size). One busy connection hands over this much in a turn; holding its frames for
/// more turns only made its consumer wait (16 KiB here cut the worker's one-connection rate from
/// about 71 000 to 64 000 msg/s), while with many connections a turn adds a frame or two each.
const GATHER_ENOUGH: usize = 4 * 1024;

/// Lets the frames that are on their way join the write: the writer goes behind the tasks already
/// runnable (the engines and delivery tasks of this and other connections), again as long as they
/// handed it more meanwhile. On an idle runtime one turn adds nothing and a lone frame goes out at
/// once; under load the write gathers what a few turns of the runtime produce.
async fn gather(shared: &Shared) {
    let mut pending = shared.lock().bytes.len();
    for _ in 0..MAX_GATHER_YIELDS {
        if pending >= GATHER_ENOUGH {
            return;
        }
        tokio::task::yield_now().await;
        let now = shared.lock().bytes.len();
        if now == pending {
            return;
        }
        pending = now;
    }
}

/// Writes `bytes`, stamped in the clock just before the first write: stamped after it, a client
/// quick to answer could have its disposition read before its transfer was stamped, and the
/// acknowledgement would go untimed.
async fn write_stamped<W: AsyncWrite + Unpin>(out: &mut W, mut bytes: &[u8], clock: &WireClock) -> io::Result<()> {
    clock.wrote(bytes, Instant::now());
    while !bytes.is_empty() {
        let n = out.write(bytes).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    out.flush().await
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::AsyncReadExt;

    use super::*;

    async fn write(writes: &BatchedWrites, bytes: &[u8]) {
        let n = poll_fn(|cx| writes.poll_write(cx, bytes)).await.expect("handed over");
        assert_eq!(n, bytes.len());
    }

    #[tokio::test]
    async fn frames_handed_over_arrive_in_order_before_the_shutdown() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (mut read, _) = tokio::io::split(client);
        let writes = BatchedWrites::spawn(server, Arc::new(WireClock::default()));
        write(&writes, b"first ").await;
        write(&writes, b"second").await;
        poll_fn(|cx| writes.poll_shutdown(cx)).await.expect("shut down after writing");
        let mut got = Vec::new();
        read.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"first second");
    }

    /// Records each write it is given, as the socket would see them.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl AsyncWrite for Writes {
        fn poll_write(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.0.lock().unwrap().push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Hands `frames` over one per turn of the (single-threaded) runtime, then lets the writer finish.
    async fn one_frame_a_turn(frames: &[&[u8]]) -> Vec<Vec<u8>> {
        let socket = Writes::default();
        let writes = BatchedWrites::spawn(socket.clone(), Arc::new(WireClock::default()));
        tokio::task::yield_now().await; // the writer is idle, waiting for bytes
        for frame in frames {
            write(&writes, frame).await;
            tokio::task::yield_now().await;
        }
        for _ in 0..2 * MAX_GATHER_YIELDS {
            tokio::task::yield_now().await;
        }
        socket.0.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn frames_that_keep_coming_for_a_few_turns_share_one_write() {
        assert_eq!(one_frame_a_turn(&[b"a", b"b", b"c"]).await, vec![b"abc".to_vec()]);
    }

    #[tokio::test]
    async fn a_lone_frame_goes_out_after_one_turn_and_gathering_stops_at_enough() {
        let big = vec![1u8; GATHER_ENOUGH];
        let written = one_frame_a_turn(&[b"lone"]).await;
        assert_eq!(written, vec![b"lone".to_vec()]);
        let written = one_frame_a_turn(&[&big, b"next"]).await;
        assert_eq!(written.iter().map(Vec::len).collect::<Vec<_>>(), [GATHER_ENOUGH, 4], "a full write does not wait for more");
    }

    #[tokio::test]
    async fn what_was_handed_over_before_a_drop_is_still_written() {
        let (client, server) = tokio::io::duplex(1024);
        let (mut read, _) = tokio::io::split(client);
        let writes = BatchedWrites::spawn(server, Arc::new(WireClock::default()));
        tokio::task::yield_now().await; // the writer is idle, waiting for bytes
        write(&writes, b"sasl outcome").await;
        drop(writes); // as fe2o3's acceptor drops the stream after refusing a login
        let mut got = Vec::new();
        read.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"sasl outcome");
    }

    #[tokio::test]
    async fn a_slow_reader_holds_the_engine_back_at_the_limit() {
        let (client, server) = tokio::io::duplex(1024);
        let (mut read, _) = tokio::io::split(client);
        let writes = BatchedWrites::spawn(server, Arc::new(WireClock::default()));
        let chunk = vec![7u8; 16 * 1024];
        let mut handed = 0;
        // The reader reads nothing: the writer blocks on the pipe and the pending bytes reach the limit.
        loop {
            let polled = tokio::time::timeout(std::time::Duration::from_millis(200), poll_fn(|cx| writes.poll_write(cx, &chunk))).await;
            match polled {
                Ok(result) => handed += result.unwrap(),
                Err(_) => break,
            }
            // At most one batch in the writer's hands and one pending, each under the limit plus a chunk.
            assert!(handed <= 2 * (MAX_PENDING + chunk.len()), "handed over {handed} bytes without a reader");
        }
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            read.read_to_end(&mut got).await.map(|_| got.len())
        });
        poll_fn(|cx| writes.poll_shutdown(cx)).await.expect("drains once read");
        assert_eq!(reader.await.unwrap().unwrap(), handed);
    }
}
