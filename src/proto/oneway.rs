//! One-way queue delay from STAMP frames (docs/PROTOCOL.md §4.10): what a receiver measures
//! on one connection, and what a sender makes of its receivers' answers.
//!
//! Why one-way: a node's own uplink queue (a modem's, or `tc tbf`'s) and the backlog in its
//! sockets delay everything it sends. A round trip measured at the sender also holds the
//! queue its peer's ACKs wait in, which in a swarm whose uplinks are all busy is as long as
//! the sender's own and does not shrink when the sender paces itself (README, "The node's
//! own uplink queue"). The receiver of a piece can instead see how much later than usual it
//! arrives, LEDBAT's measure (RFC 6817): the two clocks' offset is unknown but constant, so
//! what a sample adds over the smallest one seen is queueing on the way.

use std::time::{Duration, Instant};

/// The base is the smallest sample of the last `BUCKETS` × `BUCKET_LEN` (RFC 6817's base
/// delay history, with shorter buckets): old enough to have seen an empty queue, young
/// enough that a drifting clock or a new route does not leave it stale.
const BUCKETS: usize = 4;
const BUCKET_LEN: Duration = Duration::from_secs(30);

/// A pacer's sample counts the answers that arrived within this: a slow uplink sends a
/// few pieces per second, so one 100 ms sample's answers alone are too few for a median.
pub(super) const ANSWERS_WITHIN: Duration = Duration::from_millis(500);

/// The receiver's side: the base one-way delay of one connection's STAMPs.
#[derive(Debug, Clone)]
pub(super) struct BaseDelay {
    /// Smallest raw sample of each bucket, `i64::MAX` for none; `current` is filling.
    mins: [i64; BUCKETS],
    current: usize,
    bucket_started: Option<Instant>,
}

impl Default for BaseDelay {
    fn default() -> BaseDelay {
        BaseDelay {
            mins: [i64::MAX; BUCKETS],
            current: 0,
            bucket_started: None,
        }
    }
}

impl BaseDelay {
    /// Adds the raw sample `raw` (the receiver's clock minus the STAMP's, microseconds,
    /// offset unknown) taken at `now`, and returns how far above the base it lies.
    pub(super) fn excess(&mut self, now: Instant, raw: i64) -> Duration {
        match self.bucket_started {
            None => self.bucket_started = Some(now),
            Some(start) => {
                let idle = now.saturating_duration_since(start);
                // One bucket per BUCKET_LEN passed, all of them after a long silence.
                let passed = (idle.as_secs_f64() / BUCKET_LEN.as_secs_f64()) as usize;
                for _ in 0..passed.min(BUCKETS) {
                    self.current = (self.current + 1) % BUCKETS;
                    self.mins[self.current] = i64::MAX;
                }
                if passed > 0 {
                    self.bucket_started = Some(now);
                }
            }
        }
        let slot = &mut self.mins[self.current];
        *slot = (*slot).min(raw);
        let base = self.mins.iter().copied().min().unwrap_or(raw);
        Duration::from_micros(raw.saturating_sub(base).max(0) as u64)
    }
}

/// The sender's reading of its own queue from its receivers' latest answers: their median
/// (the lower one of an even count). A receiver's busy downlink, or a connection opened
/// while the queue already stood (whose base holds it), moves one answer; the node's own
/// queue moves them all. `None` for no answers.
pub(super) fn median_delay(answers: &mut [Duration]) -> Option<Duration> {
    if answers.is_empty() {
        return None;
    }
    let mid = (answers.len() - 1) / 2;
    Some(*answers.select_nth_unstable(mid).1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn test_excess_counts_from_the_smallest_sample_whatever_the_clocks_offset() {
        let t = Instant::now();
        let mut b = BaseDelay::default();
        // The sender's clock is 5 s ahead: raw samples are negative.
        let offset = -5_000_000;
        assert_eq!(b.excess(t, offset + 20_000), ms(0));
        assert_eq!(b.excess(t + ms(100), offset + 470_000), ms(450));
        assert_eq!(b.excess(t + ms(200), offset + 15_000), ms(0));
        assert_eq!(b.excess(t + ms(300), offset + 115_000), ms(100));
    }

    #[test]
    fn test_base_forgets_samples_older_than_its_history() {
        let t = Instant::now();
        let mut b = BaseDelay::default();
        b.excess(t, 1_000);
        // Within the history the old minimum holds.
        assert_eq!(b.excess(t + BUCKET_LEN * 2, 41_000), ms(40));
        // Past it (the clock drifted 40 ms) the newer samples are the base.
        let later = t + BUCKET_LEN * (BUCKETS as u32 + 1);
        assert_eq!(b.excess(later, 41_000), ms(0));
        assert_eq!(b.excess(later + ms(10), 51_000), ms(10));
    }

    #[test]
    fn test_excess_of_a_hostile_stamp_saturates_instead_of_overflowing() {
        let t = Instant::now();
        let mut b = BaseDelay::default();
        b.excess(t, i64::MIN);
        assert_eq!(b.excess(t, i64::MAX), Duration::from_micros(u64::MAX / 2));
    }

    #[test]
    fn test_median_delay_is_the_middle_answer_or_the_lower_of_two() {
        assert_eq!(median_delay(&mut []), None);
        assert_eq!(median_delay(&mut [ms(7)]), Some(ms(7)));
        // One receiver's downlink queue (900) and one stale base (0) move nothing.
        assert_eq!(
            median_delay(&mut [ms(900), ms(0), ms(300), ms(310), ms(290)]),
            Some(ms(300))
        );
        assert_eq!(median_delay(&mut [ms(40), ms(10)]), Some(ms(10)));
    }
}
