//! Frame codec for the TFTTP wire protocol (docs/PROTOCOL.md §2–4): framing, message
//! parse/emit, and the limits a peer enforces. No state and no I/O, after smoltcp's `wire`.
//!
//! Every frame is `len: u32 BE | type: u8 | body`, where `len` counts the type byte and the
//! body. `frame.rs` reads heads and bounds each type's body; this file parses and emits
//! bodies. PIECE frames are the exception to "parse the whole frame": the driver reads their
//! 9-byte [`PieceHead`] and streams the payload straight to storage, so this module never
//! sees a payload it would have to copy.

mod frame;
mod hello;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use frame::{
    FrameHead, HEAD_SIZE, LEN_SIZE, Limits, MANIFEST_HEAD_LEN, MAX_EARLY_LEN, MAX_ERROR_LEN,
    MAX_EXTENSION_LEN, MAX_HELLO_LEN, MAX_PEERS_LEN, MAX_RECEIPT_LEN, MAX_STANDING_LEN,
    PIECE_HEAD_SIZE, PieceHead, type_name,
};
pub use hello::{FLAG_AUTH, HELLO_FIXED_LEN, Hello, MAX_PATH_LEN, NONCE_LEN, Role, path_is_safe};

/// First bytes of every HELLO body, so a stray connection from another protocol fails fast.
pub const MAGIC: [u8; 4] = *b"TFTT";
/// Protocol version spoken by this implementation (docs/PROTOCOL.md §7). Version 2 put
/// BLAKE3 piece hashes in the manifest, and flags, a nonce and a path in HELLO, and added
/// AUTH (issues 13 and 14).
pub const VERSION: u8 = 2;

/// Smallest piece size a manifest may declare: below it per-frame overhead dominates
/// (16 KiB is BitTorrent's block size, BEP 3).
pub const MIN_PIECE_SIZE: u32 = 16 * 1024;
/// Largest piece size: bounds the largest frame a peer must be ready to receive.
pub const MAX_PIECE_SIZE: u32 = 16 * 1024 * 1024;
/// Largest value of the length prefix: a PIECE frame of the largest piece.
pub const MAX_FRAME_LEN: u32 = 1 + 4 + MAX_PIECE_SIZE;
/// Bytes of a BLAKE3 hash: a piece's hash in the manifest, the manifest's root digest.
pub const HASH_LEN: usize = 32;
/// Largest number of pieces: the manifest (type byte, 16 bytes, then a hash per piece)
/// must fit in one frame.
pub const MAX_PIECES: u32 = (MAX_FRAME_LEN - 1 - 16) / HASH_LEN as u32;
/// Bytes of an AUTH tag: a keyed BLAKE3 hash (docs/PROTOCOL.md §4.7).
pub const AUTH_TAG_LEN: usize = 32;
/// REQUEST to the origin for "a piece of your choice that I lack" (docs/PROTOCOL.md §5).
pub const WILDCARD: u32 = u32::MAX;
/// Most entries in one PEERS frame; more peers are sent in several frames.
pub const MAX_PEER_ENTRIES: usize = 256;
/// Most entries in one RECEIPT frame; a client with more peers sends several frames.
pub const MAX_RECEIPT_ENTRIES: usize = 256;
/// Longest reason text in an ERROR frame; longer reasons are truncated by the sender.
pub const MAX_REASON_LEN: usize = 256;
/// Bytes of a REACHABILITY body: one flag, 0 (unreachable) or 1 (reachable), §4.8.
pub const REACHABILITY_LEN: usize = 1;
/// Most entries in one STANDING frame; more are sent in several frames (§4.9).
pub const MAX_STANDING_ENTRIES: usize = 256;
/// Bytes of a STAMP body: the sender's clock in microseconds, §4.10.
pub const STAMP_LEN: usize = 8;
/// Bytes of a QUEUE_DELAY body: microseconds, §4.10.
pub const QUEUE_DELAY_LEN: usize = 4;
/// Bytes of a PROGRESS body: how many pieces the sender holds, §4.11.
pub const PROGRESS_LEN: usize = 4;

/// Message types. 0x00–0x7f must be understood; 0x80–0xff are extensions a peer that does not
/// know them skips (docs/PROTOCOL.md §7).
pub mod ty {
    /// Empty; keeps an idle connection from timing out.
    pub const KEEPALIVE: u8 = 0x00;
    /// The first frame both sides send (§4.1).
    pub const HELLO: u8 = 0x01;
    /// Origin to client, right after its HELLO (§4.2).
    pub const MANIFEST: u8 = 0x02;
    /// The sender's pieces, once, after HELLO (§4.5).
    pub const BITFIELD: u8 = 0x03;
    /// The sender verified one more piece.
    pub const HAVE: u8 = 0x04;
    /// The sender wants (1) or no longer wants (0) a piece the receiver has.
    pub const INTERESTED: u8 = 0x05;
    /// The sender will answer the receiver's requests with REJECT.
    pub const CHOKE: u8 = 0x06;
    /// The receiver may request.
    pub const UNCHOKE: u8 = 0x07;
    /// Asks for one piece by index, or (of the origin only) WILDCARD: one of its choice.
    pub const REQUEST: u8 = 0x08;
    /// Answers a REQUEST without the piece (§5.2).
    pub const REJECT: u8 = 0x09;
    /// Answers a REQUEST with the piece's bytes (§4.4).
    pub const PIECE: u8 = 0x0a;
    /// Origin to client: peers that joined or left (§4.3).
    pub const PEERS: u8 = 0x0b;
    /// Origin to client: every connected client holds the whole file.
    pub const SWARM_DONE: u8 = 0x0c;
    /// A code and a reason, then the sender closes (§6).
    pub const ERROR: u8 = 0x0d;
    /// Withdraws a REQUEST; it is still answered exactly once.
    pub const CANCEL: u8 = 0x0e;
    /// Proof that the sender holds the swarm secret, right after HELLO (§4.7).
    pub const AUTH: u8 = 0x0f;
    /// The last mandatory type this version defines.
    pub const LAST_MANDATORY: u8 = AUTH;
    /// Types at or above this are optional extensions.
    pub const FIRST_EXTENSION: u8 = 0x80;
    /// Extension: a client's per-peer transfer counters, for the origin's promise ledger.
    pub const RECEIPT: u8 = 0x80;
    /// Extension: the origin's connect-back verdict on the client's listen port (§4.8).
    pub const REACHABILITY: u8 = 0x81;
    /// Extension: the origin names clients that take without giving, or no longer (§4.9).
    pub const STANDING: u8 = 0x82;
    /// Extension: the sender's clock as the next PIECE leaves it (§4.10).
    pub const STAMP: u8 = 0x83;
    /// Extension: how much later than the fastest recent one a STAMP arrived (§4.10).
    pub const QUEUE_DELAY: u8 = 0x84;
    /// Extension: how many pieces the sender holds; it also says the sender may be sent
    /// no HAVE for a piece it has announced (§4.11).
    pub const PROGRESS: u8 = 0x85;
}

/// Why a frame could not be decoded. Every variant is a protocol violation by the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The length prefix is zero (there must be a type byte) or above [`MAX_FRAME_LEN`].
    BadLength(u32),
    /// A body of `len` bytes where the type allows `max` ([`Limits::max_body`]); `early`
    /// when the tighter bound before the peer's HELLO applied.
    TooLong {
        /// The frame's type.
        ty: u8,
        /// Body length in bytes, as the length prefix declared it.
        len: u32,
        /// The most this type's body may have, in bytes.
        max: u32,
        /// The peer's HELLO had not arrived, so `MAX_EARLY_LEN` applied.
        early: bool,
    },
    /// A type in the mandatory range that this version does not define.
    UnknownType(u8),
    /// The body is shorter or longer than the type requires.
    BadBody(u8),
    /// HELLO without the TFTTP magic.
    BadMagic,
    /// HELLO of a protocol version other than [`VERSION`] (answered with ERROR 2).
    Version(u8),
    /// A field holds a value the protocol forbids (an address family, a flag).
    BadField(u8),
    /// HELLO with node id 0, which is no node's id (§4.1).
    ZeroNodeId,
    /// The bytes start `HTTP/`: an HTTP server's answer, not a frame (its length prefix
    /// would be 1.2 GB). Told apart so a client can say what it reached.
    Http,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadLength(n) => write!(f, "frame length {n} out of range"),
            WireError::Http => f.write_str("an HTTP response ('HTTP/') instead of a TFTTP frame"),
            WireError::TooLong {
                ty,
                len,
                max,
                early: true,
            } => write!(
                f,
                "{} frame with a {len}-byte body before HELLO; at most {max} bytes are \
                 accepted before HELLO",
                TypeName(*ty)
            ),
            WireError::TooLong { ty, len, max, .. } => {
                let name = TypeName(*ty);
                write!(
                    f,
                    "{name} frame with a {len}-byte body; the limit for {name} is {max} bytes"
                )
            }
            WireError::UnknownType(t) => write!(f, "unknown message type 0x{t:02x}"),
            WireError::BadBody(t) => write!(f, "malformed body for message type 0x{t:02x}"),
            WireError::BadMagic => write!(f, "not a TFTTP peer (bad magic)"),
            WireError::Version(v) => write!(
                f,
                "unsupported protocol version {v} (this node speaks version {VERSION})"
            ),
            WireError::BadField(t) => write!(f, "invalid field in message type 0x{t:02x}"),
            WireError::ZeroNodeId => write!(f, "node id 0 in HELLO (ids are never 0)"),
        }
    }
}

impl std::error::Error for WireError {}

/// A type's name, or `extension 0x..` for one this version does not know.
struct TypeName(u8);

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match type_name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "extension 0x{:02x}", self.0),
        }
    }
}

/// ERROR codes (docs/PROTOCOL.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1: a malformed or out-of-order frame.
    Protocol,
    /// 2: a protocol version we do not speak.
    Version,
    /// 3: the HELLO's `file_id` is not our file's.
    WrongFile,
    /// 4: we have no manifest yet; try again later.
    NotReady,
    /// 5: already connected to that node, or it is ourselves.
    Duplicate,
    /// 6: not accepting (more) peers.
    TooManyPeers,
    /// 7: a piece failed its BLAKE3 hash.
    Corrupt,
    /// 8: a handshake or idle timeout.
    Timeout,
    /// 9: the sender is leaving.
    ShuttingDown,
    /// 10: no AUTH where the swarm needs one, a wrong tag, or a secret where none is kept.
    Unauthorized,
    /// 11: the HELLO's path names no file the server serves, or is not a safe path.
    NotFound,
    /// A code this version does not define; treated as a generic error.
    Other(u16),
}

impl ErrorCode {
    /// The code as sent on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::Protocol => 1,
            ErrorCode::Version => 2,
            ErrorCode::WrongFile => 3,
            ErrorCode::NotReady => 4,
            ErrorCode::Duplicate => 5,
            ErrorCode::TooManyPeers => 6,
            ErrorCode::Corrupt => 7,
            ErrorCode::Timeout => 8,
            ErrorCode::ShuttingDown => 9,
            ErrorCode::Unauthorized => 10,
            ErrorCode::NotFound => 11,
            ErrorCode::Other(n) => n,
        }
    }

    /// The code read from the wire; unknown numbers are kept as `Other`.
    pub fn from_u16(n: u16) -> ErrorCode {
        match n {
            1 => ErrorCode::Protocol,
            2 => ErrorCode::Version,
            3 => ErrorCode::WrongFile,
            4 => ErrorCode::NotReady,
            5 => ErrorCode::Duplicate,
            6 => ErrorCode::TooManyPeers,
            7 => ErrorCode::Corrupt,
            8 => ErrorCode::Timeout,
            9 => ErrorCode::ShuttingDown,
            10 => ErrorCode::Unauthorized,
            11 => ErrorCode::NotFound,
            n => ErrorCode::Other(n),
        }
    }
}

/// One RECEIPT entry: cumulative payload bytes exchanged with one peer since the sender
/// first met it (docs/PROTOCOL.md §4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptEntry {
    /// The peer these counters are about.
    pub node_id: u64,
    /// Verified bytes the sender received from that peer.
    pub received: u64,
    /// Bytes the sender says it sent to that peer.
    pub sent: u64,
}

const RECEIPT_ENTRY_LEN: usize = 24;

/// One entry of STANDING: what the origin now says of a client (docs/PROTOCOL.md §4.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandingEntry {
    /// The client this is about.
    pub node_id: u64,
    /// The origin judges that it takes without giving (it broke its promise and passed
    /// nothing on that two receivers confirm, or took a fifth of the file from peers with
    /// no upload confirmed at all). `false` withdraws an earlier `true`.
    pub takes_without_giving: bool,
}

pub(crate) const STANDING_ENTRY_LEN: usize = 9;

/// One PEERS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerEntry {
    /// Whether the client joined or left.
    pub op: PeerOp,
    /// The client's node id, as in its HELLO.
    pub node_id: u64,
    /// Where it accepts peers (still carried on `Remove`, though not needed).
    pub addr: SocketAddr,
}

/// Bytes of the longest PEERS entry: op, node id, family, IPv6 address, port.
const MAX_PEER_ENTRY_LEN: usize = 1 + 8 + 1 + 16 + 2;

/// What a PEERS entry says about a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerOp {
    /// It accepts peers at the entry's address: dial it.
    Add,
    /// It left the swarm.
    Remove,
}

/// A decoded frame. Borrowed fields point into the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// KEEPALIVE.
    KeepAlive,
    /// HELLO (version 2; other versions are [`WireError::Version`]).
    Hello(Hello<'a>),
    /// Raw manifest body; `manifest::Manifest::decode` validates it.
    Manifest(&'a [u8]),
    /// Raw BITFIELD body; `Bitfield::from_bytes` checks it against the piece count.
    Bitfield(&'a [u8]),
    /// HAVE: the sender verified this piece.
    Have(u32),
    /// INTERESTED: the sender does (true) or no longer does (false) want a piece we have.
    Interested(bool),
    /// CHOKE: further requests will be rejected.
    Choke,
    /// UNCHOKE: the receiver may request.
    Unchoke,
    /// REQUEST for this piece (or `WILDCARD`).
    Request(u32),
    /// REJECT: the answer to a REQUEST for this piece, without its bytes.
    Reject(u32),
    /// Withdraws a REQUEST not yet answered; the answer is still exactly one PIECE or REJECT.
    Cancel(u32),
    /// Only produced when a whole PIECE frame is parsed from a buffer (tests, tools); the
    /// node's driver streams payloads instead.
    Piece {
        /// The piece index.
        piece: u32,
        /// The piece's bytes.
        data: &'a [u8],
    },
    /// PEERS: clients that joined or left.
    Peers(Vec<PeerEntry>),
    /// SWARM_DONE: every connected client holds the whole file.
    SwarmDone,
    /// ERROR: the sender is closing the connection.
    Error {
        /// Why, for a program.
        code: ErrorCode,
        /// Why, for a person; at most `MAX_REASON_LEN` bytes of UTF-8.
        reason: &'a str,
    },
    /// Extension 0x80: a client's per-peer counters, to the origin.
    Receipt(Vec<ReceiptEntry>),
    /// AUTH: the sender's tag over both nonces and both node ids (§4.7).
    Auth([u8; AUTH_TAG_LEN]),
    /// Extension 0x81, origin to client: whether the origin could open a TCP connection
    /// to the client's listen port (§4.8).
    Reachability(bool),
    /// Extension 0x82, origin to client: clients that take without giving, or no longer
    /// (§4.9).
    Standing(Vec<StandingEntry>),
    /// Extension 0x83: the sender's clock, in microseconds from an origin of its own, as the
    /// PIECE that follows leaves it (§4.10).
    Stamp(u64),
    /// Extension 0x84: the answer to a STAMP: how many microseconds later it arrived than
    /// the fastest STAMP of this connection in the last two minutes or so (§4.10).
    QueueDelay(u32),
    /// Extension 0x85, client to client: how many pieces the sender holds, including those
    /// it did not announce to the receiver because the receiver holds them (§4.11).
    Progress(u32),
    /// An extension type (>= 0x80) this version does not know; skipped.
    Extension(u8),
}

impl<'a> Message<'a> {
    /// Parses a body of type `ty`. `body` must be exactly the frame's body.
    pub fn parse(ty: u8, body: &'a [u8]) -> Result<Message<'a>, WireError> {
        let exact = |n: usize| {
            if body.len() == n {
                Ok(())
            } else {
                Err(WireError::BadBody(ty))
            }
        };
        Ok(match ty {
            ty::KEEPALIVE => {
                exact(0)?;
                Message::KeepAlive
            }
            ty::HELLO => Message::Hello(Hello::parse(body)?),
            ty::MANIFEST => Message::Manifest(body),
            ty::BITFIELD => Message::Bitfield(body),
            ty::HAVE => {
                exact(4)?;
                Message::Have(be_u32(body))
            }
            ty::INTERESTED => {
                exact(1)?;
                match body[0] {
                    0 => Message::Interested(false),
                    1 => Message::Interested(true),
                    _ => return Err(WireError::BadField(ty)),
                }
            }
            ty::CHOKE => {
                exact(0)?;
                Message::Choke
            }
            ty::UNCHOKE => {
                exact(0)?;
                Message::Unchoke
            }
            ty::REQUEST => {
                exact(4)?;
                Message::Request(be_u32(body))
            }
            ty::REJECT => {
                exact(4)?;
                Message::Reject(be_u32(body))
            }
            ty::CANCEL => {
                exact(4)?;
                Message::Cancel(be_u32(body))
            }
            ty::PIECE => {
                if body.len() < 4 {
                    return Err(WireError::BadBody(ty));
                }
                Message::Piece {
                    piece: be_u32(body),
                    data: &body[4..],
                }
            }
            ty::PEERS => Message::Peers(parse_peers(body)?),
            ty::SWARM_DONE => {
                exact(0)?;
                Message::SwarmDone
            }
            ty::ERROR => {
                if body.len() < 2 || body.len() > MAX_ERROR_LEN {
                    return Err(WireError::BadBody(ty));
                }
                let code = ErrorCode::from_u16(u16::from_be_bytes([body[0], body[1]]));
                let reason =
                    std::str::from_utf8(&body[2..]).map_err(|_| WireError::BadField(ty))?;
                Message::Error { code, reason }
            }
            ty::RECEIPT => {
                let entries = fixed_entries(ty, body, RECEIPT_ENTRY_LEN, MAX_RECEIPT_ENTRIES)?
                    .map(|e| ReceiptEntry {
                        node_id: be_u64(&e[0..8]),
                        received: be_u64(&e[8..16]),
                        sent: be_u64(&e[16..24]),
                    })
                    .collect();
                Message::Receipt(entries)
            }
            ty::AUTH => {
                exact(AUTH_TAG_LEN)?;
                Message::Auth(body.try_into().expect("checked length"))
            }
            ty::REACHABILITY => {
                exact(REACHABILITY_LEN)?;
                match body[0] {
                    0 => Message::Reachability(false),
                    1 => Message::Reachability(true),
                    _ => return Err(WireError::BadField(ty)),
                }
            }
            ty::STANDING => {
                let mut entries = Vec::new();
                for e in fixed_entries(ty, body, STANDING_ENTRY_LEN, MAX_STANDING_ENTRIES)? {
                    entries.push(StandingEntry {
                        node_id: be_u64(&e[0..8]),
                        takes_without_giving: match e[8] {
                            0 => false,
                            1 => true,
                            _ => return Err(WireError::BadField(ty)),
                        },
                    });
                }
                Message::Standing(entries)
            }
            ty::STAMP => {
                exact(STAMP_LEN)?;
                Message::Stamp(be_u64(body))
            }
            ty::QUEUE_DELAY => {
                exact(QUEUE_DELAY_LEN)?;
                Message::QueueDelay(be_u32(body))
            }
            ty::PROGRESS => {
                exact(PROGRESS_LEN)?;
                Message::Progress(be_u32(body))
            }
            t if t >= ty::FIRST_EXTENSION => Message::Extension(t),
            t => return Err(WireError::UnknownType(t)),
        })
    }

    /// Appends the whole frame (length prefix, type, body) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; LEN_SIZE]);
        match self {
            Message::KeepAlive => out.push(ty::KEEPALIVE),
            Message::Hello(h) => {
                out.push(ty::HELLO);
                h.emit_body(out);
            }
            Message::Manifest(body) => {
                out.push(ty::MANIFEST);
                out.extend_from_slice(body);
            }
            Message::Bitfield(bits) => {
                out.push(ty::BITFIELD);
                out.extend_from_slice(bits);
            }
            Message::Have(p) => push_u32(out, ty::HAVE, *p),
            Message::Interested(yes) => {
                out.push(ty::INTERESTED);
                out.push(*yes as u8);
            }
            Message::Choke => out.push(ty::CHOKE),
            Message::Unchoke => out.push(ty::UNCHOKE),
            Message::Request(p) => push_u32(out, ty::REQUEST, *p),
            Message::Reject(p) => push_u32(out, ty::REJECT, *p),
            Message::Cancel(p) => push_u32(out, ty::CANCEL, *p),
            Message::Piece { piece, data } => {
                push_u32(out, ty::PIECE, *piece);
                out.extend_from_slice(data);
            }
            Message::Peers(entries) => {
                out.push(ty::PEERS);
                let n = entries.len().min(MAX_PEER_ENTRIES);
                out.extend_from_slice(&(n as u16).to_be_bytes());
                for e in &entries[..n] {
                    out.push(match e.op {
                        PeerOp::Add => 0,
                        PeerOp::Remove => 1,
                    });
                    out.extend_from_slice(&e.node_id.to_be_bytes());
                    match e.addr.ip() {
                        IpAddr::V4(ip) => {
                            out.push(4);
                            out.extend_from_slice(&ip.octets());
                        }
                        IpAddr::V6(ip) => {
                            out.push(6);
                            out.extend_from_slice(&ip.octets());
                        }
                    }
                    out.extend_from_slice(&e.addr.port().to_be_bytes());
                }
            }
            Message::SwarmDone => out.push(ty::SWARM_DONE),
            Message::Error { code, reason } => {
                out.push(ty::ERROR);
                out.extend_from_slice(&code.to_u16().to_be_bytes());
                out.extend_from_slice(truncate_utf8(reason, MAX_REASON_LEN).as_bytes());
            }
            Message::Receipt(entries) => {
                out.push(ty::RECEIPT);
                for e in put_count(out, entries, MAX_RECEIPT_ENTRIES) {
                    out.extend_from_slice(&e.node_id.to_be_bytes());
                    out.extend_from_slice(&e.received.to_be_bytes());
                    out.extend_from_slice(&e.sent.to_be_bytes());
                }
            }
            Message::Auth(tag) => {
                out.push(ty::AUTH);
                out.extend_from_slice(tag);
            }
            Message::Reachability(yes) => {
                out.push(ty::REACHABILITY);
                out.push(*yes as u8);
            }
            Message::Standing(entries) => {
                out.push(ty::STANDING);
                for e in put_count(out, entries, MAX_STANDING_ENTRIES) {
                    out.extend_from_slice(&e.node_id.to_be_bytes());
                    out.push(e.takes_without_giving as u8);
                }
            }
            Message::Stamp(micros) => {
                out.push(ty::STAMP);
                out.extend_from_slice(&micros.to_be_bytes());
            }
            Message::QueueDelay(micros) => {
                out.push(ty::QUEUE_DELAY);
                out.extend_from_slice(&micros.to_be_bytes());
            }
            Message::Progress(held) => {
                out.push(ty::PROGRESS);
                out.extend_from_slice(&held.to_be_bytes());
            }
            Message::Extension(t) => out.push(*t),
        }
        let len = (out.len() - start - LEN_SIZE) as u32;
        out[start..start + LEN_SIZE].copy_from_slice(&len.to_be_bytes());
    }
}

/// The entries of a body that is a `u16` count and that many entries of `len` bytes each,
/// at most `max` of them; any other shape is a bad body of type `ty`.
fn fixed_entries(
    ty: u8,
    body: &[u8],
    len: usize,
    max: usize,
) -> Result<std::slice::ChunksExact<'_, u8>, WireError> {
    let bad = WireError::BadBody(ty);
    let (count, rest) = body.split_first_chunk::<2>().ok_or(bad)?;
    let n = u16::from_be_bytes(*count) as usize;
    if n > max || rest.len() != n * len {
        return Err(bad);
    }
    Ok(rest.chunks_exact(len))
}

/// Writes the `u16` count of a counted body (the layout `fixed_entries` reads) and returns
/// the entries that fit under `max`, for the caller to write after it.
fn put_count<'e, T>(out: &mut Vec<u8>, entries: &'e [T], max: usize) -> &'e [T] {
    let n = entries.len().min(max);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    &entries[..n]
}

fn parse_peers(body: &[u8]) -> Result<Vec<PeerEntry>, WireError> {
    let bad = WireError::BadBody(ty::PEERS);
    if body.len() < 2 {
        return Err(bad);
    }
    let n = u16::from_be_bytes([body[0], body[1]]) as usize;
    if n > MAX_PEER_ENTRIES {
        return Err(bad);
    }
    let mut rest = &body[2..];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if rest.len() < 10 {
            return Err(bad);
        }
        let op = match rest[0] {
            0 => PeerOp::Add,
            1 => PeerOp::Remove,
            _ => return Err(WireError::BadField(ty::PEERS)),
        };
        let node_id = be_u64(&rest[1..9]);
        let (ip, used): (IpAddr, usize) = match rest[9] {
            4 if rest.len() >= 10 + 4 + 2 => {
                let o: [u8; 4] = rest[10..14].try_into().unwrap();
                (Ipv4Addr::from(o).into(), 14)
            }
            6 if rest.len() >= 10 + 16 + 2 => {
                let o: [u8; 16] = rest[10..26].try_into().unwrap();
                (Ipv6Addr::from(o).into(), 26)
            }
            4 | 6 => return Err(bad),
            _ => return Err(WireError::BadField(ty::PEERS)),
        };
        let port = u16::from_be_bytes([rest[used], rest[used + 1]]);
        out.push(PeerEntry {
            op,
            node_id,
            addr: SocketAddr::new(ip, port),
        });
        rest = &rest[used + 2..];
    }
    if !rest.is_empty() {
        return Err(bad);
    }
    Ok(out)
}

fn push_u32(out: &mut Vec<u8>, t: u8, v: u32) {
    out.push(t);
    out.extend_from_slice(&v.to_be_bytes());
}

/// Reads a big-endian u32 from the first 4 bytes of `b`, which must hold them.
pub fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads a big-endian u64 from the first 8 bytes of `b`, which must hold them.
pub fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[0..8].try_into().unwrap())
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
