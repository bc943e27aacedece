//! Token bucket for `--up-rate` / `--down-rate`, consulted by the event loop before every
//! read and write. One bucket per direction per node: the limit is on the node's link, as in
//! BitTorrent clients, not per connection. With `--up-rate auto` the upload bucket's rate is
//! the pacer's, and changes while running (`set_rate`).

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
        let burst = burst_of(rate);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Bytes per second from `now` on (`None`, zero or not finite: unlimited). The tokens
    /// earned at the old rate are kept up to the new burst, so a lower rate cannot release
    /// the old one's larger burst; a bucket that was unlimited starts full, as a new one does.
    pub(super) fn set_rate(&mut self, rate: Option<f64>, now: Instant) {
        let rate = rate.filter(|r| r.is_finite() && *r > 0.0);
        let was_unlimited = self.rate.is_none();
        if !was_unlimited {
            self.available(now);
        }
        self.rate = rate;
        self.burst = burst_of(rate);
        self.tokens = if was_unlimited {
            self.burst
        } else {
            self.tokens.min(self.burst)
        };
        self.last = now;
    }

    /// Bytes per second, `None` when unlimited.
    pub(super) fn rate(&self) -> Option<f64> {
        self.rate
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

/// The bucket's size for `rate` (0 when unlimited: nothing is counted).
fn burst_of(rate: Option<f64>) -> f64 {
    rate.map_or(0.0, |r| (r * BURST_SECS).max(MIN_BURST))
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

    /// Grant-and-consume in 1 ms steps for `ms` milliseconds from `t0`: the bytes moved.
    fn drain_for(b: &mut TokenBucket, t0: Instant, ms: u64) -> usize {
        let mut moved = 0;
        for k in 1..=ms {
            let n = b.available(t0 + Duration::from_millis(k));
            b.consume(n);
            moved += n;
        }
        moved
    }

    #[test]
    fn test_set_rate_lower_keeps_tokens_within_the_new_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(Some(100_000_000), t0);
        assert_eq!(b.available(t0), 1_000_000, "10 ms of 100 MB/s");
        b.set_rate(Some(1_000_000.0), t0);
        assert_eq!(b.rate(), Some(1_000_000.0));
        assert_eq!(b.available(t0), MIN_BURST as usize);
        let moved = drain_for(&mut b, t0, 1000);
        assert!(
            (moved as f64 - 1_000_000.0).abs() < 0.03 * 1_000_000.0,
            "{moved}"
        );
    }

    #[test]
    fn test_set_rate_keeps_a_debt() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(Some(1_000_000), t0);
        let n = b.available(t0);
        b.consume(n + 8192);
        b.set_rate(Some(2_000_000.0), t0);
        assert_eq!(b.available(t0), 0, "the overdraft is still owed");
    }

    #[test]
    fn test_set_rate_from_and_to_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(None, t0);
        b.consume(1 << 30);
        let t1 = t0 + Duration::from_secs(5);
        b.set_rate(Some(1_000_000.0), t1);
        // Starts full, like a new bucket, and is not charged for the unlimited past.
        assert_eq!(b.available(t1), MIN_BURST as usize);
        assert!(b.ready_at() <= t1);
        b.set_rate(None, t1);
        assert_eq!(b.rate(), None);
        assert_eq!(b.available(t1), usize::MAX);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            b.set_rate(Some(bad), t1);
            assert_eq!(b.available(t1), usize::MAX, "{bad}");
        }
    }
}
