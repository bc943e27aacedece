//! Seeded property test of the receive path (issue 13, "Fuzzing"): thousands of random and
//! mutated byte streams go through the framing the driver applies (`FrameHead::parse_within`
//! with the connection's `Limits`, then `PieceHead`, as `net/conn.rs` does) into a node's
//! handshake and frame handlers: an origin's, a client's on its origin link, and a client's
//! on an accepted peer link. Whatever arrives, in whatever chunks: no panic, the bytes a
//! receiver must buffer for one frame stay within docs/PROTOCOL.md §3, what the node queues
//! in answer stays proportional to what it was sent, and a connection the node refuses ends
//! with one ERROR frame (code 1–9) and a Close, after which nothing is read.
//!
//! The generator is the crate's xorshift (`proto::rng`), so a failing case is reproduced by
//! its printed seed; `FUZZ_CASES` keeps the run under a second or two in a debug build.

use super::*;
use crate::proto::rng::Rng;
use crate::wire::{
    ErrorCode, Limits, MANIFEST_HEAD_LEN, MAX_EARLY_LEN, MAX_EXTENSION_LEN, MAX_PIECES, NONCE_LEN,
    PIECE_HEAD_SIZE, PieceHead, ty,
};

/// Streams per kind of receiver.
const FUZZ_CASES: u64 = 2000;
/// Pieces of the test file: small enough that a valid BITFIELD is one byte.
const PIECES: usize = 5;

/// What one stream did to its connection.
struct Outcome {
    /// Largest frame the receiver had to buffer whole, before and after the HELLO.
    early_frame: usize,
    late_frame: usize,
    /// Bytes the node queued for the connection.
    answered: usize,
    /// The node refused the connection (not because the peer sent ERROR itself).
    refused: bool,
}

/// Delivers `bytes` on `slot` of `node` in random chunks, framed as the driver frames them.
fn feed(node: &mut Node, slot: Slot, bytes: &[u8], rng: &mut Rng, now: Instant) -> Outcome {
    let mut out = Outcome {
        early_frame: 0,
        late_frame: 0,
        answered: 0,
        refused: false,
    };
    let mut hello_accepted = false;
    let mut pending: Vec<u8> = Vec::new();
    // (bytes of payload left, its CRC so far) while a PIECE payload streams.
    let mut payload: Option<(usize, blake3::Hasher)> = None;
    let mut at = 0;
    let mut peer_sent_error = false;
    'stream: while at < bytes.len() && !node.is_closing(slot) {
        let n = 1 + rng.below(64.min(bytes.len() - at) as u32) as usize;
        pending.extend_from_slice(&bytes[at..at + n]);
        at += n;
        loop {
            if let Some((left, crc)) = payload.as_mut() {
                let take = (*left).min(pending.len());
                crc.update(&pending[..take]);
                pending.drain(..take);
                *left -= take;
                node.handle_payload(slot, now);
                if *left > 0 {
                    continue 'stream;
                }
                let (_, crc) = payload.take().expect("checked");
                node.end_piece(slot, Some(*crc.finalize().as_bytes()), now);
            }
            let file = node.manifest().map(|m| (m.piece_count(), m.piece_size()));
            let limits = Limits::new(hello_accepted, file);
            let head = match FrameHead::parse_within(&pending, &limits) {
                Ok(Some(h)) => h,
                Ok(None) => continue 'stream,
                Err(e) => {
                    node.handle_malformed(slot, &e.to_string(), now);
                    break 'stream;
                }
            };
            if head.ty == ty::PIECE {
                let ph = match PieceHead::parse(&head, &pending) {
                    Ok(Some(ph)) => ph,
                    Ok(None) => continue 'stream,
                    Err(e) => {
                        node.handle_malformed(slot, &e.to_string(), now);
                        break 'stream;
                    }
                };
                pending.drain(..PIECE_HEAD_SIZE);
                if node.begin_piece(slot, ph.piece, ph.len, now).is_none() {
                    break 'stream;
                }
                payload = Some((ph.len as usize, blake3::Hasher::new()));
                continue;
            }
            let frame = head.frame_len();
            if hello_accepted {
                out.late_frame = out.late_frame.max(frame);
            } else {
                out.early_frame = out.early_frame.max(frame);
            }
            if pending.len() < frame {
                continue 'stream;
            }
            let body = &pending[HEAD_SIZE..frame];
            peer_sent_error |= head.ty == ty::ERROR && Message::parse(head.ty, body).is_ok();
            node.handle_frame(slot, head.ty, body, now);
            pending.drain(..frame);
            if head.ty == ty::HELLO && !node.is_closing(slot) {
                hello_accepted = true;
            }
            if node.is_closing(slot) {
                break 'stream;
            }
        }
    }
    let mut queued = Vec::new();
    node.take_outbox(slot, &mut queued);
    out.answered = queued.len();
    let sent = frames(&queued);
    let errors: Vec<&(u8, Vec<u8>)> = sent.iter().filter(|f| f.0 == ty::ERROR).collect();
    let closes = std::iter::from_fn(|| node.poll_event())
        .filter(|e| matches!(e, Event::Close { slot: s, .. } if *s == slot))
        .count();
    if node.is_closing(slot) && !peer_sent_error {
        out.refused = true;
        assert_eq!(errors.len(), 1, "one ERROR: {sent:?}");
        assert_eq!(sent.last().map(|f| f.0), Some(ty::ERROR), "ERROR last");
        let body = &errors[0].1;
        let code = u16::from_be_bytes([body[0], body[1]]);
        assert!(
            (1..=11).contains(&code) && ErrorCode::from_u16(code).to_u16() == code,
            "{code}"
        );
        assert!(std::str::from_utf8(&body[2..]).is_ok());
        assert_eq!(closes, 1, "one Close");
    } else {
        assert!(errors.is_empty(), "ERROR only with a close: {sent:?}");
    }
    // Timers on whatever state is left must not trip either.
    node.handle_tick(now + Duration::from_secs(100));
    while node.poll_event().is_some() {}
    out
}

/// Appends one frame of type `t` with `body`.
fn push_frame(out: &mut Vec<u8>, t: u8, body: &[u8]) {
    out.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
    out.push(t);
    out.extend_from_slice(body);
}

/// A plausible stream from the other side: a HELLO, then frames of every type, mostly
/// well-formed, some of them with random bodies.
fn plausible(rng: &mut Rng, role: Role, m: &Manifest, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let node_id = match rng.below(8) {
        0 => 0,
        _ => rng.next_u64(),
    };
    let file_id = match rng.below(4) {
        0 => 0,
        1 => rng.next_u64(),
        _ => m.id(),
    };
    if rng.below(10) == 0 {
        // Another version: the magic, its version byte, then anything.
        let mut body = b"TFTT".to_vec();
        body.push(crate::wire::VERSION + 1 + rng.below(3) as u8);
        body.resize(5 + rng.below(100) as usize, rng.below(256) as u8);
        push_frame(&mut out, ty::HELLO, &body);
    } else {
        let mut nonce = [0; NONCE_LEN];
        nonce.iter_mut().for_each(|b| *b = rng.below(256) as u8);
        Message::Hello(Hello {
            role,
            auth: rng.below(10) == 0,
            node_id,
            file_id,
            listen_port: rng.below(65536) as u16,
            nonce,
            path: "",
        })
        .emit(&mut out);
    }
    let mut manifest = Vec::new();
    m.encode(&mut manifest);
    for _ in 0..rng.below(12) {
        let piece = if rng.below(4) == 0 {
            rng.next_u64() as u32
        } else {
            rng.below(PIECES as u32 + 1)
        };
        let msg = match rng.below(15) {
            0 => Message::Manifest(&manifest),
            1 => Message::Bitfield(&[0xf8]),
            2 => Message::Have(piece),
            3 => Message::Interested(rng.below(2) == 1),
            4 => Message::Unchoke,
            5 => Message::Choke,
            6 => Message::Request(if rng.below(3) == 0 { WILDCARD } else { piece }),
            7 => Message::Reject(piece),
            8 => Message::Cancel(piece),
            9 => Message::SwarmDone,
            10 => Message::KeepAlive,
            11 => {
                let i = (piece as usize).min(PIECES - 1);
                let o = i * PIECE as usize;
                let end = (o + PIECE as usize).min(data.len());
                Message::Piece {
                    piece: i as u32,
                    data: &data[o..end],
                }
            }
            12 => Message::Peers(vec![PeerEntry {
                op: PeerOp::Add,
                node_id: rng.next_u64(),
                addr: addr_of(rng.below(100) as usize),
            }]),
            13 => Message::Receipt(vec![wire::ReceiptEntry {
                node_id: rng.next_u64(),
                received: rng.next_u64(),
                sent: rng.next_u64(),
            }]),
            _ => {
                // Any type, a short random body.
                let t = rng.below(256) as u8;
                let body: Vec<u8> = (0..rng.below(40)).map(|_| rng.below(256) as u8).collect();
                push_frame(&mut out, t, &body);
                continue;
            }
        };
        msg.emit(&mut out);
    }
    out
}

/// Damages a stream the way a hostile or broken peer would.
fn mutate(rng: &mut Rng, mut s: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.below(4) {
        if s.is_empty() {
            break;
        }
        let i = rng.below(s.len() as u32) as usize;
        match rng.below(6) {
            0 => s[i] ^= 1 << rng.below(8),
            1 => s[i] = rng.below(256) as u8,
            2 => s.truncate(i),
            3 => s.insert(i, rng.below(256) as u8),
            4 => {
                // A length prefix anywhere: 0, huge, or just off.
                let len: u32 = match rng.below(3) {
                    0 => 0,
                    1 => rng.next_u64() as u32,
                    _ => rng.below(300),
                };
                let end = (i + 4).min(s.len());
                s.splice(i..end, len.to_be_bytes());
            }
            _ => {
                let j = rng.below(s.len() as u32) as usize;
                let (a, b) = (i.min(j), i.max(j));
                let copy = s[a..b].to_vec();
                s.extend_from_slice(&copy);
            }
        }
    }
    s
}

/// One stream: pure noise, a plausible stream, or a damaged one.
fn stream(rng: &mut Rng, role: Role, m: &Manifest, data: &[u8]) -> Vec<u8> {
    match rng.below(3) {
        0 => (0..rng.below(600)).map(|_| rng.below(256) as u8).collect(),
        1 => plausible(rng, role, m, data),
        _ => {
            let s = plausible(rng, role, m, data);
            mutate(rng, s)
        }
    }
}

/// The bounds every outcome must keep, for a receiver whose manifest (if any) is `m`.
#[track_caller]
fn check_bounds(o: &Outcome, input: usize, m: Option<&Manifest>, seed: u64) {
    assert!(
        o.early_frame <= HEAD_SIZE + MAX_EARLY_LEN,
        "seed {seed}: {} bytes buffered before HELLO",
        o.early_frame
    );
    let pieces = m.map_or(MAX_PIECES as usize, |m| m.piece_count() as usize);
    let late = HEAD_SIZE + MAX_EXTENSION_LEN.max(MANIFEST_HEAD_LEN + 4 * pieces);
    assert!(
        o.late_frame <= late,
        "seed {seed}: {} bytes buffered",
        o.late_frame
    );
    // A HELLO is answered with at most a MANIFEST and a BITFIELD; every later frame with
    // a few frames of its own size (a REQUEST with a REJECT, say).
    let handshake = 2 * HEAD_SIZE + MANIFEST_HEAD_LEN + 4 * PIECES + 1 + 300;
    assert!(
        o.answered <= handshake + 4 * input,
        "seed {seed}: {} bytes queued for {input} received",
        o.answered
    );
}

fn test_file() -> (Vec<u8>, Manifest) {
    let data = file(PIECES * PIECE as usize - 100);
    let m = Manifest::build(&data, PIECE).unwrap();
    (data, m)
}

#[test]
fn test_origin_survives_random_and_mutated_streams() {
    let (data, m) = test_file();
    let mut refused = 0;
    for seed in 1..=FUZZ_CASES {
        let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let now = Instant::now();
        let mut o = Node::origin(Config::new(Role::Origin, 1), m.clone(), now);
        o.handle_open(0, Link::Accepted, addr_of(9), now);
        let mut hello = Vec::new();
        o.take_outbox(0, &mut hello);
        let input = stream(&mut rng, Role::Client, &m, &data);
        let out = feed(&mut o, 0, &input, &mut rng, now);
        check_bounds(&out, input.len(), Some(&m), seed);
        refused += out.refused as u32;
    }
    // The generator reaches both the refusals and streams that pass the handshake.
    assert!(refused > FUZZ_CASES as u32 / 10, "{refused} refused");
    assert!(refused < FUZZ_CASES as u32 * 19 / 20, "{refused} refused");
}

#[test]
fn test_client_survives_random_and_mutated_origin_streams() {
    let (data, m) = test_file();
    for seed in 1..=FUZZ_CASES {
        let mut rng = Rng::new(seed ^ 0x5151_5151);
        let now = Instant::now();
        let mut cfg = Config::new(Role::Client, 5);
        cfg.server = Some(addr_of(0));
        let mut c = Node::client(cfg, now);
        c.handle_open(0, Link::ToOrigin, addr_of(0), now);
        let mut hello = Vec::new();
        c.take_outbox(0, &mut hello);
        let input = stream(&mut rng, Role::Origin, &m, &data);
        let out = feed(&mut c, 0, &input, &mut rng, now);
        check_bounds(&out, input.len(), None, seed);
    }
}

#[test]
fn test_client_survives_random_and_mutated_peer_streams() {
    let (data, m) = test_file();
    for seed in 1..=FUZZ_CASES {
        let mut rng = Rng::new(seed ^ 0xa5a5_0000);
        // A client that has the manifest from its origin (slot 0), accepting a peer (slot 1).
        let now = Instant::now();
        let mut cfg = Config::new(Role::Client, 5);
        cfg.server = Some(addr_of(0));
        let mut c = Node::client(cfg, now);
        c.handle_open(0, Link::ToOrigin, addr_of(0), now);
        let mut body = Vec::new();
        m.encode(&mut body);
        let mut handshake = Vec::new();
        Message::Hello(Hello {
            role: Role::Origin,
            auth: false,
            node_id: 1,
            file_id: m.id(),
            listen_port: 0,
            nonce: [7; NONCE_LEN],
            path: "",
        })
        .emit(&mut handshake);
        Message::Manifest(&body).emit(&mut handshake);
        for f in frames(&handshake) {
            c.handle_frame(0, f.0, &f.1, now);
        }
        assert!(c.manifest().is_some());
        while c.poll_event().is_some() {}
        c.handle_open(1, Link::Accepted, addr_of(3), now);
        let mut hello = Vec::new();
        c.take_outbox(1, &mut hello);
        let input = stream(&mut rng, Role::Client, &m, &data);
        let out = feed(&mut c, 1, &input, &mut rng, now);
        check_bounds(&out, input.len(), Some(&m), seed);
    }
}
