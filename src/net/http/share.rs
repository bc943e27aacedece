//! How much of the origin's upload HTTP downloads may take. HTTP clients get pieces from the
//! origin alone and give nothing back, so a crowd of them must not starve the swarm, whose
//! every byte from the origin is multiplied by the clients' trading. While any TFTTP client
//! is still downloading:
//! - with `--up-rate` (the capacity is known) all HTTP connections together get at most
//!   `SHARE` of it, from a token bucket of their own, besides the node's bucket;
//! - without it, they get at most `ROUND_BUDGET` bytes per round of the event loop: a
//!   quarter of the turn the heaviest TFTTP connection gets in the same round
//!   (`TURN_QUANTUM`), so against one busy TFTTP connection HTTP is at most 20% of the bytes.
//!
//! With no TFTTP client downloading, HTTP may use the whole upload (the node's bucket still
//! applies).

use std::time::Instant;

use crate::net::conn::TURN_QUANTUM;
use crate::net::ratelimit::TokenBucket;

/// The fraction of the upload HTTP gets while the swarm downloads: one fifth keeps the
/// origin's pieces flowing to the swarm at 80% of its capacity (the swarm multiplies them)
/// while a `curl` still gets a useful rate instead of nothing.
pub(super) const SHARE: f64 = 0.2;
/// HTTP's bytes per loop round while the swarm downloads and the capacity is unknown:
/// `SHARE / (1 - SHARE)` of the largest TFTTP turn.
pub(super) const ROUND_BUDGET: usize = TURN_QUANTUM / 4;

pub(super) struct Share {
    /// `SHARE` of the node's payload rate, if it has one.
    bucket: Option<TokenBucket>,
}

impl Share {
    /// `payload_rate`: the node's upload bucket rate in payload bytes per second, if any.
    pub(super) fn new(payload_rate: Option<u64>, now: Instant) -> Share {
        let bucket = payload_rate
            .filter(|&r| r > 0)
            .map(|r| TokenBucket::new(Some(((r as f64 * SHARE) as u64).max(1)), now));
        Share { bucket }
    }

    /// Bytes all HTTP connections together may send this round; `busy` when a TFTTP
    /// client is downloading.
    pub(super) fn budget(&mut self, busy: bool, now: Instant) -> usize {
        if !busy {
            return usize::MAX;
        }
        match &mut self.bucket {
            Some(b) => b.available(now).min(ROUND_BUDGET),
            None => ROUND_BUDGET,
        }
    }

    /// `n` bytes went out while the swarm was `busy`.
    pub(super) fn consume(&mut self, n: usize, busy: bool) {
        if busy && let Some(b) = &mut self.bucket {
            b.consume(n);
        }
    }

    /// When the budget is next non-zero (now, if it never runs dry).
    pub(super) fn ready_at(&self, now: Instant) -> Instant {
        self.bucket.as_ref().map_or(now, |b| b.ready_at())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn test_idle_swarm_leaves_http_unlimited() {
        let now = Instant::now();
        let mut s = Share::new(Some(1_000_000), now);
        assert_eq!(s.budget(false, now), usize::MAX);
        assert_eq!(Share::new(None, now).budget(false, now), usize::MAX);
    }

    #[test]
    fn test_busy_swarm_without_rate_gets_a_quarter_turn() {
        let now = Instant::now();
        assert_eq!(Share::new(None, now).budget(true, now), TURN_QUANTUM / 4);
    }

    #[test]
    fn test_busy_swarm_with_rate_gets_a_fifth_over_a_second() {
        let t0 = Instant::now();
        let mut s = Share::new(Some(10_000_000), t0);
        let mut moved = 0;
        for ms in 0..1000 {
            let now = t0 + Duration::from_millis(ms);
            let n = s.budget(true, now);
            s.consume(n, true);
            moved += n;
        }
        // 2 MB/s for a second, plus the bucket's first burst.
        assert!((2_000_000..2_100_000).contains(&moved), "{moved}");
    }
}
