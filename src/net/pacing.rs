//! The driver's half of `--up-rate auto`: every `SAMPLE_EVERY` it reads `TCP_INFO` of each
//! connection (`tcpinfo.rs`) for the bytes the uplink delivered, takes the node's own queue
//! delay from its receivers' QUEUE_DELAY answers (docs/PROTOCOL.md §4.10, `proto::oneway`),
//! hands both to the sans-IO `proto::Pacer`, and reports the pacer's new rate for the
//! upload bucket.
//!
//! Why not an RTT: a round trip also holds the queue the peer's ACKs wait in, behind its own
//! uploads, which pacing cannot shrink, and misses the backlog in the node's own sockets,
//! which it can; a one-way reading at the receivers sees the second and not the first.

use std::time::{Duration, Instant};

use slab::Slab;

use super::conn::Conn;
use super::tcpinfo::{self, TcpInfo};
use crate::proto::{Node, Pacer};

/// How often the connections are read: the pacer's step (its samples must be at least
/// 80 ms apart), one `getsockopt` per connection each time.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The pacer and what it has been fed.
pub(super) struct Pacing {
    pacer: Pacer,
    /// TCP payload acknowledged by peers, summed over every connection the driver has had.
    delivered: u64,
    /// The last queue delay the receivers' answers gave, for the stats.
    last_delay: Option<Duration>,
    /// Scratch for the answers, reused each sample.
    answers: Vec<Duration>,
    next_at: Instant,
}

/// Adds a connection's reading `info` to `delivered`; `last_acked` is what it had
/// acknowledged at its previous reading, and becomes this one's. A first reading is only
/// the baseline.
fn add_delivered(delivered: &mut u64, last_acked: &mut Option<u64>, info: &TcpInfo) {
    let Some(last) = *last_acked else {
        *last_acked = Some(info.bytes_acked);
        return;
    };
    *delivered += info.bytes_acked.saturating_sub(last);
    *last_acked = Some(last.max(info.bytes_acked));
}

impl Pacing {
    pub(super) fn new(now: Instant) -> Pacing {
        Pacing {
            pacer: Pacer::new(now),
            delivered: 0,
            last_delay: None,
            answers: Vec::new(),
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

    /// The node's own queue delay as last read from the receivers' answers.
    pub(super) fn queue_delay(&self) -> Option<Duration> {
        self.last_delay
    }

    /// Reads every connected connection and feeds the pacer with what they delivered and
    /// the own queue delay of `nodes`, the nodes sharing the uplink (`Node::own_queue_delay`).
    /// Returns the upload bucket's new rate (`None`: unlimited) when the pace changed. A
    /// connection whose reading fails sits this sample out.
    pub(super) fn sample<'a>(
        &mut self,
        conns: &mut Slab<Conn>,
        nodes: impl IntoIterator<Item = &'a Node>,
        now: Instant,
    ) -> Option<Option<f64>> {
        self.next_at = now + SAMPLE_EVERY;
        for (_, c) in conns.iter_mut().filter(|(_, c)| c.connected) {
            if let Ok(info) = tcpinfo::read(c.fd()) {
                add_delivered(&mut self.delivered, &mut c.last_acked, &info);
            }
        }
        let delay = Node::own_queue_delay(nodes, now, &mut self.answers);
        self.last_delay = delay.or(self.last_delay);
        if !self.pacer.sample(now, self.delivered, delay) {
            return None;
        }
        Some(self.pacer.rate())
    }

    /// Counts what a closing connection delivered since its last reading, so its last bytes
    /// are not lost with it.
    pub(super) fn closing(&mut self, c: &mut Conn) {
        if let Ok(info) = tcpinfo::read(c.fd()) {
            add_delivered(&mut self.delivered, &mut c.last_acked, &info);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(bytes_acked: u64) -> TcpInfo {
        TcpInfo {
            bytes_acked,
            rtt: Duration::from_millis(30),
            min_rtt: Some(Duration::from_millis(10)),
        }
    }

    #[test]
    fn test_a_new_connection_counts_from_its_first_reading() {
        let (mut total, mut last) = (0, None);
        // Whatever it acknowledged before (a handshake byte, or more) is its baseline.
        add_delivered(&mut total, &mut last, &info(1));
        assert_eq!((total, last), (0, Some(1)));
        add_delivered(&mut total, &mut last, &info(5_001));
        assert_eq!((total, last), (5_000, Some(5_001)));
    }

    #[test]
    fn test_each_byte_counts_once() {
        let (mut total, mut last) = (0, Some(0));
        for acked in [1_000, 1_000, 5_000, 4_000, 9_000] {
            add_delivered(&mut total, &mut last, &info(acked));
        }
        // A reading that went backwards (it cannot, but) is no delivery and no refund.
        assert_eq!(total, 9_000);
        assert_eq!(last, Some(9_000));
    }
}
