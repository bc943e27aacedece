//! Token bucket for `--up-rate` / `--down-rate`, consulted by the event loop before every
//! read and write. One bucket per direction per node: the limit is on the node's link, as in
//! BitTorrent clients, not per connection.

use std::time::{Duration, Instant};

/// The bucket holds this much time of its rate: 10 ms keeps bursts below what `tc tbf` and
/// switch buffers absorb, while each grant stays large enough to fill a syscall.
const BURST_SECS: f64 = 0.010;
/// Smallest bucket, so that slow limits still grant whole control frames and useful writes.
const MIN_BURST: f64 = 16.0 * 1024.0;
/// Don't wake up for fewer bytes than this (or the bucket size, if smaller).
const MIN_GRANT: f64 = 4.0 * 1024.0;

#[derive(Debug, Clone)]
pub(super) struct TokenBucket {
    /// Bytes per second; `None` is unlimited.
    rate: Option<f64>,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(super) fn new(rate: Option<u64>, now: Instant) -> TokenBucket {
        let rate = rate.filter(|&r| r > 0).map(|r| r as f64);
        let burst = rate.map_or(0.0, |r| (r * BURST_SECS).max(MIN_BURST));
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Bytes that may move now (`usize::MAX` when unlimited). Below the minimum grant this
    /// says 0, so callers wait for `ready_at` rather than trickling tiny reads and writes.
    pub(super) fn available(&mut self, now: Instant) -> usize {
        let Some(rate) = self.rate else {
            return usize::MAX;
        };
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate).min(self.burst);
        if self.tokens < MIN_GRANT.min(self.burst) {
            0
        } else {
            self.tokens as usize
        }
    }

    pub(super) fn consume(&mut self, n: usize) {
        if self.rate.is_some() {
            self.tokens -= n as f64;
        }
    }

    /// When `available` will next be non-zero.
    pub(super) fn ready_at(&self) -> Instant {
        let Some(rate) = self.rate else {
            return self.last;
        };
        let need = MIN_GRANT.min(self.burst) - self.tokens;
        if need <= 0.0 {
            return self.last;
        }
        self.last + Duration::from_secs_f64(need / rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_unlimited_always_grants() {
        let now = Instant::now();
        let mut b = TokenBucket::new(None, now);
        assert_eq!(b.available(now), usize::MAX);
        b.consume(1 << 30);
        assert_eq!(b.available(now), usize::MAX);
    }

    #[test]
    fn test_rate_over_virtual_second() {
        // Grant-and-consume in 1 ms steps for one virtual second: about `rate` bytes move.
        let t0 = Instant::now();
        let mut b = TokenBucket::new(Some(10_000_000), t0);
        let mut moved = 0usize;
        for ms in 0..1000 {
            let now = t0 + Duration::from_millis(ms);
            let n = b.available(now);
            b.consume(n);
            moved += n;
        }
        let expect = 10_000_000.0 + b.burst;
        assert!((moved as f64 - expect).abs() < 0.02 * expect, "{moved}");
    }

    #[test]
    fn test_ready_at_after_drain() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(Some(1_000_000), t0);
        let n = b.available(t0);
        b.consume(n);
        assert_eq!(b.available(t0), 0);
        let at = b.ready_at();
        assert!(at > t0);
        assert!(b.available(at + Duration::from_micros(10)) > 0);
    }
}
