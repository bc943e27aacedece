//! One TFTTP node, origin or client, as a sans-IO state machine (docs/PROTOCOL.md §5–6).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::choke::{ChokeTable, Me, Policy, ROUND};
use super::ledger::Ledger;
use super::peer::{Asked, Peer};
use super::picker::Picker;
use super::rng::Rng;
use super::striper::Striper;
use crate::bitfield::Bitfield;
use crate::manifest::Manifest;
use crate::wire::{self, ErrorCode, Hello, Message, PeerEntry, PeerOp, Role, VERSION, WILDCARD};

/// A connection's index, chosen by the driver (its slab key).
pub type Slot = usize;

/// How often the node re-estimates rates, re-decides chokes and checks timers. 100 ms keeps
/// request pipelines sized to within a fraction of a second of a link's ramp-up.
pub const TICK: Duration = Duration::from_millis(100);
/// Send a KEEPALIVE after this long without sending anything (BEP 3 uses 2 minutes; a
/// shorter one lets the peer's idle timeout below be short too).
pub const KEEPALIVE_AFTER: Duration = Duration::from_secs(15);
/// Drop a connection that sent nothing for four keepalive periods.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Close a connection we have been waiting on this long without a byte of payload from it:
/// a serving peer trickles at least its smallest share, so silence means it is stuck, and
/// its pieces are better fetched elsewhere.
pub const SERVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Drop a connection whose HELLO does not arrive in time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait between attempts to reach a peer, and how many attempts it gets.
pub const DIAL_RETRY: Duration = Duration::from_secs(2);
pub const MAX_DIAL_ATTEMPTS: u32 = 3;
/// Wait between attempts to reconnect to an origin lost after the manifest arrived.
pub const ORIGIN_RETRY: Duration = Duration::from_secs(2);
/// Most requests a node queues for one peer; more are rejected. Our own pipelines are at most
/// MAX_PIPELINE deep, so only a misbehaving peer reaches it.
pub const MAX_QUEUED_REQUESTS: usize = 256;
/// Request pipelines hold this much time of the link's current rate (plus MIN_PIPELINE), so a
/// peer never idles waiting for our next request; libtorrent's `request_queue_time` is the
/// same idea.
pub const PIPELINE_SECS: f64 = 0.5;
pub const MIN_PIPELINE: usize = 2;
pub const MAX_PIPELINE: usize = 64;
/// Endgame: a peer is asked for pieces already requested elsewhere only while fewer than this
/// many of our requests wait at it, so duplicates use a peer's idle time and no more.
pub const ENDGAME_PIPELINE: usize = 2;
/// Pause before asking a peer again after it rejected a request while unchoking us.
pub const REJECT_BACKOFF: Duration = Duration::from_millis(500);
/// Most peers the origin names to a newcomer.
pub const MAX_ADVERTISED: usize = 64;

/// How a connection came about, as the driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// We dialled the origin.
    ToOrigin,
    /// We dialled a peer the origin named.
    ToPeer { node_id: u64 },
    /// Someone dialled us.
    Accepted,
}

/// Where the payload of an arriving PIECE goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Into the output file at this offset.
    Store { offset: u64 },
    /// Read and dropped (a copy we already have or are already receiving).
    Discard,
}

/// What the node asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Open a connection and report it with `handle_open(slot, link, ...)`.
    Connect { addr: SocketAddr, link: Link },
    /// Close `slot` (after sending its outbox if `flush`), then call `handle_closed`; `why`
    /// is for the log.
    Close {
        slot: Slot,
        flush: bool,
        why: String,
    },
    /// Client: the manifest arrived; size and map the output before any payload arrives.
    Manifest,
    /// Client: every piece is verified; make the output durable and final.
    Complete,
    /// Nothing more to do: flush what is queued and exit successfully.
    Exit,
    /// The download cannot succeed: exit with this one-line reason.
    Fatal(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub role: Role,
    pub node_id: u64,
    /// Port we accept peers on, 0 for none.
    pub listen_port: u16,
    /// Client: the origin's address.
    pub server: Option<SocketAddr>,
    /// Client: trade with peers (false = plain client-server download).
    pub use_peers: bool,
    pub max_peers: usize,
    /// Client: how long to keep serving peers after completing, unless the origin says the
    /// swarm is done first.
    pub linger: Duration,
    /// Client: give up after this long without a byte of piece payload. Verified pieces
    /// alone are the wrong measure: a large last piece from a slow, widely shared peer can
    /// take longer than this while arriving steadily.
    pub stall_timeout: Duration,
    /// Origin: exit once this many clients completed and no connected client is incomplete.
    pub exit_after: Option<u32>,
    pub policy: Policy,
    /// Configured upload capacity (`--up-rate`), bytes per second.
    pub capacity: Option<u64>,
    /// Client: how it behaves towards peers (misbehaviour exists to measure the policy).
    pub behaviour: Behaviour,
}

/// A client's conduct. Only `Honest` is for real use; the others let tests and benchmarks
/// measure what the incentive policy does to cheaters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Downloads, never uploads to peers.
    FreeRider,
    /// A free rider that also claims, in its receipts, uploads it never made.
    Liar,
}

impl Config {
    pub fn new(role: Role, node_id: u64) -> Config {
        Config {
            role,
            node_id,
            listen_port: 0,
            server: None,
            use_peers: true,
            max_peers: 64,
            linger: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
            exit_after: None,
            policy: Policy::Tft,
            capacity: None,
            behaviour: Behaviour::Honest,
        }
    }
}

/// Counters a node reports in its stats file.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub from_origin: u64,
    pub from_peers: u64,
    pub uploaded: u64,
    pub discarded: u64,
    /// Part of `discarded` that came from the origin: its scarce upload spent twice.
    pub discarded_from_origin: u64,
    pub corrupt_pieces: u64,
    pub peers_connected: u64,
    pub clients_completed: u32,
}

/// A node's instantaneous load (`Node::load`): a run's timeline shows where it waits.
#[derive(Debug, Default, Clone, Copy)]
pub struct Load {
    /// Our unanswered requests, over all connections.
    pub asked: usize,
    /// Peers' requests queued at us.
    pub queued: usize,
    pub unchoking_us: usize,
    pub unchoked: usize,
    /// Pieces whose payload is arriving now.
    pub receiving: usize,
    /// Age of our oldest request still unanswered or arriving: a stuck request shows here.
    pub oldest_ask: Duration,
}

/// A peer the origin told us about.
#[derive(Debug, Clone)]
struct Known {
    node_id: u64,
    addr: SocketAddr,
    slot: Option<Slot>,
    attempts: u32,
    next_attempt: Instant,
}

pub struct Node {
    cfg: Config,
    now: Instant,
    manifest: Option<Manifest>,
    picker: Option<Picker>,
    striper: Option<Striper>,
    peers: Vec<Option<Peer>>,
    table: ChokeTable,
    rng: Rng,
    events: VecDeque<Event>,
    dirty: Vec<Slot>,
    changed: Vec<Slot>,
    known: Vec<Known>,
    origin_slot: Option<Slot>,
    origin_file_id: u64,
    origin_lost_at: Option<Instant>,
    /// A reconnection to the origin was requested and not yet reported by `handle_open`.
    origin_dialing: bool,
    origin_backoff_until: Option<Instant>,
    /// The origin refused a wildcard while unchoking us: from now on it is asked by index.
    origin_wildcards_refused: bool,
    started_at: Instant,
    last_tick: Instant,
    last_round: Instant,
    last_progress: Instant,
    completed_at: Option<Instant>,
    swarm_done: bool,
    exiting: bool,
    counters: Counters,
    /// Request-to-arrival latency of pieces, microseconds. One per node: a histogram is
    /// ~25 KiB, and one per connection (never read) cost an origin 25 MiB per 1,000 clients.
    latency_all: Histogram<u64>,
    /// Client: per-peer transfer counters for receipts; origin: confirmed credit.
    ledger: Ledger,
    /// Origin: the client that received each piece's first copy, until another client
    /// announces the piece (the promise is then kept).
    fresh_holder: Vec<Option<Slot>>,
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 1 h at 2 significant digits: about 2 KiB, enough to tell p99 from p50.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static histogram bounds")
}

impl Node {
    /// An origin serving the file described by `manifest`.
    pub fn origin(cfg: Config, manifest: Manifest, now: Instant) -> Node {
        let mut n = Node::new(cfg, now);
        n.striper = Some(Striper::new(manifest.piece_count()));
        n.fresh_holder = vec![None; manifest.piece_count() as usize];
        n.manifest = Some(manifest);
        n
    }

    /// A client that will learn the manifest from the origin.
    pub fn client(cfg: Config, now: Instant) -> Node {
        Node::new(cfg, now)
    }

    fn new(cfg: Config, now: Instant) -> Node {
        Node {
            rng: Rng::new(cfg.node_id),
            cfg,
            now,
            manifest: None,
            picker: None,
            striper: None,
            peers: Vec::new(),
            table: ChokeTable::default(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            changed: Vec::new(),
            known: Vec::new(),
            origin_slot: None,
            origin_file_id: 0,
            origin_lost_at: None,
            origin_dialing: false,
            origin_backoff_until: None,
            origin_wildcards_refused: false,
            started_at: now,
            last_tick: now,
            last_round: now,
            last_progress: now,
            completed_at: None,
            swarm_done: false,
            exiting: false,
            counters: Counters::default(),
            latency_all: new_histogram(),
            ledger: Ledger::default(),
            fresh_holder: Vec::new(),
        }
    }

    // ----- accessors for the driver and the stats -----

    pub fn role(&self) -> Role {
        self.cfg.role
    }

    pub fn node_id(&self) -> u64 {
        self.cfg.node_id
    }

    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency_all
    }

    pub fn completed_at(&self) -> Option<Instant> {
        self.completed_at
    }

    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    pub fn table(&self) -> &ChokeTable {
        &self.table
    }

    pub fn is_complete(&self) -> bool {
        match self.cfg.role {
            Role::Origin => true,
            Role::Client => self.picker.as_ref().is_some_and(|p| p.is_complete()),
        }
    }

    /// Pieces held, of the total (0/0 before the manifest).
    pub fn progress(&self) -> (u32, u32) {
        match (&self.picker, &self.manifest) {
            (Some(p), _) => (p.have().count(), p.have().len()),
            (None, Some(m)) => (m.piece_count(), m.piece_count()),
            _ => (0, 0),
        }
    }

    /// Instantaneous load for the timeline.
    pub fn load(&self) -> Load {
        let mut l = Load::default();
        for (s, p) in self.peers.iter().enumerate() {
            let Some(p) = p else { continue };
            l.asked += p.asked.len();
            l.queued += p.queue.len();
            l.unchoking_us += (!p.peer_choking) as usize;
            l.unchoked += (!self.table.is_choking(s)) as usize;
            l.receiving += p.receiving.is_some() as usize;
            if let Some(at) = p.waiting_since() {
                let age = self.now.saturating_duration_since(at);
                l.oldest_ask = l.oldest_ask.max(age);
            }
        }
        l
    }

    /// The slot's share of our upload relative to other slots (0 when choked).
    pub fn upload_weight(&self, slot: Slot) -> f64 {
        self.table.weight(slot)
    }

    /// The largest upload weight of any slot.
    pub fn max_upload_weight(&self) -> f64 {
        self.table.max_weight()
    }

    /// The slot's absolute upload cap in bytes per second, if the policy set one.
    pub fn upload_cap(&self, slot: Slot) -> Option<f64> {
        self.table.cap(slot)
    }

    pub fn is_closing(&self, slot: Slot) -> bool {
        self.peer(slot).is_none_or(|p| p.closing)
    }

    fn peer(&self, slot: Slot) -> Option<&Peer> {
        self.peers.get(slot).and_then(|p| p.as_ref())
    }

    fn peer_mut(&mut self, slot: Slot) -> Option<&mut Peer> {
        self.peers.get_mut(slot).and_then(|p| p.as_mut())
    }

    /// Active connections to other clients (the origin excluded).
    fn peer_count(&self) -> usize {
        self.peers
            .iter()
            .flatten()
            .filter(|p| !p.is_origin_link())
            .count()
    }

    // ----- outputs -----

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A slot with new output since the last call.
    pub fn poll_dirty(&mut self) -> Option<Slot> {
        while let Some(s) = self.dirty.pop() {
            if let Some(p) = self.peer_mut(s) {
                p.dirty = false;
                return Some(s);
            }
        }
        None
    }

    /// Moves the slot's queued control frames to the end of `out`.
    pub fn take_outbox(&mut self, slot: Slot, out: &mut Vec<u8>) {
        if let Some(p) = self.peer_mut(slot) {
            if out.is_empty() {
                std::mem::swap(out, &mut p.outbox);
            } else {
                out.append(&mut p.outbox);
            }
        }
    }

    /// When `handle_tick` is next due.
    pub fn poll_timeout(&self) -> Instant {
        self.last_tick + TICK
    }

    /// The next piece to upload on `slot`, decided now that the socket can take it (late
    /// binding: the origin picks a wildcard's piece with the freshest view of the swarm).
    pub fn poll_piece(&mut self, slot: Slot) -> Option<u32> {
        loop {
            let choking = self.table.is_choking(slot);
            let is_origin = self.cfg.role == Role::Origin;
            let p = self.peer_mut(slot)?;
            if p.closing {
                return None;
            }
            let req = p.queue.pop_front()?;
            if choking {
                self.emit(slot, &Message::Reject(req));
                continue;
            }
            let piece = if req == WILDCARD {
                let striper = self.striper.as_mut()?;
                let p = self.peers[slot].as_ref()?;
                // Not what is on its way, nor what the client asked for by name.
                let excluded = |i| p.in_flight.contains(&i) || p.queue.contains(&i);
                match striper.choose(&p.has, excluded, &mut self.rng) {
                    Some(piece) => piece,
                    None => {
                        self.emit(slot, &Message::Reject(WILDCARD));
                        continue;
                    }
                }
            } else {
                req
            };
            if is_origin {
                self.count_origin_copy(slot, piece);
            }
            return Some(piece);
        }
    }

    /// Origin: `piece` goes to `slot`. Counts the copy, and a first copy makes the client
    /// owe passing it on (the promise, docs/PROTOCOL.md §5.6).
    fn count_origin_copy(&mut self, slot: Slot, piece: u32) {
        let (Some(striper), Some(p)) = (self.striper.as_mut(), self.peers[slot].as_mut()) else {
            return;
        };
        if p.has.get(piece) || p.in_flight.contains(&piece) {
            return;
        }
        if striper.copies(piece) == 0 {
            self.fresh_holder[piece as usize] = Some(slot);
            self.table.promise(slot);
        } else {
            // The origin sends it again before the first holder passed it on: that promise
            // lapses unkept.
            self.fresh_holder[piece as usize] = None;
        }
        striper.add_copy(piece);
        p.in_flight.push(piece);
    }

    /// The driver finished writing piece `piece` to `slot`.
    pub fn handle_piece_sent(&mut self, slot: Slot, piece: u32, now: Instant) {
        self.now = now;
        let Some(m) = &self.manifest else { return };
        let len = m.piece_len(piece) as u64;
        if let Some(p) = self.peers.get_mut(slot).and_then(|p| p.as_mut()) {
            p.last_send = now;
            self.table.record_up(slot, len);
            if let (Role::Client, Some(id)) = (self.cfg.role, p.node_id()) {
                self.ledger.record_sent(id, len);
            }
        }
        self.counters.uploaded += len;
    }

    // ----- inputs -----

    /// A connection exists (dialled or accepted). Both sides send HELLO at once.
    pub fn handle_open(&mut self, slot: Slot, link: Link, remote: SocketAddr, now: Instant) {
        self.now = now;
        if self.peers.len() <= slot {
            self.peers.resize_with(slot + 1, || None);
        }
        self.peers[slot] = Some(Peer::new(link, remote, now));
        self.table.open(slot, link == Link::ToOrigin);
        match link {
            Link::ToOrigin => {
                self.origin_slot = Some(slot);
                self.origin_dialing = false;
                // A new origin connection starts with nothing counted as on its way to us.
                self.origin_wildcards_refused = false;
            }
            Link::ToPeer { node_id } => {
                if let Some(k) = self.known.iter_mut().find(|k| k.node_id == node_id) {
                    k.slot = Some(slot);
                }
            }
            Link::Accepted => {}
        }
        let hello = Hello {
            version: VERSION,
            role: self.cfg.role,
            node_id: self.cfg.node_id,
            file_id: self.manifest.as_ref().map_or(0, |m| m.id()),
            listen_port: self.cfg.listen_port,
        };
        self.emit(slot, &Message::Hello(hello));
    }

    /// A connection is gone, whoever closed it. `cause` is for messages.
    pub fn handle_closed(&mut self, slot: Slot, cause: &str, now: Instant) {
        self.now = now;
        let Some(peer) = self.peers.get_mut(slot).and_then(|p| p.take()) else {
            return;
        };
        self.table.close(slot);
        if let Some(picker) = self.picker.as_mut() {
            for a in &peer.asked {
                if a.piece != WILDCARD {
                    picker.on_request_done(a.piece);
                }
            }
            if let Some(r) = peer.receiving
                && picker.claimed_by(r.piece) == Some(slot)
            {
                picker.release(r.piece, false);
            }
            if peer.ready && !peer.is_origin_link() {
                for i in peer.has.ones() {
                    picker.peer_lost(i);
                }
            }
        }
        if let Some(striper) = self.striper.as_mut()
            && peer.registered
        {
            for i in peer.has.ones() {
                striper.remove_copy(i);
            }
            for &i in &peer.in_flight {
                striper.remove_copy(i);
            }
            for h in self.fresh_holder.iter_mut().filter(|h| **h == Some(slot)) {
                *h = None;
            }
        }
        for k in self.known.iter_mut().filter(|k| k.slot == Some(slot)) {
            k.slot = None;
            k.attempts += 1;
            k.next_attempt = now + DIAL_RETRY;
        }
        match self.cfg.role {
            Role::Origin => {
                if peer.registered
                    && let (Some(id), Some(addr)) = (peer.node_id(), peer.listen_addr())
                {
                    let gone = PeerEntry {
                        op: PeerOp::Remove,
                        node_id: id,
                        addr,
                    };
                    // Only the clients it was introduced to know of it.
                    let mut told = peer.acquaintances;
                    told.sort_unstable();
                    let msg = Message::Peers(vec![gone]);
                    for (s, other) in told {
                        let same = self.peer(s).is_some_and(|p| {
                            p.registered && !p.closing && p.node_id() == Some(other)
                        });
                        if same {
                            self.emit(s, &msg);
                        }
                    }
                }
                self.update_swarm_done();
            }
            Role::Client => {
                if peer.is_origin_link() {
                    self.origin_slot = None;
                    if self.manifest.is_none() {
                        let server = self.cfg.server.map(|s| s.to_string()).unwrap_or_default();
                        self.fatal(format!("cannot get the manifest from {server}: {cause}"));
                    } else {
                        self.origin_lost_at = Some(now);
                    }
                }
                self.check_exit();
            }
        }
    }

    /// One complete non-PIECE frame from `slot`.
    pub fn handle_frame(&mut self, slot: Slot, ty: u8, body: &[u8], now: Instant) {
        self.now = now;
        let Some(peer) = self.peer_mut(slot) else {
            return;
        };
        if peer.closing {
            return;
        }
        peer.last_recv = now;
        let has_hello = peer.hello.is_some();
        let msg = match Message::parse(ty, body) {
            Ok(m) => m,
            Err(e) => return self.fail(slot, ErrorCode::Protocol, &e.to_string()),
        };
        if !has_hello && !matches!(msg, Message::Hello(_)) {
            return self.fail(slot, ErrorCode::Protocol, "first frame must be HELLO");
        }
        match msg {
            Message::KeepAlive | Message::Extension(_) => {}
            Message::Hello(h) => self.on_hello(slot, h),
            Message::Manifest(body) => self.on_manifest(slot, body),
            Message::Bitfield(bits) => self.on_bitfield(slot, bits),
            Message::Have(i) => self.on_have(slot, i),
            Message::Interested(yes) => {
                self.table.set_interested(slot, yes);
                self.decide_chokes(false);
            }
            Message::Choke => {
                if let Some(p) = self.peer_mut(slot) {
                    p.peer_choking = true;
                }
            }
            Message::Unchoke => {
                if let Some(p) = self.peer_mut(slot) {
                    p.peer_choking = false;
                }
                self.fill_requests(slot);
            }
            Message::Request(i) => self.on_request(slot, i),
            Message::Reject(i) => self.on_reject(slot, i),
            Message::Cancel(i) => self.on_cancel(slot, i),
            Message::Piece { .. } => self.fail(
                slot,
                ErrorCode::Protocol,
                "PIECE must go through begin_piece",
            ),
            Message::Peers(entries) => self.on_peers(slot, &entries),
            Message::SwarmDone => {
                if self.peer(slot).is_some_and(|p| p.is_origin_link()) {
                    self.swarm_done = true;
                    self.check_exit();
                }
            }
            Message::Error { code, reason } => self.on_error(slot, code, reason),
            Message::Receipt(entries) => {
                if let (Role::Origin, Some(id)) =
                    (self.cfg.role, self.peer(slot).and_then(|p| p.node_id()))
                {
                    self.ledger.handle_receipt(id, &entries);
                }
            }
        }
    }

    /// The driver could not even frame the bytes from `slot` (bad length, unknown type).
    pub fn handle_malformed(&mut self, slot: Slot, reason: &str, now: Instant) {
        self.now = now;
        self.fail(slot, ErrorCode::Protocol, reason);
    }

    /// Payload bytes of the PIECE being received on `slot` arrived (the driver calls this per
    /// read, not per byte): the connection is alive even while one large piece streams in,
    /// and the download is making progress (the stall timer restarts).
    pub fn handle_payload(&mut self, slot: Slot, now: Instant) {
        if let Some(p) = self.peers.get_mut(slot).and_then(|p| p.as_mut()) {
            p.last_recv = now;
            p.last_data = now;
            self.last_progress = now;
        }
    }

    /// The head of a PIECE frame for `piece` with `len` payload bytes arrived on `slot`.
    /// Returns where the payload goes, or `None` if the connection is being closed.
    pub fn begin_piece(&mut self, slot: Slot, piece: u32, len: u32, now: Instant) -> Option<Sink> {
        self.now = now;
        let (Some(m), Some(_)) = (&self.manifest, &self.picker) else {
            self.fail(slot, ErrorCode::Protocol, "PIECE before the manifest");
            return None;
        };
        if piece >= m.piece_count() || len != m.piece_len(piece) {
            self.fail(
                slot,
                ErrorCode::Protocol,
                "PIECE index or length out of range",
            );
            return None;
        }
        let offset = m.piece_offset(piece);
        let peer = self.peer_mut(slot)?;
        if peer.closing {
            return None;
        }
        peer.last_recv = now;
        peer.last_data = now;
        let found = peer
            .asked
            .iter()
            .position(|a| a.piece == piece)
            .or_else(|| {
                // The origin answers a wildcard with a piece of its choice.
                peer.is_origin_link()
                    .then(|| peer.asked.iter().position(|a| a.piece == WILDCARD))
                    .flatten()
            });
        let Some(idx) = found else {
            self.fail(slot, ErrorCode::Protocol, "PIECE that was not requested");
            return None;
        };
        let asked = peer.asked.remove(idx);
        peer.receiving = Some(Asked {
            piece,
            at: asked.at,
            cancelled: false,
        });
        let picker = self.picker.as_mut()?;
        // Claimed before the request is counted done, so the piece never looks free (and
        // wakes every dry peer) in between.
        let store = picker.try_claim(piece, slot);
        if asked.piece != WILDCARD {
            picker.on_request_done(piece);
        }
        if store {
            self.cancel_elsewhere(piece, slot);
            Some(Sink::Store { offset })
        } else {
            Some(Sink::Discard)
        }
    }

    /// The payload of the PIECE begun on `slot` has fully arrived; `stored` is the CRC-32 of
    /// the bytes written (`None` if they were discarded). The driver computes it as the
    /// payload streams through, so each byte is read once.
    pub fn end_piece(&mut self, slot: Slot, stored: Option<u32>, now: Instant) {
        self.now = now;
        let Some(peer) = self.peer_mut(slot) else {
            return;
        };
        let Some(r) = peer.receiving.take() else {
            return;
        };
        let from_origin = peer.is_origin_link();
        let (Some(m), Some(picker)) = (&self.manifest, self.picker.as_mut()) else {
            return;
        };
        let len = m.piece_len(r.piece) as u64;
        self.table.record_down(slot, len);
        let Some(crc) = stored else {
            self.counters.discarded += len;
            if from_origin {
                self.counters.discarded_from_origin += len;
            }
            self.fill_requests(slot);
            return;
        };
        if crc != m.crc(r.piece) {
            picker.release(r.piece, false);
            self.counters.corrupt_pieces += 1;
            // A peer that sends a bad piece is dropped; the piece is fetched elsewhere.
            // The origin is trusted, so its bad piece is only fetched again.
            if !from_origin {
                return self.fail(slot, ErrorCode::Corrupt, "piece failed its checksum");
            }
            self.fill_requests(slot);
            return;
        }
        picker.release(r.piece, true);
        let micros = now.saturating_duration_since(r.at).as_micros().max(1) as u64;
        let _ = self.latency_all.record(micros.min(3_600_000_000));
        if from_origin {
            self.counters.from_origin += len;
        } else {
            self.counters.from_peers += len;
            if let Some(id) = self.peer(slot).and_then(|p| p.node_id()) {
                self.ledger.record_received(id, len);
            }
        }
        self.last_progress = now;
        self.on_piece_verified(r.piece);
        self.fill_requests(slot);
    }

    /// Timers: rates, chokes, keepalives, timeouts, dials, lingering.
    pub fn handle_tick(&mut self, now: Instant) {
        self.now = now;
        let dt = now.saturating_duration_since(self.last_tick).as_secs_f64();
        if now < self.last_tick + TICK {
            return;
        }
        self.last_tick = now;
        self.table.roll(dt);
        if now >= self.last_round + ROUND {
            self.end_round(now);
        }
        for slot in 0..self.peers.len() {
            let Some(p) = self.peer(slot) else { continue };
            if p.closing {
                continue;
            }
            if p.hello.is_none() && now >= p.opened_at + HANDSHAKE_TIMEOUT {
                self.fail(slot, ErrorCode::Timeout, "no HELLO in time");
            } else if now >= p.last_recv + IDLE_TIMEOUT {
                self.fail(slot, ErrorCode::Timeout, "peer silent for too long");
            } else if p
                .waiting_since()
                .is_some_and(|w| now >= w.max(p.last_data) + SERVE_TIMEOUT)
            {
                self.fail(slot, ErrorCode::Timeout, "no piece data for 10 s");
            } else if now >= p.last_send + KEEPALIVE_AFTER {
                self.emit(slot, &Message::KeepAlive);
            } else if p.ready {
                // Pipelines grow with the measured rate, and back-offs expire.
                self.fill_requests(slot);
            }
        }
        if self.cfg.role == Role::Client {
            self.client_timers(now);
        }
    }

    fn client_timers(&mut self, now: Instant) {
        if self.manifest.is_some() && !self.is_complete() {
            if now >= self.last_progress + self.cfg.stall_timeout {
                let (have, total) = self.progress();
                self.fatal(format!(
                    "no progress for {} s ({have}/{total} pieces); giving up",
                    self.cfg.stall_timeout.as_secs()
                ));
                return;
            }
            if self.origin_slot.is_none()
                && !self.origin_dialing
                && let (Some(lost), Some(addr)) = (self.origin_lost_at, self.cfg.server)
                && now >= lost + ORIGIN_RETRY
            {
                self.origin_lost_at = Some(now);
                self.origin_dialing = true;
                self.events.push_back(Event::Connect {
                    addr,
                    link: Link::ToOrigin,
                });
            }
        }
        self.maybe_dial(now);
        self.check_exit();
    }

    // ----- message handlers -----

    fn on_hello(&mut self, slot: Slot, h: Hello) {
        if self.peer(slot).is_some_and(|p| p.hello.is_some()) {
            return self.fail(slot, ErrorCode::Protocol, "second HELLO");
        }
        if h.version != VERSION {
            let why = format!(
                "unsupported protocol version {} (this node speaks {VERSION})",
                h.version
            );
            if self.peer(slot).is_some_and(|p| p.is_origin_link()) && self.manifest.is_none() {
                self.fatal(format!("server speaks {why}"));
            }
            return self.fail(slot, ErrorCode::Version, &why);
        }
        if h.node_id == self.cfg.node_id {
            return self.fail(slot, ErrorCode::Duplicate, "connected to itself");
        }
        let duplicate =
            self.peers.iter().enumerate().any(|(s, p)| {
                s != slot && p.as_ref().is_some_and(|p| p.node_id() == Some(h.node_id))
            });
        if duplicate {
            return self.fail(slot, ErrorCode::Duplicate, "already connected to this node");
        }
        let link = self.peer(slot).map(|p| p.link);
        if let Some(p) = self.peer_mut(slot) {
            p.hello = Some(h);
        }
        match (self.cfg.role, link) {
            (Role::Origin, _) => {
                let m = self.manifest.as_ref().expect("origin has a manifest");
                if h.role != Role::Client {
                    return self.fail(slot, ErrorCode::Protocol, "an origin cannot join a swarm");
                }
                if h.file_id != 0 && h.file_id != m.id() {
                    return self.fail(
                        slot,
                        ErrorCode::WrongFile,
                        "this server serves another file",
                    );
                }
                let mut body = Vec::new();
                m.encode(&mut body);
                let all = Bitfield::full(m.piece_count());
                self.emit(slot, &Message::Manifest(&body));
                self.emit(slot, &Message::Bitfield(all.as_bytes()));
            }
            (Role::Client, Some(Link::ToOrigin)) => {
                if h.role != Role::Origin {
                    let why = "the server is not a TFTTP origin".to_string();
                    self.fatal(why.clone());
                    return self.fail(slot, ErrorCode::Protocol, &why);
                }
                if let Some(m) = &self.manifest
                    && h.file_id != m.id()
                {
                    // Reconnected to an origin that now serves something else.
                    let why = "the server now serves a different file".to_string();
                    self.fatal(why.clone());
                    return self.fail(slot, ErrorCode::WrongFile, &why);
                }
                self.origin_file_id = h.file_id;
                self.origin_lost_at = None;
            }
            (Role::Client, _) => {
                let Some(m) = &self.manifest else {
                    return self.fail(slot, ErrorCode::NotReady, "no manifest yet; retry later");
                };
                if h.role != Role::Client || h.file_id != m.id() {
                    return self.fail(slot, ErrorCode::WrongFile, "peer is in another swarm");
                }
                if !self.cfg.use_peers {
                    return self.fail(slot, ErrorCode::TooManyPeers, "not trading with peers");
                }
                if let Some(k) = self.known.iter_mut().find(|k| k.node_id == h.node_id) {
                    k.slot = Some(slot);
                }
                self.counters.peers_connected += 1;
                self.send_bitfield(slot);
            }
        }
    }

    fn send_bitfield(&mut self, slot: Slot) {
        let bits = self.picker.as_ref().map(|p| p.have().as_bytes().to_vec());
        if let Some(bits) = bits {
            self.emit(slot, &Message::Bitfield(&bits));
        }
    }

    fn on_manifest(&mut self, slot: Slot, body: &[u8]) {
        let from_origin = self.peer(slot).is_some_and(|p| p.is_origin_link());
        if self.cfg.role != Role::Client || !from_origin {
            return self.fail(slot, ErrorCode::Protocol, "MANIFEST from a non-origin");
        }
        let m = match Manifest::decode(body) {
            Ok(m) => m,
            Err(e) => {
                self.fatal(format!("the server sent a bad manifest: {e}"));
                return self.fail(slot, ErrorCode::Protocol, "bad manifest");
            }
        };
        if m.id() != self.origin_file_id {
            self.fatal("the server's manifest does not match its file id".into());
            return self.fail(slot, ErrorCode::WrongFile, "manifest id mismatch");
        }
        if let Some(have) = &self.manifest {
            if *have != m {
                self.fatal("the server now serves a different file".into());
            }
        } else {
            self.picker = Some(Picker::new(Bitfield::new(m.piece_count())));
            self.manifest = Some(m);
            self.last_progress = self.now;
            self.events.push_back(Event::Manifest);
        }
        self.send_bitfield(slot);
        if self.is_complete() {
            self.on_complete();
        }
    }

    fn on_bitfield(&mut self, slot: Slot, bytes: &[u8]) {
        let Some(n) = self.manifest.as_ref().map(|m| m.piece_count()) else {
            return self.fail(slot, ErrorCode::Protocol, "BITFIELD before the manifest");
        };
        if self.peer(slot).is_some_and(|p| p.ready) {
            return self.fail(slot, ErrorCode::Protocol, "second BITFIELD");
        }
        let Some(bits) = Bitfield::from_bytes(bytes, n) else {
            return self.fail(slot, ErrorCode::Protocol, "BITFIELD of the wrong length");
        };
        match self.cfg.role {
            Role::Origin => {
                let striper = self.striper.as_mut().expect("origin has a striper");
                for i in bits.ones() {
                    striper.add_copy(i);
                }
                let full = bits.is_full();
                let p = self.peer_mut(slot).expect("checked above");
                p.has = bits;
                p.ready = true;
                p.registered = true;
                if full {
                    self.counters.clients_completed += 1;
                }
                self.introduce(slot);
                self.update_swarm_done();
            }
            Role::Client => {
                let from_origin = self.peer(slot).is_some_and(|p| p.is_origin_link());
                let picker = self.picker.as_mut().expect("manifest implies picker");
                let mut useful = 0;
                for i in bits.ones() {
                    if !from_origin {
                        picker.peer_has(i);
                    }
                    if !picker.have().get(i) {
                        useful += 1;
                    }
                }
                let p = self.peer_mut(slot).expect("checked above");
                p.has = bits;
                p.useful = useful;
                p.ready = true;
                self.update_interest(slot);
                self.fill_requests(slot);
            }
        }
    }

    /// Origin: introduce a newly ready client to up to MAX_ADVERTISED registered clients (all
    /// of them while there are no more), and them to it. A random sample beyond that keeps
    /// the overlay a random graph and the origin's PEERS traffic linear in the crowd: naming
    /// every client to every other cost O(N²) frames: one 23-byte add per pair and one remove,
    /// 2.3 GB for 10,000 clients that arrive and leave, more than a 1 GiB file.
    fn introduce(&mut self, slot: Slot) {
        let me = self.peer(slot).expect("caller checked");
        let (Some(id), me_addr) = (me.node_id(), me.listen_addr()) else {
            return;
        };
        let mut chosen: Vec<Slot> = Vec::new();
        let mut seen = 0u32;
        for (s, p) in self.peers.iter().enumerate() {
            if s == slot || !p.as_ref().is_some_and(|p| p.registered && !p.closing) {
                continue;
            }
            // Reservoir sampling (Algorithm R): each candidate kept with chance k/seen.
            seen += 1;
            if chosen.len() < MAX_ADVERTISED {
                chosen.push(s);
            } else {
                let j = self.rng.below(seen) as usize;
                if j < MAX_ADVERTISED {
                    chosen[j] = s;
                }
            }
        }
        chosen.sort_unstable();
        let others: Vec<PeerEntry> = chosen
            .iter()
            .filter_map(|&s| {
                let p = self.peer(s)?;
                Some(PeerEntry {
                    op: PeerOp::Add,
                    node_id: p.node_id()?,
                    addr: p.listen_addr()?,
                })
            })
            .collect();
        for chunk in others.chunks(wire::MAX_PEER_ENTRIES) {
            self.emit(slot, &Message::Peers(chunk.to_vec()));
        }
        for &s in &chosen {
            let other = self.peer(s).and_then(|p| p.node_id()).unwrap_or(0);
            if let Some(p) = self.peer_mut(s) {
                p.acquaintances.push((slot, id));
            }
            if let Some(p) = self.peer_mut(slot) {
                p.acquaintances.push((s, other));
            }
        }
        if let Some(addr) = me_addr {
            let entry = PeerEntry {
                op: PeerOp::Add,
                node_id: id,
                addr,
            };
            let msg = Message::Peers(vec![entry]);
            for &s in &chosen {
                self.emit(s, &msg);
            }
        }
    }

    fn on_have(&mut self, slot: Slot, i: u32) {
        let Some(n) = self.manifest.as_ref().map(|m| m.piece_count()) else {
            return self.fail(slot, ErrorCode::Protocol, "HAVE before the manifest");
        };
        if i >= n || !self.peer(slot).is_some_and(|p| p.ready) {
            return self.fail(
                slot,
                ErrorCode::Protocol,
                "HAVE out of range or before BITFIELD",
            );
        }
        let role = self.cfg.role;
        let p = self.peers[slot].as_mut().expect("checked above");
        if !p.has.set(i) {
            return;
        }
        p.dry = None;
        match role {
            Role::Origin => {
                let was_in_flight = match p.in_flight.iter().position(|&x| x == i) {
                    Some(k) => {
                        p.in_flight.swap_remove(k);
                        true
                    }
                    None => false,
                };
                let full = p.has.is_full();
                if !was_in_flight {
                    self.striper.as_mut().expect("origin").add_copy(i);
                    // Another client got the piece without the origin: whoever received its
                    // first copy has kept that promise.
                    if let Some(holder) = self.fresh_holder[i as usize].take() {
                        if holder != slot {
                            self.table.keep_promise(holder);
                        } else {
                            self.fresh_holder[i as usize] = Some(holder);
                        }
                    }
                }
                if full {
                    self.counters.clients_completed += 1;
                    self.update_swarm_done();
                }
            }
            Role::Client => {
                let from_origin = p.is_origin_link();
                let picker = self.picker.as_mut().expect("manifest implies picker");
                if !from_origin {
                    picker.peer_has(i);
                }
                if !picker.have().get(i) {
                    self.peer_mut(slot).expect("checked").useful += 1;
                    self.update_interest(slot);
                    self.fill_requests(slot);
                }
            }
        }
    }

    fn on_request(&mut self, slot: Slot, i: u32) {
        let Some(n) = self.manifest.as_ref().map(|m| m.piece_count()) else {
            return self.fail(slot, ErrorCode::Protocol, "REQUEST before the manifest");
        };
        let is_origin = self.cfg.role == Role::Origin;
        if (i == WILDCARD && !is_origin) || (i != WILDCARD && i >= n) {
            return self.fail(slot, ErrorCode::Protocol, "REQUEST for an invalid piece");
        }
        let held = is_origin || self.picker.as_ref().is_some_and(|p| p.have().get(i));
        let choking = self.table.is_choking(slot);
        let p = self.peer_mut(slot).expect("frame came from it");
        if choking || !held || p.queue.len() >= MAX_QUEUED_REQUESTS {
            return self.emit(slot, &Message::Reject(i));
        }
        p.queue.push_back(i);
        self.mark_dirty(slot);
    }

    /// A copy of `piece` is arriving on `from`: withdraw the other requests for it (BEP 3's
    /// cancel), so the peers' uplinks carry something else instead of a duplicate.
    fn cancel_elsewhere(&mut self, piece: u32, from: Slot) {
        for s in 0..self.peers.len() {
            if s == from {
                continue;
            }
            let Some(p) = self.peers[s].as_mut() else {
                continue;
            };
            let Some(a) = p
                .asked
                .iter_mut()
                .find(|a| a.piece == piece && !a.cancelled)
            else {
                continue;
            };
            a.cancelled = true;
            self.emit(s, &Message::Cancel(piece));
        }
    }

    /// The peer withdraws a request: drop it if it is still queued, and answer it.
    fn on_cancel(&mut self, slot: Slot, i: u32) {
        let p = self.peer_mut(slot).expect("frame came from it");
        if let Some(k) = p.queue.iter().position(|&q| q == i) {
            p.queue.remove(k);
            self.emit(slot, &Message::Reject(i));
        }
        // Otherwise it is being sent or was answered already: nothing to do.
    }

    fn on_reject(&mut self, slot: Slot, i: u32) {
        let now = self.now;
        let p = self.peer_mut(slot).expect("frame came from it");
        let Some(idx) = p.asked.iter().position(|a| a.piece == i) else {
            return self.fail(slot, ErrorCode::Protocol, "REJECT of a piece not requested");
        };
        let asked = p.asked.remove(idx);
        let unchoked = !p.peer_choking;
        if unchoked && !asked.cancelled {
            p.backoff_until = Some(now + REJECT_BACKOFF);
        }
        if i == WILDCARD {
            self.origin_backoff_until = Some(now + REJECT_BACKOFF);
            // An unchoking origin refuses a wildcard when every piece we lack is, as it
            // sees it, on its way to us. One it sent may have been discarded here (another
            // copy was arriving, and that one then failed): only asking by index gets it.
            self.origin_wildcards_refused |= unchoked;
        } else if let Some(picker) = self.picker.as_mut() {
            picker.on_request_done(i);
        }
        // Another peer may serve what this one would not.
        self.fill_all();
    }

    fn on_peers(&mut self, slot: Slot, entries: &[PeerEntry]) {
        if self.cfg.role != Role::Client || !self.peer(slot).is_some_and(|p| p.is_origin_link()) {
            return self.fail(slot, ErrorCode::Protocol, "PEERS from a non-origin");
        }
        if !self.cfg.use_peers {
            return;
        }
        for e in entries {
            match e.op {
                PeerOp::Add if e.node_id != self.cfg.node_id => {
                    if !self.known.iter().any(|k| k.node_id == e.node_id) {
                        self.known.push(Known {
                            node_id: e.node_id,
                            addr: e.addr,
                            slot: None,
                            attempts: 0,
                            next_attempt: self.now,
                        });
                    }
                }
                PeerOp::Add => {}
                PeerOp::Remove => self
                    .known
                    .retain(|k| k.node_id != e.node_id || k.slot.is_some()),
            }
        }
        self.maybe_dial(self.now);
    }

    fn on_error(&mut self, slot: Slot, code: ErrorCode, reason: &str) {
        let from_origin = self.peer(slot).is_some_and(|p| p.is_origin_link());
        if from_origin
            && (self.manifest.is_none()
                || matches!(code, ErrorCode::WrongFile | ErrorCode::Version))
        {
            self.fatal(format!("the server refused: {reason}"));
        }
        self.close(
            slot,
            false,
            &format!("peer sent ERROR ({code:?}): {reason}"),
        );
    }

    // ----- decisions -----

    /// Connect to known peers we are responsible for dialling. Of two listening clients the
    /// one with the smaller id dials, so a pair does not open two connections.
    fn maybe_dial(&mut self, now: Instant) {
        if !self.cfg.use_peers || self.manifest.is_none() || self.is_complete() {
            return;
        }
        let mut room = self.cfg.max_peers.saturating_sub(self.peer_count());
        let my_id = self.cfg.node_id;
        let listening = self.cfg.listen_port != 0;
        for k in &mut self.known {
            if room == 0 {
                break;
            }
            let ours = !listening || my_id < k.node_id;
            if k.slot.is_none() && ours && k.attempts < MAX_DIAL_ATTEMPTS && now >= k.next_attempt {
                k.next_attempt = now + DIAL_RETRY;
                k.attempts += 1;
                room -= 1;
                self.events.push_back(Event::Connect {
                    addr: k.addr,
                    link: Link::ToPeer { node_id: k.node_id },
                });
            }
        }
    }

    /// Closes a choking round: receipts out, counters in, chokes decided anew.
    fn end_round(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.last_round).as_secs_f64();
        self.last_round = now;
        for s in 0..self.peers.len() {
            if let Some(p) = self.peers[s].as_ref() {
                let missing = p.has.len() - p.has.count();
                self.table.set_round_facts(s, !p.asked.is_empty(), missing);
                if let Some(id) = p.node_id() {
                    self.table.set_credit(s, self.ledger.credit(id));
                }
            }
        }
        self.table.end_round(secs);
        self.decide_chokes(true);
        if self.cfg.role == Role::Client {
            self.send_receipts();
        }
    }

    /// Client: report per-peer counters to the origin (RECEIPT, docs/PROTOCOL.md §5.6).
    fn send_receipts(&mut self) {
        let Some(origin) = self
            .origin_slot
            .filter(|&s| self.peer(s).is_some_and(|p| p.ready))
        else {
            return;
        };
        let entries = self
            .ledger
            .take_receipt(self.cfg.behaviour == Behaviour::Liar);
        for chunk in entries.chunks(wire::MAX_RECEIPT_ENTRIES) {
            self.emit(origin, &Message::Receipt(chunk.to_vec()));
        }
    }

    fn decide_chokes(&mut self, new_round: bool) {
        let mut changed = std::mem::take(&mut self.changed);
        changed.clear();
        let me = Me {
            is_origin: self.cfg.role == Role::Origin,
            complete: self.is_complete(),
            free_rider: self.cfg.behaviour != Behaviour::Honest,
            capacity: self.cfg.capacity.map(|c| c as f64),
            piece_size: self.manifest.as_ref().map_or(1, |m| m.piece_size()),
        };
        self.table
            .decide(self.cfg.policy, me, new_round, &mut self.rng, &mut changed);
        for &s in &changed {
            if self
                .peer(s)
                .is_some_and(|p| p.hello.is_some() && !p.closing)
            {
                let msg = if self.table.is_choking(s) {
                    Message::Choke
                } else {
                    Message::Unchoke
                };
                self.emit(s, &msg);
            }
        }
        self.changed = changed;
    }

    fn pipeline_depth(&self, slot: Slot) -> usize {
        let piece = self.manifest.as_ref().map_or(1, |m| m.piece_size().max(1)) as f64;
        let rate = self.table.down_rate(slot);
        let want = (rate * PIPELINE_SECS / piece).ceil() as usize + MIN_PIPELINE;
        want.clamp(MIN_PIPELINE, MAX_PIPELINE)
    }

    fn fill_all(&mut self) {
        for s in 0..self.peers.len() {
            if self.peer(s).is_some_and(|p| p.ready) {
                self.fill_requests(s);
            }
        }
    }

    /// Keep the pipeline to `slot` full: wildcards to the origin, rarest-first to peers.
    fn fill_requests(&mut self, slot: Slot) {
        if self.cfg.role != Role::Client || self.is_complete() {
            return;
        }
        let now = self.now;
        let depth = self.pipeline_depth(slot);
        // Most calls find the pipeline full: skip the endgame scan (O(peers)) for them.
        match self.peer(slot) {
            Some(p) if p.asked.len() < depth => {}
            _ => return,
        }
        let endgame = self.endgame_candidates(slot);
        let origin_backoff = self.origin_backoff_until.is_some_and(|t| now < t);
        let wildcards_refused = self.origin_wildcards_refused;
        let Some(p) = self.peers.get_mut(slot).and_then(|p| p.as_mut()) else {
            return;
        };
        let Some(picker) = self.picker.as_mut() else {
            return;
        };
        if !p.ready || p.closing || p.peer_choking || p.backoff_until.is_some_and(|t| now < t) {
            return;
        }
        let mut out = std::mem::take(&mut p.outbox);
        let mut wildcards = p.asked.iter().filter(|a| a.piece == WILDCARD).count() as u32;
        while p.asked.len() < depth {
            // The origin chooses the piece (WILDCARD) while it holds pieces no peer has: its
            // global view spreads fresh pieces. Once the peers hold everything unassigned, a
            // wildcard could only duplicate a request made elsewhere, so the origin is asked
            // by index, which can be cancelled like any other request; but only after the
            // wildcards are answered, as one may bring any piece we lack.
            let origin = p.is_origin_link();
            let piece = if origin && !wildcards_refused && picker.unseen() > wildcards {
                if origin_backoff || picker.missing() <= p.asked.len() as u32 {
                    break;
                }
                wildcards += 1;
                WILDCARD
            } else if origin && wildcards > 0 {
                break;
            } else {
                let late = || {
                    if p.asked.len() >= ENDGAME_PIPELINE {
                        return None;
                    }
                    let asked_here = |i| p.asked.iter().any(|a| a.piece == i);
                    endgame
                        .iter()
                        .copied()
                        .find(|&i| picker.endgame_allows(i) && !asked_here(i))
                };
                let picked = picker.pick_unless_dry(&p.has, &mut p.dry, &mut self.rng);
                match picked.or_else(late) {
                    Some(i) => {
                        picker.on_request(i);
                        i
                    }
                    None => break,
                }
            };
            p.asked.push(Asked {
                piece,
                at: now,
                cancelled: false,
            });
            Message::Request(piece).emit(&mut out);
        }
        let sent = !out.is_empty();
        p.outbox = out;
        if sent {
            p.last_send = now;
            self.mark_dirty(slot);
        }
    }

    /// Endgame: pieces `slot` has that another peer was asked for and has not started
    /// sending, longest waiting first: those are the requests stuck behind a slow peer.
    /// Empty before the endgame.
    fn endgame_candidates(&self, slot: Slot) -> Vec<u32> {
        let (Some(picker), Some(me)) = (self.picker.as_ref(), self.peer(slot)) else {
            return Vec::new();
        };
        if !picker.all_assigned() || me.asked.len() >= ENDGAME_PIPELINE {
            return Vec::new();
        }
        let mut waiting: Vec<(Instant, u32)> = self
            .peers
            .iter()
            .enumerate()
            .filter(|&(s, _)| s != slot)
            .filter_map(|(_, p)| p.as_ref())
            .flat_map(|p| p.asked.iter())
            .filter(|a| !a.cancelled && a.piece != WILDCARD && me.has.get(a.piece))
            .map(|a| (a.at, a.piece))
            .collect();
        waiting.sort_unstable();
        waiting.into_iter().map(|(_, i)| i).collect()
    }

    /// Send INTERESTED / not-interested when `useful` crosses zero.
    fn update_interest(&mut self, slot: Slot) {
        let complete = self.is_complete();
        let Some(p) = self.peer_mut(slot) else { return };
        let want = !complete && p.useful > 0;
        if p.am_interested != want && p.hello.is_some() {
            p.am_interested = want;
            self.emit(slot, &Message::Interested(want));
        }
    }

    fn on_piece_verified(&mut self, piece: u32) {
        let have = Message::Have(piece);
        for s in 0..self.peers.len() {
            let Some(p) = self.peer_mut(s) else { continue };
            if !p.ready || p.closing {
                continue;
            }
            if p.has.get(piece) {
                p.useful = p.useful.saturating_sub(1);
            }
            self.emit(s, &have);
            self.update_interest(s);
        }
        if self.is_complete() {
            self.on_complete();
        }
    }

    fn on_complete(&mut self) {
        if self.completed_at.is_some() {
            return;
        }
        self.completed_at = Some(self.now);
        self.events.push_back(Event::Complete);
        for s in 0..self.peers.len() {
            self.update_interest(s);
        }
        self.check_exit();
    }

    /// Client: leave once complete and nobody needs us any more.
    fn check_exit(&mut self) {
        if self.exiting || self.cfg.role != Role::Client {
            return;
        }
        let Some(done_at) = self.completed_at else {
            return;
        };
        let alone = self.origin_slot.is_none() && self.peer_count() == 0;
        if self.swarm_done || alone || !self.cfg.use_peers || self.now >= done_at + self.cfg.linger
        {
            self.exiting = true;
            self.events.push_back(Event::Exit);
        }
    }

    /// Origin: tell everyone when every connected client is complete; exit if asked to.
    fn update_swarm_done(&mut self) {
        let mut any = false;
        let mut all = true;
        for p in self
            .peers
            .iter()
            .flatten()
            .filter(|p| p.registered && !p.closing)
        {
            any = true;
            all &= p.has.is_full();
        }
        let done = any && all;
        if done && !self.swarm_done {
            self.broadcast_ready(&Message::SwarmDone);
        }
        self.swarm_done = done;
        if let Some(n) = self.cfg.exit_after
            && self.counters.clients_completed >= n
            && (done || !any)
            && !self.exiting
        {
            self.exiting = true;
            self.events.push_back(Event::Exit);
        }
    }

    // ----- plumbing -----

    fn emit(&mut self, slot: Slot, msg: &Message) {
        let now = self.now;
        if let Some(p) = self.peer_mut(slot) {
            msg.emit(&mut p.outbox);
            p.last_send = now;
            self.mark_dirty(slot);
        }
    }

    fn broadcast_ready(&mut self, msg: &Message) {
        for s in 0..self.peers.len() {
            if self.peer(s).is_some_and(|p| p.registered && !p.closing) {
                self.emit(s, msg);
            }
        }
    }

    fn mark_dirty(&mut self, slot: Slot) {
        if let Some(p) = self.peer_mut(slot)
            && !p.dirty
        {
            p.dirty = true;
            self.dirty.push(slot);
        }
    }

    /// Send ERROR and close `slot` after it is flushed.
    fn fail(&mut self, slot: Slot, code: ErrorCode, reason: &str) {
        if self.manifest.is_none() && self.peer(slot).is_some_and(|p| p.is_origin_link()) {
            let server = self.cfg.server.map(|s| s.to_string()).unwrap_or_default();
            self.fatal(format!(
                "{server} broke the protocol ({reason}); is it a TFTTP server?"
            ));
        }
        if self.peer(slot).is_some_and(|p| !p.closing) {
            self.emit(slot, &Message::Error { code, reason });
            self.close(slot, true, reason);
        }
    }

    fn close(&mut self, slot: Slot, flush: bool, why: &str) {
        if let Some(p) = self.peer_mut(slot)
            && !p.closing
        {
            p.closing = true;
            self.events.push_back(Event::Close {
                slot,
                flush,
                why: why.to_string(),
            });
        }
    }

    fn fatal(&mut self, why: String) {
        if !self.exiting {
            self.exiting = true;
            self.events.push_back(Event::Fatal(why));
        }
    }
}

#[cfg(test)]
mod tests;
