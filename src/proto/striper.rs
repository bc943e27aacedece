//! The origin's choice of what to send (docs/PROTOCOL.md §5.2): the first copies of different
//! pieces go to different clients, and a piece goes out again only once every piece the
//! client lacks is already in the swarm. The origin's upload is the scarce resource of a flash
//! crowd, so each byte of it should add a piece the swarm does not have (BEP 16 superseeding
//! makes the same argument).

use super::rng::Rng;
use crate::bitfield::Bitfield;

#[derive(Debug, Clone)]
pub(super) struct Striper {
    /// Copies of each piece in the swarm: held by a connected client, or on its way from the
    /// origin to one.
    copies: Vec<u32>,
    /// Every piece below this index has at least one copy; fresh pieces are handed out from
    /// here in index order, which keeps the common case O(1) and the disk reads sequential.
    fresh_cursor: u32,
}

impl Striper {
    pub(super) fn new(pieces: u32) -> Striper {
        Striper {
            copies: vec![0; pieces as usize],
            fresh_cursor: 0,
        }
    }

    pub(super) fn copies(&self, piece: u32) -> u32 {
        self.copies[piece as usize]
    }

    pub(super) fn add_copy(&mut self, piece: u32) {
        self.copies[piece as usize] += 1;
    }

    /// A client holding (or being sent) `piece` left the swarm.
    pub(super) fn remove_copy(&mut self, piece: u32) {
        let c = &mut self.copies[piece as usize];
        *c = c.saturating_sub(1);
        if *c == 0 {
            self.fresh_cursor = self.fresh_cursor.min(piece);
        }
    }

    /// The piece the origin should send next to a client that holds `has`, among those not
    /// `excluded` (already on their way to it): the one with the fewest copies, random among
    /// equals.
    pub(super) fn choose(
        &mut self,
        has: &Bitfield,
        excluded: impl Fn(u32) -> bool,
        rng: &mut Rng,
    ) -> Option<u32> {
        let n = self.copies.len() as u32;
        let wanted = |i: u32| !has.get(i) && !excluded(i);
        while self.fresh_cursor < n && self.copies[self.fresh_cursor as usize] > 0 {
            self.fresh_cursor += 1;
        }
        if let Some(i) = (self.fresh_cursor..n).find(|&i| self.copies[i as usize] == 0 && wanted(i))
        {
            return Some(i);
        }
        if n == 0 {
            return None;
        }
        let start = rng.below(n);
        let mut best: Option<(u32, u32)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let c = self.copies[i as usize];
            if wanted(i) && best.is_none_or(|(bc, _)| c < bc) {
                best = Some((c, i));
            }
        }
        best.map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clients_get_different_fresh_pieces() {
        let mut s = Striper::new(4);
        let empty = Bitfield::new(4);
        let mut rng = Rng::new(1);
        let a = s.choose(&empty, |_| false, &mut rng).unwrap();
        s.add_copy(a);
        let b = s.choose(&empty, |_| false, &mut rng).unwrap();
        s.add_copy(b);
        assert_ne!(a, b);
    }

    #[test]
    fn test_second_copy_only_when_no_fresh_piece_is_wanted() {
        let mut s = Striper::new(3);
        let mut rng = Rng::new(3);
        s.add_copy(0);
        s.add_copy(1);
        s.add_copy(1);
        // The client has piece 2 (it got it from a peer, so it counts as a copy too).
        s.add_copy(2);
        let mut has = Bitfield::new(3);
        has.set(2);
        // 0 has fewer copies than 1.
        assert_eq!(s.choose(&has, |_| false, &mut rng), Some(0));
        // Nothing is sent twice to the same client at once.
        assert_eq!(s.choose(&has, |i| i == 0, &mut rng), Some(1));
        assert_eq!(s.choose(&has, |i| i <= 1, &mut rng), None);
    }

    #[test]
    fn test_departed_copy_makes_piece_fresh_again() {
        let mut s = Striper::new(3);
        let mut rng = Rng::new(5);
        let none = Bitfield::new(3);
        for _ in 0..3 {
            let p = s.choose(&none, |_| false, &mut rng).unwrap();
            s.add_copy(p);
        }
        s.remove_copy(1);
        assert_eq!(s.choose(&none, |_| false, &mut rng), Some(1));
    }
}
