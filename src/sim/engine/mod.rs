//! The simulator's event loop: one real `proto::Node` per host, connected through the fluid
//! network of `network.rs`, in virtual time. It plays the mio driver's part (dial, accept,
//! move control frames and pieces, tick, close) and nothing else: every protocol decision
//! is the node's, made by the same code that runs on the wire.
//!
//! Each connection direction is a pipe. Control frames the node queues leave at once unless
//! a piece is being sent on that pipe; then they wait for the piece to finish, as they do
//! behind the driver's half-written piece. A piece's head reaches the receiver one-way delay
//! after it starts (the receiver claims it and cancels it elsewhere), its end one-way delay
//! after its last byte leaves. Everything that crosses a pipe arrives in order.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use slab::Slab;

mod hosts;
mod transport;

use transport::{flow_limits, queue_ns};

use super::agenda::Agenda;
use super::network::{FlowId, Network};
use super::scenario::{BASE_RTT, Leave, LinkSpec, Scenario, TCP_GOODPUT, UpRate};
use crate::manifest::Manifest;
use crate::net::{MAX_CONNS_ORIGIN, max_conns_client, quantum};
use crate::proto::{Behaviour, Config, Counters, Event, Link, Load, Node, Pacer, Sink, Slot};
use crate::wire::{FrameHead, HEAD_SIZE, PIECE_HEAD_SIZE, Role};

/// TCP's initial window (RFC 6928: 10 segments of 1448 payload bytes).
const INITIAL_WINDOW: f64 = 10.0 * 1448.0;
/// Largest send window: Linux's default `tcp_wmem` maximum, which autotuning grows to.
const MAX_WINDOW: f64 = 4.0 * 1024.0 * 1024.0;
/// What each upload flow keeps standing in a saturated uplink's queue (BBR, behind the
/// checks' tbf): about 8 KiB plus 5 ms of the link's rate (`tools/queue_probe.py`, 6-37 KB
/// per flow from 5 to 100 Mbit/s; docs/SIMULATOR.md, "Queues").
const STANDING_BASE: f64 = 8.0 * 1024.0;
const STANDING_SECS: f64 = 0.005;
/// What a BBR sender keeps in flight beyond its minimum RTT's worth when its ACKs wait in
/// the receiver's uplink queue: about 60 KB (the probe, 57-69 KB per download flow).
const ACK_DELAYED_WINDOW: f64 = 60_000.0;
const ORIGIN_PORT: u16 = 6880;
const CLIENT_PORT: u16 = 6881;
/// Host addresses are 10.0.0.0 plus the host's index: data for the nodes, never used.
const ADDR_BASE: u32 = 0x0A00_0000;
const ORIGIN: usize = 0;
/// Most recycled control buffers kept.
const SPARE_BUFFERS: usize = 1024;
/// Larger buffers (a MANIFEST, a burst) are freed rather than kept.
const SPARE_CAPACITY: usize = 1024;

/// What the simulation of one scenario produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Piece size in bytes: the scenario's, or the automatic choice for its file size.
    pub piece_size: u32,
    /// Number of pieces in the file.
    pub pieces: u32,
    /// The origin's counters at the end of the run.
    pub origin: Counters,
    /// One per client, in the scenario's order.
    pub clients: Vec<ClientOutcome>,
    /// Agenda events handled: the simulator's own work, for scaling measurements.
    pub events: u64,
    /// Virtual time the run ended, seconds.
    pub end: f64,
    /// Every host's byte counts at regular virtual times, if asked for (`Sim::sample`).
    pub timeline: Vec<Sample>,
}

/// Every host's cumulative byte counts at one virtual time, host 0 the origin.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Virtual time, seconds.
    pub t: f64,
    /// Piece payload each host finished sending.
    pub uploaded: Vec<u64>,
    /// Verified piece payload each host received (0 for the origin).
    pub received: Vec<u64>,
    /// Each host's load at that time (`Node::load`); the default for a host not present.
    pub load: Vec<Load>,
}

/// How one client fared.
#[derive(Debug, Clone)]
pub struct ClientOutcome {
    /// Seconds from its arrival; `None` if it never completed.
    pub complete: Option<f64>,
    /// Virtual time it left; `None` if still there at the end.
    pub left: Option<f64>,
    /// Its node's counters when it left, or at the end of the run.
    pub counters: Counters,
    /// The node gave up (its one-line reason).
    pub failed: Option<String>,
    /// Seconds from arrival until a piece first streamed in (or until it left or the run
    /// ended, if none did).
    pub startup_wait: f64,
    /// Longest stretch in seconds after that, until completion (or leaving, or the end),
    /// with no piece streaming in.
    pub max_piece_gap: f64,
    /// Seconds the origin named it as taking without giving (STANDING) while it was there.
    pub named: f64,
    /// The part of `named` before it completed.
    pub named_downloading: f64,
}

/// What the simulator does next, at a virtual time.
#[derive(Debug, Clone, Copy)]
enum Ev {
    Arrive(usize),
    Tick(usize),
    Depart(usize),
    /// The dialler's SYN-ACK is back: its pipe may send.
    Established(ConnRef),
    /// The handshake reached the listener: it accepts.
    Accept(ConnRef),
    /// Nobody listens at the dialled address.
    Refused(ConnRef),
    /// The oldest item in transit on pipe `dir` reaches its receiver.
    Deliver(ConnRef, usize),
    /// A flow's queued bytes have left the sender.
    Sent(FlowId, u64),
    /// One RTT of slow start has passed on pipe `dir`.
    Ramp(ConnRef, usize),
}

/// A connection and the generation it had when the event was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnRef {
    id: usize,
    generation: u64,
}

/// What crosses a pipe.
#[derive(Debug)]
enum Item {
    Control(Vec<u8>),
    Head { piece: u32, len: u32 },
    End { piece: u32 },
    Fin,
}

#[derive(Default)]
struct Pipe {
    /// The sender may send (its end of the handshake is done).
    open: bool,
    /// Control bytes waiting for the pipe to open or for the piece ahead to finish.
    held: Vec<u8>,
    /// Piece being sent, and the flow carrying it.
    sending: Option<u32>,
    flow: Option<FlowId>,
    /// Sent and not yet arrived, with the arrival time in nanoseconds; only the oldest has
    /// an event on the agenda (one per pipe keeps the heap small).
    transit: Transit,
    /// Receiver side: where the payload of the arriving piece goes, between head and end.
    sink: Option<Sink>,
    cwnd: f64,
    ramping: bool,
}

/// Items in transit on a pipe, oldest first. Mostly there is one (a HAVE), and it is kept
/// in the pipe itself: a delivery then reads no buffer elsewhere in memory.
#[derive(Default)]
struct Transit {
    oldest: Option<(u64, Item)>,
    later: VecDeque<(u64, Item)>,
}

impl Transit {
    fn push_back(&mut self, x: (u64, Item)) {
        if self.oldest.is_none() {
            self.oldest = Some(x);
        } else {
            self.later.push_back(x);
        }
    }

    fn pop_front(&mut self) -> Option<(u64, Item)> {
        let x = self.oldest.take();
        self.oldest = self.later.pop_front();
        x
    }

    fn front(&self) -> Option<&(u64, Item)> {
        self.oldest.as_ref()
    }

    fn back(&self) -> Option<&(u64, Item)> {
        self.later.back().or(self.oldest.as_ref())
    }
}

impl Pipe {
    /// Puts `item` (pipe `dir` of connection `r`) in transit to arrive at `at`, never before
    /// an earlier item (a queue that drains does not reorder); the oldest item in transit
    /// is the one with a delivery event on the agenda.
    fn transmit(&mut self, agenda: &mut Agenda<Ev>, r: ConnRef, dir: usize, at: u64, item: Item) {
        let at = at.max(self.transit.back().map_or(0, |b| b.0));
        let first = self.transit.front().is_none();
        self.transit.push_back((at, item));
        if first {
            agenda.at_ns(at, Ev::Deliver(r, dir));
        }
    }
}

struct End {
    host: usize,
    slot: Slot,
    /// This end's node closed or left: nothing more is delivered to it.
    closed: bool,
}

struct Conn {
    generation: u64,
    /// ends[0] dialled ends[1]; pipe d carries ends[d] → ends[1 - d].
    ends: [Option<End>; 2],
    pipes: [Pipe; 2],
    rtt: f64,
    /// Round trip and one-way delay in nanoseconds, for exact event times.
    rtt_ns: u64,
    owd_ns: u64,
    /// The dialled host.
    target: usize,
}

impl Conn {
    fn end_of(&self, host: usize) -> usize {
        match &self.ends[0] {
            Some(e) if e.host == host && !e.closed => 0,
            _ => 1,
        }
    }

    /// The host at the far end of pipe `dir`, also while the handshake is under way; `None`
    /// once that end has closed.
    fn far_host(&self, dir: usize) -> Option<usize> {
        match &self.ends[1 - dir] {
            None => Some(self.target),
            Some(e) if !e.closed => Some(e.host),
            Some(_) => None,
        }
    }

    fn receiver(&self, dir: usize) -> Option<&End> {
        self.ends[1 - dir].as_ref().filter(|e| !e.closed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    NotYet,
    Here,
    Gone,
}

struct Host {
    node: Option<Node>,
    presence: Presence,
    rtt: f64,
    /// Upload capacity in payload bytes per second (for window limits).
    up: f64,
    /// The link's upload in payload bytes per second, whatever the node's pace.
    link_up: f64,
    /// Delay of a full uplink queue, nanoseconds.
    queue_ns: u64,
    listen: bool,
    max_conns: usize,
    behave: Behaviour,
    leave: Leave,
    arrive: f64,
    up_rate: UpRate,
    /// The node's pacer, while it is here and runs one (`UpRate::Auto`).
    pacer: Option<Pacer>,
    /// Slot → connection; freed slots are reused last-freed first, as a slab does.
    slots: Vec<Option<usize>>,
    /// Per slot: a piece is streaming in (the tick counts it as payload read). Kept beside
    /// `slots` so the tick need not visit every connection.
    streaming_in: Vec<bool>,
    free: Vec<Slot>,
    live: usize,
    complete: Option<f64>,
    left: Option<f64>,
    /// Slots with a piece streaming in, and since when none has (from arrival on). The
    /// first such stretch is the start-up wait; the longest one after it while incomplete
    /// is the gap (together the stall measure, docs/SIMULATOR.md "Output"): a slow piece
    /// still arriving is no stall.
    streams: usize,
    idle_since: f64,
    startup_wait: Option<f64>,
    max_piece_gap: f64,
    /// Since when the origin names it, and for how long it did before (in all, and
    /// before it completed).
    named_since: Option<f64>,
    named: f64,
    named_downloading: f64,
    counters: Counters,
    failed: Option<String>,
}

impl Host {
    /// A host on `link` that has not arrived yet (the caller makes the origin present), its
    /// links added to `net`.
    fn new(link: &LinkSpec, up_rate: UpRate, sc: &Scenario, net: &mut Network) -> Host {
        let goodput = if sc.goodput { TCP_GOODPUT } else { 1.0 };
        let up = link.up * goodput;
        // The node's own limit, when not above the link, is what its flows share: it paces
        // payload at the goodput of its rate, so at the link's rate it binds first.
        let told = up_rate.told();
        let effective = up_rate.cap(link.up) * goodput;
        net.add_host(
            effective,
            link.down.map_or(f64::INFINITY, |d| d * goodput),
            told.is_some_and(|r| r as f64 <= link.up),
        );
        Host {
            node: None,
            presence: Presence::NotYet,
            rtt: link.rtt,
            up: effective,
            link_up: up,
            queue_ns: queue_ns(link.up, sc.uplink_queue),
            listen: true,
            max_conns: max_conns_client(Config::new(Role::Client, 0).max_peers),
            behave: Behaviour::Honest,
            leave: Leave::Linger,
            arrive: 0.0,
            up_rate,
            pacer: None,
            slots: Vec::new(),
            streaming_in: Vec::new(),
            free: Vec::new(),
            live: 0,
            complete: None,
            left: None,
            streams: 0,
            idle_since: 0.0,
            startup_wait: None,
            max_piece_gap: 0.0,
            named_since: None,
            named: 0.0,
            named_downloading: 0.0,
            counters: Counters::default(),
            failed: None,
        }
    }
}

impl Host {
    /// The origin names it (or no longer does) from `now` on. Only time while it is there
    /// counts: the origin hears of a departure a one-way delay late, and may name or
    /// unname the client in between.
    fn set_named(&mut self, named: bool, now: f64) {
        let end = self.left.map_or(now, |left| left.min(now));
        match (named, self.named_since) {
            (true, None) if self.left.is_none() => self.named_since = Some(now),
            (false, Some(since)) => {
                self.named += (end - since).max(0.0);
                let done = self.complete.map_or(end, |c| (self.arrive + c).min(end));
                self.named_downloading += (done - since).max(0.0);
                self.named_since = None;
            }
            _ => {}
        }
    }

    /// Whether a piece streams in on `slot` from `now` on; a host that had none streaming
    /// in and was incomplete counts the wait (`end_wait`).
    fn set_streaming(&mut self, slot: Slot, on: bool, now: f64) {
        if self.streaming_in[slot] == on {
            return;
        }
        self.streaming_in[slot] = on;
        if on {
            self.streams += 1;
            if self.streams == 1 {
                self.end_wait(now);
            }
        } else {
            self.streams -= 1;
            if self.streams == 0 {
                self.idle_since = now;
            }
        }
    }

    /// The host stops waiting at `now` (a piece starts, or it leaves or the run ends): its
    /// first wait is the start-up, which handshakes and the senders' queues make; later
    /// ones are gaps in its supply.
    fn end_wait(&mut self, now: f64) {
        if self.complete.is_none() {
            let waited = now - self.idle_since;
            match self.startup_wait {
                None => self.startup_wait = Some(waited),
                Some(_) => self.max_piece_gap = self.max_piece_gap.max(waited),
            }
        }
    }

    /// The node just started: it paces itself if it runs a pacer.
    fn start_pacer(&mut self, now: Instant) {
        if self.up_rate == UpRate::Auto {
            self.pacer = Some(Pacer::new(now));
        }
    }
}

/// One scenario's swarm, ready to run: the origin at host 0 and each client on its own host,
/// all real `proto::Node`s stepped in virtual time over a fluid network model.
pub struct Sim {
    t0: Instant,
    now: f64,
    now_ns: u64,
    hosts: Vec<Host>,
    conns: Slab<Conn>,
    net: Network,
    agenda: Agenda<Ev>,
    /// Flow id → (connection, direction).
    flow_pipe: Vec<(usize, usize)>,
    manifest: Manifest,
    policy: crate::proto::Policy,
    next_generation: u64,
    /// Clients that neither completed nor left yet; the run ends when none is left.
    unfinished: usize,
    events: u64,
    time_limit: f64,
    changed: Vec<FlowId>,
    /// Node id of client host h at index h - 1.
    client_ids: Vec<u64>,
    /// Client host by node id, for what the origin reports about a client.
    host_of: std::collections::HashMap<u64, usize>,
    /// Control buffers that arrived, kept to carry the next ones (no allocation per frame
    /// batch).
    spare: Vec<Vec<u8>>,
    /// Scratch for a pacer's QUEUE_DELAY answers (`pace`).
    answers: Vec<Duration>,
    /// Sampling interval of the timeline, seconds, and how many samples were taken at it.
    sample_every: Option<f64>,
    samples_taken: u64,
    timeline: Vec<Sample>,
}

/// SplitMix64: node ids and piece hashes from the scenario's seed.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Piece `i`'s "hash": 32 bytes from the seed, four SplitMix64 words. The simulator's
/// files have no bytes to hash; what matters is that the manifest has its real size and
/// every run of a scenario the same one.
fn seeded_hash(seed: u64, i: u64) -> crate::manifest::Hash {
    let mut out = [0u8; 32];
    for (k, word) in out.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&mix(seed ^ (i << 20) ^ ((k as u64) << 52)).to_be_bytes());
    }
    out
}

fn addr_of(host: usize) -> SocketAddr {
    let port = if host == ORIGIN {
        ORIGIN_PORT
    } else {
        CLIENT_PORT
    };
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ADDR_BASE + host as u32)), port)
}

fn host_of(addr: SocketAddr) -> Option<usize> {
    match addr.ip() {
        IpAddr::V4(ip) => u32::from(ip).checked_sub(ADDR_BASE).map(|h| h as usize),
        IpAddr::V6(_) => None,
    }
}

impl Sim {
    /// Builds the swarm: piece hashes and node ids drawn from the scenario's seed, the origin
    /// present from time 0, each client's arrival on the agenda. Fails only if the file and piece
    /// sizes make no valid manifest.
    pub fn new(sc: &Scenario) -> Result<Sim, String> {
        let piece_size = sc.piece_size_or_auto();
        let n = crate::manifest::piece_count_for(sc.file_size, piece_size)
            .map_err(|e| e.to_string())?;
        let hashes = (0..n as u64).map(|i| seeded_hash(sc.seed, i)).collect();
        let manifest =
            Manifest::from_hashes(sc.file_size, piece_size, hashes).map_err(|e| e.to_string())?;
        let mut net = Network::default();
        let t0 = Instant::now();
        let mut hosts = Vec::with_capacity(sc.clients.len() + 1);
        let mut ids = std::collections::BTreeSet::new();
        let mut node_id = |h: usize| {
            let mut id = mix(sc.seed.wrapping_mul(0x1000_0001) ^ h as u64).max(1);
            while !ids.insert(id) {
                id = mix(id);
            }
            id
        };
        // The origin first: host 0.
        let mut origin = Host::new(&sc.origin, sc.origin_up_rate, sc, &mut net);
        let mut cfg = Config::new(Role::Origin, node_id(ORIGIN));
        cfg.listen_port = ORIGIN_PORT;
        cfg.policy = sc.policy;
        cfg.set_up_rate(sc.origin_up_rate);
        origin.node = Some(Node::origin(cfg, manifest.clone(), t0));
        origin.start_pacer(t0);
        origin.presence = Presence::Here;
        origin.max_conns = MAX_CONNS_ORIGIN;
        origin.complete = Some(0.0);
        hosts.push(origin);
        let mut agenda = Agenda::default();
        for (i, c) in sc.clients.iter().enumerate() {
            let h = i + 1;
            let mut host = Host::new(&c.link, c.up_rate, sc, &mut net);
            host.behave = c.behave;
            host.leave = c.leave;
            host.arrive = c.arrive;
            host.idle_since = c.arrive;
            hosts.push(host);
            agenda.at(c.arrive, Ev::Arrive(h));
        }
        // Node ids are drawn in host order so they do not depend on arrival order;
        // colluders' carry the tag their partners know them by.
        let client_ids: Vec<u64> = (1..hosts.len())
            .map(|h| hosts[h].behave.node_id(node_id(h)))
            .collect();
        let mut sim = Sim {
            t0,
            now: 0.0,
            now_ns: 0,
            unfinished: hosts.len() - 1,
            hosts,
            conns: Slab::new(),
            net,
            agenda,
            flow_pipe: Vec::new(),
            manifest,
            policy: sc.policy,
            next_generation: 0,
            events: 0,
            time_limit: sc.time_limit,
            changed: Vec::new(),
            host_of: client_ids
                .iter()
                .enumerate()
                .map(|(k, &id)| (id, k + 1))
                .collect(),
            client_ids,
            spare: Vec::new(),
            answers: Vec::new(),
            sample_every: None,
            samples_taken: 0,
            timeline: Vec::new(),
        };
        let first_tick = sim.node_timeout(ORIGIN);
        sim.agenda.at(first_tick, Ev::Tick(ORIGIN));
        Ok(sim)
    }
}

impl Sim {
    /// Runs to the end: every client completed or left, nothing left to happen, or the
    /// scenario's time limit.
    pub fn run(mut self) -> Outcome {
        while self.unfinished > 0 {
            let Some((at_ns, ev)) = self.agenda.pop() else {
                break;
            };
            let at = at_ns as f64 / 1e9;
            self.sample_until(at.min(self.time_limit));
            if at > self.time_limit {
                self.now = self.time_limit;
                break;
            }
            self.now = at;
            self.now_ns = at_ns;
            self.events += 1;
            self.handle(ev);
        }
        self.sample_end();
        self.finish()
    }

    /// Records the timeline up to virtual time `t` (nothing changes between events, so a
    /// sample due before the next event sees the counts as they are now).
    fn sample_until(&mut self, t: f64) {
        let Some(every) = self.sample_every else {
            return;
        };
        // The k-th sample at k times the interval: adding it up would drift (0.1 s).
        while self.samples_taken as f64 * every <= t {
            self.take_sample(self.samples_taken as f64 * every);
            self.samples_taken += 1;
        }
    }

    /// The last sample, at the end of the run, unless one was just taken then: the
    /// timeline ends with the counts the summary reports.
    fn sample_end(&mut self) {
        if self.sample_every.is_some() && self.timeline.last().is_none_or(|s| s.t < self.now) {
            self.take_sample(self.now);
        }
    }

    fn take_sample(&mut self, t: f64) {
        let counters = |h: &Host| {
            let c = h.node.as_ref().map_or(&h.counters, Node::counters);
            (c.uploaded, c.from_origin + c.from_peers)
        };
        let (uploaded, received) = self.hosts.iter().map(counters).unzip();
        let load = self
            .hosts
            .iter()
            .map(|h| h.node.as_ref().map(Node::load).unwrap_or_default())
            .collect();
        self.timeline.push(Sample {
            t,
            uploaded,
            received,
            load,
        });
    }

    /// Records every host's byte counts each `every_s` seconds of virtual time
    /// (`Outcome::timeline`). Observing changes nothing in the run.
    pub fn sample(mut self, every_s: f64) -> Sim {
        self.sample_every = Some(every_s.max(1e-3));
        self
    }

    fn instant(&self) -> Instant {
        self.t0 + Duration::from_nanos(self.now_ns)
    }

    fn node_timeout(&self, h: usize) -> f64 {
        match &self.hosts[h].node {
            Some(n) => n.poll_timeout().duration_since(self.t0).as_secs_f64(),
            None => f64::INFINITY,
        }
    }

    /// Extra delay of what leaves host `h` now: while its uplink is saturated, the bytes its
    /// flows keep standing ahead (the rest of each one's piece, at most what BBR keeps per
    /// flow) at the link's rate, at most a full tbf queue (docs/SIMULATOR.md, "Queues").
    fn queue_delay(&self, h: usize) -> u64 {
        // A node held below its link by its own rate limit queues in its token bucket, not
        // in the link's qdisc.
        if !self.net.uplink_full(h) || self.net.is_weighted(h) {
            return 0;
        }
        let host = &self.hosts[h];
        let standing = STANDING_BASE + STANDING_SECS * host.link_up;
        let flows = self.net.up_flows(h).len() as f64;
        let ahead = self.net.backlog(h, self.now).min(standing * flows) / host.link_up;
        ((ahead * 1e9) as u64).min(host.queue_ns)
    }

    /// The most a flow of connection `c`'s pipe `dir` carries while its ACKs wait in the
    /// receiver's uplink queue: BBR keeps a minimum RTT's worth of the flow's rate in flight
    /// twice over plus `ACK_DELAYED_WINDOW`, so a queue delay `q` above the round trip
    /// `rtt` leaves it `ACK_DELAYED_WINDOW / (q - rtt)`; none below.
    fn ack_bound(&self, c: usize, dir: usize) -> f64 {
        let conn = &self.conns[c];
        let Some(receiver) = conn.far_host(dir) else {
            return f64::INFINITY;
        };
        let q = self.queue_delay(receiver) as f64 * 1e-9;
        if q > conn.rtt {
            ACK_DELAYED_WINDOW / (q - conn.rtt)
        } else {
            f64::INFINITY
        }
    }

    fn live_conn(&self, r: ConnRef) -> bool {
        self.conns
            .get(r.id)
            .is_some_and(|c| c.generation == r.generation)
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrive(h) => self.arrive(h),
            Ev::Tick(h) => self.tick(h),
            Ev::Depart(h) => self.depart(h, true),
            Ev::Established(r) if self.live_conn(r) => {
                let c = &mut self.conns[r.id];
                c.pipes[0].open = true;
                if let Some(e) = &c.ends[0]
                    && !e.closed
                {
                    let (h, slot) = (e.host, e.slot);
                    self.pump(h, slot);
                    self.drain(h);
                }
            }
            Ev::Accept(r) if self.live_conn(r) => self.accept(r),
            Ev::Refused(r) if self.live_conn(r) => {
                self.close_end(r.id, 0, false, "connection refused");
            }
            Ev::Deliver(r, dir) if self.live_conn(r) => self.deliver(r, dir),
            Ev::Sent(f, generation) if self.net_flow_is(f, generation) => self.sent(f),
            Ev::Ramp(r, dir) if self.live_conn(r) => self.ramp(r, dir),
            _ => {} // an event of a connection that is gone
        }
        self.reschedule_flows();
    }

    fn net_flow_is(&self, f: FlowId, generation: u64) -> bool {
        self.flow_pipe.get(f).is_some_and(|&(c, _)| c != usize::MAX)
            && self.net.generation(f) == Some(generation)
    }

    /// New completion events for the flows whose rates moved.
    fn reschedule_flows(&mut self) {
        let mut changed = std::mem::take(&mut self.changed);
        self.net.take_changed(&mut changed);
        for &f in &changed {
            let generation = self.net.generation(f).expect("changed flows exist");
            self.agenda
                .set_keyed(f, self.net.eta(f), Ev::Sent(f, generation));
        }
        self.changed = changed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1 MB/s origin and `count` clients at 0.5 MB/s up, 5 MB/s down, arriving at
    /// `arrive_s`; every host 5 ms from the switch.
    fn small(file_size: u64, seed: u64, arrive_s: f64, count: u32) -> Scenario {
        Scenario::from_json(&format!(
            r#"{{"file_size": {file_size}, "piece_size": null, "seed": {seed}, "policy": "tft",
              "origin": {{"up": 1000000, "down": null, "rtt_ms": 5}},
              "clients": [{{"up": 500000, "down": 5000000, "arrive_s": {arrive_s},
                           "leave": "linger", "behave": "honest", "rtt_ms": 5,
                           "count": {count}}}]}}"#
        ))
        .unwrap()
    }

    /// Handles the next event on the agenda, as `run` does.
    fn step(sim: &mut Sim) {
        let (at_ns, ev) = sim.agenda.pop().expect("the run goes on");
        sim.now = at_ns as f64 / 1e9;
        sim.now_ns = at_ns;
        sim.handle(ev);
    }

    /// Items leave a pipe in the order they entered it, whether the oldest sits in the pipe
    /// or the queue behind it.
    #[test]
    fn test_transit_keeps_the_order() {
        let mut t = Transit::default();
        let mut want = std::collections::VecDeque::new();
        let mut rng = crate::proto::Rng::new(5);
        for i in 0..2_000u32 {
            if rng.below(2) == 0 {
                t.push_back((u64::from(i), Item::End { piece: i }));
                want.push_back(i);
            } else {
                let got = t.pop_front().map(|(at, _)| at as u32);
                assert_eq!(got, want.pop_front());
            }
            assert_eq!(t.front().map(|x| x.0 as u32), want.front().copied());
            assert_eq!(t.back().map(|x| x.0 as u32), want.back().copied());
        }
    }

    /// The origin's connect-back probe is answered in the simulator too: each listening
    /// client hears it is reachable, from the first seconds of its download.
    #[test]
    fn test_probes_answered_and_clients_told_they_are_reachable() {
        let sc = small(1048576, 3, 0.0, 2);
        let mut sim = Sim::new(&sc).unwrap();
        while sim.now < 0.5 {
            step(&mut sim);
        }
        for h in 1..=2 {
            let node = sim.hosts[h].node.as_ref().unwrap();
            assert_eq!(node.origin_reach_verdict(), Some(true), "client {h}");
        }
        let origin = sim.hosts[ORIGIN].node.as_ref().unwrap();
        assert_eq!(origin.probes_in_flight(), 0);
        assert_eq!(origin.counters().clients_unreachable, 0);
    }

    /// A client running its pacer gets its uplink set to the pace once its queue stood:
    /// below the link, shared by weight, and with no queue delay on what it sends.
    #[test]
    fn test_paced_client_uplink_is_its_pace_without_a_queue() {
        let mut sc = small(8388608, 4, 0.0, 4);
        for c in &mut sc.clients {
            c.up_rate = UpRate::Auto;
            // 1 Mbit/s: each flow keeps about 70 ms queued, past the pacer's target.
            c.link.up = 125_000.0;
        }
        let mut sim = Sim::new(&sc).unwrap();
        let (mut paced, mut settled) = (0, 0);
        while sim.now < 6.0 {
            step(&mut sim);
            for h in 1..=4 {
                let host = &sim.hosts[h];
                let pace = host.pacer.as_ref().and_then(Pacer::rate);
                if let Some(pace) = pace.filter(|&p| p < host.link_up) {
                    paced += 1;
                    assert!(sim.net.is_weighted(h));
                    assert_eq!(sim.queue_delay(h), 0);
                    // Never below half the smallest rate the pacer takes for a full link.
                    assert!(pace >= 16_000.0, "{pace} of {}", host.link_up);
                    // Paced just below the link it measured.
                    settled += (pace > 0.9 * host.link_up) as usize;
                }
            }
        }
        assert!(paced > 0, "no client paced itself");
        assert!(
            settled * 2 > paced,
            "{settled} of {paced} paced steps near the link"
        );
    }

    /// A client's first wait is its start-up, counted apart from the gaps after it: at
    /// least the four round trips to its first piece (connect, HELLO and MANIFEST,
    /// INTERESTED and UNCHOKE, REQUEST and PIECE), 10.2 ms each here.
    #[test]
    fn test_startup_wait_spans_the_handshake_and_counts_apart_from_gaps() {
        let sc = small(2097152, 6, 0.3, 3);
        let out = Sim::new(&sc).unwrap().run();
        for (i, c) in out.clients.iter().enumerate() {
            assert!(c.complete.is_some(), "client {i}");
            let rtt = 0.005 + 0.005 + BASE_RTT;
            assert!(
                c.startup_wait >= 4.0 * rtt,
                "client {i}: {}",
                c.startup_wait
            );
            assert!(c.startup_wait < 0.5, "client {i}: {}", c.startup_wait);
        }
    }

    /// Named time counts while the client is there, split at its completion.
    #[test]
    fn test_named_time_counts_while_there_and_before_completing() {
        let sc = small(1 << 20, 1, 2.0, 1);
        let mut net = Network::default();
        let mut host = Host::new(&sc.clients[0].link, sc.clients[0].up_rate, &sc, &mut net);
        host.arrive = 2.0;
        host.set_named(true, 3.0);
        host.set_named(false, 4.0);
        assert_eq!((host.named, host.named_downloading), (1.0, 1.0));
        // Completes (5.5 s after arriving) while named again.
        host.set_named(true, 7.0);
        host.complete = Some(5.5);
        host.set_named(false, 8.0);
        assert_eq!((host.named, host.named_downloading), (2.0, 1.5));
        // Leaves while named; the unnaming the origin sends later counts to its leaving.
        host.set_named(true, 9.0);
        host.left = Some(9.5);
        host.set_named(false, 10.0);
        assert_eq!(host.named, 2.5);
        // Named after it left (the origin had not heard yet): nothing counts.
        host.set_named(true, 11.0);
        host.set_named(false, 12.0);
        assert_eq!((host.named, host.named_downloading), (2.5, 1.5));
    }

    /// The timeline samples every host each interval and changes nothing in the run.
    #[test]
    fn test_timeline_samples_each_interval_without_changing_the_run() {
        let sc = small(4194304, 5, 0.3, 3);
        let plain = Sim::new(&sc).unwrap().run();
        let sampled = Sim::new(&sc).unwrap().sample(0.5).run();
        assert!(plain.timeline.is_empty());
        assert_eq!(plain.events, sampled.events);
        assert_eq!(plain.end, sampled.end);
        let done = |o: &Outcome| o.clients.iter().map(|c| c.complete).collect::<Vec<_>>();
        assert_eq!(done(&plain), done(&sampled));
        let tl = &sampled.timeline;
        // Each half second, and once more at the end.
        assert_eq!(tl.len(), (sampled.end / 0.5).floor() as usize + 2);
        assert_eq!(tl.last().unwrap().t, sampled.end);
        for (k, s) in tl[..tl.len() - 1].iter().enumerate() {
            assert_eq!(s.t, 0.5 * k as f64);
        }
        for pair in tl.windows(2) {
            for h in 0..4 {
                assert!(pair[1].uploaded[h] >= pair[0].uploaded[h]);
                assert!(pair[1].received[h] >= pair[0].received[h]);
            }
        }
        // Nothing before the first arrival; the origin receives nothing.
        assert!(
            tl[0]
                .uploaded
                .iter()
                .chain(&tl[0].received)
                .all(|&b| b == 0)
        );
        assert!(tl.iter().all(|s| s.received[ORIGIN] == 0));
        // The last sample holds what the run reports.
        let last = tl.last().unwrap();
        assert_eq!(last.uploaded[ORIGIN], sampled.origin.uploaded);
        for (c, client) in sampled.clients.iter().enumerate() {
            let got = client.counters.from_origin + client.counters.from_peers;
            assert_eq!(last.received[c + 1], got);
            assert_eq!(last.uploaded[c + 1], client.counters.uploaded);
        }
    }

    /// Each client hears the round trips of the connections pieces stream in on, as TCP
    /// smooths them: the wires', plus its own uplink's full queue and the far host's,
    /// where the ACKs wait. The origin, which requests nothing, is told none.
    #[test]
    fn test_clients_hear_round_trips_with_both_ends_queues() {
        let sc = small(8388608, 6, 0.0, 4);
        let mut sim = Sim::new(&sc).unwrap();
        let mut queued = 0;
        while sim.now < 3.0 {
            step(&mut sim);
            sim.feed_rtts(ORIGIN);
            let origin = sim.hosts[ORIGIN].node.as_ref().unwrap();
            for slot in (0..sim.hosts[ORIGIN].slots.len()).filter(|&s| origin.rtt(s).is_some()) {
                assert_eq!(origin.rtt(slot), Some(Duration::ZERO));
            }
            for h in 1..=4 {
                sim.feed_rtts(h);
                for (slot, c) in sim.hosts[h].slots.iter().enumerate() {
                    let (Some(c), true) = (*c, sim.hosts[h].streaming_in[slot]) else {
                        continue;
                    };
                    let conn = &sim.conns[c];
                    let far = conn
                        .far_host(conn.end_of(h))
                        .map_or(0, |f| sim.queue_delay(f));
                    let want = conn.rtt_ns + sim.queue_delay(h) + far;
                    let node = sim.hosts[h].node.as_ref().unwrap();
                    assert_eq!(node.rtt(slot), Some(Duration::from_nanos(want)));
                    queued += usize::from(want > conn.rtt_ns);
                }
            }
        }
        assert!(queued > 0, "no uplink was ever saturated");
    }

    /// A saturated uplink holds at most what BBR keeps standing per flow (and never more
    /// than the rest of the pieces, nor tbf's limit); the flows into that host carry at most
    /// `ACK_DELAYED_WINDOW` per queue delay beyond their round trip, as the probe measured.
    #[test]
    fn test_queue_holds_what_flows_keep_standing_and_bounds_the_downloads_behind_it() {
        // Clients with a 30x asymmetric link, as home links are: 0.5 MB/s up, 15 MB/s down.
        let sc = Scenario::from_json(
            r#"{"file_size": 16777216, "piece_size": null, "seed": 2, "policy": "tft",
              "origin": {"up": 5000000, "down": null, "rtt_ms": 0},
              "clients": [{"up": 500000, "down": 15000000, "count": 6}]}"#,
        )
        .unwrap();
        let mut sim = Sim::new(&sc).unwrap();
        let (mut queued, mut bound) = (0, 0);
        while sim.now < 6.0 {
            step(&mut sim);
            for h in 1..=6 {
                let q = sim.queue_delay(h) as f64 * 1e-9;
                let flows = sim.net.up_flows(h).len() as f64;
                let link = sim.hosts[h].link_up;
                let standing = (STANDING_BASE + STANDING_SECS * link) * flows / link;
                assert!(q <= standing + 1e-9, "{q} s queued behind {flows} flows");
                assert!(q <= sim.hosts[h].queue_ns as f64 * 1e-9 + 1e-9);
                queued += usize::from(q > 0.0);
            }
            for (id, &(c, k)) in sim.flow_pipe.iter().enumerate() {
                if c == usize::MAX || !sim.conns.contains(c) {
                    continue;
                }
                let conn = &sim.conns[c];
                let Some(receiver) = conn.far_host(k) else {
                    continue;
                };
                let q = sim.queue_delay(receiver) as f64 * 1e-9;
                if q > conn.rtt && sim.net.generation(id).is_some() {
                    bound += 1;
                    assert_eq!(sim.ack_bound(c, k), ACK_DELAYED_WINDOW / (q - conn.rtt));
                }
            }
        }
        assert!(queued > 0, "no uplink was ever saturated");
        assert!(bound > 0, "no flow ever ran into a queued receiver");
    }

    #[test]
    fn test_full_queue_delay_matches_tbf_limit() {
        // 20 Mbit/s: three 96 KiB bursts at 2.5 MB/s.
        assert_eq!(queue_ns(2_500_000.0, true), 117_964_800);
        // 2 Mbit/s: about 1.2 s, the deep home-link queue the checks build.
        assert_eq!(queue_ns(250_000.0, true), 1_179_648_000);
        // 1 Gbit/s: 25 ms of rate is the larger limit.
        assert_eq!(queue_ns(125_000_000.0, true), 25_000_000);
        assert_eq!(queue_ns(2_500_000.0, false), 0);
    }
}
