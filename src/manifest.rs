//! The manifest: what file a swarm shares and how to check each piece of it
//! (docs/PROTOCOL.md §4.2): one BLAKE3 hash per piece, and the root digest over them that a
//! user can check. Built by the origin from the mapped file, sent once to each client, and
//! validated there before a single byte of the download is accepted.

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

/// A BLAKE3 hash: of one piece, or of the whole MANIFEST body (the root digest).
pub type Hash = [u8; wire::HASH_LEN];

/// A validated manifest: file length, piece size and one BLAKE3 hash per piece, with the
/// root digest and file id computed once from their encoding (docs/PROTOCOL.md §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    file_len: u64,
    piece_size: u32,
    hashes: Vec<Hash>,
    digest: Hash,
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

/// The BLAKE3 hash of `bytes`, as pieces are checked against the manifest.
pub fn hash(bytes: &[u8]) -> Hash {
    *blake3::hash(bytes).as_bytes()
}

impl Manifest {
    /// Builds the manifest of `data`: one BLAKE3 hash per piece. Each piece is hashed in
    /// one call, so BLAKE3 works on many of its 1 KiB chunks at once (SIMD).
    pub fn build(data: &[u8], piece_size: u32) -> Result<Manifest, ManifestError> {
        piece_count_for(data.len() as u64, piece_size)?;
        let hashes = data.chunks(piece_size as usize).map(hash).collect();
        Ok(Manifest::with_hashes(data.len() as u64, piece_size, hashes))
    }

    /// The manifest of a file known only by its length and piece hashes (the simulator's
    /// files have no bytes).
    pub fn from_hashes(
        file_len: u64,
        piece_size: u32,
        hashes: Vec<Hash>,
    ) -> Result<Manifest, ManifestError> {
        let n = piece_count_for(file_len, piece_size)?;
        if hashes.len() != n as usize {
            return Err(ManifestError::Truncated);
        }
        Ok(Manifest::with_hashes(file_len, piece_size, hashes))
    }

    fn with_hashes(file_len: u64, piece_size: u32, hashes: Vec<Hash>) -> Manifest {
        let mut m = Manifest {
            file_len,
            piece_size,
            hashes,
            digest: [0; wire::HASH_LEN],
            id: 0,
        };
        let mut body = Vec::new();
        m.encode(&mut body);
        m.digest = hash(&body);
        m.id = file_id(&m.digest);
        m
    }

    /// Validates and decodes a MANIFEST body.
    pub fn decode(body: &[u8]) -> Result<Manifest, ManifestError> {
        if body.len() < wire::MANIFEST_HEAD_LEN {
            return Err(ManifestError::Truncated);
        }
        let file_len = wire::be_u64(&body[0..8]);
        let piece_size = wire::be_u32(&body[8..12]);
        let count = wire::be_u32(&body[12..16]);
        let expect = piece_count_for(file_len, piece_size)?;
        let len = wire::MANIFEST_HEAD_LEN + wire::HASH_LEN * count as usize;
        if count != expect || body.len() != len {
            return Err(ManifestError::Truncated);
        }
        let hashes = body[wire::MANIFEST_HEAD_LEN..]
            .chunks_exact(wire::HASH_LEN)
            .map(|h| h.try_into().expect("exact chunks"))
            .collect();
        Ok(Manifest::with_hashes(file_len, piece_size, hashes))
    }

    /// Appends the MANIFEST body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(wire::MANIFEST_HEAD_LEN + wire::HASH_LEN * self.hashes.len());
        out.extend_from_slice(&self.file_len.to_be_bytes());
        out.extend_from_slice(&self.piece_size.to_be_bytes());
        out.extend_from_slice(&(self.hashes.len() as u32).to_be_bytes());
        for h in &self.hashes {
            out.extend_from_slice(h);
        }
    }

    /// The root digest: BLAKE3 of the MANIFEST body. It commits to every piece, so a user
    /// who has it from a trusted place (`get --expect-digest`) trusts the file no further
    /// than that (docs/PROTOCOL.md §4.2).
    pub fn digest(&self) -> &Hash {
        &self.digest
    }

    /// 64-bit id of the swarm in HELLO: the first 8 bytes of the digest, big-endian (0, which
    /// means "unknown" in HELLO, becomes 1).
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
        self.hashes.len() as u32
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

    /// The BLAKE3 hash piece `piece` must have.
    pub fn piece_hash(&self, piece: u32) -> &Hash {
        &self.hashes[piece as usize]
    }

    /// Whether `got`, the BLAKE3 hash of received bytes, is piece `piece`'s.
    pub fn verify(&self, piece: u32, got: &Hash) -> bool {
        self.hashes.get(piece as usize) == Some(got)
    }
}

/// The file id of a root digest: its first 8 bytes, big-endian, with 0 made 1.
fn file_id(digest: &Hash) -> u64 {
    wire::be_u64(digest).max(1)
}

/// `digest` as 64 lowercase hex digits, as `serve` prints it and `get --expect-digest`
/// takes it.
pub fn to_hex(digest: &Hash) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest from 64 hex digits (either case), with or without a `blake3:` prefix.
pub fn parse_digest(s: &str) -> Option<Hash> {
    let hex = s.strip_prefix("blake3:").unwrap_or(s);
    if hex.len() != 2 * wire::HASH_LEN || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; wire::HASH_LEN];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
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
        assert!(m.verify(2, &hash(&data[32 * 1024..])));
        assert!(!m.verify(2, &hash(&data[32 * 1024 + 1..])));
        assert!(!m.verify(3, &hash(&data[32 * 1024..])), "no piece 3");
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
        body.truncate(body.len() - 32);
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

    #[test]
    fn test_manifest_v2_fixed_vector() {
        // 16 KiB + 1 byte of 0x61: two pieces. Body = header, then BLAKE3 of each piece.
        let data = vec![0x61u8; K16 as usize + 1];
        let m = Manifest::build(&data, K16).unwrap();
        let mut body = Vec::new();
        m.encode(&mut body);
        assert_eq!(body.len(), 16 + 2 * 32);
        assert_eq!(
            &body[..16],
            &[0, 0, 0, 0, 0, 0, 0x40, 1, 0, 0, 0x40, 0, 0, 0, 0, 2]
        );
        assert_eq!(
            &body[16..48],
            blake3::hash(&data[..K16 as usize]).as_bytes()
        );
        assert_eq!(&body[48..], blake3::hash(&[0x61]).as_bytes());
        assert_eq!(m.digest(), blake3::hash(&body).as_bytes());
        assert_eq!(
            m.id(),
            u64::from_be_bytes(m.digest()[..8].try_into().unwrap())
        );
    }

    #[test]
    fn test_decode_rejects_every_wrong_length() {
        let m = Manifest::build(&[5u8; 40_000], K16).unwrap();
        let mut body = Vec::new();
        m.encode(&mut body);
        for n in (0..body.len()).chain([body.len() + 1, body.len() + 32]) {
            let mut b = body.clone();
            b.resize(n, 0);
            assert_eq!(Manifest::decode(&b), Err(ManifestError::Truncated), "{n}");
        }
        // Too many pieces for any frame.
        let mut b = Vec::new();
        b.extend_from_slice(&(1u64 << 50).to_be_bytes());
        b.extend_from_slice(&K16.to_be_bytes());
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Manifest::decode(&b),
            Err(ManifestError::TooManyPieces(_))
        ));
    }

    #[test]
    fn test_one_changed_hash_changes_digest_and_id() {
        let m = Manifest::build(&[9u8; 50_000], K16).unwrap();
        let mut body = Vec::new();
        m.encode(&mut body);
        body[20] ^= 1;
        let other = Manifest::decode(&body).unwrap();
        assert_ne!(other.digest(), m.digest());
        assert_ne!(other.id(), m.id());
    }

    #[test]
    fn test_digest_hex_both_ways() {
        let m = Manifest::build(&[1u8; 100], K16).unwrap();
        let hex = to_hex(m.digest());
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(parse_digest(&hex), Some(*m.digest()));
        assert_eq!(parse_digest(&format!("blake3:{hex}")), Some(*m.digest()));
        assert_eq!(parse_digest(&hex.to_uppercase()), Some(*m.digest()));
        assert_eq!(parse_digest(&hex[..62]), None);
        assert_eq!(parse_digest(&format!("{}zz", &hex[..62])), None);
        assert_eq!(parse_digest(&format!("sha256:{hex}")), None);
        assert_eq!(parse_digest(&format!("{}é", &hex[..62])), None);
    }
}
