//! The node's event loop: one thread, one mio `Poll`, every socket nonblocking in a slab.
//! It turns readiness into node inputs and node outputs into syscalls, and nothing else:
//! every protocol decision is the node's (`crate::proto`). An origin of several files runs
//! a node per file in use (`swarms.rs`) in the same loop; each connection belongs to one.
//!
//! Shape (after mio's `tcp_server` example): edge-triggered readiness is cached per
//! connection and consumed in turns of at most `TURN_QUANTUM` bytes from two run queues, so
//! one busy peer cannot starve the rest and a rate limit can pause a connection without
//! losing its readiness. The poll timeout is the node's next timer or the rate limiter's
//! refill, whichever is first. With `--up-rate auto` the upload bucket's rate is the
//! uplink pacer's (`pacing.rs`), sampled every 100 ms. Before each tick a client's node
//! gets the smoothed RTT from `TCP_INFO` of each connection a piece is arriving on, which
//! its request pipelines cover, and an origin's node what its connections delivered, which
//! its send slots measure the uplink by.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::bounds::payload_rate;

use super::catalog::Catalog;
use super::conn::{Conn, MIN_QUANTUM, TURN_QUANTUM, Turn};
use super::error::{RunError, StorageError, StorageErrorKind};
use super::http::HttpServer;
use super::inorder::{InOrder, OUT_TOKEN};
use super::metrics::MetricsServer;
use super::pacing::Pacing;
use super::probe::{Answer, Prober};
use super::ratelimit::TokenBucket;
use super::router::{Route, Router};
use super::socket::{self, SocketOptions};
use super::storage::{Leftover, Storage};
use super::swarms::{Swarm, Swarms, key_of};
use super::tcpinfo;
use crate::proto::{Config, Counters, Event, Link, Node, Slot, UpRate};
use crate::stats;
use crate::wire::Role;

/// Wait before trying the listener's backlog again after `accept` failed.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
const LISTENER: Token = Token(0);
/// Connection slot k is token k + FIRST_CONN; low tokens are reserved.
const FIRST_CONN: usize = 1;
/// How long to wait for queued control frames (SWARM_DONE, ERROR) to leave on exit or close.
const FLUSH_GRACE: Duration = Duration::from_secs(2);
/// How often the stats file is rewritten while running.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// The signal that stopped the loop, 0 for none: the command line exits 128 + its number,
/// as a shell reports a process killed by it.
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP.store(sig, Ordering::Relaxed);
}

/// True once a stop signal (`STOP_SIGNALS`) arrived.
pub fn stopped() -> bool {
    stop_signal().is_some()
}

/// Which stop signal arrived (one of `STOP_SIGNALS`), if one did.
pub fn stop_signal() -> Option<i32> {
    match STOP.load(Ordering::Relaxed) {
        0 => None,
        sig => Some(sig),
    }
}

/// The signals that end the loop cleanly (final stats written, a sized `.part` kept for
/// resuming, an unsized one removed) instead of killing the process mid-write: Ctrl-C,
/// `kill`, a closed terminal (SIGHUP) and Ctrl-\ (SIGQUIT, whose default also dumps core).
/// Before SIGHUP and SIGQUIT were caught they killed a `get` without its stats or cleanup.
pub const STOP_SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Catches `STOP_SIGNALS`. A SIGHUP that the parent made ignored stays ignored: that is
/// how `nohup` keeps a download running after its terminal closes.
pub fn install_signal_handlers() {
    for sig in STOP_SIGNALS {
        // SAFETY: reading a disposition writes only into `old`; the handler only stores to
        // an atomic, which is async-signal-safe.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            let ignored = libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN;
            if sig == libc::SIGHUP && ignored {
                continue;
            }
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// When to send piece payloads with `sendfile(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendfileMode {
    /// For peers not on loopback: there it saves the sender a copy per byte; on loopback it
    /// makes the receiver copy out of page-sized fragments (4x its CPU in bench/datapath.rs).
    Auto,
    /// Always, loopback included.
    On,
    /// Never: every payload is copied from the mapping with a vectored write.
    Off,
}

impl SendfileMode {
    /// Whether a connection to `peer` sends its pieces with `sendfile`.
    pub fn use_for(self, peer: SocketAddr) -> bool {
        match self {
            SendfileMode::Auto => !peer.ip().is_loopback(),
            SendfileMode::On => true,
            SendfileMode::Off => false,
        }
    }
}

/// Someone watching a run: the command line's progress lines. The driver only calls it;
/// what to print, and where, is the caller's business.
pub trait Reporter {
    /// Every period given to `Driver::set_reporter`, from the loop.
    fn tick(&mut self, driver: &Driver, now: Instant);
    /// Once, right after the complete file was verified and renamed into place.
    fn complete(&mut self, driver: &Driver, now: Instant);
    /// Once, when `run` returns, before the caller prints its own last lines.
    fn finish(&mut self, driver: &Driver, now: Instant);
    /// Once, when the manifest arrived and `part` held `left.bytes` bytes from an earlier
    /// run, of which the pieces `left.verified` verified and are kept.
    fn resumed(&mut self, _driver: &Driver, _part: &Path, _left: &Leftover) {}
}

/// How a `Driver` runs: link limits, socket tuning and where it reports. The command line
/// builds it; the node's own settings are in `proto::Config`.
pub struct Options {
    /// What paces the node's upload (`--up-rate`): a rate on the wire, so payload moves at
    /// `TCP_GOODPUT` of it; the pacer (`auto`: a little below the uplink as measured, so no
    /// queue stands in front of the node's control frames and ACKs); or nothing (`off`).
    pub up_rate: UpRate,
    /// Download limit for the whole node in bytes per second on the wire (`--down-rate`);
    /// `None` is unlimited.
    pub down_rate: Option<u64>,
    /// Socket buffer sizes for every connection, dialed or accepted.
    pub sock: SocketOptions,
    /// When to send piece payloads with `sendfile` (see `conn.rs` for when that pays).
    pub sendfile: SendfileMode,
    /// Where the stats JSON is rewritten, atomically, once a second and at exit (`--stats`).
    pub stats_path: Option<PathBuf>,
    /// Append one line of counters and load per second here (`--timeline`).
    pub timeline_path: Option<PathBuf>,
    /// Most open connections; an accept beyond it is closed at once (`MAX_CONNS_ORIGIN`,
    /// `max_conns_client`).
    pub max_conns: usize,
    /// Log connection events (dials, accepts, closes) to stderr (`--verbose`).
    pub verbose: bool,
    /// The origin's file as the user named it, for the line saying it changed (an origin
    /// of several files names each by its path).
    pub source_name: Option<String>,
}

/// The event loop of a node, or of an origin's nodes, one per file it serves: owns the
/// nodes, their storage, the listener and every connection, and turns readiness into node
/// inputs until the node exits or fails.
pub struct Driver {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    /// The nodes and their files (`swarms.rs`).
    swarms: Swarms,
    /// Origin of several files: TFTTP connections waiting for the HELLO that routes them.
    router: Option<Router>,
    /// Destination for payloads the node discards.
    scratch: Vec<u8>,
    /// Upload limit: `--up-rate`'s, the pacer's, or none.
    up: TokenBucket,
    down: TokenBucket,
    /// The uplink pacer that sets `up`'s rate (`Options::pace`).
    pacing: Option<Pacing>,
    read_q: VecDeque<Slot>,
    write_q: VecDeque<Slot>,
    /// Connections waiting for their own upload cap, with the time to resume.
    paused: Vec<(Instant, Slot)>,
    opts: Options,
    exit_by: Option<Instant>,
    /// `accept` failed (out of descriptors): try the backlog again then, since no new
    /// readiness event comes for connections already waiting in it.
    accept_retry: Option<Instant>,
    next_stats: Instant,
    /// A driver-side failure that ends the run (the output cannot be written).
    fatal: Option<StorageError>,
    /// Connections flushing before a close; the overdue scan runs only when there are any.
    closing: usize,
    timeline: Option<std::fs::File>,
    /// The caller's `Reporter`, its period and when it is due next.
    reporter: Option<Box<dyn Reporter>>,
    report_every: Duration,
    next_report: Instant,
    /// The `--metrics` endpoint, if serving one.
    metrics: Option<MetricsServer>,
    /// Origin: HTTP on the listener's port (docs/PROTOCOL.md §9.1).
    http: Option<HttpServer>,
    /// `--output -`: where the verified file goes in order.
    out: Option<InOrder>,
    /// Origin: connect-back probes of clients' listen ports (`Event::Probe`).
    probes: Prober,
    /// Probe answers not yet given to their nodes.
    answers: Vec<Answer>,
}

impl Driver {
    /// A driver for a client's `node` downloading into `storage`; `listener`, if any, is
    /// registered for accepts. Fails if the poller, that registration or the timeline file
    /// fails.
    pub fn new(
        node: Node,
        storage: Storage,
        listener: Option<TcpListener>,
        opts: Options,
    ) -> io::Result<Driver> {
        Driver::with(Swarms::one(node, storage, None), listener, opts)
    }

    /// A driver for the origin of the files in `catalog`, its nodes configured from `cfg`
    /// (`serve_name` and the nonce key are each file's own), answering HTTP on the
    /// listener's port too. With one file its node is made now and the empty HELLO path
    /// names it; with several, each file's node is made when a client or an HTTP request
    /// first names it, and connections are routed by their HELLO's path (`router.rs`).
    pub fn origin(
        catalog: Catalog,
        cfg: Config,
        listener: TcpListener,
        opts: Options,
    ) -> io::Result<Driver> {
        let now = Instant::now();
        let swarms = if catalog.len() == 1 {
            let e = catalog.get(0);
            let mut cfg = cfg;
            cfg.serve_name = e.name.clone();
            let node = Node::origin(cfg, e.manifest.clone(), now);
            let storage = catalog.open(0)?;
            Swarms::one(node, storage, Some(catalog))
        } else {
            Swarms::many(catalog, cfg, now)
        };
        let mut d = Driver::with(swarms, Some(listener), opts)?;
        let rate = d.opts.up_rate.told().map(payload_rate);
        d.http = Some(HttpServer::new(rate, d.opts.sendfile, now));
        if d.swarms.routed() {
            d.router = Some(Router::new(now));
        }
        Ok(d)
    }

    fn with(swarms: Swarms, listener: Option<TcpListener>, opts: Options) -> io::Result<Driver> {
        let poll = Poll::new()?;
        let mut listener = listener;
        if let Some(l) = listener.as_mut() {
            poll.registry().register(l, LISTENER, Interest::READABLE)?;
        }
        let now = Instant::now();
        Ok(Driver {
            poll,
            listener,
            conns: Slab::new(),
            swarms,
            router: None,
            scratch: Vec::new(),
            // The buckets count payload; the rates are the link's (what tbf and ISPs count).
            up: TokenBucket::new(opts.up_rate.told().map(payload_rate), now),
            down: TokenBucket::new(opts.down_rate.map(payload_rate), now),
            pacing: (opts.up_rate == UpRate::Auto).then(|| Pacing::new(now)),
            read_q: VecDeque::new(),
            write_q: VecDeque::new(),
            paused: Vec::new(),
            exit_by: None,
            accept_retry: None,
            next_stats: now,
            fatal: None,
            closing: 0,
            timeline: match &opts.timeline_path {
                Some(p) => Some(std::fs::File::create(p)?),
                None => None,
            },
            opts,
            reporter: None,
            report_every: STATS_EVERY,
            next_report: now,
            metrics: None,
            http: None,
            out: None,
            probes: Prober::default(),
            answers: Vec::new(),
        })
    }

    /// Calls `r` every `every` while running (the first time one period from now), when the
    /// file is complete, and when `run` returns.
    pub fn set_reporter(&mut self, every: Duration, r: Box<dyn Reporter>) {
        self.reporter = Some(r);
        self.report_every = every;
        self.next_report = Instant::now() + every;
    }

    /// Serves the node's metrics page (`crate::metrics`) over HTTP on `listener` from this
    /// loop (`--metrics`).
    pub fn serve_metrics(&mut self, listener: TcpListener) -> io::Result<()> {
        self.metrics = Some(MetricsServer::new(listener, self.poll.registry())?);
        Ok(())
    }

    /// Writes the verified file to `fd` (stdout) in order as its pieces verify, from the
    /// storage (`Storage::create_temp`); at the end `fd` is pointed at /dev/null, so its reader
    /// sees the end of the file while the node goes on serving peers (`--output -`).
    pub fn stream_output(&mut self, fd: std::os::fd::RawFd) -> io::Result<()> {
        self.out = Some(InOrder::new(fd, self.poll.registry())?);
        Ok(())
    }

    /// Every byte given to `stream_output` was written (true when there is no such output).
    pub fn output_done(&self) -> bool {
        self.out.as_ref().is_none_or(|o| o.is_done())
    }

    /// Open connections (the origin's among them, on a client).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The addresses of the open connections.
    pub fn remotes(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.conns.iter().map(|(_, c)| c.remote)
    }

    /// Runs `f` on the reporter, if any; it is lent out so that it can look at the driver.
    fn report(&mut self, f: impl FnOnce(&mut dyn Reporter, &Driver)) {
        if let Some(mut r) = self.reporter.take() {
            f(r.as_mut(), self);
            self.reporter = Some(r);
        }
    }

    /// The node, for the caller's final report: a client's, or a single file's origin's
    /// (an origin of several files reports `totals`).
    pub fn node(&self) -> &Node {
        self.swarms.first()
    }

    /// The counters of every node this driver ran, added up (one node's, for a client).
    pub fn totals(&self) -> Counters {
        self.swarms.totals()
    }

    /// Opens a connection for the client's node (to the origin, at start, or a peer it
    /// named).
    pub fn dial(&mut self, addr: SocketAddr, link: Link) {
        let now = Instant::now();
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let res = socket::connect(addr, self.opts.sock).and_then(|mut stream| {
            self.poll.registry().register(
                &mut stream,
                Token(key + FIRST_CONN),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        let sw = &mut self.swarms.live[0];
        let slot = sw.conns.insert(key);
        sw.node.handle_open(slot, link, addr, now);
        match res {
            Ok(stream) => {
                entry.insert(Conn::new(
                    stream,
                    addr,
                    (0, slot),
                    false,
                    self.opts.sendfile.use_for(addr),
                ));
            }
            Err(e) => {
                sw.conns.remove(slot);
                sw.node.handle_closed(slot, &e.to_string(), now);
            }
        }
        self.log(|| format!("dial {addr} ({}) slot {key}", link_name(link)));
    }

    /// Runs until the node exits or fails. Returns why it failed, if it did.
    pub fn run(&mut self) -> Result<(), RunError> {
        let mut events = Events::with_capacity(1024);
        let result = loop {
            if let Err(why) = self.drain_node() {
                break Err(why);
            }
            // HTTP first: its share caps it, and what it leaves the swarm takes.
            self.serve_http();
            self.serve_writes();
            if let Err(why) = self.drain_node() {
                break Err(why);
            }
            let now = Instant::now();
            if stopped() {
                break Err(RunError::Interrupted);
            }
            if let Some(e) = self.fatal.take() {
                break Err(RunError::Storage(e));
            }
            if let Some(by) = self.exit_by
                && (now >= by || !self.conns.iter().any(|(_, c)| c.has_unsent_control()))
            {
                break Ok(());
            }
            self.close_overdue(now);
            if let Some(m) = self.metrics.as_mut() {
                m.expire(self.poll.registry(), now);
            }
            if let Some(h) = self.http.as_mut() {
                h.expire(self.poll.registry(), now);
            }
            if let Some(r) = self.router.as_mut() {
                r.expire(self.poll.registry(), now);
            }
            self.probes
                .expire(self.poll.registry(), now, &mut self.answers);
            self.give_answers();
            if self.exit_by.is_none() && self.swarms.exit_due() {
                self.exit(now);
            }
            if now >= self.next_stats {
                self.next_stats = now + STATS_EVERY;
                self.swarms.check_sources(self.opts.source_name.as_deref());
                self.drop_idle(now);
                self.write_stats();
            }
            if self.reporter.is_some() && now >= self.next_report {
                self.next_report = now + self.report_every;
                self.report(|r, d| r.tick(d, now));
            }
            self.pace(now);
            let timeout = self.timeout(now);
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(RunError::Io(e)),
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    OUT_TOKEN => {
                        if let Some(o) = self.out.as_mut() {
                            o.on_writable();
                        }
                    }
                    t if MetricsServer::owns(t) => self.on_metrics(t),
                    t if HttpServer::owns(t) => self.on_http(ev),
                    t if Router::owns(t) => self.on_router(t),
                    t if Prober::owns(t) => {
                        self.probes
                            .handle(self.poll.registry(), ev, &mut self.answers)
                    }
                    Token(t) => self.mark_ready(t - FIRST_CONN, ev),
                }
            }
            if self.accept_retry.is_some_and(|at| Instant::now() >= at) {
                self.accept_retry = None;
                self.accept_all();
            }
            self.give_answers();
            let now = Instant::now();
            for (_, sw) in self.swarms.live.iter_mut() {
                if now >= sw.node.poll_timeout() {
                    feed_rtts(&mut sw.node, &sw.conns, &self.conns);
                    feed_delivered(sw, &mut self.conns);
                    sw.node.handle_tick(now);
                }
            }
            if let Err(why) = self.drain_node() {
                break Err(why);
            }
            self.serve_reads();
            self.pump_output();
        };
        let result = match result {
            Ok(()) => self.drain_output(),
            Err(e) => Err(e),
        };
        self.write_stats();
        self.report(|r, d| r.finish(d, Instant::now()));
        result
    }

    /// Hands the client's storage back (to be finished or abandoned by the caller).
    pub fn into_storage(mut self) -> Storage {
        let k = self.swarms.live.iter().next().map_or(0, |(k, _)| k);
        self.swarms.live.remove(k).storage
    }

    fn timeout(&mut self, now: Instant) -> Duration {
        let runnable =
            |q: &VecDeque<Slot>, b: &mut TokenBucket| !q.is_empty() && b.available(now) > 0;
        if runnable(&self.read_q, &mut self.down) || runnable(&self.write_q, &mut self.up) {
            return Duration::ZERO;
        }
        if self.out.as_ref().is_some_and(|o| o.due()) {
            return Duration::ZERO;
        }
        let mut at = (self.swarms.live.iter())
            .map(|(_, s)| s.node.poll_timeout())
            .min()
            .unwrap_or(now + STATS_EVERY);
        if !self.read_q.is_empty() {
            at = at.min(self.down.ready_at());
        }
        if !self.write_q.is_empty() {
            at = at.min(self.up.ready_at());
        }
        if let Some(by) = self.exit_by {
            at = at.min(by);
        }
        // The stats, the change check and dropping idle swarms are due then.
        at = at.min(self.next_stats);
        if let Some(retry) = self.accept_retry {
            at = at.min(retry);
        }
        if let Some(t) = self.probes.next_deadline() {
            at = at.min(t);
        }
        if self.reporter.is_some() {
            at = at.min(self.next_report);
        }
        if let Some(&(t, _)) = self.paused.iter().min_by_key(|p| p.0) {
            at = at.min(t);
        }
        if let Some(t) = self.http.as_ref().and_then(|h| h.next_round(now)) {
            at = at.min(t.max(self.up.ready_at()));
        }
        // With no connection nothing is delivered: an idle node need not wake to sample.
        if let Some(p) = &self.pacing
            && !self.conns.is_empty()
        {
            at = at.min(p.next_at());
        }
        at.saturating_duration_since(now)
    }

    fn accept_all(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (mut stream, addr) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of descriptors or similar: leave the rest in the backlog and come back.
                Err(e) => {
                    self.log(|| format!("accept failed: {e}"));
                    self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            };
            if let Some(h) = self.http.as_mut() {
                // The origin's port also speaks HTTP: the first byte decides (`net::http`).
                let routing = self.router.as_ref().map_or(0, |r| r.waiting());
                if self.conns.len() + h.sniffing() + routing >= self.opts.max_conns {
                    continue; // dropping the stream closes it
                }
                let _ = socket::tune_accepted(&stream, self.opts.sock);
                h.admit(self.poll.registry(), stream, addr, Instant::now());
                continue;
            }
            if self.conns.len() >= self.opts.max_conns {
                continue;
            }
            let _ = socket::tune_accepted(&stream, self.opts.sock);
            let reg = self.poll.registry().register(
                &mut stream,
                Token(self.conns.vacant_key() + FIRST_CONN),
                Interest::READABLE | Interest::WRITABLE,
            );
            if reg.is_ok() {
                self.adopt(stream, addr, 0);
            }
        }
    }

    /// Makes an accepted stream, registered under the next free key's token, a protocol
    /// connection of swarm `swarm`'s node.
    fn adopt(&mut self, stream: mio::net::TcpStream, addr: SocketAddr, swarm: usize) -> usize {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let sw = &mut self.swarms.live[swarm];
        let slot = sw.conns.insert(key);
        entry.insert(Conn::new(
            stream,
            addr,
            (swarm, slot),
            true,
            self.opts.sendfile.use_for(addr),
        ));
        sw.node
            .handle_open(slot, Link::Accepted, addr, Instant::now());
        self.log(|| format!("accepted {addr} slot {key}"));
        key
    }

    /// Readiness on an HTTP-side token; a connection whose first byte said TFTTP becomes a
    /// protocol connection, its bytes still unread (after its HELLO routed it, when the
    /// origin serves several files).
    fn on_http(&mut self, ev: &mio::event::Event) {
        let Some(h) = self.http.as_mut() else { return };
        let now = Instant::now();
        let Some((stream, addr)) = h.handle(self.poll.registry(), ev, now) else {
            return;
        };
        match self.router.as_mut() {
            Some(r) => {
                if let Some((stream, addr, route)) =
                    r.admit(self.poll.registry(), stream, addr, now)
                {
                    self.take_routed(stream, addr, route);
                }
            }
            None => self.take_tftp(stream, addr, 0),
        }
    }

    /// Readiness on a router token: a connection whose HELLO has arrived goes to its swarm.
    fn on_router(&mut self, token: Token) {
        let Some(r) = self.router.as_mut() else {
            return;
        };
        if let Some((stream, addr, route)) = r.handle(self.poll.registry(), token) {
            self.take_routed(stream, addr, route);
        }
    }

    /// Hands a routed connection to the swarm of the file its HELLO asks for (made now if
    /// needed), or to the refusing node.
    fn take_routed(&mut self, stream: mio::net::TcpStream, addr: SocketAddr, route: Route) {
        let path = match &route {
            Route::Path(p) => Some(p.as_str()),
            Route::Refuse => None,
        };
        let (swarm, failed) = self.swarms.route(path, Instant::now());
        if let Some(why) = failed {
            eprintln!("tfttp: {why}; refusing the client that asked for it");
        }
        self.log(|| format!("{addr} asks for {route:?}: swarm {swarm}"));
        self.take_tftp(stream, addr, swarm);
    }

    /// Makes a stream registered elsewhere (HTTP's sniffer, the router) a protocol
    /// connection of `swarm`; its first bytes are in the socket, their edge spent.
    fn take_tftp(&mut self, mut stream: mio::net::TcpStream, addr: SocketAddr, swarm: usize) {
        let token = Token(self.conns.vacant_key() + FIRST_CONN);
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .reregister(&mut stream, token, interest)
            .is_err()
        {
            let _ = self.poll.registry().deregister(&mut stream);
            return;
        }
        let key = self.adopt(stream, addr, swarm);
        // The readable edge was spent on the peek.
        let c = &mut self.conns[key];
        c.readable = true;
        c.in_read_q = true;
        self.read_q.push_back(key);
    }

    /// HTTP's round. It runs before the protocol's, so HTTP gets its share even when the
    /// swarm would take the whole upload; the share (`http::share`) caps it.
    fn serve_http(&mut self) {
        let Some(h) = self.http.as_mut() else { return };
        h.serve(
            self.poll.registry(),
            &mut self.swarms,
            &mut self.up,
            Instant::now(),
        );
    }

    fn mark_ready(&mut self, slot: Slot, ev: &mio::event::Event) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            c.readable = true;
            if !c.in_read_q {
                c.in_read_q = true;
                self.read_q.push_back(slot);
            }
        }
        if ev.is_writable() || ev.is_write_closed() {
            c.writable = true;
            if !c.connected {
                match c.stream.take_error() {
                    Ok(Some(e)) | Err(e) => return self.drop_conn(slot, &e.to_string()),
                    Ok(None) => {}
                }
                match c.stream.peer_addr() {
                    Ok(_) => c.connected = true,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                    Err(e) => return self.drop_conn(slot, &e.to_string()),
                }
            }
            self.queue_write(slot);
        }
    }

    fn queue_write(&mut self, slot: Slot) {
        if let Some(c) = self.conns.get_mut(slot)
            && !c.in_write_q
        {
            c.in_write_q = true;
            self.write_q.push_back(slot);
        }
    }

    /// One round over the read queue.
    fn serve_reads(&mut self) {
        for _ in 0..self.read_q.len() {
            let Some(key) = self.read_q.pop_front() else {
                break;
            };
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            c.in_read_q = false;
            if !c.readable || c.closing.is_some() {
                continue;
            }
            let now = Instant::now();
            let sw = &mut self.swarms.live[c.swarm];
            let turn = c.read_turn(
                c.slot,
                &mut sw.node,
                &mut sw.storage,
                &mut self.scratch,
                &mut self.down,
                now,
            );
            match turn {
                Turn::More | Turn::Throttled | Turn::Paused(_) => {
                    c.in_read_q = true;
                    self.read_q.push_back(key);
                    if turn == Turn::Throttled {
                        break;
                    }
                }
                Turn::Drained | Turn::Idle => c.readable = false,
                Turn::Closing => {}
                Turn::Gone(why) => self.drop_conn(key, &why),
                Turn::Fatal(why) => {
                    self.fatal = Some(why);
                    break;
                }
            }
        }
    }

    /// One round of deficit round robin over the write queue: each connection's turn is
    /// worth a quantum proportional to its upload weight, and a turn cut short by the node's
    /// rate limit resumes, with its remaining deficit, at the next wake-up. Under a rate
    /// limit an origin's quanta shrink to `TURN_SECS` of it (`turn_quantum`); a quantum too
    /// small for a payload write builds up over rounds, while control frames go at once. A
    /// limit so slow that a full turn lasts over `LONG_TURN_SECS` sends every connection's
    /// waiting control frames ahead of the turn (`send_control_first`).
    fn serve_writes(&mut self) {
        let now = Instant::now();
        let mut k = 0;
        while k < self.paused.len() {
            if self.paused[k].0 <= now {
                let (_, key) = self.paused.swap_remove(k);
                self.queue_write(key);
            } else {
                k += 1;
            }
        }
        if self
            .up
            .rate()
            .is_some_and(|r| TURN_QUANTUM as f64 / r > LONG_TURN_SECS)
        {
            self.send_control_first();
        }
        for _ in 0..self.write_q.len() {
            let Some(&key) = self.write_q.front() else {
                break;
            };
            let Some(c) = self.conns.get_mut(key) else {
                self.write_q.pop_front();
                continue;
            };
            if !c.writable || !c.connected {
                self.write_q.pop_front();
                c.in_write_q = false;
                continue;
            }
            let sw = &mut self.swarms.live[c.swarm];
            // Credit kept past a turn that sends only control frames.
            let mut credit = 0;
            if !c.in_turn {
                let max_weight = sw.node.max_upload_weight();
                // Only an origin's turns shrink: see `TURN_SECS`.
                let rate = (sw.node.role() == crate::wire::Role::Origin)
                    .then(|| self.up.rate())
                    .flatten();
                let q = turn_quantum(sw.node.upload_weight(c.slot), max_weight, rate);
                c.deficit += q;
                if c.deficit < MIN_QUANTUM {
                    // Not yet worth a payload write: what it is owed waits for the next
                    // round, and only its control frames go now (they are what a newcomer
                    // or a requester waits on; the weights ration payload).
                    let ctrl = c.control_ready(c.slot, &mut sw.node);
                    if ctrl == 0 {
                        self.write_q.rotate_left(1);
                        continue;
                    }
                    credit = c.deficit;
                    c.deficit = ctrl;
                }
                c.in_turn = true;
            }
            let now = Instant::now();
            let (turn, moved) = c.write_turn(
                c.slot,
                &mut sw.node,
                &sw.storage,
                sw.check_against.as_ref(),
                &mut self.up,
                c.deficit,
                now,
            );
            c.deficit = c.deficit.saturating_sub(moved);
            if turn == Turn::Throttled {
                // Keep the turn (and its place at the front) for the next wake-up.
                break;
            }
            self.write_q.pop_front();
            c.in_write_q = false;
            c.deficit = credit;
            c.in_turn = false;
            let flushed = c.closing.is_some() && !c.has_unsent_control();
            match turn {
                Turn::More => {
                    c.in_write_q = true;
                    self.write_q.push_back(key);
                }
                Turn::Paused(until) => self.paused.push((until, key)),
                Turn::Idle if flushed => self.drop_conn(key, "closed after error"),
                Turn::Idle | Turn::Closing | Turn::Throttled => {}
                Turn::Drained => c.writable = false,
                Turn::Gone(why) => self.drop_conn(key, &why),
                Turn::Fatal(why) => self.fatal = Some(why),
            }
        }
    }

    /// Under a rate limit so slow that a full turn lasts over `LONG_TURN_SECS`, the control
    /// frames waiting on connections other than the one whose turn it is go first (512 KiB
    /// are 4 s at 1 Mbit/s, and REQUESTs, HAVEs and a newcomer's handshake should not wait
    /// for them). Payload keeps its round-robin order; these bytes count against the bucket
    /// only.
    fn send_control_first(&mut self) {
        let now = Instant::now();
        let in_turn = self.write_q.front().copied();
        for &key in self.write_q.iter() {
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            if (Some(key) == in_turn && c.in_turn) || !c.writable || !c.connected {
                continue;
            }
            let sw = &mut self.swarms.live[c.swarm];
            c.write_control(c.slot, &mut sw.node, &mut self.up, now);
        }
    }

    fn close_overdue(&mut self, now: Instant) {
        if self.closing == 0 {
            return;
        }
        let overdue: Vec<Slot> = self
            .conns
            .iter()
            .filter(|(_, c)| c.closing.is_some_and(|t| now >= t))
            .map(|(k, _)| k)
            .collect();
        for slot in overdue {
            self.drop_conn(slot, "closed");
        }
    }

    /// Closes the connection with driver key `key`: its node hears of it with its slot.
    fn drop_conn(&mut self, key: usize, why: &str) {
        let Some(mut c) = self.conns.try_remove(key) else {
            return;
        };
        if c.closing.is_some() {
            self.closing -= 1;
        }
        if let Some(p) = self.pacing.as_mut() {
            p.closing(&mut c);
        }
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.log(|| format!("slot {key} {} closed: {why}", c.remote));
        let now = Instant::now();
        if let Some(sw) = self.swarms.live.get_mut(c.swarm) {
            sw.deliveries.close(&mut c);
            sw.conns.try_remove(c.slot);
            sw.idle_since = now;
            sw.node.handle_closed(c.slot, why, now);
        }
    }

    /// Acts on everything the nodes asked for.
    fn drain_node(&mut self) -> Result<(), RunError> {
        loop {
            let mut progress = false;
            for k in 0..self.swarms.live.capacity() {
                while let Some(sw) = self.swarms.live.get_mut(k) {
                    if let Some(ev) = sw.node.poll_event() {
                        progress = true;
                        self.on_event(k, ev)?;
                    } else if let Some(slot) = sw.node.poll_dirty() {
                        progress = true;
                        if let Some(key) = key_of(sw, slot) {
                            self.queue_write(key);
                        }
                    } else {
                        break;
                    }
                }
            }
            if !progress {
                return Ok(());
            }
        }
    }

    /// Acts on one request of swarm `k`'s node.
    fn on_event(&mut self, k: usize, ev: Event) -> Result<(), RunError> {
        let sw = &mut self.swarms.live[k];
        match ev {
            Event::Connect { addr, link } => self.dial(addr, link),
            Event::Probe { id, addr } => {
                self.log(|| format!("probing {addr} (is the client's listen port reachable?)"));
                let now = Instant::now();
                let (reg, answers) = (self.poll.registry(), &mut self.answers);
                self.probes.start(reg, (k, id, addr), now, answers);
                self.give_answers();
            }
            Event::Close { slot, flush, why } => {
                let Some(key) = key_of(sw, slot) else {
                    // Never opened in the driver (its dial failed): the node forgets it.
                    sw.node.handle_closed(slot, &why, Instant::now());
                    return Ok(());
                };
                self.log(|| format!("closing slot {key}: {why}"));
                if flush && self.conns.contains(key) {
                    self.closing += 1;
                    self.conns[key].closing = Some(Instant::now() + FLUSH_GRACE);
                    self.queue_write(key);
                } else {
                    self.drop_conn(key, "closed by node");
                }
            }
            Event::Manifest => {
                let m = sw.node.manifest().expect("event implies manifest");
                let left = sw.storage.prepare(m)?;
                let (len, n) = (m.file_len(), m.piece_count());
                if !left.verified.is_empty() {
                    sw.node.handle_resumed(&left.verified, Instant::now());
                }
                let part = sw.storage.part_name().map(Path::to_path_buf);
                self.log(|| format!("manifest: {len} bytes, {n} pieces"));
                if !left.verified.is_empty() {
                    let k = left.verified.len();
                    self.log(|| format!("resumed: {k} of {n} pieces already in the output"));
                }
                if left.bytes > 0
                    && let Some(part) = part
                {
                    self.report(|r, d| r.resumed(d, &part, &left));
                }
            }
            Event::Complete => {
                sw.storage.finish()?;
                self.write_stats();
                self.report(|r, d| r.complete(d, Instant::now()));
            }
            Event::Standing { node_id, named } => {
                let what = if named { "names" } else { "no longer names" };
                self.log(|| {
                    format!("origin {what} client {node_id:016x} as taking without giving")
                });
            }
            Event::Exit => self.exit(Instant::now()),
            Event::Fatal(why) => return Err(RunError::Failed(why)),
        }
        Ok(())
    }

    /// Hands finished probes to the nodes that asked; what they send is drained with the
    /// rest of their output.
    fn give_answers(&mut self) {
        let now = Instant::now();
        for a in std::mem::take(&mut self.answers) {
            let what = match a.reachable {
                Some(true) => "reachable",
                Some(false) => "unreachable",
                None => "not made (the origin's own error)",
            };
            self.log(|| format!("probe {} of swarm {}: {what}", a.id, a.swarm));
            if let Some(sw) = self.swarms.live.get_mut(a.swarm) {
                sw.node.handle_probe_result(a.id, a.reachable, now);
            }
        }
    }

    /// Exits once the queued control frames are out (or `FLUSH_GRACE` passed).
    fn exit(&mut self, now: Instant) {
        self.exit_by = Some(now + FLUSH_GRACE);
        for key in 0..self.conns.capacity() {
            self.queue_write(key);
        }
    }

    /// Drops the swarms idle for `swarms::IDLE_DROP` that no HTTP answer reads from.
    fn drop_idle(&mut self, now: Instant) {
        let http = self.http.as_ref();
        let n = self
            .swarms
            .drop_idle(now, |k| http.is_some_and(|h| h.reads(k)));
        if n > 0 {
            let live = self.swarms.live.len();
            self.log(|| format!("dropped {n} idle swarms, {live} live"));
        }
    }

    /// Writes newly verified bytes to the `--output -` descriptor, as far as it takes them.
    fn pump_output(&mut self) {
        let Some(o) = self.out.as_mut() else { return };
        let sw = &self.swarms.live[0];
        if let Err(e) = o.pump(&sw.node, &sw.storage, self.poll.registry()) {
            self.fatal = Some(output_error(&e));
        }
    }

    /// After the loop: the rest of the `--output -` bytes, written blocking.
    fn drain_output(&mut self) -> Result<(), RunError> {
        let Some(o) = self.out.as_mut() else {
            return Ok(());
        };
        let sw = &self.swarms.live[0];
        o.drain(&sw.node, &sw.storage, self.poll.registry())
            .map_err(|e| RunError::Storage(output_error(&e)))
    }

    /// Readiness on a metrics socket; the page is rendered only for a request that asks.
    fn on_metrics(&mut self, token: Token) {
        let Some(m) = self.metrics.as_mut() else {
            return;
        };
        let (node, conns) = (self.swarms.first(), &self.conns);
        let mut page = || crate::metrics::render(node, conns.len(), Instant::now());
        m.handle(self.poll.registry(), token, Instant::now(), &mut page);
    }

    /// Samples the uplink when due and gives the upload bucket the pacer's new rate.
    fn pace(&mut self, now: Instant) {
        let Some(p) = self.pacing.as_mut() else {
            return;
        };
        if now < p.next_at() {
            return;
        }
        let nodes = self.swarms.live.iter().map(|(_, sw)| &sw.node);
        let Some(rate) = p.sample(&mut self.conns, nodes, now) else {
            return;
        };
        self.up.set_rate(rate, now);
        let capacity = p.capacity();
        self.log(|| {
            let mb = |r: Option<f64>| r.map_or("-".into(), |r| format!("{:.3} MB/s", r / 1e6));
            format!(
                "pace: {} (uplink measured at {})",
                rate.map_or("unlimited".into(), |r| mb(Some(r))),
                mb(capacity)
            )
        });
    }

    /// The upload pace for the stats: the bucket's rate and the pacer's measure.
    fn pace_stats(&self) -> stats::Pace {
        stats::Pace {
            rate: self.up.rate(),
            capacity: self.pacing.as_ref().and_then(Pacing::capacity),
            queue_delay: self.pacing.as_ref().and_then(Pacing::queue_delay),
        }
    }

    /// Rewrites the stats file (and a timeline row): one node's, or for an origin of
    /// several files, the totals over all of them.
    fn write_stats(&mut self) {
        let node = self.swarms.first();
        let pace = self.pace_stats();
        if let Some(f) = self.timeline.as_mut() {
            use std::io::Write;
            let _ = f.write_all(stats::timeline_row(node, &pace, Instant::now()).as_bytes());
        }
        if let Some(path) = &self.opts.stats_path {
            let json = match &self.swarms.catalog {
                Some(c) if self.swarms.routed() => {
                    let live = self.swarms.live.len() - 1;
                    let totals = self.swarms.totals();
                    stats::many_json(node, &totals, c.len(), live, &pace, Instant::now())
                }
                _ => stats::to_json(node, &pace, Instant::now()),
            };
            if let Err(e) = stats::write_atomic(path, &json) {
                eprintln!("tfttp: cannot write stats to {}: {e}", path.display());
            }
        }
    }

    /// A `-v` line, stamped with seconds since the node started so a log reads as a timeline.
    fn log(&self, msg: impl FnOnce() -> String) {
        if self.opts.verbose {
            let t = self.swarms.first().started_at().elapsed().as_secs_f64();
            eprintln!("tfttp: [{t:9.3}] {}", msg());
        }
    }
}

/// Writing to the `--output -` descriptor failed (its reader went away, or a disk filled).
fn output_error(e: &io::Error) -> StorageError {
    StorageError::io(StorageErrorKind::Write, "cannot write to stdout".into(), e)
}

/// How a `-v` line names a connection: a peer by its id in hex, as ids are random bits.
fn link_name(link: Link) -> String {
    match link {
        Link::ToOrigin => "origin".into(),
        Link::ToPeer { node_id } => format!("peer {node_id:016x}"),
        Link::Accepted => "accepted".into(),
    }
}

/// How long the heaviest connection's upload turn lasts at most at an origin's rate limit.
/// A round then takes about this per busy heavy connection, so a newcomer's MANIFEST, its
/// UNCHOKE and its first piece wait a fraction of a second each, not the 2 s that a
/// 512 KiB quantum holds a 2 Mbit/s uplink (README, "Stalls"). Limits above 21 Mbit/s keep
/// the full quantum. Clients keep it at any limit: on the emulated network, clients told
/// 5 and 10 Mbit/s finished 5% later on average with 200 ms turns (20 ms: 7%), and no
/// newcomer waits on them.
const TURN_SECS: f64 = 0.2;

/// A node whose full turn (`TURN_QUANTUM`) lasts longer than this at its rate limit (below
/// about 4.2 Mbit/s) sends its waiting control frames ahead of the turn
/// (`send_control_first`). Told 1 Mbit/s, clients finished 7% sooner with it (the README's
/// *slow-origin-uprate*); for every told node it cost clients told 5-100 Mbit/s 6%
/// (*spread20-uprate*), whose turns last under a second.
const LONG_TURN_SECS: f64 = 1.0;

/// The quantum of a turn under the upload `rate` (`None`: unlimited): `quantum`, scaled so
/// that the heaviest connection's turn lasts at most `TURN_SECS` of the rate. The weights'
/// ratios are kept (quanta below `MIN_QUANTUM` build up over rounds).
fn turn_quantum(weight: f64, max: f64, rate: Option<f64>) -> usize {
    let scale = rate.map_or(1.0, |r| (r * TURN_SECS / TURN_QUANTUM as f64).min(1.0));
    ((quantum(weight, max) as f64 * scale) as usize).max(1)
}

/// A connection's deficit-round-robin quantum for `weight` when the heaviest is `max` (also
/// the simulator's share weight for a node whose own rate limit is its bottleneck).
pub(crate) fn quantum(weight: f64, max: f64) -> usize {
    if weight <= 0.0 || max <= 0.0 {
        return MIN_QUANTUM;
    }
    ((TURN_QUANTUM as f64 * weight / max) as usize).clamp(MIN_QUANTUM, TURN_QUANTUM)
}

/// An origin's node sees what its connections delivered in all (`Node::handle_delivered`):
/// its send slots measure the uplink by it, not by pieces finished, whose last bytes leave
/// together when many share the uplink. One `getsockopt` per connection per tick; a
/// client's node measures nothing by it. Until a reading has succeeded (a kernel without
/// `tcpi_min_rtt`, before Linux 4.10, fails every one) the node keeps counting pieces
/// written, rather than read an uplink that delivers nothing.
fn feed_delivered(sw: &mut Swarm, conns: &mut Slab<Conn>) {
    if sw.node.role() != Role::Origin {
        return;
    }
    let mut delivered = sw.deliveries.closed();
    for (_, &key) in sw.conns.iter() {
        if let Some(c) = conns.get_mut(key) {
            delivered += sw.deliveries.read(c);
        }
    }
    if sw.deliveries.read_once() {
        sw.node.handle_delivered(delivered);
    }
}

/// Gives `node` the smoothed RTT from `TCP_INFO` of each socket a piece is arriving on,
/// which its request pipelines cover (they scale the rate from that peer, so the others
/// need none, and an origin, which receives no pieces, reads no socket; the simulator does
/// the same). A socket without an RTT sample yet, or whose reading fails, keeps the last one.
fn feed_rtts(node: &mut Node, slots: &Slab<usize>, conns: &Slab<Conn>) {
    for (slot, &key) in slots.iter() {
        let Some(c) = conns.get(key).filter(|c| c.receiving_piece()) else {
            continue;
        };
        if let Some(rtt) = tcpinfo::read(c.fd()).ok().and_then(|i| i.srtt()) {
            node.handle_rtt(slot, rtt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unlimited, a turn is worth the full quantum; at 2 Mbit/s the heaviest turn lasts
    /// `TURN_SECS`, not the 2 s of a 512 KiB quantum, and the weights keep their ratios.
    #[test]
    fn test_turn_quantum_lasts_turn_secs_of_a_slow_limit() {
        assert_eq!(turn_quantum(1.0, 1.0, None), TURN_QUANTUM);
        assert_eq!(turn_quantum(1.0, 1.0, Some(1e9)), TURN_QUANTUM);
        let rate = 250_000.0;
        let heavy = turn_quantum(1.0, 1.0, Some(rate));
        assert_eq!(heavy, (rate * TURN_SECS) as usize);
        let half = turn_quantum(0.5, 1.0, Some(rate));
        assert!(
            (half as f64 / heavy as f64 - 0.5).abs() < 0.01,
            "{half} of {heavy}"
        );
        // The lightest keeps its 1:128 share of the heaviest's, below a write's worth.
        let light = turn_quantum(0.0, 1.0, Some(rate));
        assert_eq!(light, heavy * MIN_QUANTUM / TURN_QUANTUM);
        assert!(light < MIN_QUANTUM);
    }
}
