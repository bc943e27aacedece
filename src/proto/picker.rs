//! The client's piece picker: which piece to ask a given peer for next. Rarest first among
//! the peer's pieces (BEP 3 §"piece downloading strategy"), random tie-break so that clients
//! fetching from the same peer spread out, and the bookkeeping for a bounded endgame that
//! doubles up only the last outstanding pieces (the node picks which: the longest waiting).

use super::rng::Rng;
use crate::bitfield::Bitfield;

/// Slot value meaning "nobody is writing this piece".
const NO_CLAIM: u32 = u32::MAX;
/// Endgame: at most this many requests for one piece at once. Two covers a stalled peer
/// without multiplying the tail's traffic (libtorrent allows the same by default).
const MAX_ENDGAME_REQUESTS: u8 = 2;
/// How many of the latest pieces to become free the picker remembers. A peer found with
/// nothing to pick needs a new scan only if one of those is a piece it has; a peer whose
/// mark is older than the log is scanned again. Pieces come free on a REJECT, a CANCEL or a
/// lost connection, a few per tick at most, and every peer is visited each 100 ms tick, so
/// 64 covers the gap between two visits with room to spare; the check costs one bit test
/// per logged piece.
const FREED_LOG: usize = 64;

#[derive(Debug, Clone)]
pub(super) struct Picker {
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
    /// Unassigned pieces no connected peer has: only the origin can supply them.
    unseen: u32,
    /// The free pieces (neither held, requested nor being received) as a bitfield in the
    /// wire layout, kept by `recount`: a pick ANDs it with the peer's bytes and looks only
    /// at the pieces both have set (it scanned every piece per request before: 14,000
    /// instructions a pick for 1,024 pieces, 41% of a crowd simulation's).
    free: Bitfield,
    /// Counts pieces becoming free (unrequested again, or released unverified): a peer
    /// that had nothing to pick can have something again only after this moves or the
    /// peer announces a piece.
    freed: u64,
    /// The last `FREED_LOG` pieces to become free: the (freed − k)-th piece freed, for k in
    /// 1..=FREED_LOG, is at index (freed − k) % FREED_LOG.
    freed_log: [u32; FREED_LOG],
}

impl Picker {
    pub(super) fn new(have: Bitfield) -> Picker {
        let n = have.len() as usize;
        let unassigned = have.len() - have.count();
        let mut free = Bitfield::new(have.len());
        for i in (0..have.len()).filter(|&i| !have.get(i)) {
            free.set(i);
        }
        Picker {
            have,
            requested: vec![0; n],
            claim: vec![NO_CLAIM; n],
            availability: vec![0; n],
            unassigned,
            unseen: unassigned,
            free,
            freed: 0,
            freed_log: [0; FREED_LOG],
        }
    }

    pub(super) fn have(&self) -> &Bitfield {
        &self.have
    }

    pub(super) fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    pub(super) fn missing(&self) -> u32 {
        self.have.len() - self.have.count()
    }

    /// Unassigned pieces that no connected peer has, so only the origin can supply them.
    pub(super) fn unseen(&self) -> u32 {
        self.unseen
    }

    pub(super) fn peer_has(&mut self, piece: u32) {
        let i = piece as usize;
        if self.availability[i] == 0 && self.is_free(i) {
            self.unseen -= 1;
        }
        self.availability[i] = self.availability[i].saturating_add(1);
    }

    pub(super) fn peer_lost(&mut self, piece: u32) {
        let i = piece as usize;
        self.availability[i] = self.availability[i].saturating_sub(1);
        if self.availability[i] == 0 && self.is_free(i) {
            self.unseen += 1;
        }
    }

    fn is_free(&self, i: usize) -> bool {
        !self.have.get(i as u32) && self.requested[i] == 0 && self.claim[i] == NO_CLAIM
    }

    /// Rarest piece `peer` has that nobody is fetching yet; `None` if there is none. The
    /// scan starts at a random piece and wraps around, so that of equally rare pieces each
    /// peer picks its own.
    pub(super) fn pick(&self, peer: &Bitfield, rng: &mut Rng) -> Option<u32> {
        self.pick_rarest(peer, rng, 0)
    }

    /// `pick` among the pieces some connected peer has: what a client asks the origin for
    /// by index while its wildcards may still bring the pieces no peer has.
    pub(super) fn pick_held(&self, peer: &Bitfield, rng: &mut Rng) -> Option<u32> {
        self.pick_rarest(peer, rng, 1)
    }

    /// Rarest free piece `peer` has that at least `floor` connected peers have.
    fn pick_rarest(&self, peer: &Bitfield, rng: &mut Rng, floor: u16) -> Option<u32> {
        let n = self.have.len();
        if n == 0 || self.unassigned == 0 {
            return None;
        }
        let start = rng.below(n);
        let mut best: Option<(u16, u32)> = None;
        for i in peer
            .common_ones(&self.free, start..n)
            .chain(peer.common_ones(&self.free, 0..start))
        {
            debug_assert!(self.is_free(i as usize), "free mirrors is_free");
            let a = self.availability[i as usize];
            if a < floor {
                continue;
            }
            if best.is_none_or(|(ba, _)| a < ba) {
                best = Some((a, i));
                // Nothing is rarer than a piece only this peer has.
                if a <= floor.max(1) {
                    break;
                }
            }
        }
        best.map(|(_, i)| i)
    }

    /// `pick`, remembering in `dry` that `peer` had nothing to pick as of now, so that later
    /// calls skip the scan until a piece it has is freed; the caller clears `dry` when the
    /// peer announces a piece. A node refills every pipeline on every tick, and without
    /// this each refill of a peer with nothing to offer scanned every piece; and each
    /// REJECT, which frees a piece, made every peer's next refill scan again (7% of a
    /// 1,000-client simulation) though only the peers holding that piece could pick it.
    /// The random draw is made either way, so the picks that follow are the same.
    pub(super) fn pick_unless_dry(
        &self,
        peer: &Bitfield,
        dry: &mut Option<u64>,
        rng: &mut Rng,
    ) -> Option<u32> {
        if dry.is_some_and(|mark| !self.freed_since(mark, peer)) {
            *dry = Some(self.freed);
            if !self.have.is_empty() && self.unassigned != 0 {
                rng.below(self.have.len());
            }
            return None;
        }
        let piece = self.pick(peer, rng);
        *dry = piece.is_none().then_some(self.freed);
        piece
    }

    /// Whether a piece `peer` has may have become free since `freed` was `mark`: one of the
    /// logged pieces freed since, or any if the log no longer reaches back that far.
    fn freed_since(&self, mark: u64, peer: &Bitfield) -> bool {
        let since = self.freed - mark;
        since > FREED_LOG as u64
            || (mark..self.freed).any(|k| peer.get(self.freed_log[(k % FREED_LOG as u64) as usize]))
    }

    /// Endgame: `piece` may be asked of one more peer. Only once every missing piece is being
    /// fetched, only for a piece requested once and not yet arriving.
    pub(super) fn endgame_allows(&self, piece: u32) -> bool {
        let i = piece as usize;
        self.unassigned == 0
            && !self.have.get(piece)
            && self.claim[i] == NO_CLAIM
            && (1..MAX_ENDGAME_REQUESTS).contains(&self.requested[i])
    }

    /// Every missing piece is requested or arriving: the endgame.
    pub(super) fn all_assigned(&self) -> bool {
        self.unassigned == 0
    }

    fn recount(&mut self, i: usize, was_free: bool) {
        let free = self.is_free(i);
        let unseen = self.availability[i] == 0;
        match (was_free, free) {
            (true, false) => {
                self.free.clear(i as u32);
                self.unassigned -= 1;
                self.unseen -= unseen as u32;
            }
            (false, true) => {
                self.free.set(i as u32);
                self.freed_log[(self.freed % FREED_LOG as u64) as usize] = i as u32;
                self.freed += 1;
                self.unassigned += 1;
                self.unseen += unseen as u32;
            }
            _ => {}
        }
    }

    pub(super) fn on_request(&mut self, piece: u32) {
        let i = piece as usize;
        let was = self.is_free(i);
        self.requested[i] = self.requested[i].saturating_add(1);
        self.recount(i, was);
    }

    /// A request was answered (data or reject) or its connection died.
    pub(super) fn on_request_done(&mut self, piece: u32) {
        let i = piece as usize;
        let was = self.is_free(i);
        self.requested[i] = self.requested[i].saturating_sub(1);
        self.recount(i, was);
    }

    /// A payload for `piece` starts arriving on `slot`. True if it should be stored; false if
    /// the piece is held or already being written by another slot (the payload is discarded).
    pub(super) fn try_claim(&mut self, piece: u32, slot: usize) -> bool {
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
    pub(super) fn release(&mut self, piece: u32, ok: bool) {
        let i = piece as usize;
        let was = self.is_free(i);
        self.claim[i] = NO_CLAIM;
        if ok {
            self.have.set(piece);
        }
        self.recount(i, was);
    }

    pub(super) fn claimed_by(&self, piece: u32) -> Option<usize> {
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
    fn test_dry_peer_is_scanned_again_once_a_piece_is_freed() {
        let mut p = Picker::new(Bitfield::new(8));
        let peer = bits(8, &[3]);
        let mut rng = Rng::new(1);
        let mut dry = None;
        p.on_request(3);
        assert_eq!(p.pick_unless_dry(&peer, &mut dry, &mut rng), None);
        assert!(dry.is_some(), "nothing free at this peer: remembered");
        assert_eq!(p.pick_unless_dry(&peer, &mut dry, &mut rng), None);
        // The request elsewhere was rejected: piece 3 is free again.
        p.on_request_done(3);
        assert_eq!(p.pick_unless_dry(&peer, &mut dry, &mut rng), Some(3));
        assert_eq!(dry, None);
    }

    /// 200 pieces, each requested somewhere, and a peer holding only piece 3, found dry.
    fn dry_peer_holding_piece_3() -> (Picker, Bitfield, Rng, Option<u64>) {
        let mut p = Picker::new(Bitfield::new(200));
        let peer = bits(200, &[3]);
        let (mut rng, mut dry) = (Rng::new(1), None);
        for i in 0..200 {
            p.on_request(i);
        }
        assert_eq!(p.pick_unless_dry(&peer, &mut dry, &mut rng), None);
        (p, peer, rng, dry)
    }

    #[test]
    fn test_dry_peer_stays_dry_when_only_pieces_it_lacks_are_freed() {
        let (mut p, peer, mut rng, mut dry) = dry_peer_holding_piece_3();
        // Pieces the peer lacks come free: it still has nothing to offer, without a scan
        // (the picks and the random draws are those of a scan all the same).
        for i in 4..10 {
            p.on_request_done(i);
        }
        let mut scan_rng = rng.clone();
        assert_eq!(p.pick_unless_dry(&peer, &mut dry, &mut rng), None);
        assert_eq!(p.pick(&peer, &mut scan_rng), None);
        assert_eq!(rng.below(1000), scan_rng.below(1000));
        assert_eq!(dry, Some(6));
        // Its piece comes free among others: found.
        p.on_request_done(3);
        p.on_request_done(150);
        assert_eq!(p.pick_unless_dry(&peer, &mut dry, &mut rng), Some(3));
    }

    #[test]
    fn test_dry_peer_is_scanned_again_once_the_log_no_longer_reaches_its_mark() {
        let (mut p, peer, mut rng, mut dry) = dry_peer_holding_piece_3();
        // Its piece comes free first, then more pieces than the log holds: the log no
        // longer shows piece 3, so only a scan finds it.
        p.on_request_done(3);
        for i in 10..10 + FREED_LOG as u32 {
            p.on_request_done(i);
        }
        assert_eq!(p.pick_unless_dry(&peer, &mut dry, &mut rng), Some(3));
    }

    #[test]
    fn test_pick_held_skips_pieces_no_peer_has() {
        let mut p = Picker::new(Bitfield::new(8));
        let origin = bits(8, &[0, 1, 2, 3, 4, 5, 6, 7]);
        let mut rng = Rng::new(3);
        assert_eq!(
            p.pick_held(&origin, &mut rng),
            None,
            "no peer holds anything"
        );
        p.peer_has(5);
        p.peer_has(6);
        p.peer_has(6);
        // The rarest held piece, never one only the origin has.
        assert_eq!(p.pick_held(&origin, &mut rng), Some(5));
        p.on_request(5);
        assert_eq!(p.pick_held(&origin, &mut rng), Some(6));
        p.on_request(6);
        assert_eq!(p.pick_held(&origin, &mut rng), None);
        assert!(
            p.pick(&origin, &mut rng).is_some(),
            "the unseen pieces are still free"
        );
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
        p.on_request(0);
        assert!(!p.endgame_allows(0), "piece 1 is still unassigned");
        p.on_request(1);
        assert!(p.all_assigned());
        assert!(p.endgame_allows(0));
        // Never a third request, never a piece already arriving.
        p.on_request(0);
        assert!(!p.endgame_allows(0));
        assert!(p.try_claim(1, 3));
        assert!(!p.endgame_allows(1));
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

    #[test]
    fn test_unseen_counts_free_pieces_no_peer_has() {
        let mut p = Picker::new(bits(4, &[0]));
        assert_eq!(p.unseen(), 3);
        p.peer_has(1);
        p.peer_has(1);
        assert_eq!(p.unseen(), 2);
        p.on_request(2);
        assert_eq!(p.unseen(), 1);
        p.peer_lost(1);
        assert_eq!(p.unseen(), 1, "piece 1 is still held by one peer");
        p.peer_lost(1);
        assert_eq!(p.unseen(), 2);
        p.on_request_done(2);
        assert!(p.try_claim(3, 0));
        assert_eq!(p.unseen(), 2);
        p.release(3, true);
        p.peer_has(0); // a piece we hold never counts
        assert_eq!(p.unseen(), 2);
    }
}
