//! libFuzzer target for the receive path: the bytes go through the framing `net/conn.rs`
//! applies (`FrameHead::parse_within` with the connection's `Limits`, `PieceHead`) into a
//! node's handshake and frame handlers. The first byte picks the receiver: an origin, or a
//! client on its origin link. The seeded property test in
//! `src/proto/node/tests/fuzz.rs` runs the same loop with its assertions in CI; this
//! target lets libFuzzer's coverage guidance look further (`cargo +nightly fuzz run receive`).

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tfttp::manifest::Manifest;
use tfttp::proto::{Config, Link, Node};
use tfttp::wire::{FrameHead, HEAD_SIZE, Limits, PIECE_HEAD_SIZE, PieceHead, Role, ty};

/// Bytes a receiver may have to buffer for one frame before the peer's HELLO.
const EARLY_BOUND: usize = HEAD_SIZE + tfttp::wire::MAX_EARLY_LEN;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let addr = "127.0.0.1:7000".parse().unwrap();
    let file: Vec<u8> = (0..80_000u32).map(|i| (i % 251) as u8).collect();
    let m = Manifest::build(&file, 16 * 1024).unwrap();
    let mut node = if pick % 2 == 0 {
        let mut n = Node::origin(Config::new(Role::Origin, 1), m, now);
        n.handle_open(0, Link::Accepted, addr, now);
        n
    } else {
        let mut cfg = Config::new(Role::Client, 5);
        cfg.server = Some(addr);
        let mut n = Node::client(cfg, now);
        n.handle_open(0, Link::ToOrigin, addr, now);
        n
    };
    let mut sink = Vec::new();
    node.take_outbox(0, &mut sink);
    let mut hello_accepted = false;
    let mut rest = bytes;
    while !rest.is_empty() && !node.is_closing(0) {
        let file = node.manifest().map(|m| (m.piece_count(), m.piece_size()));
        let limits = Limits::new(hello_accepted, file);
        let head = match FrameHead::parse_within(rest, &limits) {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                node.handle_malformed(0, &e.to_string(), now);
                break;
            }
        };
        if !hello_accepted {
            assert!(head.frame_len() <= EARLY_BOUND);
        }
        if head.ty == ty::PIECE {
            let ph = match PieceHead::parse(&head, rest) {
                Ok(Some(ph)) => ph,
                Ok(None) => break,
                Err(e) => {
                    node.handle_malformed(0, &e.to_string(), now);
                    break;
                }
            };
            rest = &rest[PIECE_HEAD_SIZE..];
            if node.begin_piece(0, ph.piece, ph.len, now).is_none() {
                break;
            }
            let take = (ph.len as usize).min(rest.len());
            node.handle_payload(0, now);
            if take < ph.len as usize {
                break;
            }
            node.end_piece(0, Some(crc32fast_hash(&rest[..take])), now);
            rest = &rest[take..];
            continue;
        }
        if rest.len() < head.frame_len() {
            break;
        }
        node.handle_frame(0, head.ty, &rest[HEAD_SIZE..head.frame_len()], now);
        rest = &rest[head.frame_len()..];
        if head.ty == ty::HELLO && !node.is_closing(0) {
            hello_accepted = true;
        }
    }
    node.take_outbox(0, &mut sink);
    while node.poll_event().is_some() {}
    node.handle_tick(now + Duration::from_secs(100));
    while node.poll_event().is_some() {}
});

/// The piece's CRC as the driver computes it (CRC-32/ISO-HDLC), without another crate.
fn crc32fast_hash(b: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &x in b {
        crc ^= x as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
