//! STAMP and QUEUE_DELAY (docs/PROTOCOL.md §4.10): a node that paces itself stamps each
//! piece it sends; every node answers a STAMP with how late it arrived; the answers are
//! the pacer's reading of the sender's own queue (`proto::oneway`).

use std::time::{Duration, Instant};

use super::{Node, Slot};
use crate::proto::oneway::{ANSWERS_WITHIN, median_delay};
use crate::wire::Message;

impl Node {
    /// The node's clock on the wire: microseconds since it started.
    fn stamp_clock(&self) -> u64 {
        self.now
            .saturating_duration_since(self.started_at)
            .as_micros() as u64
    }

    /// A piece for `slot` is about to leave: precede it with a STAMP if the node measures
    /// its queue.
    pub(super) fn stamp_piece(&mut self, slot: Slot) {
        if !self.cfg.stamp_pieces {
            return;
        }
        let stamp = Message::Stamp(self.stamp_clock());
        if let Some(p) = self.peer_mut(slot) {
            p.stamps_unanswered = p.stamps_unanswered.saturating_add(1);
        }
        self.emit(slot, &stamp);
    }

    /// Answers a STAMP: how much later it arrived than the fastest STAMP of this connection
    /// in the base window.
    pub(super) fn on_stamp(&mut self, slot: Slot, stamp: u64) {
        let (now, clock) = (self.now, self.stamp_clock());
        let Some(p) = self.peer_mut(slot) else { return };
        // Offsets of any size are fine: only differences between samples count.
        let raw = (clock as i64).wrapping_sub(stamp as i64);
        let late = p.stamp_base.excess(now, raw);
        let micros = u32::try_from(late.as_micros()).unwrap_or(u32::MAX);
        self.emit(slot, &Message::QueueDelay(micros));
    }

    /// Keeps a peer's answer to one of our STAMPs. One that answers none is ignored: a peer
    /// we never stamped to, or a few identities, could otherwise set the median.
    pub(super) fn on_queue_delay(&mut self, slot: Slot, micros: u32) {
        let now = self.now;
        let Some(p) = self.peer_mut(slot).filter(|p| p.stamps_unanswered > 0) else {
            return;
        };
        p.stamps_unanswered -= 1;
        p.queue_delay = Some((Duration::from_micros(micros.into()), now));
    }

    /// The own queue delay of the node whose upload `nodes` share (a driver may run one per
    /// file): the median of their peers' latest QUEUE_DELAY answers that arrived within
    /// `ANSWERS_WITHIN` of `now`; `None` for none. `scratch` is reused between calls.
    pub fn own_queue_delay<'a>(
        nodes: impl IntoIterator<Item = &'a Node>,
        now: Instant,
        scratch: &mut Vec<Duration>,
    ) -> Option<Duration> {
        // Within ANSWERS_WITHIN of the clock's start, every answer is that fresh.
        let since = now.checked_sub(ANSWERS_WITHIN);
        scratch.clear();
        for node in nodes {
            let fresh = node
                .peers
                .iter()
                .flatten()
                .filter_map(|p| p.queue_delay)
                .filter(|&(_, at)| since.is_none_or(|s| at >= s))
                .map(|(d, _)| d);
            scratch.extend(fresh);
        }
        median_delay(scratch)
    }
}
