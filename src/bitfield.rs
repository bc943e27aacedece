//! A set of piece indices, in BitTorrent's BITFIELD layout (BEP 3): bit 7 of byte 0 is
//! piece 0, spare bits at the end are zero.

/// Which pieces of a file a node (ours or a peer) has. The count is kept as bits are set and
/// cleared, so `count` and `is_full` are O(1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    bits: Vec<u8>,
    len: u32,
    count: u32,
}

impl Bitfield {
    /// A field of `len` pieces, none set.
    pub fn new(len: u32) -> Bitfield {
        Bitfield {
            bits: vec![0; len.div_ceil(8) as usize],
            len,
            count: 0,
        }
    }

    /// A field of `len` pieces, all set: what the origin holds.
    pub fn full(len: u32) -> Bitfield {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// Decodes a BITFIELD body for `len` pieces; `None` if the length or spare bits are wrong.
    pub fn from_bytes(bytes: &[u8], len: u32) -> Option<Bitfield> {
        if bytes.len() != len.div_ceil(8) as usize {
            return None;
        }
        let spare = (bytes.len() as u32 * 8 - len) as u8;
        if spare > 0 && bytes[bytes.len() - 1] & ((1u8 << spare) - 1) != 0 {
            return None;
        }
        let count = bytes.iter().map(|b| b.count_ones()).sum();
        Some(Bitfield {
            bits: bytes.to_vec(),
            len,
            count,
        })
    }

    /// The BITFIELD body, ready to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Number of pieces in the file, set or not.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True for a file of no pieces (an empty file), not for a field with none set.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many pieces are set.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// True once every piece is set; a file of no pieces is always full.
    pub fn is_full(&self) -> bool {
        self.count == self.len
    }

    /// Whether piece `i` is set; false for any `i` out of range.
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bits[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Sets piece `i`; returns false if it was already set. `i` must be in range.
    pub fn set(&mut self, i: u32) -> bool {
        let (byte, mask) = ((i / 8) as usize, 0x80u8 >> (i % 8));
        if self.bits[byte] & mask != 0 {
            return false;
        }
        self.bits[byte] |= mask;
        self.count += 1;
        true
    }

    /// Clears piece `i`; returns false if it was not set. `i` must be in range.
    pub fn clear(&mut self, i: u32) -> bool {
        let (byte, mask) = ((i / 8) as usize, 0x80u8 >> (i % 8));
        if self.bits[byte] & mask == 0 {
            return false;
        }
        self.bits[byte] &= !mask;
        self.count -= 1;
        true
    }

    /// Indices of set pieces, in order.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }

    /// Indices in `range` set both here and in `other` (a field of the same length), in
    /// order, found 64 at a time: late in a download most of a peer's pieces are held
    /// already, and the picker runs this for every request.
    pub fn common_ones<'a>(
        &'a self,
        other: &'a Bitfield,
        range: std::ops::Range<u32>,
    ) -> CommonOnes<'a> {
        debug_assert_eq!(self.len, other.len);
        let end = range.end.min(self.len);
        let mut it = CommonOnes {
            a: &self.bits,
            b: &other.bits,
            word: 0,
            next: range.start / 64,
            end,
        };
        if range.start < end {
            it.load();
            // Not the pieces before the range in its first word.
            it.word &= u64::MAX >> (range.start % 64);
        } else {
            it.end = 0;
        }
        it
    }
}

/// `Bitfield::common_ones`.
pub struct CommonOnes<'a> {
    a: &'a [u8],
    b: &'a [u8],
    /// The current word's remaining common bits, piece `64 * (next - 1)` at the top.
    word: u64,
    /// The word to load after this one.
    next: u32,
    end: u32,
}

impl CommonOnes<'_> {
    /// Loads word `next` (pieces `64 * next ..`, the first at the top bit) and steps on;
    /// bits at or after `end` are dropped.
    fn load(&mut self) {
        let word = |bytes: &[u8]| {
            let from = (self.next * 8) as usize;
            let mut buf = [0u8; 8];
            let got = bytes.len().saturating_sub(from).min(8);
            buf[..got].copy_from_slice(&bytes[from..from + got]);
            u64::from_be_bytes(buf)
        };
        self.word = word(self.a) & word(self.b);
        let past = self.end.saturating_sub(self.next * 64);
        if past < 64 {
            self.word &= !(u64::MAX >> past);
        }
        self.next += 1;
    }
}

impl Iterator for CommonOnes<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        while self.word == 0 {
            if self.next * 64 >= self.end {
                return None;
            }
            self.load();
        }
        let top = self.word.leading_zeros();
        self.word &= !(1u64 << (63 - top));
        Some((self.next - 1) * 64 + top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_common_ones_is_the_scan_of_both_fields() {
        // Lengths around word and byte edges, ranges anywhere in them.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut draw = |n: u32| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as u32
        };
        for len in [1, 7, 8, 9, 63, 64, 65, 127, 128, 200, 1024] {
            for _ in 0..50 {
                let (mut a, mut b) = (Bitfield::new(len), Bitfield::new(len));
                for _ in 0..draw(len * 2) {
                    a.set(draw(len));
                    b.set(draw(len));
                }
                let (lo, hi) = (draw(len + 1), draw(len + 2));
                let scan: Vec<u32> = (lo..hi).filter(|&i| a.get(i) && b.get(i)).collect();
                assert_eq!(
                    a.common_ones(&b, lo..hi).collect::<Vec<_>>(),
                    scan,
                    "{len} {lo}..{hi}"
                );
            }
        }
    }

    #[test]
    fn test_clear_undoes_set() {
        let mut b = Bitfield::new(10);
        b.set(9);
        assert!(b.clear(9));
        assert!(!b.clear(9));
        assert_eq!((b.count(), b.as_bytes()), (0, &[0u8, 0][..]));
    }

    #[test]
    fn test_layout_msb_first() {
        let mut b = Bitfield::new(10);
        b.set(0);
        b.set(9);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        assert!(!b.set(9));
        assert_eq!(b.count(), 2);
    }

    #[test]
    fn test_from_bytes_rejects_spare_bits_and_length() {
        assert!(Bitfield::from_bytes(&[0xff, 0xff], 10).is_none());
        assert!(Bitfield::from_bytes(&[0xff], 10).is_none());
        let b = Bitfield::from_bytes(&[0xff, 0xc0], 10).unwrap();
        assert!(b.is_full());
        assert_eq!(b.ones().count(), 10);
    }

    #[test]
    fn test_empty() {
        let b = Bitfield::from_bytes(&[], 0).unwrap();
        assert!(b.is_full());
        assert!(!b.get(0));
    }
}
