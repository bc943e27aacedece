//! Framing (docs/PROTOCOL.md §2–3): the head every frame starts with, the longer head of a
//! PIECE frame, and how long the body of each type may be. A receiver checks a head here
//! before it buffers a byte of the body, so a peer can make it hold no more than the frame's
//! type allows: every length check once, at the edge, as smoltcp's `new_checked` does.

use super::{
    AUTH_TAG_LEN, HASH_LEN, MAX_FRAME_LEN, MAX_PEER_ENTRIES, MAX_PEER_ENTRY_LEN, MAX_PIECE_SIZE,
    MAX_PIECES, MAX_REASON_LEN, MAX_RECEIPT_ENTRIES, MAX_STANDING_ENTRIES, PROGRESS_LEN,
    QUEUE_DELAY_LEN, REACHABILITY_LEN, RECEIPT_ENTRY_LEN, STAMP_LEN, STANDING_ENTRY_LEN, WireError,
    be_u32, ty,
};

/// Bytes of the length prefix.
pub const LEN_SIZE: usize = 4;
/// Length prefix plus type byte.
pub const HEAD_SIZE: usize = LEN_SIZE + 1;
/// Length prefix, type byte and piece index: everything of a PIECE frame before its payload.
pub const PIECE_HEAD_SIZE: usize = HEAD_SIZE + 4;

/// MANIFEST before its piece hashes: file length (u64), piece size and piece count (u32
/// each), §4.2.
pub const MANIFEST_HEAD_LEN: usize = 16;
/// Longest HELLO body of any version. Version 1's is exactly 24 bytes and version 2's at
/// most 243 (`HELLO_FIXED_LEN + MAX_PATH_LEN`); every version must be read far enough to be
/// answered with ERROR 2 (§7), so this bound, which version 1 receivers already apply, never
/// changes.
pub const MAX_HELLO_LEN: usize = 256;
/// Longest ERROR body: the code and the longest reason.
pub const MAX_ERROR_LEN: usize = 2 + MAX_REASON_LEN;
/// Longest PEERS body: the count and MAX_PEER_ENTRIES IPv6 entries.
pub const MAX_PEERS_LEN: usize = 2 + MAX_PEER_ENTRIES * MAX_PEER_ENTRY_LEN;
/// Longest RECEIPT body: the count and MAX_RECEIPT_ENTRIES entries.
pub const MAX_RECEIPT_LEN: usize = 2 + MAX_RECEIPT_ENTRIES * RECEIPT_ENTRY_LEN;
/// Longest STANDING body: the count and MAX_STANDING_ENTRIES entries.
pub const MAX_STANDING_LEN: usize = 2 + MAX_STANDING_ENTRIES * STANDING_ENTRY_LEN;
/// Longest body of an extension this version does not know. It is the single bound every
/// receiver applied to control frames before per-type limits (7,235 − 1), so an extension
/// within it reaches every version 1 node.
pub const MAX_EXTENSION_LEN: usize = 7234;
/// Longest body of any frame before the peer's HELLO was accepted: a HELLO or an ERROR
/// fits, and the frame fits the receiver's initial buffer, so a connection that has not
/// said who it is cannot make the receiver allocate (issue 13: 64 connections announcing a
/// 16 MiB MANIFEST each took an origin to 1 GiB).
pub const MAX_EARLY_LEN: usize = MAX_ERROR_LEN;
const _: () = assert!(MAX_HELLO_LEN <= MAX_EARLY_LEN, "every HELLO must fit early");

/// What a receiver knows about a connection, and so how long each frame type may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The peer's HELLO was accepted.
    hello: bool,
    /// Pieces in the file and bytes per piece; the protocol's maxima before the manifest.
    pieces: u32,
    piece_size: u32,
}

impl Limits {
    /// Before the peer's HELLO was accepted: only small frames.
    pub const EARLY: Limits = Limits {
        hello: false,
        pieces: MAX_PIECES,
        piece_size: MAX_PIECE_SIZE,
    };
    /// After HELLO, before the manifest: the bounds of any file the protocol can describe.
    pub const OPEN: Limits = Limits {
        hello: true,
        pieces: MAX_PIECES,
        piece_size: MAX_PIECE_SIZE,
    };

    /// Limits for a connection whose peer's HELLO was (or was not) accepted, for the
    /// manifest's `(piece count, piece size)` once it is known.
    pub fn new(hello: bool, file: Option<(u32, u32)>) -> Limits {
        let (pieces, piece_size) = file.unwrap_or((MAX_PIECES, MAX_PIECE_SIZE));
        Limits {
            hello,
            pieces,
            piece_size,
        }
    }

    /// True until the peer's HELLO was accepted.
    pub fn is_early(&self) -> bool {
        !self.hello
    }

    /// Longest body a frame of type `t` may have (docs/PROTOCOL.md §3, per-type limits).
    /// Shorter bodies than a type needs are the parser's business, not the framer's.
    pub fn max_body(&self, t: u8) -> usize {
        let max = match t {
            ty::KEEPALIVE | ty::CHOKE | ty::UNCHOKE | ty::SWARM_DONE => 0,
            ty::INTERESTED => 1,
            ty::HAVE | ty::REQUEST | ty::REJECT | ty::CANCEL => 4,
            ty::AUTH => AUTH_TAG_LEN,
            ty::HELLO => MAX_HELLO_LEN,
            ty::MANIFEST => MANIFEST_HEAD_LEN + HASH_LEN * self.pieces as usize,
            ty::BITFIELD => self.pieces.div_ceil(8) as usize,
            ty::PIECE => 4 + self.piece_size as usize,
            ty::PEERS => MAX_PEERS_LEN,
            ty::ERROR => MAX_ERROR_LEN,
            ty::RECEIPT => MAX_RECEIPT_LEN,
            ty::REACHABILITY => REACHABILITY_LEN,
            ty::STANDING => MAX_STANDING_LEN,
            ty::STAMP => STAMP_LEN,
            ty::QUEUE_DELAY => QUEUE_DELAY_LEN,
            ty::PROGRESS => PROGRESS_LEN,
            // Unknown extensions; unknown mandatory types never get this far.
            _ => MAX_EXTENSION_LEN,
        };
        if self.hello {
            max
        } else {
            max.min(MAX_EARLY_LEN)
        }
    }
}

/// The fixed head of a frame: its length prefix and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// Bytes after the length prefix (type byte + body).
    pub len: u32,
    /// The message type (`wire::ty`); past `FrameHead::parse` it is defined or an extension.
    pub ty: u8,
}

impl FrameHead {
    /// Reads a head from the start of `buf` within the protocol's absolute bounds
    /// ([`Limits::OPEN`]); `Ok(None)` if fewer than [`HEAD_SIZE`] bytes.
    pub fn parse(buf: &[u8]) -> Result<Option<FrameHead>, WireError> {
        FrameHead::parse_within(buf, &Limits::OPEN)
    }

    /// Reads a head from the start of `buf` and checks its length against what `limits`
    /// allow for its type; `Ok(None)` if fewer than [`HEAD_SIZE`] bytes.
    pub fn parse_within(buf: &[u8], limits: &Limits) -> Result<Option<FrameHead>, WireError> {
        if buf.len() < HEAD_SIZE {
            return Ok(None);
        }
        let len = be_u32(&buf[0..4]);
        if len == 0 || len > MAX_FRAME_LEN {
            if buf.starts_with(b"HTTP/") {
                return Err(WireError::Http);
            }
            return Err(WireError::BadLength(len));
        }
        let ty = buf[4];
        if ty < ty::FIRST_EXTENSION && ty > ty::LAST_MANDATORY {
            return Err(WireError::UnknownType(ty));
        }
        let max = limits.max_body(ty);
        if len as usize - 1 > max {
            return Err(WireError::TooLong {
                ty,
                len: len - 1,
                max: max as u32,
                early: limits.is_early(),
            });
        }
        Ok(Some(FrameHead { len, ty }))
    }

    /// Body length (after the type byte).
    pub fn body_len(&self) -> usize {
        self.len as usize - 1
    }

    /// Whole frame length including the prefix.
    pub fn frame_len(&self) -> usize {
        LEN_SIZE + self.len as usize
    }
}

/// The head of a PIECE frame: receivers read these 9 bytes and stream the payload to
/// storage instead of buffering the frame (§4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceHead {
    /// Index of the piece the payload belongs to.
    pub piece: u32,
    /// Payload bytes after the head.
    pub len: u32,
}

impl PieceHead {
    /// Reads the head of the PIECE frame whose [`FrameHead`] `head` starts `buf`; `Ok(None)`
    /// until all [`PIECE_HEAD_SIZE`] bytes are there.
    pub fn parse(head: &FrameHead, buf: &[u8]) -> Result<Option<PieceHead>, WireError> {
        // A body must at least hold the piece index.
        if head.ty != ty::PIECE || head.len < 5 {
            return Err(WireError::BadBody(ty::PIECE));
        }
        if buf.len() < PIECE_HEAD_SIZE {
            return Ok(None);
        }
        Ok(Some(PieceHead {
            piece: be_u32(&buf[HEAD_SIZE..]),
            len: head.len - 5,
        }))
    }

    /// The head's bytes, to be followed by `len` payload bytes.
    pub fn emit(&self) -> [u8; PIECE_HEAD_SIZE] {
        let mut h = [0u8; PIECE_HEAD_SIZE];
        h[0..4].copy_from_slice(&(self.len + 5).to_be_bytes());
        h[4] = ty::PIECE;
        h[5..9].copy_from_slice(&self.piece.to_be_bytes());
        h
    }
}

/// The name of a message type, for errors.
pub fn type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        ty::KEEPALIVE => "KEEPALIVE",
        ty::HELLO => "HELLO",
        ty::MANIFEST => "MANIFEST",
        ty::BITFIELD => "BITFIELD",
        ty::HAVE => "HAVE",
        ty::INTERESTED => "INTERESTED",
        ty::CHOKE => "CHOKE",
        ty::UNCHOKE => "UNCHOKE",
        ty::REQUEST => "REQUEST",
        ty::REJECT => "REJECT",
        ty::PIECE => "PIECE",
        ty::PEERS => "PEERS",
        ty::SWARM_DONE => "SWARM_DONE",
        ty::ERROR => "ERROR",
        ty::CANCEL => "CANCEL",
        ty::AUTH => "AUTH",
        ty::RECEIPT => "RECEIPT",
        ty::REACHABILITY => "REACHABILITY",
        ty::STANDING => "STANDING",
        ty::STAMP => "STAMP",
        ty::QUEUE_DELAY => "QUEUE_DELAY",
        ty::PROGRESS => "PROGRESS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{HELLO_FIXED_LEN, MAX_PATH_LEN};
    use super::*;

    /// A head of type `t` announcing a `body`-byte body.
    fn head(t: u8, body: u32) -> [u8; HEAD_SIZE] {
        let mut h = [0u8; HEAD_SIZE];
        h[0..4].copy_from_slice(&(body + 1).to_be_bytes());
        h[4] = t;
        h
    }

    #[track_caller]
    fn accepts(t: u8, body: u32, limits: &Limits) {
        let h = FrameHead::parse_within(&head(t, body), limits);
        assert_eq!(
            h,
            Ok(Some(FrameHead {
                len: body + 1,
                ty: t
            }))
        );
    }

    #[track_caller]
    fn refuses(t: u8, body: u32, limits: &Limits) -> WireError {
        let e = FrameHead::parse_within(&head(t, body), limits).unwrap_err();
        assert!(matches!(e, WireError::TooLong { .. }), "{e:?}");
        e
    }

    #[test]
    fn test_head_zero_length_rejected() {
        assert_eq!(
            FrameHead::parse(&[0, 0, 0, 0, 4]),
            Err(WireError::BadLength(0))
        );
    }

    #[test]
    fn test_head_over_max_frame_len_rejected() {
        let mut b = (MAX_FRAME_LEN + 1).to_be_bytes().to_vec();
        b.push(ty::PIECE);
        assert!(matches!(FrameHead::parse(&b), Err(WireError::BadLength(_))));
        assert_eq!(
            FrameHead::parse(b"HTTP/1.1 200 OK\r\n"),
            Err(WireError::Http),
            "an HTTP answer is named as such"
        );
    }

    #[test]
    fn test_head_short_buffer_waits() {
        assert_eq!(FrameHead::parse(&[0, 0, 0]), Ok(None));
        assert_eq!(
            FrameHead::parse_within(&[0, 0, 0], &Limits::EARLY),
            Ok(None)
        );
    }

    #[test]
    fn test_head_unknown_mandatory_type_rejected() {
        assert_eq!(
            FrameHead::parse(&[0, 0, 0, 1, 0x42]),
            Err(WireError::UnknownType(0x42))
        );
    }

    #[test]
    fn test_fixed_types_at_and_over_their_size() {
        let l = Limits::OPEN;
        for (t, n) in [
            (ty::KEEPALIVE, 0),
            (ty::CHOKE, 0),
            (ty::UNCHOKE, 0),
            (ty::SWARM_DONE, 0),
            (ty::INTERESTED, 1),
            (ty::HAVE, 4),
            (ty::REQUEST, 4),
            (ty::REJECT, 4),
            (ty::CANCEL, 4),
            (ty::AUTH, 32),
            (ty::REACHABILITY, 1),
            (ty::STAMP, 8),
            (ty::QUEUE_DELAY, 4),
            (ty::PROGRESS, 4),
        ] {
            accepts(t, n, &l);
            refuses(t, n + 1, &l);
        }
        // A control frame may not claim a piece-sized length.
        refuses(ty::HAVE, 1 << 20, &l);
    }

    #[test]
    fn test_entry_types_bounded_by_their_caps() {
        let l = Limits::OPEN;
        // 256 IPv6 entries of 28 bytes, 256 receipts of 24, 256 bytes of reason.
        assert_eq!(MAX_PEERS_LEN, 2 + 256 * 28);
        assert_eq!(MAX_RECEIPT_LEN, 2 + 256 * 24);
        assert_eq!(MAX_ERROR_LEN, 258);
        assert_eq!(MAX_STANDING_LEN, 2 + 256 * 9);
        for (t, n) in [
            (ty::PEERS, MAX_PEERS_LEN),
            (ty::RECEIPT, MAX_RECEIPT_LEN),
            (ty::STANDING, MAX_STANDING_LEN),
            (ty::ERROR, MAX_ERROR_LEN),
            (ty::HELLO, MAX_HELLO_LEN),
            (0x90, MAX_EXTENSION_LEN),
        ] {
            accepts(t, n as u32, &l);
            refuses(t, n as u32 + 1, &l);
        }
    }

    #[test]
    fn test_bitfield_of_65536_pieces_accepted_before_manifest() {
        // Issue 13: 1 GiB in 16 KiB pieces needs an 8 KiB BITFIELD, over the old 7,235.
        accepts(ty::BITFIELD, 8192, &Limits::OPEN);
        let most = MAX_PIECES.div_ceil(8);
        accepts(ty::BITFIELD, most, &Limits::OPEN);
        refuses(ty::BITFIELD, most + 1, &Limits::OPEN);
    }

    #[test]
    fn test_file_sized_types_follow_the_manifest() {
        let l = Limits::new(true, Some((65_536, 16 * 1024)));
        accepts(ty::BITFIELD, 8192, &l);
        refuses(ty::BITFIELD, 8193, &l);
        accepts(ty::MANIFEST, 16 + 32 * 65_536, &l);
        refuses(ty::MANIFEST, 16 + 32 * 65_536 + 1, &l);
        accepts(ty::PIECE, 4 + 16 * 1024, &l);
        refuses(ty::PIECE, 4 + 16 * 1024 + 1, &l);
        // 13 pieces: the BITFIELD's last byte is partly spare.
        let l = Limits::new(true, Some((13, 16 * 1024)));
        accepts(ty::BITFIELD, 2, &l);
        refuses(ty::BITFIELD, 3, &l);
    }

    #[test]
    fn test_manifest_and_piece_bounded_by_protocol_before_manifest() {
        let l = Limits::OPEN;
        let manifest = (MANIFEST_HEAD_LEN + HASH_LEN * MAX_PIECES as usize) as u32;
        assert!(
            manifest < MAX_FRAME_LEN,
            "the largest manifest fits a frame"
        );
        assert!(
            manifest + HASH_LEN as u32 > MAX_FRAME_LEN - 1,
            "one more piece would not fit"
        );
        assert_eq!(MAX_PIECES, 524_287);
        accepts(ty::MANIFEST, manifest, &l);
        accepts(ty::PIECE, 4 + MAX_PIECE_SIZE, &l);
    }

    #[test]
    fn test_early_large_manifest_refused_hello_accepted() {
        let l = Limits::EARLY;
        accepts(ty::HELLO, (HELLO_FIXED_LEN + MAX_PATH_LEN) as u32, &l);
        accepts(ty::AUTH, 32, &l);
        accepts(ty::ERROR, MAX_ERROR_LEN as u32, &l);
        let e = refuses(ty::MANIFEST, 16 << 20, &l);
        assert_eq!(
            e,
            WireError::TooLong {
                ty: ty::MANIFEST,
                len: 16 << 20,
                max: MAX_EARLY_LEN as u32,
                early: true
            }
        );
        let text = e.to_string();
        assert!(
            text.contains("MANIFEST") && text.contains("before HELLO"),
            "{text}"
        );
        assert!(text.contains("16777216") && text.contains("258"), "{text}");
        refuses(ty::PIECE, 4 + 16 * 1024, &l);
        refuses(ty::BITFIELD, 8192, &l);
        // After HELLO the largest MANIFEST is within bounds.
        accepts(
            ty::MANIFEST,
            (MANIFEST_HEAD_LEN + HASH_LEN * MAX_PIECES as usize) as u32,
            &Limits::OPEN,
        );
    }

    #[test]
    fn test_too_long_message_names_type_and_sizes() {
        let e = refuses(
            ty::BITFIELD,
            9000,
            &Limits::new(true, Some((100, 16 * 1024))),
        );
        assert_eq!(
            e.to_string(),
            "BITFIELD frame with a 9000-byte body; the limit for BITFIELD is 13 bytes"
        );
        let e = refuses(0x90, 10_000, &Limits::OPEN);
        assert!(e.to_string().contains("extension 0x90"), "{e}");
    }

    #[test]
    fn test_piece_head_fixed_bytes_both_ways() {
        let bytes = [0, 0, 0, 0x0f, ty::PIECE, 0, 0, 1, 2];
        let h = FrameHead::parse(&bytes).unwrap().unwrap();
        let p = PieceHead::parse(&h, &bytes).unwrap().unwrap();
        assert_eq!(
            p,
            PieceHead {
                piece: 0x102,
                len: 10
            }
        );
        assert_eq!(p.emit(), bytes);
    }

    #[test]
    fn test_piece_head_waits_for_index() {
        let bytes = PieceHead { piece: 7, len: 100 }.emit();
        let h = FrameHead::parse(&bytes).unwrap().unwrap();
        for n in HEAD_SIZE..PIECE_HEAD_SIZE {
            assert_eq!(PieceHead::parse(&h, &bytes[..n]), Ok(None));
        }
    }

    #[test]
    fn test_piece_head_without_index_rejected() {
        // len 3: type byte and two bytes, no room for the piece index.
        let bytes = [0, 0, 0, 3, ty::PIECE, 0, 0];
        let h = FrameHead::parse(&bytes).unwrap().unwrap();
        assert_eq!(
            PieceHead::parse(&h, &bytes),
            Err(WireError::BadBody(ty::PIECE))
        );
        // An empty PIECE payload is a framing matter for the node (length check), not here.
        let bytes = [0, 0, 0, 5, ty::PIECE, 0, 0, 0, 9];
        let h = FrameHead::parse(&bytes).unwrap().unwrap();
        assert_eq!(
            PieceHead::parse(&h, &bytes),
            Ok(Some(PieceHead { piece: 9, len: 0 }))
        );
    }

    #[test]
    fn test_piece_head_of_other_type_rejected() {
        let bytes = [0, 0, 0, 5, ty::HAVE, 0, 0, 0, 9];
        let h = FrameHead::parse(&bytes).unwrap().unwrap();
        assert!(PieceHead::parse(&h, &bytes).is_err());
    }

    #[test]
    fn test_every_type_has_a_limit_within_max_frame_len() {
        for t in 0..=255u8 {
            for l in [Limits::EARLY, Limits::OPEN] {
                assert!(l.max_body(t) < MAX_FRAME_LEN as usize, "type {t:#x}");
            }
        }
    }
}
