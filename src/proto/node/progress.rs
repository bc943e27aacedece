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
        let Some(ours) = self.held_count() else {
            return;
        };
        let Some(p) = self.peer_mut(slot) else { return };
        if p.is_origin_link() {
            return;
        }
        p.told = ours;
        self.emit(slot, &Message::Progress(ours));
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
        if held == p.has.len()
            && let Some(ours) = self.held_count()
        {
            // It just became a seed (or was one): it weighs by our count from its next
            // round, so it hears it now rather than after our next.
            self.tell_progress_to(slot, ours);
        }
    }

    /// Whether peer `p` needs our HAVE of `piece`: it may lack it, or it counts our pieces
    /// only by HAVE.
    pub(super) fn needs_have(p: &Peer, piece: u32) -> bool {
        !(p.takes_progress && p.has.get(piece))
    }

    /// Once a round: our count to each seed that takes PROGRESS (a seed weighs its upload by
    /// what each peer lacks) and has not heard it.
    pub(super) fn tell_seeds_progress(&mut self) {
        self.tell_progress(|p| p.held == p.has.len());
    }

    /// On completion: our count to every peer that takes PROGRESS and has not heard it. A
    /// leecher weighs what we lack only once it is a seed, but it must see that we are one:
    /// our last HAVE to it may be one we left out.
    pub(super) fn tell_everyone_progress(&mut self) {
        self.tell_progress(|_| true);
    }

    fn tell_progress(&mut self, to: impl Fn(&Peer) -> bool) {
        // Counted once per pass, not per peer: a popcount of the whole bitfield.
        let Some(ours) = self.held_count().filter(|_| self.cfg.role == Role::Client) else {
            return;
        };
        for s in 0..self.peers.len() {
            if self.peer(s).is_some_and(&to) {
                self.tell_progress_to(s, ours);
            }
        }
    }

    /// Our count, `ours`, to the peer on `slot`, if it takes PROGRESS and has not heard it.
    fn tell_progress_to(&mut self, slot: Slot, ours: u32) {
        let Some(p) = self.peer_mut(slot) else { return };
        if p.ready && !p.closing && p.takes_progress && p.told < ours {
            p.told = ours;
            self.emit(slot, &Message::Progress(ours));
        }
    }

    /// How many pieces we hold, once the manifest is known.
    fn held_count(&self) -> Option<u32> {
        self.picker.as_ref().map(|p| p.have().count())
    }
}
