//! Can peers reach our listen port? A client behind NAT or a firewall advertises a port
//! nobody can connect to: it still trades through the peers it dials, but the half of its
//! peers whose dial rule says "they dial us" (docs/PROTOCOL.md §5.1: of two listening
//! clients the smaller id dials) never connect, so it gets less from peers and gives less.
//! Nothing on the wire says so (no protocol change): the client infers it from what it was
//! told and what arrived, and says so once (`Node::listen_unreachable`).
//!
//! The rule, deterministic and local:
//! - The origin introduces a newcomer in one PEERS frame (up to `MAX_ADVERTISED` = 64
//!   clients, within one frame's `MAX_PEER_ENTRIES`) and names the newcomer to each of them
//!   in a PEERS of its own. So the first PEERS a client receives is its introduction (its
//!   peers may be complete seeds, which dial nobody), and every `add` after it names a client
//!   that just arrived: it is downloading, it listens (the origin names only clients that
//!   do), and it was told about us.
//! - Each such newcomer with a smaller node id than ours is *expected* to dial us.
//! - If `REACH_WAIT` after the first expected dialler was named no peer has ever opened a
//!   connection to us, our listen port is taken as unreachable. One accepted connection,
//!   whatever came of it, proves the port reachable and settles the question for good.
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
    /// The verdict, set once.
    unreachable: Option<Unreachable>,
}

/// Peers that should have reached our listen port did not (`Node::listen_unreachable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreachable {
    /// Peers that were told our address and should have dialled us.
    pub expected: u32,
    /// How long they had.
    pub waited: Duration,
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

    /// Once per tick: decides, once, when the wait is over.
    pub(super) fn check(&mut self, now: Instant) {
        if self.unreachable.is_some() || self.inbound > 0 {
            return;
        }
        if let Some(since) = self.expected_since
            && now >= since + REACH_WAIT
        {
            self.unreachable = Some(Unreachable {
                expected: self.expected,
                waited: now - since,
            });
        }
    }

    pub(super) fn verdict(&self) -> Option<Unreachable> {
        // An inbound connection after the verdict withdraws it.
        self.unreachable.filter(|_| self.inbound == 0)
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
            Some(Unreachable {
                expected: 1,
                waited: REACH_WAIT
            })
        );
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
