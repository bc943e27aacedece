//! PROGRESS (docs/PROTOCOL.md §4.11): between clients, a HAVE of a piece the receiver has
//! announced is news to nobody but a seed, which weighs its upload by what each peer still
//! lacks. A client that sends PROGRESS takes a count in place of those HAVEs; half of a
//! large swarm's control frames were such HAVEs.

use super::*;

impl Node {
    /// Client, right after its BITFIELD to a peer: our count, which also tells the peer it
    /// may leave out the HAVEs of pieces we announced. Never to the origin, which counts
    /// copies by HAVE.
    pub(super) fn offer_progress(&mut self, slot: Slot) {
        let Some(held) = self.held_count() else {
            return;
        };
        let Some(p) = self.peer_mut(slot) else { return };
        if p.is_origin_link() {
            return;
        }
        p.told = held;
        self.emit(slot, &Message::Progress(held));
    }

    /// PROGRESS from a peer: how many pieces it holds, HAVEs left out included.
    pub(super) fn on_progress(&mut self, slot: Slot, held: u32) {
        if self.cfg.role != Role::Client || self.peer(slot).is_some_and(|p| p.is_origin_link()) {
            // Only between clients: the origin must hear every HAVE (§5.2's window), and it
            // announces nothing.
            return;
        }
        let Some(p) = self.peer_mut(slot) else { return };
        if !p.ready {
            return self.fail(slot, ErrorCode::Protocol, "PROGRESS before BITFIELD");
        }
        if held > p.has.len() || held < p.held {
            return self.fail(
                slot,
                ErrorCode::Protocol,
                "PROGRESS beyond the piece count or below the pieces announced",
            );
        }
        p.held = held;
        p.takes_progress = true;
    }

    /// Whether the peer on `slot` needs our HAVE of `piece`: it may lack it, or it counts our
    /// pieces only by HAVE. Counts the HAVE as told when it does.
    pub(super) fn needs_have(p: &mut Peer, piece: u32) -> bool {
        let needs = !(p.takes_progress && p.has.get(piece));
        p.told += needs as u32;
        needs
    }

    /// Sends PROGRESS to each peer that takes it and has not heard our latest count: to every
    /// one if `all` (we just completed: they weigh what we lack only once they are seeds,
    /// and must see that we are one), else to the seeds only, once a round.
    pub(super) fn tell_progress(&mut self, all: bool) {
        let Some(held) = self.held_count().filter(|_| self.cfg.role == Role::Client) else {
            return;
        };
        for s in 0..self.peers.len() {
            let Some(p) = self.peer_mut(s) else { continue };
            let seed = p.held == p.has.len();
            if p.ready && !p.closing && p.takes_progress && p.told < held && (all || seed) {
                p.told = held;
                self.emit(s, &Message::Progress(held));
            }
        }
    }

    /// How many pieces we hold, once the manifest is known.
    fn held_count(&self) -> Option<u32> {
        self.picker.as_ref().map(|p| p.have().count())
    }
}
