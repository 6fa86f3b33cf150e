//! When each transfer left the connection and when the client's disposition of it arrived.
//!
//! The push-to-accept latency the emulator reports would otherwise be taken in its delivery task,
//! after fe2o3-amqp's session and connection tasks queued the transfer, and after they passed the
//! disposition back: on a busy machine the emulator's own scheduling then dominates the figure, and
//! clients can't be told apart. The connection's stream feeds the bytes it writes and reads to a
//! [`WireClock`]: a transfer is stamped when its frame is written, its disposition when its frame is
//! read, and the delivery task looks both up by delivery tag once the outcome reaches it.
//!
//! Only frame headers and the first fields of a performative are looked at ([`FrameWalker`]); the
//! payload is skipped without being copied.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;

/// Bytes kept of a frame past its data offset: the performative's descriptor, list header,
/// handle, delivery-id and a delivery tag of up to 32 bytes fit.
const HEAD: usize = 64;
/// Transfers remembered at most while their dispositions are outstanding; beyond it (a client that
/// never answers) the oldest stamps are dropped and those deliveries fall back to the task's clock.
const MAX_STAMPS: usize = 65_536;
/// A disposition range longer than this is matched against the stamps instead of walked id by id.
const WALK_RANGE: u32 = 64;

const TRANSFER: u8 = 0x14;
const DISPOSITION: u8 = 0x15;

/// A delivery tag, kept inline: AMQP allows at most 32 bytes, and a transfer is stamped without an
/// allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag {
    len: u8,
    bytes: [u8; 32],
}

impl Tag {
    /// `None` for a tag longer than AMQP allows.
    pub fn new(tag: &[u8]) -> Option<Tag> {
        let mut bytes = [0; 32];
        bytes.get_mut(..tag.len())?.copy_from_slice(tag);
        Some(Tag { len: tag.len() as u8, bytes })
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tag({:02x?})", self.as_slice())
    }
}

/// The first fields of a performative that matter here.
#[derive(Debug, PartialEq, Eq)]
pub enum Performative {
    Transfer {
        delivery_id: u32,
        tag: Tag,
    },
    /// A receiver's disposition of the deliveries `first..=last`.
    Disposition {
        first: u32,
        last: u32,
    },
}

/// Splits a byte stream into AMQP frames (skipping protocol headers) and hands on the head of each
/// AMQP frame: its bytes from the data offset, at most [`HEAD`] of them.
#[derive(Debug, Default)]
pub struct FrameWalker {
    /// The current frame's bytes kept so far (header included).
    head: Vec<u8>,
    /// The current frame's size once its header is read.
    size: Option<usize>,
    /// Bytes of the current frame consumed.
    consumed: usize,
}

impl FrameWalker {
    /// Feeds `bytes`; calls `found` with every complete performative it recognises.
    pub fn feed(&mut self, mut bytes: &[u8], found: &mut impl FnMut(Performative)) {
        while !bytes.is_empty() {
            if self.size.is_none() {
                let need = 8 - self.head.len();
                let take = need.min(bytes.len());
                self.head.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                self.consumed += take;
                if self.head.len() < 8 {
                    return;
                }
                if &self.head[..4] == b"AMQP" {
                    self.reset();
                    continue;
                }
                let size = u32::from_be_bytes(self.head[..4].try_into().expect("4 bytes")) as usize;
                if size < 8 {
                    // Not a frame: stop looking at this stream (the engine fails on its own).
                    self.size = Some(usize::MAX);
                    return;
                }
                self.size = Some(size);
            }
            let size = self.size.expect("set above");
            let doff = self.head[4] as usize * 4;
            let keep = size.min(doff.saturating_add(HEAD));
            let take = (size - self.consumed).min(bytes.len());
            if self.head.len() < keep {
                let more = (keep - self.head.len()).min(take);
                self.head.extend_from_slice(&bytes[..more]);
            }
            bytes = &bytes[take..];
            self.consumed += take;
            if self.consumed == size {
                if let Some(p) =
                    (self.head[5] == 0 && doff >= 8 && self.head.len() > doff).then(|| performative(&self.head[doff..])).flatten()
                {
                    found(p);
                }
                self.reset();
            }
        }
    }

    fn reset(&mut self) {
        self.head.clear();
        self.size = None;
        self.consumed = 0;
    }
}

/// Reads the start of a performative: a transfer's delivery-id and tag, or a receiver's
/// disposition range. `None` for anything else, or a transfer frame continuing a delivery.
pub fn performative(body: &[u8]) -> Option<Performative> {
    let mut r = Reader(body);
    // A described list: descriptor code as a smallulong (fe2o3, Proton) or a ulong.
    let code = match r.take(2)? {
        [0x00, 0x53] => r.byte()?,
        [0x00, 0x80] => *r.take(8)?.last()?,
        _ => return None,
    };
    if code != TRANSFER && code != DISPOSITION {
        return None;
    }
    let count = r.list_count()?;
    if code == TRANSFER {
        if count < 3 {
            return None;
        }
        let _handle = r.uint()?;
        let delivery_id = r.uint()??;
        let tag = Tag::new(r.binary()??)?;
        Some(Performative::Transfer { delivery_id, tag })
    } else {
        if count < 2 || !r.boolean()?? {
            return None; // a sender's disposition: not an answer to our transfers
        }
        let first = r.uint()??;
        let last = if count >= 3 { r.uint()?.unwrap_or(first) } else { first };
        Some(Performative::Disposition { first, last })
    }
}

/// The few AMQP encodings the fields above use. `Some(None)` is an encoded null.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(taken)
    }
    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn list_count(&mut self) -> Option<u32> {
        match self.byte()? {
            0x45 => Some(0),
            0xc0 => {
                self.byte()?;
                Some(u32::from(self.byte()?))
            }
            0xd0 => {
                self.u32()?;
                self.u32()
            }
            _ => None,
        }
    }
    fn uint(&mut self) -> Option<Option<u32>> {
        match self.byte()? {
            0x40 => Some(None),
            0x43 => Some(Some(0)),
            0x52 => Some(Some(u32::from(self.byte()?))),
            0x70 => Some(Some(self.u32()?)),
            _ => None,
        }
    }
    fn boolean(&mut self) -> Option<Option<bool>> {
        match self.byte()? {
            0x40 => Some(None),
            0x41 => Some(Some(true)),
            0x42 => Some(Some(false)),
            0x56 => Some(Some(self.byte()? != 0)),
            _ => None,
        }
    }
    fn binary(&mut self) -> Option<Option<&'a [u8]>> {
        match self.byte()? {
            0x40 => Some(None),
            0xa0 => {
                let n = self.byte()? as usize;
                Some(Some(self.take(n)?))
            }
            0xb0 => {
                let n = self.u32()? as usize;
                Some(Some(self.take(n)?))
            }
            _ => None,
        }
    }
}

#[derive(Default)]
struct Stamps {
    writes: FrameWalker,
    reads: FrameWalker,
    /// delivery-id → (tag, written at), until its disposition is read.
    written: FxHashMap<u32, (Tag, Instant)>,
    /// tag → (written at, disposition read at), until the delivery task takes it.
    answered: FxHashMap<Tag, (Instant, Instant)>,
}

/// The wire times of one connection's deliveries (see the module's documentation).
#[derive(Default)]
pub struct WireClock {
    stamps: Mutex<Stamps>,
}

impl WireClock {
    /// The connection wrote `bytes` at `at`.
    pub fn wrote(&self, bytes: &[u8], at: Instant) {
        let mut guard = self.stamps.lock().expect("wire clock lock");
        let Stamps { writes, written, .. } = &mut *guard;
        writes.feed(bytes, &mut |p| {
            if let Performative::Transfer { delivery_id, tag } = p {
                if written.len() >= MAX_STAMPS {
                    written.clear();
                }
                written.entry(delivery_id).or_insert((tag, at));
            }
        });
    }

    /// The connection read `bytes` at `at`.
    pub fn read(&self, bytes: &[u8], at: Instant) {
        let mut guard = self.stamps.lock().expect("wire clock lock");
        let Stamps { reads, written, answered, .. } = &mut *guard;
        reads.feed(bytes, &mut |p| {
            let Performative::Disposition { first, last } = p else { return };
            let span = last.wrapping_sub(first);
            if span < WALK_RANGE {
                for offset in 0..=span {
                    answer(written, answered, first.wrapping_add(offset), at);
                }
            } else {
                let ids: Vec<u32> = written.keys().copied().filter(|id| id.wrapping_sub(first) <= span).collect();
                for id in ids {
                    answer(written, answered, id, at);
                }
            }
        });
    }

    /// From the transfer's write to its disposition's read, for the delivery tagged `tag`; `None`
    /// when it was not seen on the wire (then the caller's own clock is the fallback).
    pub fn take(&self, tag: &Tag) -> Option<Duration> {
        let (sent, answered) = self.stamps.lock().expect("wire clock lock").answered.remove(tag)?;
        Some(answered.saturating_duration_since(sent))
    }

    /// Forgets a delivery whose outcome will not come (a timeout, a lost link).
    pub fn forget(&self, tag: &Tag) {
        let mut stamps = self.stamps.lock().expect("wire clock lock");
        stamps.answered.remove(tag);
        stamps.written.retain(|_, (t, _)| t != tag);
    }
}

/// The disposition of `id`, read at `at`: its stamp moves from `written` to `answered`.
fn answer(written: &mut FxHashMap<u32, (Tag, Instant)>, answered: &mut FxHashMap<Tag, (Instant, Instant)>, id: u32, at: Instant) {
    if let Some((tag, sent)) = written.remove(&id) {
        if answered.len() >= MAX_STAMPS {
            answered.clear();
        }
        answered.insert(tag, (sent, at));
    }
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp_types::{
        definitions::{DeliveryTag, Role},
        messaging::{Accepted, DeliveryState},
        performatives::{Disposition, Transfer},
    };
    use serde_amqp::to_vec;

    use super::*;

    fn tag(bytes: &[u8]) -> Tag {
        Tag::new(bytes).expect("short")
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut frame = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&[2, 0, 0, 0]);
        frame.extend_from_slice(body);
        frame
    }

    fn transfer(id: u32, tag: &[u8], payload: usize) -> Vec<u8> {
        let t = Transfer {
            handle: 0.into(),
            delivery_id: Some(id),
            delivery_tag: Some(DeliveryTag::from(tag.to_vec())),
            message_format: Some(0),
            settled: Some(false),
            more: false,
            rcv_settle_mode: None,
            state: None,
            resume: false,
            aborted: false,
            batchable: true,
        };
        let mut body = to_vec(&t).unwrap();
        body.extend(std::iter::repeat_n(0x5a, payload)); // the message section, opaque here
        frame(&body)
    }

    fn disposition(role: Role, first: u32, last: Option<u32>) -> Vec<u8> {
        let d = Disposition { role, first, last, settled: true, state: Some(DeliveryState::Accepted(Accepted {})), batchable: false };
        frame(&to_vec(&d).unwrap())
    }

    #[test]
    fn reads_transfers_and_a_receivers_dispositions_as_fe2o3_encodes_them() {
        let mut found = Vec::new();
        let mut walker = FrameWalker::default();
        let mut bytes = b"AMQP\x00\x01\x00\x00".to_vec();
        bytes.extend(frame(&[])); // a heartbeat
        bytes.extend(transfer(7, b"\x00\x00\x00\x07", 300));
        bytes.extend(transfer(70_000, b"tag-b", 0));
        bytes.extend(disposition(Role::Receiver, 3, Some(9)));
        bytes.extend(disposition(Role::Receiver, 12, None));
        bytes.extend(disposition(Role::Sender, 1, None));
        walker.feed(&bytes, &mut |p| found.push(p));
        assert_eq!(
            found,
            vec![
                Performative::Transfer { delivery_id: 7, tag: tag(b"\x00\x00\x00\x07") },
                Performative::Transfer { delivery_id: 70_000, tag: tag(b"tag-b") },
                Performative::Disposition { first: 3, last: 9 },
                Performative::Disposition { first: 12, last: 12 },
            ]
        );
    }

    #[test]
    fn frames_split_anywhere_are_found_the_same() {
        let mut bytes = transfer(1, b"a", 100);
        bytes.extend(transfer(2, b"b", 5000));
        let mut whole = Vec::new();
        FrameWalker::default().feed(&bytes, &mut |p| whole.push(p));
        for chunk in [1, 3, 7, 64, 1000] {
            let mut walker = FrameWalker::default();
            let mut found = Vec::new();
            for piece in bytes.chunks(chunk) {
                walker.feed(piece, &mut |p| found.push(p));
            }
            assert_eq!(found, whole, "chunks of {chunk}");
        }
        assert_eq!(whole.len(), 2);
    }

    #[test]
    fn the_latency_is_from_the_write_of_the_transfer_to_the_read_of_its_disposition() {
        let clock = WireClock::default();
        let t0 = Instant::now();
        clock.wrote(&transfer(5, b"t5", 10), t0);
        clock.wrote(&transfer(6, b"t6", 10), t0 + Duration::from_millis(1));
        clock.read(&disposition(Role::Receiver, 5, Some(6)), t0 + Duration::from_millis(3));
        // Taken later by the delivery task: its own delay is not counted.
        assert_eq!(clock.take(&tag(b"t6")), Some(Duration::from_millis(2)));
        assert_eq!(clock.take(&tag(b"t5")), Some(Duration::from_millis(3)));
        assert_eq!(clock.take(&tag(b"t5")), None, "taken once");
        clock.wrote(&transfer(7, b"t7", 10), t0);
        assert_eq!(clock.take(&tag(b"t7")), None, "no disposition yet");
        clock.forget(&tag(b"t7"));
        clock.read(&disposition(Role::Receiver, 7, None), t0);
        assert_eq!(clock.take(&tag(b"t7")), None, "forgotten");
    }

    #[test]
    fn a_long_disposition_range_answers_what_was_written_in_it() {
        let clock = WireClock::default();
        let t0 = Instant::now();
        for id in [10, 500, 900] {
            clock.wrote(&transfer(id, format!("t{id}").as_bytes(), 0), t0);
        }
        clock.read(&disposition(Role::Receiver, 0, Some(600)), t0 + Duration::from_millis(1));
        assert!(clock.take(&tag(b"t10")).is_some() && clock.take(&tag(b"t500")).is_some());
        assert_eq!(clock.take(&tag(b"t900")), None);
    }
}
