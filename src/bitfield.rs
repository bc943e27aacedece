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
}

#[cfg(test)]
mod tests {
    use super::*;

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
