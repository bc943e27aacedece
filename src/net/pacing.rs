//! The driver's half of `--up-rate auto`: every `SAMPLE_EVERY` it reads `TCP_INFO` of each
//! connection (`conn::Deliveries`) for the bytes the uplink delivered, takes the node's
//! own queue delay from its receivers' QUEUE_DELAY answers (docs/PROTOCOL.md §4.10,
//! `proto::oneway`), hands both to the sans-IO `proto::Pacer`, and reports the pacer's new
//! rate for the upload bucket.
//!
//! Why not an RTT: a round trip also holds the queue the peer's ACKs wait in, behind its own
//! uploads, which pacing cannot shrink, and misses the backlog in the node's own sockets,
//! which it can; a one-way reading at the receivers sees the second and not the first.

use std::time::{Duration, Instant};

use slab::Slab;

use super::conn::{Conn, Deliveries};
use crate::proto::{Node, Pacer};

/// How often the connections are read: the pacer's step (its samples must be at least
/// 80 ms apart), one `getsockopt` per connection each time.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The pacer and what it has been fed.
pub(super) struct Pacing {
    pacer: Pacer,
    /// TCP payload acknowledged by peers on every connection the driver has had.
    deliveries: Deliveries,
    /// The last queue delay the receivers' answers gave, for the stats.
    last_delay: Option<Duration>,
    /// Scratch for the answers, reused each sample.
    answers: Vec<Duration>,
    next_at: Instant,
}

impl Pacing {
    pub(super) fn new(now: Instant) -> Pacing {
        Pacing {
            pacer: Pacer::new(now),
            deliveries: Deliveries::default(),
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
        let mut delivered = self.deliveries.closed();
        for (_, c) in conns.iter_mut() {
            delivered += self.deliveries.read(c);
        }
        let delay = Node::own_queue_delay(nodes, now, &mut self.answers);
        self.last_delay = delay.or(self.last_delay);
        if !self.pacer.sample(now, delivered, delay) {
            return None;
        }
        Some(self.pacer.rate())
    }

    /// Keeps what a closing connection delivered, so its bytes are not lost with it.
    pub(super) fn closing(&mut self, c: &mut Conn) {
        self.deliveries.close(c);
    }
}
