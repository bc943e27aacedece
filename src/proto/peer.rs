//! What the core knows about one connection: the remote's handshake and pieces, the
//! requests in each direction and the control bytes waiting to be sent.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::node::Link;
use super::oneway::BaseDelay;
use crate::bitfield::Bitfield;
use crate::wire::{Hello, NONCE_LEN};

/// Weight of the newest piece in `Peer::piece_secs`.
const PIECE_TIME_ALPHA: f64 = 0.5;

/// One request we sent and have not had answered.
#[derive(Debug, Clone, Copy)]
pub(super) struct Asked {
    pub piece: u32,
    pub at: Instant,
    /// We sent CANCEL for it (its copy is arriving elsewhere); the answer is still awaited.
    pub cancelled: bool,
}

#[derive(Debug)]
pub(super) struct Peer {
    pub link: Link,
    pub remote: SocketAddr,
    pub opened_at: Instant,
    /// Their HELLO, once received (without its path).
    pub hello: Option<Hello<'static>>,
    /// The path their HELLO asked for, kept only until the handshake is done.
    pub path: String,
    /// Our nonce in the HELLO on this connection: their AUTH tag must cover it.
    pub nonce: [u8; NONCE_LEN],
    /// The handshake is done: their HELLO was accepted and, in a swarm with a secret,
    /// their AUTH verified. Until then nothing but AUTH and ERROR is accepted from them and
    /// nothing but HELLO and AUTH is sent to them.
    pub admitted: bool,
    /// Handshake done both ways: we have their BITFIELD.
    pub ready: bool,
    /// Client: our BITFIELD went out on this connection, so a HAVE may follow it, whether or
    /// not theirs has arrived. (The origin sends its BITFIELD with the manifest and announces
    /// nothing after it.)
    pub sent_bitfield: bool,
    /// The core asked the driver to close this connection; ignore further input.
    pub closing: bool,
    /// Their pieces (empty until the manifest is known).
    pub has: Bitfield,
    /// How many pieces they hold, as they told us: their BITFIELD's, one more per new HAVE,
    /// and their PROGRESS, which also counts the HAVEs they did not send us (§4.11). `has`
    /// may lack those: they are pieces we held when they got them.
    pub held: u32,
    /// How many pieces we hold, as we told them (BITFIELD, HAVEs, PROGRESS).
    pub told: u32,
    /// They sent PROGRESS: they take it in place of a HAVE of a piece they announced.
    pub takes_progress: bool,
    /// Pieces they have that we lack; interest is `useful > 0`.
    pub useful: u32,
    pub am_interested: bool,
    pub peer_choking: bool,
    /// Our unanswered requests to them, oldest first.
    pub asked: Vec<Asked>,
    /// The piece whose payload is arriving now, with the time we asked for it.
    pub receiving: Option<Asked>,
    /// Their requests to us, in arrival order (answered in order, BEP 6 style).
    pub queue: VecDeque<u32>,
    /// A piece we handed the driver for them is still being written.
    pub sending: bool,
    /// Origin only: when the piece being written was handed to the driver.
    pub sending_since: Option<Instant>,
    /// Origin only: that piece holds one of the origin's send slots (a piece sent again
    /// past a full window holds none).
    pub holds_send_slot: bool,
    /// Origin only: pieces sent to this client that it has not announced with HAVE yet.
    pub in_flight: Vec<u32>,
    /// Origin only: pieces of `in_flight` the client has announced so far; its send
    /// window grows by each (`Node::send_window`).
    pub acked: u32,
    /// Origin only: pieces sent again by index, past a full window, since the client last
    /// announced one on its way; at most `INITIAL_WINDOW_PIECES`.
    pub resent: u32,
    /// Origin only: a piece sent to this client and when its last byte left, until the
    /// client announces it: the time between is a round trip as the origin's sends see it
    /// (`Node::time_round_trip`). One at a time.
    pub timed: Option<(u32, Instant)>,
    /// Origin only: the client was announced to the swarm and its pieces counted.
    pub registered: bool,
    /// Origin only: the connect-back probe of its listen port failed, so it is named to no
    /// one, like a client that does not listen (`listen_addr`).
    pub unreachable: bool,
    /// Origin only: the clients (slot, node id) this one was introduced to or told about;
    /// they hear when it leaves.
    pub acquaintances: Vec<(usize, u64)>,
    /// The picker found nothing to ask them for as of this `Picker::pick_unless_dry` mark.
    pub dry: Option<u64>,
    /// Don't request from this peer before this time (after an unexpected REJECT).
    pub backoff_until: Option<Instant>,
    /// Encoded control frames for the driver to send.
    pub outbox: Vec<u8>,
    /// REJECTs in `outbox`, not yet taken by the driver (which takes it only once the
    /// socket took what it took before).
    pub unread_rejects: usize,
    /// Listed in the node's dirty list.
    pub dirty: bool,
    pub last_recv: Instant,
    /// Last payload bytes from them (any piece, also one we discard).
    pub last_data: Instant,
    pub last_send: Instant,
    /// The transport's smoothed round-trip time on this connection (`Node::handle_rtt`):
    /// what a request waits in both directions' queues and wires before its answer starts.
    pub rtt: Duration,
    /// How long a piece from them takes once they start on it, smoothed: from our request,
    /// or from the end of their previous piece to us if later, to its last byte. `None`
    /// until the first piece arrives.
    pub piece_secs: Option<f64>,
    /// When their last piece to us ended (`note_piece_time`'s start for the next).
    last_piece_end: Option<Instant>,
    /// The one-way delay of their STAMPs without queues (docs/PROTOCOL.md §4.10).
    pub stamp_base: BaseDelay,
    /// Their latest QUEUE_DELAY answer to our STAMPs, and when it arrived.
    pub queue_delay: Option<(Duration, Instant)>,
    /// STAMPs we sent them that they have not answered: an answer beyond them is ignored.
    pub stamps_unanswered: u32,
}

impl Peer {
    pub(super) fn new(
        link: Link,
        remote: SocketAddr,
        nonce: [u8; NONCE_LEN],
        now: Instant,
    ) -> Peer {
        Peer {
            link,
            remote,
            opened_at: now,
            hello: None,
            path: String::new(),
            nonce,
            admitted: false,
            ready: false,
            sent_bitfield: false,
            closing: false,
            has: Bitfield::new(0),
            held: 0,
            told: 0,
            takes_progress: false,
            useful: 0,
            am_interested: false,
            peer_choking: true,
            asked: Vec::new(),
            receiving: None,
            queue: VecDeque::new(),
            sending: false,
            sending_since: None,
            holds_send_slot: false,
            in_flight: Vec::new(),
            acked: 0,
            resent: 0,
            timed: None,
            registered: false,
            unreachable: false,
            acquaintances: Vec::new(),
            dry: None,
            backoff_until: None,
            outbox: Vec::new(),
            rtt: Duration::ZERO,
            piece_secs: None,
            last_piece_end: None,
            stamp_base: BaseDelay::default(),
            queue_delay: None,
            stamps_unanswered: 0,
            unread_rejects: 0,
            dirty: false,
            last_recv: now,
            last_data: now,
            last_send: now,
        }
    }

    /// A piece we asked for at `asked_at` ended now: fold its time into `piece_secs`.
    pub(super) fn note_piece_time(&mut self, asked_at: Instant, now: Instant) {
        let start = self
            .last_piece_end
            .map_or(asked_at, |end| end.max(asked_at));
        let took = now.saturating_duration_since(start).as_secs_f64();
        self.piece_secs = Some(match self.piece_secs {
            Some(s) => s + PIECE_TIME_ALPHA * (took - s),
            None => took,
        });
        self.last_piece_end = Some(now);
    }

    /// A request may go to them now: the handshake is done, they do not choke us and we
    /// are not backing off after a REJECT.
    pub(super) fn may_ask(&self, now: Instant) -> bool {
        self.ready
            && !self.closing
            && !self.peer_choking
            && self.backoff_until.is_none_or(|t| now >= t)
    }

    /// They serve us (a request out or a piece arriving) at a known pace: their pieces per
    /// second count in `Node::tail_budget_secs`.
    pub(super) fn counts_in_tail_budget(&self) -> bool {
        (!self.asked.is_empty() || self.receiving.is_some()) && self.piece_secs.is_some()
    }

    /// When a request sent to them now would end: after the pieces asked before it, each
    /// at their recent pace; `None` while their pace is unknown.
    pub(super) fn expected_secs(&self) -> Option<f64> {
        let ahead = self.asked.len() + self.receiving.is_some() as usize + 1;
        self.piece_secs.map(|s| ahead as f64 * s)
    }

    pub(super) fn is_origin_link(&self) -> bool {
        matches!(self.link, Link::ToOrigin)
    }

    /// When we started waiting on them: our oldest request unanswered or arriving.
    ///
    /// O(1), as every tick asks it of every peer: `asked` is oldest first (each request is
    /// pushed at the node's current time, which never goes back, and removals keep the
    /// order), so its first entry is its oldest. Equal to `waiting_since_scan`.
    pub(super) fn waiting_since(&self) -> Option<Instant> {
        debug_assert!(
            self.asked.is_sorted_by_key(|a| a.at),
            "asked is oldest first"
        );
        self.asked
            .first()
            .into_iter()
            .chain(&self.receiving)
            .map(|a| a.at)
            .min()
    }

    /// `waiting_since` by a scan of every request: what the O(1) version must equal.
    #[cfg(test)]
    fn waiting_since_scan(&self) -> Option<Instant> {
        self.asked.iter().chain(&self.receiving).map(|a| a.at).min()
    }

    pub(super) fn node_id(&self) -> Option<u64> {
        self.hello.map(|h| h.node_id)
    }

    /// Where the remote accepts peers: its address with the port from its HELLO, unless
    /// it does not listen or the origin found that port unreachable.
    pub(super) fn listen_addr(&self) -> Option<SocketAddr> {
        let port = self.hello?.listen_port;
        (port != 0 && !self.unreachable).then(|| SocketAddr::new(self.remote.ip(), port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Requests pushed as the node does (at its current time, which only moves on) and
    /// removed from anywhere, with a piece arriving or not: the O(1) `waiting_since` always
    /// equals the scan of every request.
    #[test]
    fn test_waiting_since_equals_scan_of_all_requests() {
        let t0 = Instant::now();
        let addr = SocketAddr::from(([10, 0, 0, 1], 6881));
        let mut p = Peer::new(Link::ToOrigin, addr, [0; NONCE_LEN], t0);
        let mut rng = super::super::rng::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move |n: u64| rng.below(n as u32) as u64;
        let mut now = t0;
        assert_eq!(p.waiting_since(), None);
        for step in 0..10_000u32 {
            now += Duration::from_millis(next(3));
            match next(5) {
                0 | 1 if p.asked.len() < 40 => p.asked.push(Asked {
                    piece: step,
                    at: now,
                    cancelled: false,
                }),
                2 if !p.asked.is_empty() => {
                    // A PIECE begins: its request moves to `receiving` (pieces.rs).
                    let a = p.asked.remove(next(p.asked.len() as u64) as usize);
                    p.receiving = Some(a);
                }
                3 if !p.asked.is_empty() => {
                    // A REJECT, or the request answered by another copy.
                    p.asked.remove(next(p.asked.len() as u64) as usize);
                }
                _ => p.receiving = None,
            }
            assert_eq!(p.waiting_since(), p.waiting_since_scan(), "step {step}");
        }
    }
}
