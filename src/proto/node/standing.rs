//! Who takes without giving (STANDING, docs/PROTOCOL.md §4.9). The origin names the clients
//! its policy judges so (`choke::tft`): they broke their promise and passed nothing on
//! that two receivers confirm, or took a fifth of the file from peers and passed nothing on
//! at all. A client gives a named peer nothing but in return for what it gives.

use std::collections::BTreeSet;

use crate::wire::{MAX_STANDING_ENTRIES, StandingEntry};

use super::*;

/// Most node ids a node keeps named. The origin names registered clients only; the bound
/// keeps an origin that names made-up ids from growing a client's memory.
const MAX_NAMED: usize = 65_536;

/// The node ids named as taking without giving. Ordered, so what the origin sends repeats
/// exactly from run to run (the simulator's output must).
#[derive(Debug, Default)]
pub(super) struct Named {
    ids: BTreeSet<u64>,
}

impl Named {
    pub(super) fn contains(&self, id: u64) -> bool {
        self.ids.contains(&id)
    }

    /// Applies `e`; true if it changed anything.
    fn apply(&mut self, e: StandingEntry) -> bool {
        if e.takes_without_giving {
            self.ids.len() < MAX_NAMED && self.ids.insert(e.node_id)
        } else {
            self.ids.remove(&e.node_id)
        }
    }

    fn entries(&self) -> Vec<StandingEntry> {
        self.ids
            .iter()
            .map(|&node_id| StandingEntry {
                node_id,
                takes_without_giving: true,
            })
            .collect()
    }
}

impl Node {
    /// Origin, after a round's decisions: tell every client whom the policy now names, or
    /// no longer names.
    pub(super) fn publish_standing(&mut self) {
        let Side::Origin(registry) = &mut self.side else {
            return;
        };
        let mut changes = Vec::new();
        let mut named_incomplete = 0;
        for (s, p) in self.peers.iter().enumerate() {
            let Some(p) = p.as_ref().filter(|p| p.registered && !p.closing) else {
                continue;
            };
            let Some(node_id) = p.node_id() else { continue };
            let e = StandingEntry {
                node_id,
                takes_without_giving: self.table.is_named(s),
            };
            named_incomplete += (e.takes_without_giving && !p.has.is_full()) as usize;
            if registry.named.contains(node_id) != e.takes_without_giving && registry.named.apply(e)
            {
                changes.push(e);
            }
        }
        registry.named_incomplete = named_incomplete;
        self.events.extend(changes.iter().map(|e| Event::Standing {
            node_id: e.node_id,
            named: e.takes_without_giving,
        }));
        for chunk in changes.chunks(MAX_STANDING_ENTRIES) {
            self.broadcast_ready(&Message::Standing(chunk.to_vec()));
        }
    }

    /// Origin: a client just registered. One named before (an earlier connection of its
    /// id) stays named, and it learns whom the origin names.
    pub(super) fn send_standing(&mut self, slot: Slot) {
        let Side::Origin(registry) = &self.side else {
            return;
        };
        if let Some(id) = self.peer(slot).and_then(|p| p.node_id())
            && registry.named.contains(id)
        {
            self.table.set_named(slot, true);
        }
        let entries = registry.named.entries();
        for chunk in entries.chunks(MAX_STANDING_ENTRIES) {
            self.emit(slot, &Message::Standing(chunk.to_vec()));
        }
    }

    /// Client: STANDING arrived on `slot`. Only the origin's counts: a peer could name
    /// anyone.
    pub(super) fn on_standing(&mut self, slot: Slot, entries: &[StandingEntry]) {
        if !self.peer(slot).is_some_and(|p| p.is_origin_link()) {
            return;
        }
        let Some(c) = self.client_side_mut() else {
            return;
        };
        let changed: Vec<StandingEntry> = entries
            .iter()
            .copied()
            .filter(|&e| c.named.apply(e))
            .collect();
        if changed.is_empty() {
            return;
        }
        for s in 0..self.peers.len() {
            let Some(id) = self.peer(s).and_then(|p| p.node_id()) else {
                continue;
            };
            if let Some(e) = changed.iter().find(|e| e.node_id == id) {
                self.table.set_named(s, e.takes_without_giving);
            }
        }
        self.decide_chokes(false);
    }

    /// Client: the peer on `slot` said who it is.
    pub(super) fn recall_standing(&mut self, slot: Slot, node_id: u64) {
        if self
            .client_side()
            .is_some_and(|c| c.named.contains(node_id))
        {
            self.table.set_named(slot, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(node_id: u64, takes_without_giving: bool) -> StandingEntry {
        StandingEntry {
            node_id,
            takes_without_giving,
        }
    }

    #[test]
    fn test_named_ids_are_bounded_and_withdrawn() {
        let mut n = Named::default();
        assert!(n.apply(entry(7, true)));
        assert!(!n.apply(entry(7, true)), "already named");
        assert!(n.apply(entry(3, true)));
        assert_eq!(
            n.entries(),
            vec![entry(3, true), entry(7, true)],
            "in id order"
        );
        assert!(n.apply(entry(7, false)));
        assert!(!n.contains(7));
        for id in 100..100 + MAX_NAMED as u64 {
            n.apply(entry(id, true));
        }
        assert_eq!(n.ids.len(), MAX_NAMED);
        assert!(
            !n.apply(entry(1, true)),
            "full: a hostile origin grows nothing"
        );
    }
}
