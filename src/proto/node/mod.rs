//! One TFTTP node, origin or client, as a sans-IO state machine (docs/PROTOCOL.md §5–6).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::auth::{Nonces, SwarmKey};
use super::choke::{ChokeTable, Me, Policy, ROUND};
use super::ledger::Ledger;
use super::peer::{Asked, Peer};
use super::picker::Picker;
use super::rng::Rng;
use super::striper::Striper;
use crate::bitfield::Bitfield;
use crate::manifest::{Hash, Manifest};
use crate::wire::{self, ErrorCode, Hello, Message, PeerEntry, PeerOp, Role, WILDCARD, WireError};

mod client;
mod collusion;
mod config;
mod discovery;
mod failure;
mod handshake;
mod origin;
mod pieces;
mod probe;
mod progress;
mod reach;
mod requests;
mod send_limit;
mod stamps;
mod standing;
mod timers;

use client::{ClientSide, DialQuiet, Known};
pub use config::{Behaviour, Config, DEFAULT_LINGER, UpRate};
pub use failure::{Failure, FailureKind};
use origin::Registry;
pub use probe::ProbeId;
pub use reach::Unreachable;
use timers::{DIAL_RETRY, MAX_DIAL_ATTEMPTS, TICK, passed};

/// Most control bytes queued for one peer. Our own frames to a peer that reads stay far
/// below it (a BITFIELD of the largest file is 512 KiB; HAVEs pile up at 9 bytes a piece);
/// more means the peer has stopped reading.
const MAX_OUTBOX: usize = 4 << 20;

/// Most REJECTs waiting for one peer to read them. A peer keeps at most MAX_QUEUED_REQUESTS
/// (256) requests outstanding, and each gets one answer (docs/PROTOCOL.md §5.2, BEP 6), so
/// one that reads has at most that many REJECTs waiting; four times that is a peer that
/// floods REQUESTs and does not read the answers. Closing it there holds its answers to
/// 9 KiB instead of MAX_OUTBOX.
const MAX_UNREAD_REJECTS: usize = 4 * requests::MAX_QUEUED_REQUESTS;

/// A connection's index, chosen by the driver (its slab key).
pub type Slot = usize;

/// How a connection came about, as the driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// We dialled the origin.
    ToOrigin,
    /// We dialled a peer the origin named.
    ToPeer {
        /// The id the origin gave for the peer, to match the connection to its entry.
        node_id: u64,
    },
    /// Someone dialled us.
    Accepted,
}

/// Where the payload of an arriving PIECE goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Into the output file at this offset.
    Store {
        /// Byte offset of the piece in the file.
        offset: u64,
    },
    /// Read and dropped (a copy we already have or are already receiving).
    Discard,
}

/// What the node asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Open a connection and report it with `handle_open(slot, link, ...)`.
    Connect {
        /// The origin's or a peer's listening address.
        addr: SocketAddr,
        /// Passed back in `handle_open`, so the node knows what the connection is for.
        link: Link,
    },
    /// Close `slot` (after sending its outbox if `flush`), then call `handle_closed`; `why`
    /// is for the log.
    Close {
        /// The connection to close.
        slot: Slot,
        /// Send its outbox first (an ERROR, say); the driver waits a grace period for that.
        flush: bool,
        /// The reason, for the log.
        why: String,
    },
    /// Origin: check once whether `addr` (a registered client's listen address) accepts a
    /// TCP connection, within a bounded time, closing it at once without sending anything;
    /// report with `handle_probe_result(id, reachable, now)` (docs/PROTOCOL.md §4.8).
    Probe {
        /// Passed back in `handle_probe_result`.
        id: ProbeId,
        /// The client's listen address as the origin advertises it.
        addr: SocketAddr,
    },
    /// Client: the manifest arrived; size and map the output before any payload arrives.
    Manifest,
    /// Client: every piece is verified; make the output durable and final.
    Complete,
    /// Origin: it now names the client `node_id` as taking without giving, or no longer
    /// does (STANDING, docs/PROTOCOL.md §4.9); for the log and the simulator's report.
    Standing {
        /// The client's node id, as in its HELLO.
        node_id: u64,
        /// Named (true) or no longer named.
        named: bool,
    },
    /// Nothing more to do: flush what is queued and exit successfully.
    Exit,
    /// The download cannot succeed: exit with this one-line reason.
    Fatal(Failure),
}

/// Counters a node reports in its stats file.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Client: bytes of verified piece payload received from the origin.
    pub from_origin: u64,
    /// Client: bytes of verified piece payload received from other clients.
    pub from_peers: u64,
    /// Bytes of piece payload the driver finished sending, to clients and peers alike.
    pub uploaded: u64,
    /// Client: bytes of piece payload received and dropped (a copy we had or were already
    /// receiving elsewhere): upload the swarm spent for nothing.
    pub discarded: u64,
    /// Part of `discarded` that came from the origin: its scarce upload spent twice.
    pub discarded_from_origin: u64,
    /// Client: pieces that arrived whole but failed their BLAKE3 hash and were fetched again.
    pub corrupt_pieces: u64,
    /// Client: peer connections whose HELLO was accepted, over the whole run (not the number
    /// open now).
    pub peers_connected: u64,
    /// Client: dials to peers the origin named that closed before the peer's HELLO
    /// (refused, unreachable, timed out): their advertised port did not answer.
    pub peer_dials_failed: u64,
    /// Origin: clients seen to hold every piece, whether they finished here or arrived
    /// complete.
    pub clients_completed: u32,
    /// Origin: first copies of a piece sent to a client, each a promise to pass it on
    /// (docs/PROTOCOL.md §5.6).
    pub promises_made: u64,
    /// Origin: of those, pieces another client announced without the origin sending them:
    /// the promise was kept.
    pub promises_kept: u64,
    /// Origin: clients whose listen port its connect-back probe could not reach (§4.8).
    pub clients_unreachable: u64,
}

/// Open connections by state (`Node::peer_states`), for the metrics endpoint.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PeerStates {
    /// Client: connections to the origin (0 or 1).
    pub origin: usize,
    /// Connections to other clients whose handshake is not done both ways.
    pub handshaking: usize,
    /// Connections to other clients with the handshake done (HELLO and BITFIELD).
    pub ready: usize,
    /// Connections the node asked the driver to close, still flushing.
    pub closing: usize,
    /// Open connections (not closing) that we choke, and that we unchoke.
    pub choked_by_us: usize,
    /// See `choked_by_us`.
    pub unchoked_by_us: usize,
    /// Open connections (not closing) whose remote chokes us, and unchokes us.
    pub choking_us: usize,
    /// See `choking_us`.
    pub unchoking_us: usize,
    /// Open connections that have pieces we lack (we are interested).
    pub interesting: usize,
}

/// A node's instantaneous load (`Node::load`): a run's timeline shows where it waits.
#[derive(Debug, Default, Clone, Copy)]
pub struct Load {
    /// Our unanswered requests, over all connections.
    pub asked: usize,
    /// Peers' requests queued at us.
    pub queued: usize,
    /// Connections whose remote unchokes us (we may request from them).
    pub unchoking_us: usize,
    /// Connections we unchoke (their upload weight is above 0).
    pub unchoked: usize,
    /// Pieces whose payload is arriving now.
    pub receiving: usize,
    /// Age of our oldest request still unanswered or arriving: a stuck request shows here.
    pub oldest_ask: Duration,
}

/// A TFTTP node, origin or client, with no sockets and no clock: the driver (or a test, or
/// the simulator) feeds it `handle_*` inputs with `now` and drains its `poll_*` outputs in
/// the order the `proto` module describes.
pub struct Node {
    /// The settings it was built with; never changed afterwards.
    cfg: Config,
    /// The `now` of the latest input, for code that runs without one (emits, exits).
    now: Instant,
    /// The file being shared: the origin has it from the start, a client once the origin sends
    /// it.
    manifest: Option<Manifest>,
    /// Client: which pieces we have and which to ask for next, built with the manifest;
    /// `None` on the origin.
    picker: Option<Picker>,
    /// Per-connection state indexed by slot; `None` for a slot the driver has not opened or has
    /// closed.
    peers: Vec<Option<Peer>>,
    /// The choking table: rates and the policy's upload weight for each slot.
    table: ChokeTable,
    /// Seeded from `node_id`, so runs with fixed ids repeat exactly: the picker's, the
    /// striper's and the optimistic unchoke's random choices.
    rng: Rng,
    /// Requests to the driver, oldest first, for `poll_event`.
    events: VecDeque<Event>,
    /// Slots with control frames queued since the driver last asked (`poll_dirty`); each is
    /// listed once, guarded by `Peer::dirty`.
    dirty: Vec<Slot>,
    /// Scratch list of slots whose choke state a decision changed; kept to reuse its buffer.
    changed: Vec<Slot>,
    /// What only this node's role keeps.
    side: Side,
    /// The `now` it was built with: time zero for the stats' elapsed times.
    started_at: Instant,
    /// When `handle_tick` last ran its timers; the next is due `TICK` later.
    last_tick: Instant,
    /// When the last choking round ended; the next ends `ROUND` later.
    last_round: Instant,
    /// Client: when piece payload last arrived (or the manifest), for the stall timeout.
    last_progress: Instant,
    /// Client, complete: the last time a peer wanted something from us (a request queued,
    /// a piece sent); lingering ends `LINGER_IDLE` after it.
    last_useful: Instant,
    /// Client: when the last piece was verified.
    completed_at: Option<Instant>,
    /// Every connected client holds the whole file: the origin worked it out (and sent
    /// SWARM_DONE), or a client heard it from the origin.
    swarm_done: bool,
    /// `Exit` or `Fatal` was queued, so neither is queued again.
    exiting: bool,
    /// Totals for the stats file.
    counters: Counters,
    /// Request-to-arrival latency of pieces, microseconds. One per node: a histogram is
    /// ~25 KiB, and one per connection (never read) cost an origin 25 MiB per 1,000 clients.
    latency_all: Histogram<u64>,
    /// Client: per-peer transfer counters for receipts; origin: confirmed credit.
    ledger: Ledger,
    /// A fresh nonce for each connection's HELLO.
    nonces: Nonces,
}

/// The state one role has and the other does not.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a node has one side for its life: the origin's larger one pads each client's \
              node by a few hundred bytes, less than one of its peers' state"
)]
enum Side {
    Origin(Registry),
    Client(ClientSide),
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 1 h at 2 significant digits (about 25 KiB): enough to tell p99 from p50.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static histogram bounds")
}

impl Node {
    /// An origin serving the file described by `manifest`.
    pub fn origin(cfg: Config, manifest: Manifest, now: Instant) -> Node {
        let side = Side::Origin(Registry::new(manifest.piece_count()));
        let mut n = Node::new(cfg, side, now);
        n.manifest = Some(manifest);
        n
    }

    /// A client that will learn the manifest from the origin.
    pub fn client(cfg: Config, now: Instant) -> Node {
        Node::new(cfg, Side::Client(ClientSide::default()), now)
    }

    fn new(cfg: Config, side: Side, now: Instant) -> Node {
        Node {
            rng: Rng::new(cfg.node_id),
            nonces: Nonces::new(cfg.nonce_key),
            cfg,
            now,
            manifest: None,
            picker: None,
            peers: Vec::new(),
            table: ChokeTable::default(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            changed: Vec::new(),
            side,
            started_at: now,
            last_tick: now,
            last_round: now,
            last_progress: now,
            last_useful: now,
            completed_at: None,
            swarm_done: false,
            exiting: false,
            counters: Counters::default(),
            latency_all: new_histogram(),
            ledger: Ledger::default(),
        }
    }

    // ----- accessors for the driver and the stats -----

    /// Origin or client, as configured.
    pub fn role(&self) -> Role {
        self.cfg.role
    }

    /// The id this node gives in its HELLO.
    pub fn node_id(&self) -> u64 {
        self.cfg.node_id
    }

    /// The file being shared; `None` on a client until the origin's manifest arrives.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Totals so far, for the stats file.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Request-to-arrival latency of every verified piece, in microseconds.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency_all
    }

    /// Client: when the last piece was verified; `None` until then and on the origin.
    pub fn completed_at(&self) -> Option<Instant> {
        self.completed_at
    }

    /// The `now` the node was built with.
    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    #[cfg(test)]
    pub(super) fn table(&self) -> &ChokeTable {
        &self.table
    }

    /// True once every piece is verified; the origin is always complete.
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

    /// Client: our listen port is unreachable: the origin's connect-back probe said so
    /// (REACHABILITY), or, from an origin that sends none, peers that were told our address
    /// and should have dialled us have not (`reach`). `None` on the origin, on a client that
    /// does not listen, and until the evidence is in.
    pub fn listen_unreachable(&self) -> Option<Unreachable> {
        self.client_side().and_then(|c| c.reach.verdict())
    }

    /// Client: the origin's connect-back verdict on our listen port (REACHABILITY): `None`
    /// until one arrived, and from an origin that does not probe.
    pub fn origin_reach_verdict(&self) -> Option<bool> {
        self.client_side().and_then(|c| c.reach.origin_verdict())
    }

    /// Client: the verified pieces; `None` on the origin and before the manifest.
    pub fn have(&self) -> Option<&Bitfield> {
        self.picker.as_ref().map(|p| p.have())
    }

    /// Open connections by state: handshake, choking both ways, interest.
    pub fn peer_states(&self) -> PeerStates {
        let mut st = PeerStates::default();
        for (s, p) in self.peers.iter().enumerate() {
            let Some(p) = p else { continue };
            if p.closing {
                st.closing += 1;
                continue;
            }
            if p.is_origin_link() {
                st.origin += 1;
            } else if p.ready {
                st.ready += 1;
            } else {
                st.handshaking += 1;
            }
            if self.table.is_choking(s) {
                st.choked_by_us += 1;
            } else {
                st.unchoked_by_us += 1;
            }
            if p.peer_choking {
                st.choking_us += 1;
            } else {
                st.unchoking_us += 1;
            }
            st.interesting += p.am_interested as usize;
        }
        st
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

    /// The slot's share of our upload relative to other slots (0 when choked). A choke
    /// applies from the next piece: one already being written goes on at the largest share,
    /// as the peer cannot fetch it elsewhere while it arrives (a second copy is discarded).
    pub fn upload_weight(&self, slot: Slot) -> f64 {
        let weight = self.table.weight(slot);
        if weight == 0.0 && self.peer(slot).is_some_and(|p| p.sending) {
            let max = self.table.max_weight();
            return if max > 0.0 { max } else { 1.0 };
        }
        weight
    }

    /// Origin: whether a client is still downloading: it lacks pieces, or has not yet said
    /// what it has (its handshake is under way). While one is, HTTP downloads get only
    /// their share of the upload (`net::http`, README "HTTP").
    pub fn clients_downloading(&self) -> bool {
        self.peers
            .iter()
            .flatten()
            .any(|p| !p.closing && (!p.registered || !p.has.is_full()))
    }

    /// Origin: the name its file answers to (`Config::serve_name`), in a HELLO's path or
    /// an HTTP request's.
    pub fn serve_name(&self) -> Option<&str> {
        self.cfg.serve_name.as_deref()
    }

    /// The round trip last given for `slot` (`handle_rtt`); zero before the first.
    pub fn rtt(&self, slot: Slot) -> Option<Duration> {
        self.peer(slot).map(|p| p.rtt)
    }

    /// The largest upload weight of any slot.
    pub fn max_upload_weight(&self) -> f64 {
        self.table.max_weight()
    }

    /// The slot's absolute upload cap in bytes per second, if the policy set one.
    pub fn upload_cap(&self, slot: Slot) -> Option<f64> {
        self.table.cap(slot)
    }

    /// The handshake on `slot` is done (HELLO accepted and, with a secret, AUTH verified):
    /// from now on the peer may send frames as large as their types allow. Before it, the
    /// driver accepts only small ones (`wire::Limits`).
    pub fn is_admitted(&self, slot: Slot) -> bool {
        self.peer(slot).is_some_and(|p| p.admitted && !p.closing)
    }

    /// The node asked for `slot` to be closed (or does not know it): the driver stops reading
    /// frames from it and sends it no piece.
    pub fn is_closing(&self, slot: Slot) -> bool {
        self.peer(slot).is_none_or(|p| p.closing)
    }

    /// The client's own state; `None` on the origin.
    fn client_side(&self) -> Option<&ClientSide> {
        match &self.side {
            Side::Client(c) => Some(c),
            Side::Origin(_) => None,
        }
    }

    /// Client: the origin connection, once its handshake is done.
    fn ready_origin_slot(&self) -> Option<Slot> {
        self.client_side()
            .and_then(|c| c.origin.slot)
            .filter(|&s| self.peer(s).is_some_and(|p| p.ready))
    }

    fn client_side_mut(&mut self) -> Option<&mut ClientSide> {
        match &mut self.side {
            Side::Client(c) => Some(c),
            Side::Origin(_) => None,
        }
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

    /// The next request to the driver, oldest first; drain after every input.
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
            p.unread_rejects = 0;
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

    // ----- inputs -----

    /// A connection exists (dialled or accepted). Both sides send HELLO at once.
    pub fn handle_open(&mut self, slot: Slot, link: Link, remote: SocketAddr, now: Instant) {
        self.now = now;
        if self.peers.len() <= slot {
            self.peers.resize_with(slot + 1, || None);
        }
        let nonce = self.nonces.draw();
        self.peers[slot] = Some(Peer::new(link, remote, nonce, now));
        self.table.open(slot, link == Link::ToOrigin);
        match link {
            Link::ToOrigin => {
                if let Some(c) = self.client_side_mut() {
                    c.origin.slot = Some(slot);
                    c.origin.dialing = false;
                    // A new origin connection starts with nothing counted as on its way.
                    c.origin.asks_by_index = false;
                }
            }
            Link::ToPeer { node_id } => {
                if let Some(c) = self.client_side_mut() {
                    c.connected(node_id, slot);
                }
            }
            Link::Accepted => {
                // Someone reached our listen port (only peers dial a client).
                if let Some(c) = self.client_side_mut() {
                    c.reach.on_inbound();
                }
            }
        }
        // Only the origin is asked for a path; peers are told apart by the file id alone.
        let path = match link {
            Link::ToOrigin => self.cfg.path.clone(),
            _ => String::new(),
        };
        let hello = Hello {
            role: self.cfg.role,
            auth: self.cfg.secret.is_some(),
            node_id: self.cfg.node_id,
            file_id: self.manifest.as_ref().map_or(0, |m| m.id()),
            listen_port: self.cfg.listen_port,
            nonce,
            path: &path,
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
        match &mut self.side {
            Side::Origin(registry) if peer.registered => {
                registry.forget(slot, peer.node_id(), &peer.has, &peer.in_flight);
                registry.slots.forget(slot);
                if peer.holds_send_slot {
                    registry.slots.release(slot);
                }
                self.grant_send_slots();
            }
            Side::Origin(_) => {}
            Side::Client(c) => {
                // Room for one more peer, and maybe a known peer to dial again.
                c.dial_quiet = None;
                for k in c.known.iter_mut().filter(|k| k.slot == Some(slot)) {
                    // Each attempt counts twice, at the dial and at this close, so with
                    // MAX_DIAL_ATTEMPTS = 3 an address that refuses is dialled twice, 2 s
                    // apart, and then no more (until the origin names it again).
                    k.slot = None;
                    k.attempts += 1;
                    k.next_attempt = now + DIAL_RETRY;
                    if peer.hello.is_none() {
                        k.failed_dials += 1;
                        self.counters.peer_dials_failed += 1;
                    }
                }
            }
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
                    let has_manifest = self.manifest.is_some();
                    if let Some(c) = self.client_side_mut() {
                        c.origin.slot = None;
                        if has_manifest {
                            c.origin.lost_at = Some(now);
                        }
                    }
                    if !has_manifest {
                        let server = self.cfg.server.map(|s| s.to_string()).unwrap_or_default();
                        self.fatal(
                            FailureKind::Unreachable,
                            format!("cannot get the manifest from {server}: {cause}"),
                        );
                    }
                }
                self.check_exit();
            }
        }
    }

    /// The transport's smoothed round-trip time on `slot` (TCP's SRTT, from `TCP_INFO` or
    /// the simulator's model). Request pipelines cover it (`requests.rs`): a request waits
    /// in our uplink's queue and the answer in the peer's, which on a slow or saturated
    /// link is far longer than the wire's round trip. Optional: without it a pipeline holds
    /// `PIPELINE_SECS` of the connection's rate.
    pub fn handle_rtt(&mut self, slot: Slot, rtt: Duration) {
        if let Some(p) = self.peer_mut(slot) {
            p.rtt = rtt;
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
        let admitted = peer.admitted;
        let msg = match Message::parse(ty, body) {
            Ok(m) => m,
            Err(WireError::Version(v)) => return self.on_version(slot, v),
            Err(e) => return self.fail(slot, ErrorCode::Protocol, &e.to_string()),
        };
        if !has_hello && !matches!(msg, Message::Hello(_)) {
            return self.fail(slot, ErrorCode::Protocol, "first frame must be HELLO");
        }
        if has_hello && !admitted && !matches!(msg, Message::Auth(_) | Message::Error { .. }) {
            // A node with a secret takes nothing but AUTH until the peer proved it.
            return self.fail(slot, ErrorCode::Unauthorized, "a frame before AUTH");
        }
        match msg {
            Message::KeepAlive | Message::Extension(_) => {}
            Message::Hello(h) => self.on_hello(slot, h),
            Message::Auth(tag) => self.on_auth(slot, &tag),
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
            Message::Reachability(yes) => self.on_reachability(slot, yes),
            Message::Standing(entries) => self.on_standing(slot, &entries),
            Message::Stamp(stamp) => self.on_stamp(slot, stamp),
            Message::QueueDelay(micros) => self.on_queue_delay(slot, micros),
            Message::Progress(held) => self.on_progress(slot, held),
            Message::Receipt(entries) => {
                let id = self.peer(slot).and_then(|p| p.node_id());
                let file_len = self.manifest.as_ref().map_or(0, |m| m.file_len());
                if let (Side::Origin(registry), Some(id)) = (&self.side, id) {
                    let known = |other| registry.knows(other);
                    self.ledger.handle_receipt(id, &entries, file_len, known);
                }
            }
        }
    }

    /// The driver could not even frame the bytes from `slot` (bad length, unknown type).
    pub fn handle_malformed(&mut self, slot: Slot, reason: &str, now: Instant) {
        self.now = now;
        // The driver passes the framing error as text; an origin that answers in HTTP is a
        // web server, and the user is told so rather than "broke the protocol".
        let http = reason == WireError::Http.to_string();
        if http && self.manifest.is_none() && self.peer(slot).is_some_and(|p| p.is_origin_link()) {
            let server = self.cfg.server.map(|s| s.to_string()).unwrap_or_default();
            self.fatal(
                FailureKind::NotTftp,
                format!(
                    "{server} answered in HTTP: it is a web server, not a TFTTP origin \
                     (tfttp speaks its own protocol; use curl or wget for HTTP)"
                ),
            );
        }
        self.fail(slot, ErrorCode::Protocol, reason);
    }

    // ----- plumbing -----

    fn emit(&mut self, slot: Slot, msg: &Message) {
        let now = self.now;
        let Some(p) = self.peer_mut(slot) else { return };
        if matches!(msg, Message::Reject(_)) {
            p.unread_rejects += 1;
        }
        if (p.outbox.len() > MAX_OUTBOX || p.unread_rejects > MAX_UNREAD_REJECTS) && !p.closing {
            // It sends (requests, say) but does not read what we answer: drop it rather
            // than hold its answers without bound.
            p.outbox.clear();
            p.unread_rejects = 0;
            return self.close(slot, false, "peer does not read what it is sent");
        }
        msg.emit(&mut p.outbox);
        p.last_send = now;
        self.mark_dirty(slot);
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
            self.fatal(
                FailureKind::NotTftp,
                format!("{server} broke the protocol ({reason}); is it a TFTTP server?"),
            );
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

    fn fatal(&mut self, kind: FailureKind, why: impl Into<String>) {
        if !self.exiting {
            self.exiting = true;
            self.events.push_back(Event::Fatal(Failure::new(kind, why)));
        }
    }
}

#[cfg(test)]
mod tests;
