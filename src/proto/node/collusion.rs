//! The test-only colluder (`Behaviour::Colluder`): what a group of identities that vouch
//! for each other can tell the origin without uploading anything. It exists to measure what
//! collusion buys under the origin's policy (docs/PROTOCOL.md §5.6, the threat model).

use super::*;

impl Node {
    /// Whether this node colludes with the peer on `slot`.
    fn is_partner(&self, slot: Slot) -> bool {
        self.cfg.behaviour == Behaviour::Colluder
            && self
                .peer(slot)
                .and_then(|p| p.node_id())
                .is_some_and(Behaviour::is_colluder_id)
    }

    /// A partner announced `pieces`: claim them to the origin as ours, so the origin counts
    /// the partner's promises for them as kept. Pieces we hold were announced already.
    pub(super) fn vouch_for_holdings(&mut self, slot: Slot, pieces: &[u32]) {
        if !self.is_partner(slot) {
            return;
        }
        let Some(origin) = self.ready_origin_slot() else {
            return;
        };
        let Some(picker) = self.picker.as_ref() else {
            return;
        };
        let claims: Vec<u32> = pieces
            .iter()
            .copied()
            .filter(|&i| !picker.have().get(i))
            .collect();
        for i in claims {
            self.emit(origin, &Message::Have(i));
        }
    }

    /// Before a receipt: confirm to the origin that every connected partner sent us, and we
    /// sent it, as much as we have downloaded (the most a pair's receipts can be made to
    /// agree on without looking absurd).
    pub(super) fn vouch_for_uploads(&mut self) {
        if self.cfg.behaviour != Behaviour::Colluder {
            return;
        }
        let claim = self.counters.from_origin + self.counters.from_peers;
        for s in 0..self.peers.len() {
            if self.is_partner(s)
                && let Some(id) = self.peer(s).and_then(|p| p.node_id())
            {
                self.ledger.vouch(id, claim);
            }
        }
    }
}
