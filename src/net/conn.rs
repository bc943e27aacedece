//! One TCP connection's byte plumbing: frames in through a small buffer (`wire` frames them
//! and bounds each type's length), piece payloads through a 64 KiB chunk buffer, each chunk
//! hashed (BLAKE3) and written to the file with one `pwrite`; control bytes and pieces out from
//! the mapped file with one vectored write of head plus mapped slice. The node decides; this
//! moves bytes.
//!
//! Payloads go out either with a vectored write of head plus mapped slice or, with
//! `sendfile` (`--sendfile`, by default for peers not on loopback), as page references from
//! the page cache. `bench/datapath.rs` on
//! loopback: `sendfile` cuts the sender's CPU per GiB about 3x (0.56 s to 0.17 s), but the
//! receiver then copies out of page-sized fragments and needs 4x the CPU (0.25 s to 0.98 s),
//! halving throughput. Across a real NIC the receiver never sees the sender's pages, so
//! there `sendfile` is the better choice.
//!
//! Why not receive straight into the mapped output: on a fresh (sparse or fallocated) file
//! every first write to a mapped page faults, and the kernel zero-fills the page (and its
//! readahead neighbours) before the copy. Profiling a 1 GiB loopback download put 72% of the
//! client's CPU in that zeroing; a `pwrite` of whole pages skips it, for one extra copy that
//! costs a few percent. Chunks start at the piece's offset, so they are whole pages when the
//! piece size is a multiple of the page size, as every default (a power of two of at least
//! 16 KiB) is. With a `--piece-size` that is not, each chunk's first and last page are
//! partial writes, and the kernel fills the rest of those pages first (2 of the 17 pages
//! such a chunk spans).

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::unix::io::{AsRawFd, RawFd};
use std::time::Instant;

use mio::net::TcpStream;

use super::error::StorageError;
use super::ratelimit::TokenBucket;
use super::storage::Storage;
use super::tcpinfo::{self, add_delivered};
use crate::manifest::Manifest;
use crate::proto::{Node, Sink, Slot};
use crate::wire::{self, FrameHead, HEAD_SIZE, Limits, PIECE_HEAD_SIZE, PieceHead};

/// Receive buffer for control frames. Small on purpose: the payload bytes that arrive with a
/// piece's head are copied out of it, and an origin holds one per client (4 KiB × 1,000
/// clients in `bench/footprint.rs`).
const RBUF_SIZE: usize = 4 * 1024;
// A frame allowed before HELLO never grows the buffer.
const _: () = assert!(wire::HEAD_SIZE + wire::MAX_EARLY_LEN <= RBUF_SIZE);
/// Bytes one connection may move per turn before the loop serves the next one, so one fast
/// peer cannot starve the others (and the piece reads stay cache-friendly). Uploads use it
/// as the deficit-round-robin quantum of the heaviest-weighted connection.
pub(super) const TURN_QUANTUM: usize = 512 * 1024;
/// Granularity of unmapping sent pages: the page size of x86-64 and most arm64 kernels.
/// Correctness does not depend on it. memmap2 rounds a range's start down to a page boundary
/// and the kernel rounds its length up, so with a larger page, or a piece offset that is not
/// page-aligned (a `--piece-size` that is not a multiple of 4 KiB), a range can take in a
/// page still being sent or one of the next piece; its next use faults it back in from the
/// page cache (a minor fault, nothing lost).
const PAGE: usize = 4096;
/// Piece payloads are received, hashed and written in chunks of this size: small enough
/// to stay in L2 between the three passes (receive, BLAKE3, write). With whole-piece buffers,
/// 1 MiB pieces made a 1 GiB download take twice as long as with 256 KiB pieces.
const CHUNK: usize = 64 * 1024;
/// Control-buffer capacity kept between bursts.
const CTRL_KEEP: usize = 4 * 1024;
/// Smallest upload quantum: lighter weights still move a few pages per turn.
pub(super) const MIN_QUANTUM: usize = 4 * 1024;

/// How a read or write turn ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Turn {
    /// Used its quantum; more may be ready.
    More,
    /// The socket said WouldBlock.
    Drained,
    /// Nothing is left to send.
    Idle,
    /// The node's rate limit ran out; resume when tokens are back.
    Throttled,
    /// This connection's own upload cap ran out; resume at the given time.
    Paused(Instant),
    /// The node asked to close this connection.
    Closing,
    /// The peer closed, or the socket failed.
    Gone(String),
    /// The node cannot go on (the output cannot be written).
    Fatal(StorageError),
}

enum Rx {
    /// Between frames: parse from `rbuf`.
    Frames,
    /// Inside a PIECE payload: `got` of `len` bytes read, `fill` of them waiting in the
    /// chunk buffer; `Conn::hasher` holds the hash of the bytes already written out.
    Payload {
        sink: Sink,
        len: usize,
        got: usize,
        fill: usize,
    },
}

struct TxPiece {
    head: [u8; PIECE_HEAD_SIZE],
    piece: u32,
    offset: usize,
    len: usize,
    /// Bytes of head + payload written so far.
    sent: usize,
    /// Payload bytes whose pages were already unmapped.
    released: usize,
}

pub(super) struct Conn {
    pub stream: TcpStream,
    /// The swarm (`swarms.rs`) whose node this connection belongs to, and its slot there.
    pub swarm: usize,
    pub slot: Slot,
    pub remote: SocketAddr,
    /// The nonblocking connect has completed (accepted streams start connected).
    pub connected: bool,
    /// Edge-triggered readiness not yet used up.
    pub readable: bool,
    pub writable: bool,
    pub in_read_q: bool,
    pub in_write_q: bool,
    /// Close after the control bytes are out, by this time at the latest.
    pub closing: Option<Instant>,
    /// The node finished the peer's handshake (HELLO, and AUTH in a swarm with a secret).
    /// Until then only frames that fit `rbuf` are read (`wire::MAX_EARLY_LEN`), so an
    /// unidentified connection cannot make us allocate.
    hello_accepted: bool,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    rx: Rx,
    /// The chunk of payload being received (CHUNK bytes, reused for every piece).
    piece_buf: Vec<u8>,
    /// BLAKE3 of the stored piece arriving now, fed a chunk at a time while the chunk is in
    /// cache. Boxed (it is 1.9 KiB) and made at the first piece: an origin's thousand
    /// connections never receive one.
    hasher: Option<Box<blake3::Hasher>>,
    ctrl: Vec<u8>,
    ctrl_off: usize,
    tx: Option<TxPiece>,
    /// Deficit round robin: bytes this connection may still send in its current turn, or
    /// the credit it has built up over rounds whose quanta were too small to write.
    pub deficit: usize,
    /// Its turn has started (its quantum is in `deficit`); a turn cut short by the node's
    /// rate limit resumes at the next wake-up.
    pub in_turn: bool,
    /// The policy's upload cap for this connection (bytes/s) and its bucket.
    cap: Option<(f64, TokenBucket)>,
    /// Send payloads with `sendfile` instead of writing them from the map.
    sendfile: bool,
    /// `TCP_INFO`'s bytes acknowledged at the last reading (`read_delivered`), so that each
    /// reading counts only what this connection delivered since; `None` until its first
    /// reading, which is its baseline (the handshake counts differently on either side).
    last_acked: Option<u64>,
    /// What its peer acknowledged from its first reading to its last: the pacer's and an
    /// origin's send limit's measure of the uplink.
    pub delivered: u64,
}

/// What a set of connections delivered in all (`Conn::delivered`): the open ones read
/// afresh, the closed ones kept. The pacer keeps one over every connection, an origin's
/// swarm one over its own; neither total falls when a connection closes.
#[derive(Debug, Default)]
pub(super) struct Deliveries {
    closed: u64,
    read_once: bool,
}

impl Deliveries {
    /// What the closed connections delivered: the start of a total.
    pub(super) fn closed(&self) -> u64 {
        self.closed
    }

    /// Reads `c` if it is connected; what it has delivered, for the total.
    pub(super) fn read(&mut self, c: &mut Conn) -> u64 {
        if c.connected {
            self.read_once |= c.read_delivered();
        }
        c.delivered
    }

    /// Some reading has succeeded (before Linux 4.10 none does: `tcpinfo::read`).
    pub(super) fn read_once(&self) -> bool {
        self.read_once
    }

    /// Keeps what `c`, closing, delivered, after one last reading.
    pub(super) fn close(&mut self, c: &mut Conn) {
        self.read(c);
        self.closed += c.delivered;
    }
}

impl Conn {
    pub(super) fn new(
        stream: TcpStream,
        remote: SocketAddr,
        (swarm, slot): (usize, Slot),
        connected: bool,
        sendfile: bool,
    ) -> Conn {
        Conn {
            stream,
            swarm,
            slot,
            remote,
            connected,
            readable: false,
            writable: false,
            in_read_q: false,
            in_write_q: false,
            closing: None,
            hello_accepted: false,
            rbuf: vec![0; RBUF_SIZE],
            rstart: 0,
            rend: 0,
            rx: Rx::Frames,
            piece_buf: Vec::new(),
            hasher: None,
            ctrl: Vec::new(),
            ctrl_off: 0,
            tx: None,
            deficit: 0,
            in_turn: false,
            cap: None,
            sendfile,
            last_acked: None,
            delivered: 0,
        }
    }

    /// Reads `TCP_INFO` and adds what the peer acknowledged since the last reading to
    /// `delivered`; whether the reading succeeded. A failed one counts nothing, and the
    /// next adds both ticks' bytes at once.
    fn read_delivered(&mut self) -> bool {
        let Ok(info) = tcpinfo::read(self.fd()) else {
            return false;
        };
        add_delivered(&mut self.delivered, &mut self.last_acked, &info);
        true
    }

    /// The socket's descriptor, for `getsockopt`.
    pub(super) fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// A PIECE payload is arriving.
    pub(super) fn receiving_piece(&self) -> bool {
        matches!(self.rx, Rx::Payload { .. })
    }

    /// Control bytes queued here but not yet written.
    pub(super) fn has_unsent_control(&self) -> bool {
        self.ctrl_off < self.ctrl.len()
    }

    /// Control bytes that could go out now, the node's newest included: none while a piece
    /// is half-sent, since they must follow it.
    pub(super) fn control_ready(&mut self, slot: Slot, node: &mut Node) -> usize {
        node.take_outbox(slot, &mut self.ctrl);
        if self.piece_started() {
            0
        } else {
            self.ctrl.len() - self.ctrl_off
        }
    }

    /// Writes the control frames that may go now (`control_ready`) and nothing else, within
    /// the upload bucket: no piece is chosen. Returns the bytes written; an error or a full
    /// socket is left for the connection's next turn to find.
    pub(super) fn write_control(
        &mut self,
        slot: Slot,
        node: &mut Node,
        bucket: &mut TokenBucket,
        now: Instant,
    ) -> usize {
        let ready = self.control_ready(slot, node);
        let limit = ready.min(bucket.available(now));
        if limit == 0 {
            return 0;
        }
        let end = self.ctrl_off + limit;
        match self.stream.write(&self.ctrl[self.ctrl_off..end]) {
            Ok(n) => {
                bucket.consume(n);
                self.ctrl_off += n;
                n
            }
            Err(_) => 0,
        }
    }

    /// Reads and dispatches up to one quantum.
    pub(super) fn read_turn(
        &mut self,
        slot: Slot,
        node: &mut Node,
        storage: &mut Storage,
        scratch: &mut Vec<u8>,
        bucket: &mut TokenBucket,
        now: Instant,
    ) -> Turn {
        let mut moved = 0;
        loop {
            if moved >= TURN_QUANTUM {
                return Turn::More;
            }
            if let Rx::Payload {
                sink,
                len,
                got,
                fill,
                ..
            } = self.rx
            {
                let allow = (len - got)
                    .min(CHUNK - fill)
                    .min(bucket.available(now))
                    .min(TURN_QUANTUM - moved);
                if allow == 0 {
                    return Turn::Throttled;
                }
                let dst = match sink {
                    Sink::Store { .. } => &mut self.piece_buf[fill..fill + allow],
                    Sink::Discard => &mut scratch[..allow],
                };
                match self.stream.read(dst) {
                    Ok(0) => return Turn::Gone("connection closed mid-piece".into()),
                    Ok(n) => {
                        bucket.consume(n);
                        moved += n;
                        node.handle_payload(slot, now);
                        if let Err(e) = self.advance_payload(slot, n, node, storage, now) {
                            return Turn::Fatal(e);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Turn::Drained,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Turn::Gone(e.to_string()),
                }
                continue;
            }
            // Dispatch every whole frame already buffered.
            match self.dispatch_frames(slot, node, storage, scratch, now) {
                Ok(true) => continue, // entered a payload
                Ok(false) => {}
                Err(turn) => return turn,
            }
            if self.rstart == self.rend {
                self.rstart = 0;
                self.rend = 0;
            } else if self.rend == self.rbuf.len() {
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
            }
            let allow = (self.rbuf.len() - self.rend)
                .min(bucket.available(now))
                .min(TURN_QUANTUM - moved);
            if allow == 0 {
                return Turn::Throttled;
            }
            match self
                .stream
                .read(&mut self.rbuf[self.rend..self.rend + allow])
            {
                Ok(0) => return Turn::Gone("connection closed by peer".into()),
                Ok(n) => {
                    bucket.consume(n);
                    moved += n;
                    self.rend += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Turn::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Turn::Gone(e.to_string()),
            }
        }
    }

    /// Handles buffered frames. `Ok(true)` when a PIECE payload began.
    fn dispatch_frames(
        &mut self,
        slot: Slot,
        node: &mut Node,
        storage: &mut Storage,
        scratch: &mut Vec<u8>,
        now: Instant,
    ) -> Result<bool, Turn> {
        loop {
            let buf = &self.rbuf[self.rstart..self.rend];
            // Recomputed per frame: a MANIFEST just handled tightens the bounds.
            let file = node.manifest().map(|m| (m.piece_count(), m.piece_size()));
            let limits = Limits::new(self.hello_accepted, file);
            let head = match FrameHead::parse_within(buf, &limits) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(false),
                Err(e) => {
                    node.handle_malformed(slot, &e.to_string(), now);
                    return Err(Turn::Closing);
                }
            };
            if head.ty == wire::ty::PIECE {
                let ph = match PieceHead::parse(&head, buf) {
                    Ok(Some(ph)) => ph,
                    Ok(None) => return Ok(false),
                    Err(e) => {
                        node.handle_malformed(slot, &e.to_string(), now);
                        return Err(Turn::Closing);
                    }
                };
                let len = ph.len as usize;
                self.rstart += PIECE_HEAD_SIZE;
                let Some(sink) = node.begin_piece(slot, ph.piece, ph.len, now) else {
                    return Err(Turn::Closing);
                };
                let buf = match sink {
                    Sink::Store { .. } => &mut self.piece_buf,
                    Sink::Discard => &mut *scratch,
                };
                if buf.len() < CHUNK {
                    // Allocated once per connection; no allocation per piece.
                    buf.resize(CHUNK, 0);
                }
                if let Sink::Store { .. } = sink {
                    self.hasher
                        .get_or_insert_with(|| Box::new(blake3::Hasher::new()))
                        .reset();
                }
                self.rx = Rx::Payload {
                    sink,
                    len,
                    got: 0,
                    fill: 0,
                };
                // Bytes of the payload that came in with the head (fewer than RBUF_SIZE).
                let take = len.min(self.rend - self.rstart);
                buf[..take].copy_from_slice(&self.rbuf[self.rstart..self.rstart + take]);
                self.rstart += take;
                self.advance_payload(slot, take, node, storage, now)
                    .map_err(Turn::Fatal)?;
                if node.is_closing(slot) {
                    return Err(Turn::Closing);
                }
                return Ok(matches!(self.rx, Rx::Payload { .. }));
            }
            let frame_len = head.frame_len();
            if buf.len() < frame_len {
                if self.rbuf.len() < frame_len {
                    // A MANIFEST, or a BITFIELD of a file with many pieces, larger than the
                    // buffer: only after HELLO, and within the type's limit.
                    self.rbuf.copy_within(self.rstart..self.rend, 0);
                    self.rend -= self.rstart;
                    self.rstart = 0;
                    self.rbuf.resize(frame_len, 0);
                }
                return Ok(false);
            }
            node.handle_frame(slot, head.ty, &buf[HEAD_SIZE..frame_len], now);
            self.rstart += frame_len;
            // Large frames only once the handshake is done (HELLO, and AUTH with a secret).
            self.hello_accepted = node.is_admitted(slot);
            if self.rbuf.len() > RBUF_SIZE && self.rstart == self.rend {
                self.rbuf.truncate(RBUF_SIZE);
                self.rbuf.shrink_to_fit();
                self.rstart = 0;
                self.rend = 0;
            }
            if node.is_closing(slot) {
                return Err(Turn::Closing);
            }
        }
    }

    /// Counts `n` payload bytes just placed in the chunk buffer. A full chunk (or the end of
    /// the piece) is hashed and written out while it is still in cache; at the end of the
    /// piece the node gets its BLAKE3 hash. BLAKE3 hashes a 64 KiB chunk as 64 independent
    /// 1 KiB chunks, several at once with SIMD, so the chunking costs it nothing.
    fn advance_payload(
        &mut self,
        slot: Slot,
        n: usize,
        node: &mut Node,
        storage: &mut Storage,
        now: Instant,
    ) -> Result<(), StorageError> {
        let Rx::Payload {
            sink,
            len,
            got,
            fill,
        } = &mut self.rx
        else {
            return Ok(());
        };
        *got += n;
        let done = *got == *len;
        if let Sink::Store { offset } = *sink {
            *fill += n;
            if *fill == CHUNK || (done && *fill > 0) {
                // Written before verification: a bad piece's bytes are overwritten when it
                // is fetched again, and `.part` is renamed only when every piece verified.
                let chunk = &self.piece_buf[..*fill];
                if let Some(h) = self.hasher.as_mut() {
                    h.update(chunk);
                }
                storage.write_at(offset + (*got - *fill) as u64, chunk)?;
                *fill = 0;
            }
        }
        if !done {
            return Ok(());
        }
        let Rx::Payload { sink, .. } = std::mem::replace(&mut self.rx, Rx::Frames) else {
            unreachable!("matched above");
        };
        let hash = match (sink, &self.hasher) {
            (Sink::Store { .. }, Some(h)) => Some(*h.finalize().as_bytes()),
            _ => None,
        };
        node.end_piece(slot, hash, now);
        Ok(())
    }

    /// Follows the policy's cap for this connection, keeping the bucket if it is unchanged.
    /// A lower cap applies from the next piece, as a choke does (docs/PROTOCOL.md §5.3):
    /// a piece trickling at the new cap would hold every control frame behind it. (An
    /// origin that cut a lone first client to a trickle as the others arrived held its
    /// introduction to them for 2 s, until they were done.)
    fn update_cap(&mut self, cap: Option<f64>, now: Instant) {
        let started = self.piece_started();
        let lower = match (cap, &self.cap) {
            (Some(r), Some((old, _))) => r < *old,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if started && lower {
            return;
        }
        match (cap, &self.cap) {
            (None, _) => self.cap = None,
            (Some(r), Some((old, _))) if *old == r => {}
            (Some(r), _) => self.cap = Some((r, TokenBucket::new(Some(r.max(1.0) as u64), now))),
        }
    }

    /// A piece is partly written: nothing else may go out before its last byte.
    fn piece_started(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| t.sent > 0)
    }

    /// Writes control bytes and pieces for up to `budget` bytes; returns how many it wrote.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_turn(
        &mut self,
        slot: Slot,
        node: &mut Node,
        storage: &Storage,
        check_against: Option<&Manifest>,
        bucket: &mut TokenBucket,
        budget: usize,
        now: Instant,
    ) -> (Turn, usize) {
        self.update_cap(node.upload_cap(slot), now);
        let mut moved = 0;
        let turn = self.write_until(
            slot,
            node,
            (storage, check_against),
            bucket,
            budget,
            &mut moved,
            now,
        );
        (turn, moved)
    }

    /// `source`: where pieces are read, and the manifest to check each against before it is
    /// sent when the served file changed (`Driver::check_source`).
    #[allow(clippy::too_many_arguments)]
    fn write_until(
        &mut self,
        slot: Slot,
        node: &mut Node,
        (storage, check_against): (&Storage, Option<&Manifest>),
        bucket: &mut TokenBucket,
        budget: usize,
        moved: &mut usize,
        now: Instant,
    ) -> Turn {
        loop {
            if *moved >= budget {
                return Turn::More;
            }
            if !self.has_unsent_control() {
                self.ctrl.clear();
                self.ctrl_off = 0;
                // A MANIFEST grows the buffer once; an origin with 1,000 clients should not
                // keep 1,000 of those.
                if self.ctrl.capacity() > CTRL_KEEP {
                    self.ctrl = Vec::new();
                }
            }
            if self.tx.is_none()
                && self.closing.is_none()
                && let Some(piece) = match check_against {
                    // The served file changed: read each piece before sending it.
                    Some(m) => node.poll_piece_checked(slot, now, |p| storage.piece_matches(m, p)),
                    None => node.poll_piece(slot, now),
                }
            {
                let m = node.manifest().expect("pieces imply a manifest");
                let len = m.piece_len(piece) as usize;
                self.tx = Some(TxPiece {
                    head: PieceHead {
                        piece,
                        len: len as u32,
                    }
                    .emit(),
                    piece,
                    offset: m.piece_offset(piece) as usize,
                    len,
                    sent: 0,
                    released: 0,
                });
            }
            // After poll_piece: it may have queued REJECTs.
            node.take_outbox(slot, &mut self.ctrl);
            let ctrl = &self.ctrl[self.ctrl_off..];
            let pending = ctrl.len()
                + self
                    .tx
                    .as_ref()
                    .map_or(0, |t| PIECE_HEAD_SIZE + t.len - t.sent);
            if pending == 0 {
                return Turn::Idle;
            }
            let mut limit = bucket.available(now).min(budget - *moved);
            if limit == 0 {
                return Turn::Throttled;
            }
            let started = self.piece_started();
            // A cap rations the pieces a peer takes, not what we tell it: control frames
            // (PEERS, STANDING, CHOKE) go out between pieces even while the cap holds the
            // next piece back, as the simulator sends them.
            let mut control_only = false;
            if let Some((_, cap)) = &mut self.cap {
                let room = cap.available(now);
                if room == 0 && !started && !ctrl.is_empty() {
                    control_only = true;
                } else if room == 0 {
                    return Turn::Paused(cap.ready_at());
                }
                limit = limit.min(if control_only { ctrl.len() } else { room });
            }
            let data = storage.bytes();
            // A piece already started must finish before any control frame goes out.
            let (c, h, p): (&[u8], &[u8], &[u8]) = match &self.tx {
                _ if control_only => (ctrl, &[], &[]),
                Some(t) if t.sent > 0 => {
                    let hs = t.sent.min(PIECE_HEAD_SIZE);
                    let ps = t.sent - hs;
                    (&[], &t.head[hs..], &data[t.offset + ps..t.offset + t.len])
                }
                Some(t) => (ctrl, &t.head[..], &data[t.offset..t.offset + t.len]),
                None => (ctrl, &[], &[]),
            };
            let sock = self.stream.as_raw_fd();
            let res = match (storage.fd().filter(|_| self.sendfile), &self.tx) {
                _ if control_only => self.stream.write(c),
                // Only payload left: the kernel sends it from the page cache (no copy).
                (Some(file), Some(t)) if c.is_empty() && h.is_empty() => {
                    let ps = t.sent - PIECE_HEAD_SIZE;
                    send_file(sock, file, (t.offset + ps) as u64, p.len().min(limit))
                }
                // Control bytes and the head go first, held back (MSG_MORE) so they leave in
                // one segment with the payload that follows.
                (Some(_), Some(_)) => {
                    let mut iov = [IoSlice::new(&[]); 3];
                    let n_iov = gather([c, h, &[]], limit, &mut iov);
                    send_more(sock, &iov[..n_iov])
                }
                _ => {
                    let mut iov = [IoSlice::new(&[]); 3];
                    let n_iov = gather([c, h, p], limit, &mut iov);
                    self.stream.write_vectored(&iov[..n_iov])
                }
            };
            let n = match res {
                Ok(0) => return Turn::Gone("connection closed".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The peer is slow: this piece may wait a while half-sent.
                    self.release_sent(storage);
                    return Turn::Drained;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Turn::Gone(e.to_string()),
            };
            bucket.consume(n);
            if let Some((_, cap)) = &mut self.cap.as_mut().filter(|_| !control_only) {
                cap.consume(n);
            }
            *moved += n;
            let from_ctrl = n.min(c.len());
            self.ctrl_off += from_ctrl;
            if let Some(t) = &mut self.tx {
                t.sent += n - from_ctrl;
                if t.sent == PIECE_HEAD_SIZE + t.len {
                    let piece = t.piece;
                    self.release_sent(storage);
                    self.tx = None;
                    node.handle_piece_sent(slot, piece, now);
                    self.update_cap(node.upload_cap(slot), now);
                }
            }
        }
    }
}

impl Conn {
    /// Unmaps the pages of the current piece that are fully sent (the rest of the piece once
    /// it is all sent): once per piece on a fast link, once per stall on a slow one, so
    /// neither a large transfer nor 1,000 half-sent pieces inflate RSS.
    fn release_sent(&mut self, storage: &Storage) {
        let Some(t) = &mut self.tx else { return };
        if self.sendfile {
            return;
        }
        let payload = t.sent.saturating_sub(PIECE_HEAD_SIZE);
        let upto = if payload == t.len {
            t.len
        } else {
            payload / PAGE * PAGE
        };
        if upto > t.released {
            storage.release_range(t.offset + t.released, upto - t.released);
            t.released = upto;
        }
    }
}

/// `sendmsg` with MSG_MORE: more data (the piece payload) follows at once.
pub(super) fn send_more(sock: RawFd, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid; IoSlice is ABI-compatible with iovec (std
    // guarantees it on Unix), and the slices outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: valid socket descriptor and message.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_MORE | libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `sendfile` of `count` bytes at `offset` of `file` to `sock`.
pub(super) fn send_file(sock: RawFd, file: RawFd, offset: u64, count: usize) -> io::Result<usize> {
    let mut off = offset as libc::off_t;
    // SAFETY: valid descriptors; `off` is a valid out-pointer.
    let n = unsafe { libc::sendfile(sock, file, &mut off, count) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Fills `out` with the first `limit` bytes of `parts`, skipping empty ones; returns how many
/// slices it used.
pub(super) fn gather<'a>(parts: [&'a [u8]; 3], limit: usize, out: &mut [IoSlice<'a>; 3]) -> usize {
    let mut left = limit;
    let mut n = 0;
    for part in parts {
        if left == 0 {
            break;
        }
        if part.is_empty() {
            continue;
        }
        let take = part.len().min(left);
        out[n] = IoSlice::new(&part[..take]);
        n += 1;
        left -= take;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection of ours over loopback whose peer reads `n` bytes and then closes, and
    /// the peer's thread.
    fn reading_peer(n: usize) -> (Conn, std::thread::JoinHandle<()>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let remote = l.local_addr().unwrap();
        let tx = std::net::TcpStream::connect(remote).unwrap();
        let (mut rx, _) = l.accept().unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; n];
            rx.read_exact(&mut buf).unwrap();
        });
        tx.set_nonblocking(true).unwrap();
        let c = Conn::new(TcpStream::from_std(tx), remote, (0, 0), true, false);
        (c, reader)
    }

    /// Writes `n` bytes to `c` by `deadline`.
    fn write_all(c: &mut Conn, n: usize, deadline: Instant) {
        let (data, mut sent) = (vec![7u8; n], 0);
        while sent < n && Instant::now() < deadline {
            match c.stream.write(&data[sent..]) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn test_deliveries_count_what_peers_acknowledged_and_keep_it_when_one_closes() {
        const N: usize = 1 << 20;
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let mut d = Deliveries::default();
        let (mut a, reader_a) = reading_peer(N);
        let (mut b, reader_b) = reading_peer(N);
        // The baselines: a dialled connection's SYN is not payload.
        assert_eq!(d.read(&mut a) + d.read(&mut b), 0);
        assert!(d.read_once());
        write_all(&mut a, N, deadline);
        write_all(&mut b, N, deadline);
        reader_a.join().unwrap();
        reader_b.join().unwrap();
        let mut total = 0;
        while total < 2 * N as u64 && Instant::now() < deadline {
            total = d.closed() + d.read(&mut a) + d.read(&mut b);
        }
        assert_eq!(total, 2 * N as u64);
        d.close(&mut a);
        drop(a);
        assert_eq!(d.closed() + d.read(&mut b), 2 * N as u64, "a's bytes kept");
    }

    #[test]
    fn test_gather_truncates_and_skips_empty() {
        let a = [1u8; 5];
        let b: [u8; 0] = [];
        let c = [2u8; 10];
        let mut out = [IoSlice::new(&[]); 3];
        assert_eq!(gather([&a, &b, &c], 7, &mut out), 2);
        assert_eq!(out[0].len(), 5);
        assert_eq!(out[1].len(), 2);
        assert_eq!(gather([&a, &b, &c], 3, &mut out), 1);
        assert_eq!(out[0].len(), 3);
        assert_eq!(gather([&b, &b, &b], 100, &mut out), 0);
    }
}
