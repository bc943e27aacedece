//! The client's piece picker: which piece to ask a given peer for next. Rarest first among
//! the peer's pieces (BEP 3 §"piece downloading strategy"), random tie-break so that clients
//! fetching from the same peer spread out, and a bounded endgame that doubles up only the
//! last outstanding pieces.

use super::rng::Rng;
use crate::bitfield::Bitfield;

/// Slot value meaning "nobody is writing this piece".
const NO_CLAIM: u32 = u32::MAX;
/// Endgame: at most this many requests for one piece at once. Two covers a stalled peer
/// without multiplying the tail's traffic (libtorrent allows the same by default).
const MAX_ENDGAME_REQUESTS: u8 = 2;

#[derive(Debug, Clone)]
pub struct Picker {
    have: Bitfield,
    /// Outstanding specific requests per piece, over all peers.
    requested: Vec<u8>,
    /// Slot whose incoming payload is being written into this piece's region, or NO_CLAIM.
    /// One writer per region: two interleaved writers would corrupt each other.
    claim: Vec<u32>,
    /// How many connected peers (the origin excluded: it has everything) have each piece.
    availability: Vec<u16>,
    /// Pieces neither held, requested nor being received.
    unassigned: u32,
}

impl Picker {
    pub fn new(have: Bitfield) -> Picker {
        let n = have.len() as usize;
        let unassigned = have.len() - have.count();
        Picker {
            have,
            requested: vec![0; n],
            claim: vec![NO_CLAIM; n],
            availability: vec![0; n],
            unassigned,
        }
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    pub fn missing(&self) -> u32 {
        self.have.len() - self.have.count()
    }

    pub fn peer_has(&mut self, piece: u32) {
        let a = &mut self.availability[piece as usize];
        *a = a.saturating_add(1);
    }

    pub fn peer_lost(&mut self, piece: u32) {
        let a = &mut self.availability[piece as usize];
        *a = a.saturating_sub(1);
    }

    pub fn availability(&self, piece: u32) -> u16 {
        self.availability[piece as usize]
    }

    fn is_free(&self, i: usize) -> bool {
        !self.have.get(i as u32) && self.requested[i] == 0 && self.claim[i] == NO_CLAIM
    }

    /// Rarest piece `peer` has that nobody is fetching yet; `None` if there is none.
    pub fn pick(&self, peer: &Bitfield, rng: &mut Rng) -> Option<u32> {
        let n = self.have.len();
        if n == 0 || self.unassigned == 0 {
            return None;
        }
        let start = rng.below(n);
        let mut best: Option<(u16, u32)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if !peer.get(i) || !self.is_free(i as usize) {
                continue;
            }
            let a = self.availability[i as usize];
            if best.is_none_or(|(ba, _)| a < ba) {
                best = Some((a, i));
                // Nothing is rarer than a piece only this peer has.
                if a <= 1 {
                    break;
                }
            }
        }
        best.map(|(_, i)| i)
    }

    /// Endgame pick: once every missing piece is being fetched, ask `peer` too for one that
    /// is requested once and not yet arriving, unless `asked` says we asked this peer already.
    pub fn pick_endgame(
        &self,
        peer: &Bitfield,
        asked: impl Fn(u32) -> bool,
        rng: &mut Rng,
    ) -> Option<u32> {
        let n = self.have.len();
        if n == 0 || self.unassigned > 0 {
            return None;
        }
        let start = rng.below(n);
        (0..n).map(|k| (start + k) % n).find(|&i| {
            let u = i as usize;
            peer.get(i)
                && !self.have.get(i)
                && self.claim[u] == NO_CLAIM
                && (1..MAX_ENDGAME_REQUESTS).contains(&self.requested[u])
                && !asked(i)
        })
    }

    fn recount(&mut self, i: usize, was_free: bool) {
        let free = self.is_free(i);
        match (was_free, free) {
            (true, false) => self.unassigned -= 1,
            (false, true) => self.unassigned += 1,
            _ => {}
        }
    }

    pub fn on_request(&mut self, piece: u32) {
        let i = piece as usize;
        let was = self.is_free(i);
        self.requested[i] = self.requested[i].saturating_add(1);
        self.recount(i, was);
    }

    /// A request was answered (data or reject) or its connection died.
    pub fn on_request_done(&mut self, piece: u32) {
        let i = piece as usize;
        let was = self.is_free(i);
        self.requested[i] = self.requested[i].saturating_sub(1);
        self.recount(i, was);
    }

    /// A payload for `piece` starts arriving on `slot`. True if it should be stored; false if
    /// the piece is held or already being written by another slot (the payload is discarded).
    pub fn try_claim(&mut self, piece: u32, slot: usize) -> bool {
        let i = piece as usize;
        if self.have.get(piece) || self.claim[i] != NO_CLAIM {
            return false;
        }
        let was = self.is_free(i);
        self.claim[i] = slot as u32;
        self.recount(i, was);
        true
    }

    /// The claim on `piece` ends: verified (`ok`) or not (the piece is fetched again).
    pub fn release(&mut self, piece: u32, ok: bool) {
        let i = piece as usize;
        let was = self.is_free(i);
        self.claim[i] = NO_CLAIM;
        if ok {
            self.have.set(piece);
        }
        self.recount(i, was);
    }

    pub fn claimed_by(&self, piece: u32) -> Option<usize> {
        let c = self.claim[piece as usize];
        (c != NO_CLAIM).then_some(c as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(n: u32, set: &[u32]) -> Bitfield {
        let mut b = Bitfield::new(n);
        for &i in set {
            b.set(i);
        }
        b
    }

    #[test]
    fn test_pick_prefers_rarest() {
        let mut p = Picker::new(Bitfield::new(4));
        // Piece 2 is held by one peer, the others by three.
        for i in [0, 1, 3, 0, 1, 3, 0, 1, 3, 2] {
            p.peer_has(i);
        }
        let peer = Bitfield::full(4);
        for seed in 0..20 {
            assert_eq!(p.pick(&peer, &mut Rng::new(seed)), Some(2));
        }
    }

    #[test]
    fn test_pick_only_what_peer_has_and_not_requested() {
        let mut p = Picker::new(Bitfield::new(4));
        let peer = bits(4, &[1, 3]);
        p.on_request(1);
        assert_eq!(p.pick(&peer, &mut Rng::new(1)), Some(3));
        p.on_request(3);
        assert_eq!(p.pick(&peer, &mut Rng::new(1)), None);
        p.on_request_done(3);
        assert_eq!(p.pick(&peer, &mut Rng::new(1)), Some(3));
    }

    #[test]
    fn test_claim_excludes_second_writer() {
        let mut p = Picker::new(Bitfield::new(2));
        assert!(p.try_claim(0, 5));
        assert!(!p.try_claim(0, 6));
        assert_eq!(p.claimed_by(0), Some(5));
        p.release(0, false);
        assert!(p.try_claim(0, 6));
        p.release(0, true);
        assert!(!p.try_claim(0, 7));
        assert!(p.have().get(0));
        assert_eq!(p.missing(), 1);
    }

    #[test]
    fn test_endgame_only_when_all_assigned() {
        let mut p = Picker::new(Bitfield::new(2));
        let peer = Bitfield::full(2);
        p.on_request(0);
        assert_eq!(p.pick_endgame(&peer, |_| false, &mut Rng::new(1)), None);
        p.on_request(1);
        let e = p.pick_endgame(&peer, |_| false, &mut Rng::new(1));
        assert!(e.is_some());
        // Never a third request, never twice to the same peer.
        assert_eq!(p.pick_endgame(&peer, |_| true, &mut Rng::new(1)), None);
        p.on_request(0);
        p.on_request(1);
        assert_eq!(p.pick_endgame(&peer, |_| false, &mut Rng::new(1)), None);
    }

    #[test]
    fn test_unassigned_count_tracks_states() {
        let mut p = Picker::new(bits(3, &[0]));
        assert_eq!(p.unassigned, 2);
        p.on_request(1);
        p.on_request(1);
        assert_eq!(p.unassigned, 1);
        assert!(p.try_claim(1, 0));
        p.on_request_done(1);
        p.on_request_done(1);
        assert_eq!(p.unassigned, 1);
        p.release(1, true);
        assert_eq!(p.unassigned, 1);
        assert!(p.try_claim(2, 0));
        assert_eq!(p.unassigned, 0);
        p.release(2, false);
        assert_eq!(p.unassigned, 1);
    }
}
