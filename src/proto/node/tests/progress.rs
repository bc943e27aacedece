//! PROGRESS between clients (docs/PROTOCOL.md §4.11): HAVEs left out where the peer holds
//! the piece, and the count that stands in for them.

use super::one::{One, hello, peer_announces, pieces_on};
use super::*;
use crate::wire::ty;

const PIECES: u32 = 4;

/// The PROGRESS counts `c` queued on `slot`.
fn progress_on(c: &mut One, slot: Slot) -> Vec<u32> {
    pieces_on(c, slot, ty::PROGRESS)
}

/// The origin (slot 0) unchokes `c` and answers its wildcards with `pieces`, in order.
fn origin_sends(c: &mut One, data: &[u8], pieces: &[u32]) {
    c.send(Message::Unchoke);
    for &p in pieces {
        assert!(c.piece_arrives(0, data, p).is_some(), "piece {p}");
    }
}

/// A client offers PROGRESS to its peers right after its BITFIELD, never to the origin; it
/// leaves out the HAVE of a piece only to a peer that announced that piece and takes
/// PROGRESS, and announces every piece to the origin.
#[test]
fn test_haves_of_pieces_a_peer_announced_are_left_out_only_where_it_takes_progress() {
    let data = file(PIECES as usize * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    assert!(
        progress_on(&mut c, 0).is_empty(),
        "no PROGRESS to the origin"
    );
    for slot in [1, 2] {
        // Both peers hold pieces 0 and 1; only the first takes PROGRESS.
        peer_announces(&mut c, slot, &[0xc0]);
        let mut out = Vec::new();
        c.node.take_outbox(slot, &mut out);
        let types: Vec<u8> = frames(&out).iter().map(|f| f.0).collect();
        let at = types.iter().position(|&t| t == ty::BITFIELD).unwrap();
        assert_eq!(types[at + 1], ty::PROGRESS, "PROGRESS right after BITFIELD");
    }
    c.send_on(1, Message::Progress(2));
    origin_sends(&mut c, &data, &[0, 2]);
    assert_eq!(pieces_on(&mut c, 1, ty::HAVE), vec![2]);
    assert_eq!(pieces_on(&mut c, 2, ty::HAVE), vec![0, 2]);
    let mut to_origin = pieces_on(&mut c, 0, ty::HAVE);
    to_origin.sort();
    assert_eq!(to_origin, vec![0, 2]);
}

/// What `c` queued for peers, frame by frame, kept until a test asks for a type.
#[derive(Default)]
struct Sent(Vec<(Slot, u8, u32)>);

impl Sent {
    /// Takes what `c` queued on `slot` into the log, then removes and returns the bodies
    /// (as u32) of the logged frames of type `ty` on it.
    fn take(&mut self, c: &mut One, slot: Slot, ty: u8) -> Vec<u32> {
        let mut out = Vec::new();
        c.node.take_outbox(slot, &mut out);
        for (t, body) in frames(&out) {
            if body.len() == 4 {
                self.0.push((slot, t, wire::be_u32(&body)));
            }
        }
        let mut got = Vec::new();
        self.0.retain(|&(s, t, v)| {
            let hit = s == slot && t == ty;
            if hit {
                got.push(v);
            }
            !hit
        });
        got
    }
}

/// The peer on `slot` answers what `c` asked it for, up to `most` pieces; returns them.
fn peer_serves(c: &mut One, slot: Slot, data: &[u8], sent: &mut Sent, most: usize) -> Vec<u32> {
    let mut asked = sent.take(c, slot, ty::REQUEST);
    let served: Vec<u32> = asked.drain(..most.min(asked.len())).collect();
    sent.0.extend(asked.iter().map(|&p| (slot, ty::REQUEST, p)));
    for &p in &served {
        assert!(c.piece_arrives(slot, data, p).is_some(), "piece {p}");
    }
    served
}

/// On completion a client tells its count to every peer that takes PROGRESS and has not
/// heard it (a leecher must learn that we are a seed); before that, only seeds hear it, once
/// a round, and only when it changed.
#[test]
fn test_progress_goes_to_seeds_once_a_round_and_to_everyone_on_completion() {
    let data = file(PIECES as usize * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    let mut sent = Sent::default();
    peer_announces(&mut c, 1, &[0xf0]);
    c.send_on(1, Message::Progress(PIECES));
    peer_announces(&mut c, 2, &[0xc0]);
    c.send_on(2, Message::Progress(2));
    for slot in [1, 2] {
        assert_eq!(sent.take(&mut c, slot, ty::PROGRESS), vec![0], "the offer");
    }
    c.send_on(1, Message::Unchoke);
    let first = peer_serves(&mut c, 1, &data, &mut sent, 2);
    assert_eq!(first.len(), 2);
    let lacked = |got: &[u32]| got.iter().copied().filter(|&p| p >= 2).collect::<Vec<_>>();
    assert_eq!(sent.take(&mut c, 2, ty::HAVE), lacked(&first));
    assert!(
        sent.take(&mut c, 1, ty::HAVE).is_empty(),
        "the seed holds them"
    );
    let round = |c: &mut One| {
        c.now += ROUND;
        c.node.handle_tick(c.now);
    };
    round(&mut c);
    assert_eq!(
        sent.take(&mut c, 1, ty::PROGRESS),
        vec![2],
        "the seed hears the count"
    );
    assert!(
        sent.take(&mut c, 2, ty::PROGRESS).is_empty(),
        "a leecher does not"
    );
    round(&mut c);
    assert!(sent.take(&mut c, 1, ty::PROGRESS).is_empty(), "nothing new");
    let mut rest = Vec::new();
    for _ in 0..PIECES {
        rest.extend(peer_serves(&mut c, 1, &data, &mut sent, PIECES as usize));
        if c.node.is_complete() {
            break;
        }
    }
    assert!(c.node.is_complete(), "first {first:?} rest {rest:?}");
    assert_eq!(sent.take(&mut c, 1, ty::PROGRESS), vec![PIECES]);
    assert_eq!(sent.take(&mut c, 2, ty::PROGRESS), vec![PIECES]);
    assert_eq!(sent.take(&mut c, 2, ty::HAVE), lacked(&rest));
}

/// A seed weighs its upload by what each peer still lacks: by the count PROGRESS gives,
/// not by the HAVEs it was sent, which leave out every piece it holds.
#[test]
fn test_a_peer_s_held_count_follows_its_progress_and_new_haves() {
    let data = file(PIECES as usize * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    origin_sends(&mut c, &data, &[0, 1, 2, 3]);
    peer_announces(&mut c, 1, &[0x00]);
    c.send_on(1, Message::Progress(0));
    c.send_on(1, Message::Progress(3));
    c.send_on(1, Message::Have(3));
    let p = c.node.peer(1).unwrap();
    assert_eq!(p.has.len().saturating_sub(p.held), 0);
    assert!(
        !c.node.peer(1).unwrap().has.get(0),
        "left out, not announced"
    );
}

/// A count that no honest sender gives closes the connection: before the BITFIELD, beyond
/// the piece count, below the pieces announced, or announced pieces beyond the count.
#[test]
fn test_progress_that_cannot_be_true_is_a_violation() {
    let data = file(PIECES as usize * PIECE as usize);
    let cases: [(&[u8], &[Message]); 4] = [
        (&[], &[Message::Progress(1)]),
        (&[0xc0], &[Message::Progress(PIECES + 1)]),
        (&[0xc0], &[Message::Progress(1)]),
        (&[0x80], &[Message::Progress(PIECES), Message::Have(3)]),
    ];
    for (case, (bits, frames)) in cases.iter().enumerate() {
        let mut c = One::client_with_manifest(&data);
        let id = c.node.manifest().unwrap().id();
        c.node.handle_open(1, Link::Accepted, addr_of(11), c.now);
        c.send_on(1, hello(Role::Client, 71, id));
        if !bits.is_empty() {
            c.send_on(1, Message::Bitfield(bits));
        }
        for f in frames.iter() {
            c.send_on(1, f.clone());
        }
        assert!(c.node.is_closing(1), "case {case}");
    }
}

/// PROGRESS means nothing on a connection with the origin: the origin ignores it, and a
/// client that got one from its origin still announces every piece there.
#[test]
fn test_progress_is_ignored_to_and_from_the_origin() {
    let data = file(PIECES as usize * PIECE as usize);
    let mut o = One::origin_with_interested_client(&data, &[0xc0]);
    o.send(Message::Progress(2));
    assert!(!o.node.is_closing(0));
    let mut c = One::client_with_manifest(&data);
    c.send(Message::Progress(PIECES));
    assert!(!c.node.is_closing(0));
    origin_sends(&mut c, &data, &[1]);
    assert_eq!(pieces_on(&mut c, 0, ty::HAVE), vec![1]);
}

/// A restarted client that finds the whole file already on disk announces each resumed piece
/// before the PROGRESS that completion sends: a PROGRESS counting a piece whose HAVE still
/// follows would make the peer refuse that HAVE (found in review).
#[test]
fn test_resumed_pieces_are_announced_before_the_completion_progress() {
    let data = file(PIECES as usize * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    peer_announces(&mut c, 1, &[0xc0]);
    c.send_on(1, Message::Progress(2));
    let mut out = Vec::new();
    c.node.take_outbox(1, &mut out);
    c.node.handle_resumed(&[0, 1, 2, 3], c.now);
    assert!(c.node.is_complete());
    out.clear();
    c.node.take_outbox(1, &mut out);
    let told: Vec<(u8, u32)> = frames(&out)
        .into_iter()
        .filter(|f| f.0 == ty::HAVE || f.0 == ty::PROGRESS)
        .map(|f| (f.0, wire::be_u32(&f.1)))
        .collect();
    assert_eq!(
        told,
        vec![(ty::HAVE, 2), (ty::HAVE, 3), (ty::PROGRESS, PIECES)]
    );
}

/// A peer that tells us it completed hears our count at once: as a seed it weighs its
/// upload by what we lack from its next round, and our last HAVEs to it were left out.
#[test]
fn test_a_peer_that_completes_hears_our_count_at_once() {
    let data = file(PIECES as usize * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    let mut sent = Sent::default();
    peer_announces(&mut c, 1, &[0x80]);
    c.send_on(1, Message::Progress(1));
    assert_eq!(sent.take(&mut c, 1, ty::PROGRESS), vec![0], "the offer");
    c.send(Message::Unchoke);
    for p in [0u32, 1] {
        assert!(c.piece_arrives(0, &data, p).is_some(), "piece {p}");
    }
    assert_eq!(sent.take(&mut c, 1, ty::HAVE), vec![1], "piece 0 left out");
    c.send_on(1, Message::Progress(PIECES));
    assert_eq!(sent.take(&mut c, 1, ty::PROGRESS), vec![2]);
    c.send_on(1, Message::Progress(PIECES));
    assert!(
        sent.take(&mut c, 1, ty::PROGRESS).is_empty(),
        "told already"
    );
}
