//! Can peers reach our listen port? A client behind NAT or a firewall advertises a port
//! nobody can connect to: it still trades through the peers it dials, but the half of its
//! peers whose dial rule says "they dial us" (docs/PROTOCOL.md §5.1: of two listening
//! clients the smaller id dials) never connect, so it gets less from peers and gives less.
//! The client says so once (`Node::listen_unreachable`).
//!
//! An origin that probes (`probe.rs`, docs/PROTOCOL.md §4.8) says which it is with
//! REACHABILITY, within seconds of registration; its verdict decides, either way, and the
//! inference below is not consulted again. An origin that does not (an older tfttp) sends
//! nothing, and the client infers it from what it was told and what arrived.
//!
//! The inference, deterministic and local:
//! - The origin introduces a newcomer in one PEERS frame (up to `MAX_ADVERTISED` = 64
//!   clients, within one frame's `MAX_PEER_ENTRIES`) and names the newcomer to each of them
//!   in a PEERS of its own. So the first PEERS a client receives is its introduction (its
//!   peers may be seeds, which tfttp before c422973 never dialled from), and every `add` after
//!   it names a client that just arrived: it is downloading, it listens (the origin names
//!   only clients that do), and it was told about us.
//! - Each such newcomer with a smaller node id than ours is *expected* to dial us.
//! - If `REACH_WAIT` after the first expected dialler was named no peer has ever opened a
//!   connection to us, our listen port is taken as unreachable. One accepted connection,
//!   whatever came of it, proves the port reachable and settles the question for good. The
//!   origin's probe is such a connection (it closes before any HELLO): it proves the port
//!   reachable from the origin's side, which is what the origin's REACHABILITY says anyway.
//!
//! It can be wrong when every expected dialler was already at `--max-peers`, or left within
//! the wait; it misses a client that is the swarm's first (the first newcomer's PEERS is
//! taken for the introduction). A client that does not listen is never warned.

use std::time::{Duration, Instant};

/// How long expected diallers get to reach us. A newcomer dials as soon as it is named
/// (one RTT) and retries after `DIAL_RETRY` (2 s); 10 s covers both with room for a loaded
/// loop, and is short against a download worth a swarm.
pub(super) const REACH_WAIT: Duration = Duration::from_secs(10);

/// What the client has seen of peers dialling it.
#[derive(Debug, Default)]
pub(super) struct Reach {
    /// The introduction (the first PEERS frame) arrived.
    introduced: bool,
    /// Newcomers named after the introduction whose smaller id makes them dial us.
    expected: u32,
    /// When the first of them was named.
    expected_since: Option<Instant>,
    /// Connections peers opened to us, over the whole run.
    inbound: u32,
    /// The inference's verdict, set once.
    unreachable: Option<Unreachable>,
    /// The origin's REACHABILITY, the first one (true: reachable).
    origin: Option<bool>,
}

/// Our listen port looks unreachable (`Node::listen_unreachable`), and who says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// The origin's connect-back probe could not connect to it (REACHABILITY 0).
    Origin,
    /// Peers that should have reached it did not (the inference).
    Inferred {
        /// Peers that were told our address and should have dialled us.
        expected: u32,
        /// How long they had.
        waited: Duration,
    },
}

impl Reach {
    /// A PEERS frame arrived naming `smaller` listening clients with ids below ours.
    pub(super) fn on_peers(&mut self, smaller: u32, now: Instant) {
        if !self.introduced {
            self.introduced = true;
            return;
        }
        if smaller > 0 {
            self.expected += smaller;
            self.expected_since.get_or_insert(now);
        }
    }

    /// A peer opened a connection to us.
    pub(super) fn on_inbound(&mut self) {
        self.inbound += 1;
    }

    /// The origin's REACHABILITY. The first one counts: an origin probes once per
    /// connection, and a reconnection's verdict adds nothing the user must hear twice.
    pub(super) fn on_origin_verdict(&mut self, reachable: bool) {
        self.origin.get_or_insert(reachable);
    }

    pub(super) fn origin_verdict(&self) -> Option<bool> {
        self.origin
    }

    /// Once per tick: decides, once, when the wait is over.
    pub(super) fn check(&mut self, now: Instant) {
        if self.unreachable.is_some() || self.inbound > 0 || self.origin.is_some() {
            return;
        }
        if let Some(since) = self.expected_since
            && now >= since + REACH_WAIT
        {
            self.unreachable = Some(Unreachable::Inferred {
                expected: self.expected,
                waited: now - since,
            });
        }
    }

    pub(super) fn verdict(&self) -> Option<Unreachable> {
        // The origin's verdict decides when there is one; it tried the port itself. A
        // peer's connection arriving after it does not withdraw it: a warning printed is
        // not unprinted, and one peer on the same network can reach what others cannot.
        match self.origin {
            Some(true) => None,
            Some(false) => Some(Unreachable::Origin),
            // An inbound connection after the inferred verdict withdraws it.
            None => self.unreachable.filter(|_| self.inbound == 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_introduction_alone_expects_nobody() {
        let (mut r, t) = (Reach::default(), Instant::now());
        r.on_peers(5, t);
        r.check(t + REACH_WAIT * 2);
        assert_eq!(r.verdict(), None);
    }

    #[test]
    fn test_newcomer_that_never_dials_gives_the_verdict_after_the_wait() {
        let (mut r, t) = (Reach::default(), Instant::now());
        r.on_peers(0, t);
        r.on_peers(1, t + Duration::from_secs(1));
        r.check(t + Duration::from_secs(10));
        assert_eq!(r.verdict(), None, "not before the wait");
        r.check(t + Duration::from_secs(11));
        assert_eq!(
            r.verdict(),
            Some(Unreachable::Inferred {
                expected: 1,
                waited: REACH_WAIT
            })
        );
    }

    #[test]
    fn test_origin_says_unreachable_at_once_without_newcomers() {
        let mut r = Reach::default();
        r.on_origin_verdict(false);
        assert_eq!(r.verdict(), Some(Unreachable::Origin));
        assert_eq!(r.origin_verdict(), Some(false));
    }

    #[test]
    fn test_origin_says_reachable_the_inference_never_fires() {
        let (mut r, t) = (Reach::default(), Instant::now());
        r.on_peers(0, t);
        r.on_peers(3, t);
        r.on_origin_verdict(true);
        r.check(t + REACH_WAIT * 3);
        assert_eq!(r.verdict(), None);
        // A later verdict (a reconnection's) does not change the first.
        r.on_origin_verdict(false);
        assert_eq!(r.verdict(), None);
    }

    #[test]
    fn test_origin_verdict_after_the_inference_replaces_it() {
        let (mut r, t) = (Reach::default(), Instant::now());
        r.on_peers(0, t);
        r.on_peers(1, t);
        r.check(t + REACH_WAIT);
        assert!(matches!(r.verdict(), Some(Unreachable::Inferred { .. })));
        r.on_origin_verdict(true);
        assert_eq!(r.verdict(), None, "the origin tried the port itself");
    }

    #[test]
    fn test_one_inbound_connection_settles_it() {
        let (mut r, t) = (Reach::default(), Instant::now());
        r.on_peers(0, t);
        r.on_peers(2, t);
        r.on_inbound();
        r.check(t + REACH_WAIT);
        assert_eq!(r.verdict(), None);
    }
}
