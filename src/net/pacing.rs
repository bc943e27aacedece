//! The driver's half of `--up-rate auto`: every `SAMPLE_EVERY` it reads `TCP_INFO` of each
//! connection (`tcpinfo.rs`), hands the sans-IO `proto::Pacer` what the uplink delivered and
//! how long the node's own queue holds a segment, and reports the pacer's new rate for the
//! upload bucket.
//!
//! The queue delay is the *smallest* excess RTT among the connections that delivered in the
//! sample: the node's own uplink queue delays all of them, while a peer's downlink queue, or
//! the queue its ACKs wait in, delays only that peer's connection. The excess is counted
//! from the smallest RTT any connection of the node has seen, not each connection's own
//! minimum: a connection opened while the uplink was already queued (a swarm starts all at
//! once) has that queue in its minimum, and on the emulated network the 5 Mbit/s clients'
//! own minimums were 110-190 ms, hiding the whole queue. The cost: with peers near and
//! far, a far peer's RTT alone reads as a queue (the pacer's undo then raises its floor).

use std::time::{Duration, Instant};

use slab::Slab;

use super::conn::Conn;
use super::tcpinfo::{self, TcpInfo};
use crate::proto::Pacer;

/// How often the connections are read: the pacer's step (its samples must be at least
/// 80 ms apart), one `getsockopt` per connection each time.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The pacer and what it has been fed.
pub(super) struct Pacing {
    pacer: Pacer,
    /// TCP payload acknowledged by peers, summed over every connection the driver has had.
    delivered: u64,
    /// The smallest RTT any connection has seen: the round trip without queues.
    base_rtt: Duration,
    next_at: Instant,
}

/// One sample's readings, added up connection by connection.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    delivered: u64,
    /// The smallest queue delay among the connections that delivered.
    delay: Option<Duration>,
}

impl Tally {
    /// Adds a connection's reading `info`; `last_acked` is what it had acknowledged at its
    /// previous reading, and becomes this one's. A first reading is only the baseline.
    fn add(&mut self, last_acked: &mut Option<u64>, info: &TcpInfo, base: Duration) {
        let Some(last) = *last_acked else {
            *last_acked = Some(info.bytes_acked);
            return;
        };
        let grew = info.bytes_acked.saturating_sub(last);
        *last_acked = Some(last.max(info.bytes_acked));
        if grew == 0 {
            // Its RTT is stale, or measures only ACKs of what the peer sent.
            return;
        }
        self.delivered += grew;
        if let Some(d) = info.delay_over(base) {
            self.delay = Some(self.delay.map_or(d, |m| m.min(d)));
        }
    }
}

impl Pacing {
    pub(super) fn new(now: Instant) -> Pacing {
        Pacing {
            pacer: Pacer::new(now),
            delivered: 0,
            base_rtt: Duration::MAX,
            next_at: now + SAMPLE_EVERY,
        }
    }

    /// When the next sample is due.
    pub(super) fn next_at(&self) -> Instant {
        self.next_at
    }

    /// The uplink's payload rate as the pacer last measured it, bytes per second.
    pub(super) fn capacity(&self) -> Option<f64> {
        self.pacer.capacity()
    }

    /// Reads every connected connection and feeds the pacer. Returns the upload bucket's new
    /// rate (`None`: unlimited) when the pace changed. A connection whose reading fails sits
    /// this sample out.
    pub(super) fn sample(&mut self, conns: &mut Slab<Conn>, now: Instant) -> Option<Option<f64>> {
        self.next_at = now + SAMPLE_EVERY;
        let mut tally = Tally::default();
        for (_, c) in conns.iter_mut().filter(|(_, c)| c.connected) {
            if let Ok(info) = tcpinfo::read(c.fd()) {
                // A connection with no RTT sample yet (its tcpi_rtt is 0) must not set it.
                if let Some(m) = info.min_rtt {
                    self.base_rtt = self.base_rtt.min(m);
                }
                tally.add(&mut c.last_acked, &info, self.base_rtt);
            }
        }
        self.delivered += tally.delivered;
        if !self.pacer.sample(now, self.delivered, tally.delay) {
            return None;
        }
        Some(self.pacer.rate())
    }

    /// Counts what a closing connection delivered since its last reading, so its last bytes
    /// are not lost with it (its delay is not used: the sample is not now).
    pub(super) fn closing(&mut self, c: &mut Conn) {
        if let Ok(info) = tcpinfo::read(c.fd()) {
            let mut tally = Tally::default();
            tally.add(&mut c.last_acked, &info, self.base_rtt);
            self.delivered += tally.delivered;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn info(bytes_acked: u64, rtt_ms: u64, min_ms: u64) -> TcpInfo {
        TcpInfo {
            bytes_acked,
            rtt: Duration::from_millis(rtt_ms),
            min_rtt: Some(Duration::from_millis(min_ms)),
        }
    }

    #[test]
    fn test_tally_takes_the_smallest_delay_of_the_connections_that_delivered() {
        let mut last = [Some(0), Some(0), Some(0)];
        let mut t = Tally::default();
        // A peer's downlink queue: 300 ms on its connection only.
        t.add(&mut last[0], &info(50_000, 310, 10), ms(20));
        // The node's own queue: 40 ms, on every connection that sends.
        t.add(&mut last[1], &info(20_000, 60, 20), ms(20));
        assert_eq!(
            t,
            Tally {
                delivered: 70_000,
                delay: Some(Duration::from_millis(40))
            }
        );
        assert_eq!(last, [Some(50_000), Some(20_000), Some(0)]);
    }

    #[test]
    fn test_delay_counts_from_the_nodes_base_not_the_connections_minimum() {
        // Opened behind a standing queue: its own minimum (150 ms) holds the queue.
        let mut last = Some(0);
        let mut t = Tally::default();
        t.add(&mut last, &info(10_000, 160, 150), ms(1));
        assert_eq!(t.delay, Some(ms(159)));
    }

    #[test]
    fn test_a_reading_without_an_rtt_sample_counts_bytes_not_delay() {
        let mut last = Some(0);
        let mut t = Tally::default();
        let mut no_sample = info(5_000, 0, 0);
        no_sample.min_rtt = None;
        t.add(&mut last, &no_sample, ms(1));
        assert_eq!((t.delivered, t.delay), (5_000, None));
    }

    #[test]
    fn test_tally_skips_a_connection_that_delivered_nothing() {
        let mut last = [Some(20_000), Some(0)];
        let mut t = Tally::default();
        // Idle since its last reading: its RTT says nothing about now.
        t.add(&mut last[0], &info(20_000, 10, 10), ms(10));
        assert_eq!(t, Tally::default());
        t.add(&mut last[1], &info(1_000, 200, 10), ms(10));
        assert_eq!(t.delay, Some(Duration::from_millis(190)));
        assert_eq!(t.delivered, 1_000);
    }

    #[test]
    fn test_tally_of_a_new_connection_starts_from_its_first_reading() {
        let mut last = None;
        let mut t = Tally::default();
        // Whatever it acknowledged before (a handshake byte, or more) is its baseline.
        t.add(&mut last, &info(1, 900, 10), ms(10));
        assert_eq!((t, last), (Tally::default(), Some(1)));
    }

    #[test]
    fn test_tally_counts_each_byte_once() {
        let mut last = Some(0);
        let mut total = 0;
        for acked in [1_000, 1_000, 5_000, 4_000, 9_000] {
            let mut t = Tally::default();
            t.add(&mut last, &info(acked, 30, 10), ms(10));
            total += t.delivered;
        }
        // A reading that went backwards (it cannot, but) is no delivery and no refund.
        assert_eq!(total, 9_000);
        assert_eq!(last, Some(9_000));
    }
}
