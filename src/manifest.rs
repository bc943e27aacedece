//! The manifest: what file a swarm shares and how to check each piece of it
//! (docs/PROTOCOL.md §4.2). Built by the origin from the mapped file, sent once to each
//! client, and validated there before a single byte of the download is accepted.

use std::fmt;

use crate::wire::{self, MAX_PIECE_SIZE, MAX_PIECES, MIN_PIECE_SIZE};

/// Pieces a file is cut into by default. Measured in the 16-client namespace crowd (64 MiB,
/// `bench/swarm.py --serve-args "--piece-size S"`): last client at 1.25x the Kumar-Ross
/// minimum with 2048 pieces, 1.24x with 1024, 1.31x with 512, ~1.45x with 256 and 1.84x
/// with 64. Fewer, larger pieces take longer to spread (the swarm's start-up and tail
/// grow with the piece's transfer time); many more cost per-piece work and bigger
/// manifests for nothing.
pub const TARGET_PIECES: u64 = 1024;

/// The default piece size for a file of `len` bytes: the power of two that gives about
/// TARGET_PIECES pieces, within the protocol's limits.
pub fn auto_piece_size(len: u64) -> u32 {
    let want = len.div_ceil(TARGET_PIECES).max(1).next_power_of_two();
    want.clamp(MIN_PIECE_SIZE as u64, MAX_PIECE_SIZE as u64) as u32
}

/// Seed of the second CRC that widens the file id to 64 bits. Any constant other than the
/// CRC32 default would do; these are the bytes "TFTT".
const FILE_ID_SEED: u32 = 0x5446_5454;

/// A validated manifest: file length, piece size and one CRC32 per piece, with the file id
/// computed once from their encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    file_len: u64,
    piece_size: u32,
    crcs: Vec<u32>,
    id: u64,
}

/// Why a piece size, file length or MANIFEST body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestError {
    /// Piece size outside [MIN_PIECE_SIZE, MAX_PIECE_SIZE].
    PieceSize(u32),
    /// More pieces than fit in one frame.
    TooManyPieces(u64),
    /// Body length does not match the declared piece count.
    Truncated,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::PieceSize(s) => write!(
                f,
                "piece size {s} outside {MIN_PIECE_SIZE}..={MAX_PIECE_SIZE} bytes"
            ),
            ManifestError::TooManyPieces(n) => write!(
                f,
                "{n} pieces is more than {MAX_PIECES}; use a larger piece size"
            ),
            ManifestError::Truncated => write!(f, "manifest length does not match its piece count"),
        }
    }
}

impl std::error::Error for ManifestError {}

/// Checks a piece size and file length pair; returns the piece count.
pub fn piece_count_for(file_len: u64, piece_size: u32) -> Result<u32, ManifestError> {
    if !(MIN_PIECE_SIZE..=MAX_PIECE_SIZE).contains(&piece_size) {
        return Err(ManifestError::PieceSize(piece_size));
    }
    let n = file_len.div_ceil(piece_size as u64);
    if n > MAX_PIECES as u64 {
        return Err(ManifestError::TooManyPieces(n));
    }
    Ok(n as u32)
}

impl Manifest {
    /// Builds the manifest of `data`: one CRC32 per piece.
    pub fn build(data: &[u8], piece_size: u32) -> Result<Manifest, ManifestError> {
        piece_count_for(data.len() as u64, piece_size)?;
        let crcs = data
            .chunks(piece_size as usize)
            .map(crc32fast::hash)
            .collect();
        Ok(Manifest::with_crcs(data.len() as u64, piece_size, crcs))
    }

    /// The manifest of a file known only by its length and piece checksums (the simulator's
    /// files have no bytes).
    pub fn from_crcs(
        file_len: u64,
        piece_size: u32,
        crcs: Vec<u32>,
    ) -> Result<Manifest, ManifestError> {
        let n = piece_count_for(file_len, piece_size)?;
        if crcs.len() != n as usize {
            return Err(ManifestError::Truncated);
        }
        Ok(Manifest::with_crcs(file_len, piece_size, crcs))
    }

    fn with_crcs(file_len: u64, piece_size: u32, crcs: Vec<u32>) -> Manifest {
        let mut m = Manifest {
            file_len,
            piece_size,
            crcs,
            id: 0,
        };
        let mut body = Vec::new();
        m.encode(&mut body);
        let lo = crc32fast::hash(&body);
        let mut h = crc32fast::Hasher::new_with_initial(FILE_ID_SEED);
        h.update(&body);
        m.id = ((h.finalize() as u64) << 32) | lo as u64;
        // 0 means "unknown" in HELLO, so no real file may have it.
        if m.id == 0 {
            m.id = 1;
        }
        m
    }

    /// Validates and decodes a MANIFEST body.
    pub fn decode(body: &[u8]) -> Result<Manifest, ManifestError> {
        if body.len() < 16 {
            return Err(ManifestError::Truncated);
        }
        let file_len = wire::be_u64(&body[0..8]);
        let piece_size = wire::be_u32(&body[8..12]);
        let count = wire::be_u32(&body[12..16]);
        let expect = piece_count_for(file_len, piece_size)?;
        if count != expect || body.len() != 16 + 4 * count as usize {
            return Err(ManifestError::Truncated);
        }
        let crcs = body[16..].chunks_exact(4).map(wire::be_u32).collect();
        Ok(Manifest::with_crcs(file_len, piece_size, crcs))
    }

    /// Appends the MANIFEST body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(16 + 4 * self.crcs.len());
        out.extend_from_slice(&self.file_len.to_be_bytes());
        out.extend_from_slice(&self.piece_size.to_be_bytes());
        out.extend_from_slice(&(self.crcs.len() as u32).to_be_bytes());
        for c in &self.crcs {
            out.extend_from_slice(&c.to_be_bytes());
        }
    }

    /// 64-bit fingerprint of the manifest: two CRC32s of its encoding. It tells swarms apart;
    /// it is not a cryptographic commitment (docs/PROTOCOL.md §4.2).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Length of the shared file in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Bytes in every piece but the last, within [MIN_PIECE_SIZE, MAX_PIECE_SIZE].
    pub fn piece_size(&self) -> u32 {
        self.piece_size
    }

    /// Number of pieces, the last of them possibly short.
    pub fn piece_count(&self) -> u32 {
        self.crcs.len() as u32
    }

    /// Byte offset of `piece` in the file.
    pub fn piece_offset(&self, piece: u32) -> u64 {
        piece as u64 * self.piece_size as u64
    }

    /// Length of `piece`: the piece size, except for a shorter last piece.
    pub fn piece_len(&self, piece: u32) -> u32 {
        let start = self.piece_offset(piece);
        (self.file_len - start).min(self.piece_size as u64) as u32
    }

    /// The CRC-32 piece `piece` must have.
    pub fn crc(&self, piece: u32) -> u32 {
        self.crcs[piece as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K16: u32 = 16 * 1024;

    #[test]
    fn test_build_last_piece_short() {
        let data = vec![7u8; 40 * 1024];
        let m = Manifest::build(&data, K16).unwrap();
        assert_eq!(m.piece_count(), 3);
        assert_eq!(m.piece_len(0), K16);
        assert_eq!(m.piece_len(2), 8 * 1024);
        assert_eq!(crc32fast::hash(&data[32 * 1024..]), m.crc(2));
        assert_ne!(crc32fast::hash(&data[32 * 1024 + 1..]), m.crc(2));
    }

    #[test]
    fn test_empty_file_has_no_pieces() {
        let m = Manifest::build(&[], K16).unwrap();
        assert_eq!(m.piece_count(), 0);
        assert_ne!(m.id(), 0);
    }

    #[test]
    fn test_encode_decode_roundtrip_keeps_id() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let m = Manifest::build(&data, K16).unwrap();
        let mut body = Vec::new();
        m.encode(&mut body);
        let d = Manifest::decode(&body).unwrap();
        assert_eq!(d, m);
    }

    #[test]
    fn test_ids_differ_for_different_content() {
        let a = Manifest::build(&[1u8; 1000], K16).unwrap();
        let b = Manifest::build(&[2u8; 1000], K16).unwrap();
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn test_decode_rejects_count_mismatch() {
        let m = Manifest::build(&[1u8; 40_000], K16).unwrap();
        let mut body = Vec::new();
        m.encode(&mut body);
        body.truncate(body.len() - 4);
        assert_eq!(Manifest::decode(&body), Err(ManifestError::Truncated));
        body[15] = 2; // now count=2 but file_len needs 3
        assert_eq!(Manifest::decode(&body), Err(ManifestError::Truncated));
    }

    #[test]
    fn test_decode_rejects_piece_size_out_of_range() {
        let mut body = Vec::new();
        body.extend_from_slice(&10u64.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&10u32.to_be_bytes());
        assert_eq!(Manifest::decode(&body), Err(ManifestError::PieceSize(1)));
    }

    #[test]
    fn test_auto_piece_size_targets_about_1024_pieces() {
        assert_eq!(auto_piece_size(0), MIN_PIECE_SIZE);
        assert_eq!(auto_piece_size(64 << 20), 64 * 1024);
        assert_eq!(auto_piece_size((64 << 20) + 1), 128 * 1024);
        assert_eq!(auto_piece_size(1 << 30), 1 << 20);
        assert_eq!(auto_piece_size(1 << 40), MAX_PIECE_SIZE);
        // Always a valid manifest, however large the file.
        assert!(piece_count_for(1 << 40, auto_piece_size(1 << 40)).is_ok());
    }

    #[test]
    fn test_too_many_pieces() {
        assert!(matches!(
            piece_count_for(1 << 50, K16),
            Err(ManifestError::TooManyPieces(_))
        ));
    }
}
