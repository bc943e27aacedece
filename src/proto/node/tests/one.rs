//! Single-connection fixtures: one node, frames scripted by the test.

use super::*;

pub(super) struct One {
    pub(super) node: Node,
    pub(super) now: Instant,
}

impl One {
    fn origin(data: &[u8]) -> One {
        One::origin_with(data, |_| {})
    }

    /// An origin of `data` with a connection open on slot 0, its configuration changed by
    /// `tune`.
    fn origin_with(data: &[u8], tune: impl FnOnce(&mut Config)) -> One {
        let now = Instant::now();
        let m = Manifest::build(data, PIECE).unwrap();
        let mut cfg = Config::new(Role::Origin, 1);
        tune(&mut cfg);
        let mut n = Node::origin(cfg, m, now);
        n.handle_open(0, Link::Accepted, addr_of(9), now);
        let mut o = One { node: n, now };
        o.out();
        o
    }

    /// An origin whose client (slot 0) holds `bits` and is interested; outputs drained.
    pub(super) fn origin_with_interested_client(data: &[u8], bits: &[u8]) -> One {
        let mut o = One::origin(data);
        o.send(hello(Role::Client, 2, 0));
        o.send(Message::Bitfield(bits));
        o.send(Message::Interested(true));
        o.out();
        o
    }

    fn client() -> One {
        One::client_with(|_| {})
    }

    /// A client connected to its origin (slot 0), its configuration changed by `tune`.
    fn client_with(tune: impl FnOnce(&mut Config)) -> One {
        let now = Instant::now();
        let mut cfg = Config::new(Role::Client, 5);
        cfg.server = Some(addr_of(0));
        tune(&mut cfg);
        let mut n = Node::client(cfg, now);
        n.handle_open(0, Link::ToOrigin, addr_of(0), now);
        let mut o = One { node: n, now };
        o.out();
        o
    }

    /// A client that has the origin's HELLO, MANIFEST and BITFIELD for `data`, its own
    /// replies and events drained.
    pub(super) fn client_with_manifest(data: &[u8]) -> One {
        One::client_with_manifest_and(data, |_| {})
    }

    /// `client_with_manifest` with its configuration changed by `tune`.
    fn client_with_manifest_and(data: &[u8], tune: impl FnOnce(&mut Config)) -> One {
        let mut c = One::client_with(tune);
        let m = Manifest::build(data, PIECE).unwrap();
        c.send(hello(Role::Origin, 1, m.id()));
        let mut body = Vec::new();
        m.encode(&mut body);
        c.send(Message::Manifest(&body));
        let all = Bitfield::full(m.piece_count());
        c.send(Message::Bitfield(all.as_bytes()));
        c.events();
        c
    }

    #[track_caller]
    pub(super) fn send(&mut self, msg: Message) {
        self.send_on(0, msg);
    }

    /// Delivers a frame of type `ty` with `body` as it came off the wire on slot 0.
    #[track_caller]
    pub(super) fn send_raw(&mut self, ty: u8, body: &[u8]) {
        self.node.handle_frame(0, ty, body, self.now);
    }

    /// Delivers `msg` as if it arrived on connection `slot`.
    #[track_caller]
    pub(super) fn send_on(&mut self, slot: Slot, msg: Message) {
        let mut buf = Vec::new();
        msg.emit(&mut buf);
        let h = FrameHead::parse(&buf).unwrap().unwrap();
        self.node
            .handle_frame(slot, h.ty, &buf[HEAD_SIZE..], self.now);
    }

    /// Frames the node queued for slot 0, as (type, body).
    pub(super) fn out(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut buf = Vec::new();
        self.node.take_outbox(0, &mut buf);
        frames(&buf)
    }

    pub(super) fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.node.poll_event()).collect()
    }

    /// Every piece of `data` arrives whole and verified on slot 0.
    pub(super) fn receive_all_on_0(&mut self, data: &[u8]) {
        for (p, piece) in data.chunks(PIECE as usize).enumerate() {
            let len = piece.len() as u32;
            assert!(self.node.begin_piece(0, p as u32, len, self.now).is_some());
            let hash = crate::manifest::hash(piece);
            self.node.end_piece(0, Some(hash), self.now);
        }
    }

    /// Piece `piece` of `data` arrives whole and verified on `slot`; returns where its
    /// payload went (`None`: the node refused it and is closing the connection).
    pub(super) fn piece_arrives(&mut self, slot: Slot, data: &[u8], piece: u32) -> Option<Sink> {
        let sink = self.node.begin_piece(slot, piece, PIECE, self.now)?;
        let o = piece as usize * PIECE as usize;
        let hash = crate::manifest::hash(&data[o..o + PIECE as usize]);
        self.node.end_piece(slot, Some(hash), self.now);
        Some(sink)
    }

    /// The node gave up, for this kind of reason, among the events since the last call.
    pub(super) fn gave_up(&mut self, kind: FailureKind) -> bool {
        self.events()
            .iter()
            .any(|e| matches!(e, Event::Fatal(f) if f.kind == kind))
    }
}

pub(super) fn hello(role: Role, id: u64, file_id: u64) -> Message<'static> {
    Message::Hello(Hello {
        role,
        auth: false,
        node_id: id,
        file_id,
        listen_port: 7000,
        nonce: [id as u8; wire::NONCE_LEN],
        path: "",
    })
}

#[test]
fn test_origin_hello_gets_manifest_and_bitfield() {
    let mut o = One::origin(&file(3 * PIECE as usize));
    o.send(hello(Role::Client, 2, 0));
    let tys: Vec<u8> = o.out().iter().map(|f| f.0).collect();
    assert_eq!(tys, vec![wire::ty::MANIFEST, wire::ty::BITFIELD]);
}

#[test]
fn test_origin_rejects_unsupported_version() {
    let mut o = One::origin(&file(100));
    // A version 1 HELLO, exactly as a version 1 node sends it.
    let v1 = [
        b'T', b'F', b'T', b'T', 1, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0x1a, 0xe1,
    ];
    o.send_raw(wire::ty::HELLO, &v1);
    let out = o.out();
    assert_eq!(out[0].0, wire::ty::ERROR);
    assert_eq!(u16::from_be_bytes([out[0].1[0], out[0].1[1]]), 2);
    let reason = String::from_utf8_lossy(&out[0].1[2..]).to_string();
    assert!(
        reason.contains("version 1") && reason.contains("version 2"),
        "{reason}"
    );
    assert!(matches!(
        o.events().as_slice(),
        [Event::Close {
            slot: 0,
            flush: true,
            ..
        }]
    ));
}

/// §4.1: a HELLO of another version gets ERROR 2 whatever its length up to MAX_HELLO_LEN
/// and whatever follows the version byte (a long body of another version got ERROR 1 in
/// version 1, issue 13).
#[test]
fn test_origin_answers_long_hello_of_another_version_with_version_error() {
    let mut o = One::origin(&file(100));
    let mut body = b"TFTT".to_vec();
    body.push(3);
    body.resize(wire::MAX_HELLO_LEN, 0xff);
    o.node.handle_frame(0, wire::ty::HELLO, &body, o.now);
    let out = o.out();
    assert_eq!(out[0].0, wire::ty::ERROR);
    assert_eq!(u16::from_be_bytes([out[0].1[0], out[0].1[1]]), 2);
}

/// §4.1: node ids are never 0; a HELLO with 0 is refused with ERROR 1 and says why.
#[test]
fn test_origin_refuses_node_id_0() {
    let mut o = One::origin(&file(100));
    o.send(hello(Role::Client, 0, 0));
    let out = o.out();
    assert_eq!(out.len(), 1, "an ERROR only, no MANIFEST");
    assert_eq!(out[0].0, wire::ty::ERROR);
    assert_eq!(u16::from_be_bytes([out[0].1[0], out[0].1[1]]), 1);
    let reason = String::from_utf8_lossy(&out[0].1[2..]).to_string();
    assert!(reason.contains("node id 0"), "{reason}");
}

/// A client whose origin says it is node 0 gives up: it is not a TFTTP origin.
#[test]
fn test_client_gives_up_on_origin_with_node_id_0() {
    let mut c = One::client();
    c.send(hello(Role::Origin, 0, 77));
    assert!(c.gave_up(FailureKind::NotTftp));
}

#[test]
fn test_origin_rejects_wrong_file_id() {
    let mut o = One::origin(&file(100));
    o.send(hello(Role::Client, 2, 12345));
    assert_eq!(o.out()[0].0, wire::ty::ERROR);
    assert!(o.node.is_closing(0));
}

#[test]
fn test_frame_before_hello_is_a_violation() {
    let mut o = One::origin(&file(100));
    o.send(Message::Request(0));
    assert_eq!(o.out()[0].0, wire::ty::ERROR);
    assert!(o.node.is_closing(0));
}

#[test]
fn test_origin_request_while_choked_is_rejected() {
    let mut o = One::origin(&file(3 * PIECE as usize));
    o.send(hello(Role::Client, 2, 0));
    o.out();
    o.send(Message::Bitfield(&[0]));
    o.send(Message::Request(WILDCARD));
    let out = o.out();
    assert!(out.iter().any(|f| f.0 == wire::ty::REJECT));
    // After INTERESTED the policy unchokes and the wildcard is served.
    o.send(Message::Interested(true));
    assert!(o.out().iter().any(|f| f.0 == wire::ty::UNCHOKE));
    o.send(Message::Request(WILDCARD));
    assert_eq!(o.node.poll_piece(0, o.now), Some(0));
}

#[test]
fn test_origin_serves_no_client_that_never_sent_its_bitfield() {
    let mut o = One::origin(&file(3 * PIECE as usize));
    o.send(hello(Role::Client, 2, 0));
    o.send(Message::Interested(true));
    o.out();
    o.send(Message::Request(WILDCARD));
    o.send(Message::Request(1));
    let rejects = o.out().iter().filter(|f| f.0 == wire::ty::REJECT).count();
    assert_eq!(rejects, 2, "an unregistered client is not served");
    assert_eq!(o.node.poll_piece(0, o.now), None);
}

/// Slowloris (issue 13): a connection that sends nothing, or only part of a HELLO (the
/// driver holds a partial frame; the node sees nothing), is closed with ERROR 8 when the
/// handshake timer expires, 10 s after it opened; a registered client that then falls
/// silent is closed after the idle timeout.
#[test]
fn test_origin_closes_connection_without_hello_at_handshake_timeout() {
    let mut o = One::origin(&file(PIECE as usize));
    let start = o.now;
    o.node.handle_tick(start + Duration::from_secs(9));
    assert!(!o.node.is_closing(0));
    o.node
        .handle_tick(start + Duration::from_secs(10) + Duration::from_millis(100));
    assert!(o.node.is_closing(0));
    let error = o
        .out()
        .into_iter()
        .find(|f| f.0 == wire::ty::ERROR)
        .unwrap();
    assert_eq!(u16::from_be_bytes([error.1[0], error.1[1]]), 8);
    assert!(String::from_utf8_lossy(&error.1[2..]).contains("no HELLO in time"));

    let mut o = One::origin(&file(PIECE as usize));
    o.send(hello(Role::Client, 2, 0));
    o.send(Message::Bitfield(&[0]));
    o.node.handle_tick(start + Duration::from_secs(59));
    assert!(!o.node.is_closing(0));
    o.node.handle_tick(start + Duration::from_secs(61));
    assert!(o.node.is_closing(0), "silent for 60 s");
}

#[test]
fn test_peer_that_floods_requests_and_never_reads_is_dropped() {
    let mut o = One::origin(&file(3 * PIECE as usize));
    o.send(hello(Role::Client, 2, 0));
    o.send(Message::Bitfield(&[0]));
    // Choked (not interested): every request is answered with a REJECT that it never reads.
    let mut n = 0;
    while !o.node.is_closing(0) && n < 1_000_000 {
        o.send(Message::Request(1));
        n += 1;
    }
    assert!(o.node.is_closing(0), "still open after {n} requests");
    // Its answers waiting for it are bounded by count, not only by MAX_OUTBOX (4 MiB, which
    // 1,000 such peers would make 4 GiB).
    assert_eq!(
        n,
        super::super::MAX_UNREAD_REJECTS + 1,
        "closed after {n} requests"
    );
    let closed = o.events().into_iter().any(
        |e| matches!(e, Event::Close { slot: 0, ref why, .. } if why.contains("does not read")),
    );
    assert!(closed);
}

/// The same REQUESTs from a peer whose answers are taken (the driver wrote them) as they
/// come: each gets its REJECT and the peer stays.
#[test]
fn test_peer_that_reads_its_rejects_is_not_dropped() {
    let mut o = One::origin(&file(3 * PIECE as usize));
    o.send(hello(Role::Client, 2, 0));
    o.send(Message::Bitfield(&[0]));
    for _ in 0..20_000 {
        o.send(Message::Request(1));
        assert_eq!(o.out().last().unwrap().0, wire::ty::REJECT);
    }
    assert!(!o.node.is_closing(0));
}

#[test]
fn test_origin_wildcard_rejected_when_client_has_everything_else() {
    let mut o = One::origin(&file(2 * PIECE as usize));
    o.send(hello(Role::Client, 2, 0));
    o.send(Message::Bitfield(&[0x80]));
    o.send(Message::Interested(true));
    o.out();
    o.send(Message::Request(WILDCARD));
    o.send(Message::Request(WILDCARD));
    assert_eq!(o.node.poll_piece(0, o.now), Some(1));
    assert_eq!(o.node.poll_piece(0, o.now), None);
    let out = o.out();
    assert_eq!(out.last().unwrap().0, wire::ty::REJECT);
}

#[test]
fn test_origin_swarm_done_and_exit_after() {
    let now = Instant::now();
    let data = file(PIECE as usize);
    let mut cfg = Config::new(Role::Origin, 1);
    cfg.exit_after = Some(1);
    let mut n = Node::origin(cfg, Manifest::build(&data, PIECE).unwrap(), now);
    n.handle_open(0, Link::Accepted, addr_of(9), now);
    let mut o = One { node: n, now };
    o.send(hello(Role::Client, 2, 0));
    o.send(Message::Bitfield(&[0]));
    o.send(Message::Have(0));
    assert!(o.out().iter().any(|f| f.0 == wire::ty::SWARM_DONE));
    // Its registration asked for a probe of its listen port; exiting does not wait for it.
    let probe = Event::Probe {
        id: 0,
        addr: SocketAddr::new(addr_of(9).ip(), 7000),
    };
    assert_eq!(o.events(), vec![probe, Event::Exit]);
}

#[test]
fn test_client_fatal_when_server_closes_before_manifest() {
    let mut c = One::client();
    c.node.handle_closed(0, "Connection refused", c.now);
    match &c.events()[..] {
        [Event::Fatal(why)] => {
            assert_eq!(why.kind, FailureKind::Unreachable);
            assert!(why.to_string().contains("Connection refused"), "{why}");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn test_client_fatal_on_manifest_id_mismatch() {
    let mut c = One::client();
    let m = Manifest::build(&file(100), PIECE).unwrap();
    c.send(hello(Role::Origin, 1, m.id() ^ 1));
    let mut body = Vec::new();
    m.encode(&mut body);
    c.send(Message::Manifest(&body));
    assert!(c.gave_up(FailureKind::WrongFile));
}

#[test]
fn test_client_fatal_when_server_is_not_an_origin() {
    let mut c = One::client();
    c.send(hello(Role::Client, 1, 0));
    assert!(c.gave_up(FailureKind::NotTftp));
}

#[test]
fn test_client_fatal_at_once_when_origin_answers_in_http() {
    let mut c = One::client();
    let why = FrameHead::parse(b"HTTP/1.1 200 OK\r\n").unwrap_err();
    c.node.handle_malformed(0, &why.to_string(), c.now);
    match &c.events()[..] {
        [Event::Fatal(f), Event::Close { slot: 0, .. }] => {
            assert_eq!(f.kind, FailureKind::NotTftp);
            assert!(f.to_string().contains("answered in HTTP"), "{f}");
            assert!(f.to_string().contains("curl"), "{f}");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn test_client_rejects_unsolicited_piece() {
    let data = file(2 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    // Still choked: nothing requested, so any PIECE is unsolicited.
    assert_eq!(c.node.begin_piece(0, 0, PIECE, c.now), None);
    assert!(c.node.is_closing(0));
}

#[test]
fn test_client_requests_wildcards_after_unchoke_and_verifies() {
    let data = file(2 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    let out = c.out();
    assert!(out.contains(&(wire::ty::INTERESTED, vec![1])));
    assert!(!out.iter().any(|f| f.0 == wire::ty::REQUEST));
    c.send(Message::Unchoke);
    let reqs = c.out().iter().filter(|f| f.0 == wire::ty::REQUEST).count();
    assert_eq!(reqs, 2, "two wildcards for two missing pieces");
    // A corrupt piece from the origin is fetched again, not accepted.
    assert_eq!(
        c.node.begin_piece(0, 1, PIECE, c.now),
        Some(Sink::Store {
            offset: PIECE as u64
        })
    );
    let bad = vec![0u8; PIECE as usize];
    c.node
        .end_piece(0, Some(crate::manifest::hash(&bad)), c.now);
    assert_eq!(c.node.counters().corrupt_pieces, 1);
    assert_eq!(c.node.progress(), (0, 2));
    let out = c.out();
    assert!(out.iter().any(|f| f.0 == wire::ty::REQUEST), "re-requested");
    for p in 0..2u32 {
        let s = c.piece_arrives(0, &data, p);
        assert!(matches!(s, Some(Sink::Store { .. })));
    }
    assert!(c.node.is_complete());
    assert!(c.events().contains(&Event::Complete));
}

#[test]
fn test_client_discards_second_copy_of_piece_being_received() {
    let data = file(2 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    c.send(Message::Unchoke);
    // The origin answers two wildcards with piece 0 twice (a misbehaving origin or a race).
    assert!(matches!(
        c.node.begin_piece(0, 0, PIECE, c.now),
        Some(Sink::Store { .. })
    ));
    c.node.end_piece(
        0,
        Some(crate::manifest::hash(&data[..PIECE as usize])),
        c.now,
    );
    assert_eq!(c.node.begin_piece(0, 0, PIECE, c.now), Some(Sink::Discard));
    c.node.end_piece(0, None, c.now);
    assert_eq!(c.node.counters().discarded, PIECE as u64);
}

#[test]
fn test_stall_timeout_is_fatal() {
    let mut c = One::client();
    let m = Manifest::build(&file(PIECE as usize), PIECE).unwrap();
    c.send(hello(Role::Origin, 1, m.id()));
    let mut body = Vec::new();
    m.encode(&mut body);
    c.send(Message::Manifest(&body));
    c.events();
    let later = c.now + Duration::from_secs(61);
    // Ticks at 100 ms: jump in one go, the tick only looks at the clock.
    c.node.handle_tick(later);
    assert!(c.events().iter().any(
        |e| matches!(e, Event::Fatal(w) if w.kind == FailureKind::Stalled
                && w.to_string().contains("no progress"))
    ));
}

/// A stall timeout beyond what `Instant` can hold never fires, and does not panic.
#[test]
fn test_stall_timeout_beyond_instant_range_never_fires() {
    let data = file(2 * PIECE as usize);
    let mut c = One::client_with_manifest_and(&data, |cfg| cfg.stall_timeout = Duration::MAX);
    c.node.handle_tick(c.now + Duration::from_secs(100_000));
    assert!(
        !c.events().iter().any(|e| matches!(e, Event::Fatal(_))),
        "no stall"
    );
}

#[test]
fn test_slow_piece_still_arriving_is_not_a_stall() {
    // Found by the simulator: a 1 MiB last piece from a 5 Mbit/s peer sharing its upload
    // with 47 others takes 80 s; the client gave up at 1023/1024 pieces.
    let data = file(2 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    c.send(Message::Unchoke);
    assert!(c.node.begin_piece(0, 0, PIECE, c.now).is_some());
    for s in 1..=7 {
        let t = c.now + Duration::from_secs(10 * s);
        c.node.handle_payload(0, t);
        c.node.handle_tick(t);
    }
    assert!(
        !c.events().iter().any(|e| matches!(e, Event::Fatal(_))),
        "payload arrived every 10 s for 70 s"
    );
    c.node.handle_tick(c.now + Duration::from_secs(131));
    assert!(c.gave_up(FailureKind::Stalled));
}

#[test]
fn test_piece_arriving_from_origin_cancels_peer_request() {
    let data = file(2 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    // A peer (slot 1) with both pieces unchokes us; we ask it for one.
    let requested = peer_unchokes(&mut c, 1, &[0xc0]);
    assert!(!requested.is_empty());
    let p = requested[0];
    // The origin (slot 0, unchoked, wildcard outstanding) delivers that very piece.
    c.send(Message::Unchoke);
    c.out();
    assert!(matches!(
        c.node.begin_piece(0, p, PIECE, c.now),
        Some(Sink::Store { .. })
    ));
    let mut out = Vec::new();
    c.node.take_outbox(1, &mut out);
    assert!(
        frames(&out).contains(&(wire::ty::CANCEL, p.to_be_bytes().to_vec())),
        "no CANCEL for piece {p}"
    );
    // The peer answers the cancel with REJECT: no protocol error, no back-off.
    c.send_on(1, Message::Reject(p));
    assert!(!c.node.is_closing(1));
}

#[test]
fn test_cancel_of_queued_request_is_answered_with_reject() {
    let data = file(2 * PIECE as usize);
    let mut o = One::origin_with_interested_client(&data, &[0]);
    o.send(Message::Request(1));
    o.out();
    o.send(Message::Cancel(1));
    assert_eq!(
        o.out(),
        vec![(wire::ty::REJECT, 1u32.to_be_bytes().to_vec())]
    );
    assert_eq!(
        o.node.poll_piece(0, o.now),
        None,
        "the cancelled request is gone"
    );
    // A cancel for something not queued is ignored.
    o.send(Message::Cancel(0));
    assert!(o.out().is_empty());
}

/// Opens slot `slot` on `c` to a client peer holding `bits` that chokes us.
pub(super) fn peer_announces(c: &mut One, slot: Slot, bits: &[u8]) {
    let id = c.node.manifest().unwrap().id();
    c.node
        .handle_open(slot, Link::Accepted, addr_of(slot + 10), c.now);
    c.send_on(slot, hello(Role::Client, 70 + slot as u64, id));
    c.send_on(slot, Message::Bitfield(bits));
}

/// As `peer_announces`, and the peer unchokes us: returns the piece indices we then asked
/// it for.
fn peer_unchokes(c: &mut One, slot: Slot, bits: &[u8]) -> Vec<u32> {
    peer_announces(c, slot, bits);
    c.send_on(slot, Message::Unchoke);
    requests_on(c, slot)
}

fn requests_on(c: &mut One, slot: Slot) -> Vec<u32> {
    pieces_on(c, slot, wire::ty::REQUEST)
}

/// Takes what `c` queued on `slot` and returns the piece indices of its frames of type `ty`
/// (REQUEST, CANCEL, ...).
pub(super) fn pieces_on(c: &mut One, slot: Slot, ty: u8) -> Vec<u32> {
    let mut out = Vec::new();
    c.node.take_outbox(slot, &mut out);
    frames(&out)
        .into_iter()
        .filter(|f| f.0 == ty)
        .map(|f| wire::be_u32(&f.1))
        .collect()
}

/// A piece verified after our BITFIELD went to a peer, before its BITFIELD came, is
/// announced to it all the same: the peer would otherwise never hear that we hold it.
#[test]
fn test_piece_verified_before_the_peer_s_bitfield_is_announced_to_it() {
    let data = file(4 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    let id = c.node.manifest().unwrap().id();
    c.node.handle_open(1, Link::Accepted, addr_of(11), c.now);
    c.send_on(1, hello(Role::Client, 71, id));
    assert_eq!(pieces_on(&mut c, 1, wire::ty::HAVE), Vec::<u32>::new());
    c.send(Message::Unchoke);
    assert!(c.piece_arrives(0, &data, 2).is_some());
    assert_eq!(pieces_on(&mut c, 1, wire::ty::HAVE), vec![2]);
    c.send_on(1, Message::Bitfield(&[0x00]));
    assert!(!c.node.is_closing(1));
}

#[test]
fn test_client_asks_origin_by_name_once_peers_hold_everything() {
    let data = file(4 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    // A peer holds pieces 0 and 1 and unchokes us: we ask it for both.
    let mut to_peer = peer_unchokes(&mut c, 1, &[0xc0]);
    to_peer.sort();
    assert_eq!(to_peer, vec![0, 1]);
    // Pieces 2 and 3 only the origin has: wildcards, and only two of them, so the origin
    // cannot answer with a piece we asked the peer for.
    c.send(Message::Unchoke);
    assert_eq!(requests_on(&mut c, 0), vec![WILDCARD, WILDCARD]);
    // The origin sends 2 and 3; then a second peer announces them, but nothing is left
    // unassigned, so no new wildcard goes out.
    for p in [2u32, 3] {
        c.piece_arrives(0, &data, p);
    }
    assert!(requests_on(&mut c, 0).iter().all(|&r| r != WILDCARD));
}

/// A peer that holds most pieces but chokes us leaves few pieces only the origin has. The
/// wildcards for those do not hold back the rest of the origin's pipeline: it asks by index
/// for pieces the peer holds, never the unseen one a wildcard may bring. (Found by the
/// simulator: a free rider's arriving pieces kept a client's unseen count at 1-4 and its
/// origin pipeline as short for 8 s, at half its rate.)
#[test]
fn test_choking_peer_does_not_shrink_the_origin_pipeline_to_the_unseen_pieces() {
    let data = file(16 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    // Pieces 0 to 14; it never unchokes us.
    peer_announces(&mut c, 1, &[0xff, 0xfe]);
    c.send(Message::Unchoke);
    let asked = requests_on(&mut c, 0);
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0], WILDCARD);
    assert!(asked[1] < 15, "{asked:?}");
}

#[test]
fn test_refused_wildcard_makes_client_ask_origin_by_index() {
    // Found by the simulator (1,000 clients): the origin had sent piece 1, the client
    // discarded it (another copy was arriving, then failed), and the origin, counting it as
    // on its way, refused every wildcard until the client gave up at 1023/1024.
    let data = file(2 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    c.send(Message::Unchoke);
    assert_eq!(requests_on(&mut c, 0), vec![WILDCARD, WILDCARD]);
    c.node.begin_piece(0, 0, PIECE, c.now);
    let hash = crate::manifest::hash(&data[..PIECE as usize]);
    c.node.end_piece(0, Some(hash), c.now);
    c.send(Message::Reject(WILDCARD));
    c.now += REJECT_BACKOFF + TICK;
    c.node.handle_tick(c.now);
    assert_eq!(requests_on(&mut c, 0), vec![1]);
}

#[test]
fn test_wildcard_answered_with_a_piece_arriving_from_a_peer_makes_client_ask_origin_by_index() {
    // Found by the simulator suite: once every piece was in the swarm, the origin answered
    // wildcards with its least-copied pieces, which the clients were fetching from their
    // peers too; up to 15% of its upload arrived second and was discarded.
    let data = file(4 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    // A peer holds piece 3: it is asked for it, and starts sending it.
    assert_eq!(peer_unchokes(&mut c, 1, &[0x10]), vec![3]);
    c.send(Message::Unchoke);
    assert_eq!(requests_on(&mut c, 0), vec![WILDCARD; 2]);
    assert!(matches!(
        c.node.begin_piece(1, 3, PIECE, c.now),
        Some(Sink::Store { .. })
    ));
    // The origin has no first copy left for us: it answers with the peer's piece.
    assert_eq!(c.node.begin_piece(0, 3, PIECE, c.now), Some(Sink::Discard));
    assert_eq!(
        pieces_on(&mut c, 0, wire::ty::CANCEL),
        vec![WILDCARD],
        "the other wildcard is withdrawn"
    );
    c.node.end_piece(0, None, c.now);
    // The withdrawn wildcard comes back refused; the rest is asked for by index.
    c.send(Message::Reject(WILDCARD));
    c.now += REJECT_BACKOFF + TICK;
    c.node.handle_tick(c.now);
    let asked = requests_on(&mut c, 0);
    assert!(!asked.is_empty(), "the origin is still asked");
    assert!(asked.iter().all(|i| [0, 1, 2].contains(i)), "{asked:?}");
}

#[test]
fn test_wildcard_answered_with_a_piece_a_peer_only_announced_keeps_wildcards() {
    // A liar announces every piece: its HAVEs must not turn us from the origin's choices.
    let data = file(4 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    peer_announces(&mut c, 1, &[0x10]);
    c.send(Message::Unchoke);
    assert_eq!(requests_on(&mut c, 0), vec![WILDCARD; 2]);
    assert!(matches!(
        c.node.begin_piece(0, 3, PIECE, c.now),
        Some(Sink::Store { .. })
    ));
    let o = 3 * PIECE as usize;
    let hash = crate::manifest::hash(&data[o..o + PIECE as usize]);
    c.node.end_piece(0, Some(hash), c.now);
    assert_eq!(requests_on(&mut c, 0), vec![WILDCARD]);
}

#[test]
fn test_wildcard_rejected_while_choked_keeps_wildcards() {
    let data = file(2 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    c.send(Message::Unchoke);
    assert_eq!(requests_on(&mut c, 0), vec![WILDCARD, WILDCARD]);
    // Choked: the queued wildcards come back, which says nothing about what is in flight.
    c.send(Message::Choke);
    c.send(Message::Reject(WILDCARD));
    c.send(Message::Reject(WILDCARD));
    c.now += REJECT_BACKOFF + TICK;
    c.send(Message::Unchoke);
    assert_eq!(requests_on(&mut c, 0), vec![WILDCARD, WILDCARD]);
}

#[test]
fn test_client_names_pieces_to_origin_when_peers_have_them_all() {
    let data = file(4 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    // A peer has every piece but keeps choking us.
    peer_announces(&mut c, 1, &[0xf0]);
    c.send(Message::Unchoke);
    let asked = requests_on(&mut c, 0);
    assert!(!asked.is_empty());
    assert!(
        asked.iter().all(|&r| r != WILDCARD),
        "nothing fresh is left at the origin: {asked:?}"
    );
}

#[test]
fn test_origin_wildcard_skips_pieces_asked_for_by_name() {
    let data = file(2 * PIECE as usize);
    let mut o = One::origin_with_interested_client(&data, &[0]);
    o.send(Message::Request(WILDCARD));
    o.send(Message::Request(0));
    // Piece 0 is fresh and first in line, but the client asked for it by name.
    assert_eq!(o.node.poll_piece(0, o.now), Some(1));
    assert_eq!(o.node.poll_piece(0, o.now), Some(0));
}

/// A client that asks for a piece it announced gets nothing for the announcement: HAVEs
/// repeated for a partner (collusion, docs/PROTOCOL.md §5.6) buy no copy of the piece.
#[test]
fn test_origin_rejects_a_request_for_a_piece_the_client_announced() {
    let data = file(3 * PIECE as usize);
    // Piece 0 in the BITFIELD (bit 7 of the first byte), piece 2 by HAVE.
    let mut o = One::origin_with_interested_client(&data, &[0x80]);
    o.send(Message::Have(2));
    o.out();
    o.send(Message::Request(0));
    o.send(Message::Request(2));
    o.send(Message::Request(1));
    let rejects: Vec<_> = o
        .out()
        .into_iter()
        .filter(|f| f.0 == wire::ty::REJECT)
        .collect();
    assert_eq!(rejects.len(), 2, "pieces 0 and 2 were announced");
    assert_eq!(o.node.poll_piece(0, o.now), Some(1));
    assert_eq!(o.node.poll_piece(0, o.now), None);
    assert!(!o.node.is_closing(0), "an answer, not a protocol error");
}

/// The origin's send window: a client that asks and never announces what it received gets
/// two pieces, and each HAVE lets one more go and widens the window by one.
#[test]
fn test_origin_sends_no_more_than_its_window_ahead_of_the_client_s_haves() {
    let data = file(16 * PIECE as usize);
    let mut o = One::origin_with_interested_client(&data, &[0, 0]);
    for _ in 0..8 {
        o.send(Message::Request(WILDCARD));
    }
    let first: Vec<u32> = std::iter::from_fn(|| o.node.poll_piece(0, o.now)).collect();
    assert_eq!(first.len(), 2, "the initial window");
    assert!(o.out().is_empty(), "held, not refused");
    o.send(Message::Have(first[0]));
    let more: Vec<u32> = std::iter::from_fn(|| o.node.poll_piece(0, o.now)).collect();
    assert_eq!(
        more.len(),
        2,
        "one piece acknowledged: one freed, one more of window"
    );
    // A piece asked for again by index while on its way (it failed the client's check)
    // goes out even with the window full.
    o.send(Message::Request(more[0]));
    assert_eq!(o.node.poll_piece(0, o.now), Some(more[0]));
    assert_eq!(o.node.poll_piece(0, o.now), None);
    // But not again and again: a client that asks for what is on its way and never reads
    // it would get the window each time.
    for _ in 0..4 {
        o.send(Message::Request(more[1]));
    }
    let again: Vec<u32> = std::iter::from_fn(|| o.node.poll_piece(0, o.now)).collect();
    assert_eq!(again, vec![more[1]], "two sent again between HAVEs");
}

/// The origin's send slots (docs/PROTOCOL.md §5.2): before it has measured its capacity it
/// sends at most 8 pieces at once over all its clients; a client with a request beyond them
/// waits, and the next free slot wakes it, whether a piece left or its client closed.
#[test]
fn test_origin_sends_at_most_its_send_slots_at_once_and_wakes_who_waits() {
    let data = file(64 * PIECE as usize);
    let mut o = One::origin_with_interested_client(&data, &[0; 8]);
    for slot in 1..10 {
        o.node
            .handle_open(slot, Link::Accepted, addr_of(10 + slot), o.now);
        o.send_on(slot, hello(Role::Client, 2 + slot as u64, 0));
        o.send_on(slot, Message::Bitfield(&[0; 8]));
        o.send_on(slot, Message::Interested(true));
    }
    for slot in 0..10 {
        o.send_on(slot, Message::Request(WILDCARD));
        o.send_on(slot, Message::Request(WILDCARD));
    }
    // Introductions and unchokes aside.
    while o.node.poll_dirty().is_some() {}
    let mut sent = Vec::new();
    for slot in 0..10 {
        if let Some(piece) = o.node.poll_piece(slot, o.now) {
            sent.push((slot, piece));
        }
    }
    assert_eq!(sent.len(), 8, "{sent:?}");
    let woken = |o: &mut One| std::iter::from_fn(|| o.node.poll_dirty()).collect::<Vec<_>>();
    assert!(woken(&mut o).is_empty(), "nobody woken yet");
    // Slot 0's piece left: the slot goes to the first that waited (slot 8), not back to
    // slot 0, whose second request queues behind it.
    o.node.handle_piece_sent(0, sent[0].1, o.now);
    assert_eq!(o.node.poll_piece(0, o.now), None);
    assert_eq!(woken(&mut o), vec![8]);
    assert!(o.node.poll_piece(8, o.now).is_some());
    // Slot 1 closes with its piece on its way: slot 9 goes next (the others hear that
    // slot 1 left).
    o.node.handle_closed(1, "test", o.now);
    assert!(woken(&mut o).contains(&9));
    assert!(o.node.poll_piece(9, o.now).is_some());
    assert_eq!(o.node.poll_piece(0, o.now), None, "eight on their way");
}

/// The served file changed under the origin and piece 0 no longer matches the manifest:
/// a WILDCARD gets the next piece instead, a request by index a REJECT, and piece 0 is
/// never offered again (it would fail its CRC at every client).
#[test]
fn test_origin_withdraws_a_piece_that_no_longer_matches() {
    let data = file(4 * PIECE as usize);
    let mut o = One::origin_with_interested_client(&data, &[0]);
    let changed = |p: u32| p != 0;
    o.send(Message::Request(WILDCARD));
    assert_eq!(o.node.poll_piece_checked(0, o.now, changed), Some(1));
    assert_eq!(o.node.withdrawn_pieces(), 1);
    o.send(Message::Request(0));
    assert_eq!(o.node.poll_piece_checked(0, o.now, |_| true), None);
    assert_eq!(
        o.out(),
        vec![(wire::ty::REJECT, 0u32.to_be_bytes().to_vec())]
    );
    for _ in 0..3 {
        o.send(Message::Request(WILDCARD));
    }
    // The client announces each piece it receives, which keeps the send window open.
    o.send(Message::Have(1));
    let mut sent = Vec::new();
    while let Some(p) = o.node.poll_piece(0, o.now) {
        o.send(Message::Have(p));
        sent.push(p);
    }
    sent.sort();
    assert_eq!(sent, vec![2, 3], "never piece 0 again");
    assert_eq!(
        o.out(),
        vec![(wire::ty::REJECT, WILDCARD.to_be_bytes().to_vec())],
        "nothing left to send"
    );
}

/// A file that changed throughout: one call checks a few pieces, then refuses the WILDCARD
/// instead of reading the whole file.
#[test]
fn test_origin_checks_a_few_pieces_per_wildcard_then_rejects() {
    let data = file(8 * PIECE as usize);
    let mut o = One::origin_with_interested_client(&data, &[0]);
    let mut checked = 0;
    o.send(Message::Request(WILDCARD));
    let got = o.node.poll_piece_checked(0, o.now, |_| {
        checked += 1;
        false
    });
    assert_eq!(got, None);
    assert_eq!(checked, 4);
    assert_eq!(o.node.withdrawn_pieces(), 4);
    assert_eq!(
        o.out(),
        vec![(wire::ty::REJECT, WILDCARD.to_be_bytes().to_vec())]
    );
}

#[test]
fn test_endgame_asks_idle_peer_for_longest_waiting_piece() {
    let data = file(4 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    // Two peers with every piece share the four requests, two each (the pipeline of a peer
    // with no measured rate).
    let first = peer_unchokes(&mut c, 1, &[0xf0]);
    assert_eq!(first.len(), 2);
    c.now += Duration::from_millis(10);
    let second = peer_unchokes(&mut c, 2, &[0xf0]);
    assert_eq!(second.len(), 2);
    // A third peer: everything is requested once, so it gets duplicates, but only
    // ENDGAME_PIPELINE of them, those waiting longest.
    c.now += Duration::from_millis(10);
    let mut third = peer_unchokes(&mut c, 3, &[0xf0]);
    let mut oldest = first.clone();
    third.sort();
    oldest.sort();
    assert_eq!(third.len(), ENDGAME_PIPELINE);
    assert_eq!(third, oldest);
}

/// A client fetching `pieces` pieces from two peers that hold them all: peer 2 sends a
/// piece in 0.1 s, peer 1 takes 7 s over its first. What the client asks peer 1 for then.
fn requests_after_slow_piece(pieces: usize) -> Vec<u32> {
    let data = file(pieces * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    let all = vec![0xff; pieces.div_ceil(8)];
    let t0 = c.now;
    let slow = peer_unchokes(&mut c, 1, &all);
    let mut fast = peer_unchokes(&mut c, 2, &all);
    let deliver = |c: &mut One, slot: Slot, p: u32, at: Instant| {
        let o = p as usize * PIECE as usize;
        c.node.begin_piece(slot, p, PIECE, at).unwrap();
        let hash = crate::manifest::hash(&data[o..o + PIECE as usize]);
        c.node.end_piece(slot, Some(hash), at);
    };
    for k in 1..=2 {
        let p = fast.remove(0);
        deliver(&mut c, 2, p, t0 + Duration::from_millis(100 * k));
        fast.extend(requests_on(&mut c, 2));
    }
    deliver(&mut c, 1, slow[0], t0 + Duration::from_secs(7));
    requests_on(&mut c, 1)
}

#[test]
fn test_slow_peer_gets_no_request_it_would_hold_past_the_end() {
    // 8 pieces: the client lacks 5, which its sources bring in about 0.5 s; another
    // request at peer 1 would end in 14 s (behind the one it holds). Not asked.
    assert_eq!(requests_after_slow_piece(8), Vec::<u32>::new());
    // 256 pieces: 25 s to go, so peer 1's pace is no bottleneck: its pipeline is refilled.
    assert_eq!(requests_after_slow_piece(256).len(), 1);
}

#[test]
fn test_peer_that_stops_sending_is_dropped() {
    let data = file(2 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    let t0 = c.now;
    let asked = peer_unchokes(&mut c, 1, &[0xc0]);
    assert_eq!(asked.len(), 2);
    let secs = |s: u64| t0 + Duration::from_secs(s);
    c.node.handle_tick(secs(9));
    assert!(!c.node.is_closing(1), "waited only 9 s");
    // A piece starts and trickles in slowly: still alive long after it was asked for.
    assert!(c.node.begin_piece(1, asked[0], PIECE, secs(9)).is_some());
    c.node.handle_payload(1, secs(18));
    c.node.handle_tick(secs(27));
    assert!(!c.node.is_closing(1), "payload arrived 9 s ago");
    // Then nothing more: after 10 s of silence the connection goes.
    c.node.handle_tick(secs(29));
    assert!(c.node.is_closing(1));
}

/// Frames of type `ty` the node queued for `slot`.
fn count_out(n: &mut Node, slot: Slot, ty: u8) -> usize {
    let mut buf = Vec::new();
    n.take_outbox(slot, &mut buf);
    frames(&buf).iter().filter(|f| f.0 == ty).count()
}

#[test]
fn test_origin_introduces_newcomer_to_a_bounded_sample_of_a_large_crowd() {
    let data = file(PIECE as usize);
    let mut o = One::origin(&data);
    let id = o.node.manifest().unwrap().id();
    let empty = Bitfield::new(1);
    let crowd = MAX_ADVERTISED + 6;
    let register = |o: &mut One, s: Slot| {
        if s > 0 {
            o.node.handle_open(s, Link::Accepted, addr_of(s), o.now);
        }
        o.send_on(s, hello(Role::Client, 100 + s as u64, id));
        o.send_on(s, Message::Bitfield(empty.as_bytes()));
    };
    for s in 0..crowd {
        register(&mut o, s);
    }
    for s in 0..crowd {
        count_out(&mut o.node, s, wire::ty::PEERS);
    }
    register(&mut o, crowd);
    let told: usize = (0..crowd)
        .map(|s| count_out(&mut o.node, s, wire::ty::PEERS))
        .sum();
    assert_eq!(
        told, MAX_ADVERTISED,
        "the newcomer is named to the sample only"
    );
    // The newest client (slot `crowd`) registered last: it heard of MAX_ADVERTISED others,
    // in one frame, and exactly those heard of it.
    let mut buf = Vec::new();
    o.node.take_outbox(crowd, &mut buf);
    let entries: usize = frames(&buf)
        .iter()
        .filter(|f| f.0 == wire::ty::PEERS)
        .map(|f| match Message::parse(f.0, &f.1) {
            Ok(Message::Peers(e)) => e.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(entries, MAX_ADVERTISED);
    o.node.handle_closed(crowd, "left", o.now);
    let told: usize = (0..crowd)
        .map(|s| count_out(&mut o.node, s, wire::ty::PEERS))
        .sum();
    assert_eq!(told, MAX_ADVERTISED, "only the sample hears that it left");
}

#[test]
fn test_seed_lingers_while_peers_download_then_leaves_when_idle() {
    let data = file(2 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    c.send(Message::Unchoke);
    c.receive_all_on_0(&data);
    assert!(c.node.is_complete());
    // A peer that lacks everything asks us for a piece.
    let id = c.node.manifest().unwrap().id();
    c.node.handle_open(1, Link::Accepted, addr_of(11), c.now);
    c.send_on(1, hello(Role::Client, 71, id));
    c.send_on(1, Message::Bitfield(&[0x00]));
    c.send_on(1, Message::Interested(true));
    c.send_on(1, Message::Request(0));
    let exits = |c: &mut One| c.events().contains(&Event::Exit);
    let t0 = c.now;
    let at = |s: u64| t0 + Duration::from_secs(s);
    // Its request waits (the link is slow): still useful at 15 s.
    c.node.handle_tick(at(15));
    assert!(!exits(&mut c), "a peer's request is queued");
    // The piece goes out at 20 s, and nobody asks for more.
    let piece = c.node.poll_piece(1, c.now).expect("the request is served");
    c.node.handle_piece_sent(1, piece, at(20));
    c.node.handle_tick(at(29));
    assert!(!exits(&mut c), "idle for 9 s only");
    c.node.handle_tick(at(31));
    assert!(exits(&mut c), "idle for 11 s: LINGER_IDLE has passed");
}

/// `--linger 18446744073709551615` panicked with `overflow when adding duration to
/// instant` once the file was complete, before the `.part` was renamed (issue 13). A linger
/// beyond `Instant`'s range is "as long as anyone wants a piece": the idle rule still ends it.
#[test]
fn test_complete_with_linger_beyond_instant_range_leaves_when_idle() {
    let data = file(2 * PIECE as usize);
    let mut c = One::client_with_manifest_and(&data, |cfg| {
        cfg.linger = Duration::from_secs(u64::MAX);
    });
    c.send(Message::Unchoke);
    c.receive_all_on_0(&data);
    assert!(c.node.is_complete());
    let events = c.events();
    assert!(events.contains(&Event::Complete), "{events:?}");
    assert!(!events.contains(&Event::Exit), "a seed stays: {events:?}");
    c.node.handle_tick(c.now + Duration::from_secs(11));
    assert!(c.events().contains(&Event::Exit), "idle for 11 s");
}

#[test]
fn test_peer_that_sent_a_corrupt_piece_is_not_let_back() {
    let data = file(2 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    let asked = peer_unchokes(&mut c, 1, &[0xc0]);
    assert!(!asked.is_empty());
    assert!(c.node.begin_piece(1, asked[0], PIECE, c.now).is_some());
    let bad = vec![0u8; PIECE as usize];
    c.node
        .end_piece(1, Some(crate::manifest::hash(&bad)), c.now);
    assert!(c.node.is_closing(1), "dropped after a corrupt piece");
    c.node.handle_closed(1, "closed", c.now);
    // The same node comes back on a new connection: refused at its HELLO.
    let id = c.node.manifest().unwrap().id();
    c.node.handle_open(2, Link::Accepted, addr_of(12), c.now);
    c.send_on(2, hello(Role::Client, 71, id));
    assert!(c.node.is_closing(2), "a banned peer is refused");
    // Another peer is welcome.
    c.node.handle_open(3, Link::Accepted, addr_of(13), c.now);
    c.send_on(3, hello(Role::Client, 72, id));
    assert!(!c.node.is_closing(3));
}

#[test]
fn test_choked_peer_keeps_its_share_until_the_piece_in_flight_is_sent() {
    let mut o = One::origin_with_interested_client(&file(3 * PIECE as usize), &[0]);
    o.send(Message::Request(WILDCARD));
    let piece = o.node.poll_piece(0, o.now).expect("served");
    assert!(o.node.upload_weight(0) > 0.0);
    // The client loses interest: choked from the next piece, but the one being written
    // goes on at the largest share rather than trickling.
    o.send(Message::Interested(false));
    assert!(o.out().iter().any(|f| f.0 == wire::ty::CHOKE));
    assert!(o.node.upload_weight(0) > 0.0);
    let now = o.now;
    o.node.handle_piece_sent(0, piece, now);
    assert_eq!(o.node.upload_weight(0), 0.0);
}

fn add(node_id: u64, node: usize) -> PeerEntry {
    PeerEntry {
        op: PeerOp::Add,
        node_id,
        addr: addr_of(node),
    }
}

/// A listening client (id 5) with the manifest, introduced to peer 9 (a larger id: ours to
/// dial) by the origin's first PEERS.
fn listening_client_introduced() -> One {
    let data = file(4 * PIECE as usize);
    let mut c = One::client_with_manifest_and(&data, |cfg| cfg.listen_port = 7005);
    c.send(Message::Peers(vec![add(9, 9)]));
    c.events();
    c
}

/// Steps `c`'s clock by `secs` seconds in ticks.
fn wait(c: &mut One, secs: u64) {
    for _ in 0..secs * 10 {
        c.now += TICK;
        c.node.handle_tick(c.now);
    }
}

#[test]
fn test_listening_client_nobody_dials_warns_after_the_wait() {
    let mut c = listening_client_introduced();
    // A newcomer with a smaller id: the dial rule makes it dial us.
    c.send(Message::Peers(vec![add(3, 3)]));
    wait(&mut c, 9);
    assert_eq!(c.node.listen_unreachable(), None, "not before 10 s");
    wait(&mut c, 2);
    let u = c.node.listen_unreachable().expect("a verdict after 10 s");
    assert!(
        matches!(u, Unreachable::Inferred { expected: 1, .. }),
        "{u:?}"
    );
}

/// The probes the node asked its driver for, among the events since the last call.
fn probes(o: &mut One) -> Vec<(ProbeId, SocketAddr)> {
    o.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Probe { id, addr } => Some((id, addr)),
            _ => None,
        })
        .collect()
}

/// A HELLO from client `id` listening on `port`.
fn hello_listening(id: u64, port: u16) -> Message<'static> {
    match hello(Role::Client, id, 0) {
        Message::Hello(h) => Message::Hello(Hello {
            listen_port: port,
            ..h
        }),
        _ => unreachable!(),
    }
}

#[test]
fn test_origin_registered_listening_client_is_probed_and_told() {
    let data = file(2 * PIECE as usize);
    let mut o = One::origin(&data);
    o.send(hello_listening(2, 7002));
    assert!(probes(&mut o).is_empty(), "not before it registers");
    o.out();
    o.send(Message::Bitfield(&[0]));
    // The address it connected from (addr_of(9)), with its listen port.
    let asked = probes(&mut o);
    let [(id, addr)] = asked[..] else {
        panic!("one probe: {asked:?}")
    };
    assert_eq!(addr, SocketAddr::new(addr_of(9).ip(), 7002));
    assert_eq!(o.node.probes_in_flight(), 1);
    o.node.handle_probe_result(id, Some(false), o.now);
    let out = o.out();
    assert_eq!(out, vec![(wire::ty::REACHABILITY, vec![0])]);
    assert_eq!(o.node.counters().clients_unreachable, 1);
    assert_eq!(o.node.probes_in_flight(), 0);
    // The same answer again (a driver bug) changes nothing.
    o.node.handle_probe_result(id, Some(true), o.now);
    assert!(o.out().is_empty());
}

/// After its probe failed, a client is named to no newcomer (each would dial in vain), and
/// still hears of them, to dial them itself.
#[test]
fn test_origin_names_an_unreachable_client_to_no_newcomer() {
    for reachable in [true, false] {
        let mut o = One::origin(&file(2 * PIECE as usize));
        o.send(hello_listening(2, 7002));
        o.send(Message::Bitfield(&[0]));
        let (id, _) = probes(&mut o)[0];
        o.node.handle_probe_result(id, Some(reachable), o.now);
        o.out();
        o.node.handle_open(1, Link::Accepted, addr_of(8), o.now);
        o.send_on(1, hello_listening(3, 7003));
        o.send_on(1, Message::Bitfield(&[0]));
        let mut buf = Vec::new();
        o.node.take_outbox(1, &mut buf);
        let introduced = frames(&buf).iter().any(|f| f.0 == wire::ty::PEERS);
        assert_eq!(
            introduced, reachable,
            "the newcomer told of it: reachable {reachable}"
        );
        let told = o.out().iter().any(|f| f.0 == wire::ty::PEERS);
        assert!(told, "it hears of the newcomer either way");
    }
}

#[test]
fn test_client_told_unreachable_dials_the_peers_that_were_to_dial_it() {
    let mut c = listening_client_introduced();
    // Id 3 is below ours (5): by the dial rule it dials us, so we do not.
    c.send(Message::Peers(vec![add(3, 3)]));
    let dials = |c: &mut One| {
        c.events()
            .iter()
            .filter(|e| matches!(e, Event::Connect { .. }))
            .count()
    };
    assert_eq!(dials(&mut c), 0);
    c.send(Message::Reachability(false));
    assert_eq!(dials(&mut c), 1, "it cannot be dialled: it dials");
}

#[test]
fn test_origin_reachable_client_is_told_so() {
    let mut o = One::origin(&file(2 * PIECE as usize));
    o.send(hello_listening(2, 7002));
    o.send(Message::Bitfield(&[0]));
    let (id, _) = probes(&mut o)[0];
    o.out();
    o.node.handle_probe_result(id, Some(true), o.now);
    assert_eq!(o.out(), vec![(wire::ty::REACHABILITY, vec![1])]);
    assert_eq!(o.node.counters().clients_unreachable, 0);
}

#[test]
fn test_origin_client_without_listen_port_is_not_probed() {
    let mut o = One::origin(&file(2 * PIECE as usize));
    o.send(hello_listening(2, 0));
    o.send(Message::Bitfield(&[0]));
    assert!(probes(&mut o).is_empty());
    assert_eq!(o.node.probes_in_flight(), 0);
}

#[test]
fn test_origin_probe_answer_after_the_client_left_goes_nowhere() {
    let mut o = One::origin(&file(2 * PIECE as usize));
    o.send(hello_listening(2, 7002));
    o.send(Message::Bitfield(&[0]));
    let (id, _) = probes(&mut o)[0];
    o.node.handle_closed(0, "gone", o.now);
    // Another client on the same slot: the old probe's answer is not its verdict.
    o.node.handle_open(0, Link::Accepted, addr_of(8), o.now);
    o.send(hello_listening(3, 7003));
    o.send(Message::Bitfield(&[0]));
    let (id3, _) = probes(&mut o)[0];
    assert_ne!(id, id3);
    o.out();
    o.node.handle_probe_result(id, Some(false), o.now);
    assert!(o.out().is_empty(), "the old client's answer");
    o.node.handle_probe_result(id3, Some(true), o.now);
    assert_eq!(o.out(), vec![(wire::ty::REACHABILITY, vec![1])]);
}

#[test]
fn test_origin_crowd_of_registrations_probes_at_most_64_at_once() {
    let mut o = One::origin(&file(2 * PIECE as usize));
    for s in 1..=100u16 {
        let slot = s as Slot;
        o.node.handle_open(slot, Link::Accepted, addr_of(9), o.now);
        o.send_on(slot, hello_listening(1000 + s as u64, 7000 + s));
        o.send_on(slot, Message::Bitfield(&[0]));
    }
    let first = probes(&mut o);
    assert_eq!(first.len(), 64);
    assert_eq!(o.node.probes_in_flight(), 64);
    // One that waits leaves: it is skipped when room comes.
    o.node.handle_closed(65, "gone", o.now);
    for (id, _) in &first[..10] {
        o.node.handle_probe_result(*id, Some(true), o.now);
    }
    let next = probes(&mut o);
    assert_eq!(next.len(), 10, "one starts for each answer");
    assert!(
        next.iter().all(|(_, a)| a.port() != 7065),
        "the client that left is not probed"
    );
    assert_eq!(next[0].1.port(), 7066, "the oldest waiting first");
    assert_eq!(o.node.probes_in_flight(), 64);
}

#[test]
fn test_client_told_unreachable_by_origin_warns_at_once() {
    let data = file(4 * PIECE as usize);
    let mut c = One::client_with_manifest_and(&data, |cfg| cfg.listen_port = 7005);
    assert_eq!(c.node.listen_unreachable(), None);
    c.out();
    c.send(Message::Reachability(false));
    assert!(c.out().is_empty(), "nothing to answer");
    assert_eq!(c.node.listen_unreachable(), Some(Unreachable::Origin));
    assert_eq!(c.node.origin_reach_verdict(), Some(false));
}

#[test]
fn test_client_told_reachable_never_infers_otherwise() {
    let mut c = listening_client_introduced();
    c.send(Message::Reachability(true));
    // A newcomer that should dial us and never does: the origin's word stands.
    c.send(Message::Peers(vec![add(3, 3)]));
    wait(&mut c, 20);
    assert_eq!(c.node.listen_unreachable(), None);
    assert_eq!(c.node.origin_reach_verdict(), Some(true));
}

#[test]
fn test_client_reachability_from_a_peer_is_ignored() {
    let data = file(4 * PIECE as usize);
    let mut c = One::client_with_manifest_and(&data, |cfg| cfg.listen_port = 7005);
    c.node.handle_open(1, Link::Accepted, addr_of(3), c.now);
    c.send_on(1, hello(Role::Client, 3, c.node.manifest().unwrap().id()));
    c.send_on(1, Message::Reachability(false));
    assert_eq!(c.node.listen_unreachable(), None);
    assert_eq!(c.node.origin_reach_verdict(), None);
}

#[test]
fn test_client_malformed_reachability_from_origin_is_a_protocol_error() {
    let data = file(4 * PIECE as usize);
    let mut c = One::client_with_manifest_and(&data, |cfg| cfg.listen_port = 7005);
    c.send_raw(wire::ty::REACHABILITY, &[7]);
    let out = c.out();
    assert_eq!(out.last().map(|f| f.0), Some(wire::ty::ERROR), "{out:?}");
    assert_eq!(c.node.origin_reach_verdict(), None);
}

#[test]
fn test_listening_client_dialled_once_never_warns() {
    let mut c = listening_client_introduced();
    c.send(Message::Peers(vec![add(3, 3)]));
    c.node.handle_open(4, Link::Accepted, addr_of(3), c.now);
    wait(&mut c, 20);
    assert_eq!(c.node.listen_unreachable(), None);
}

#[test]
fn test_introduction_and_larger_newcomers_expect_no_dial() {
    let mut c = listening_client_introduced();
    // Introduced to smaller ids too (they may be seeds, which older versions never dial from), and a newcomer
    // with a larger id is ours to dial.
    let mut c2 =
        One::client_with_manifest_and(&file(4 * PIECE as usize), |cfg| cfg.listen_port = 7005);
    c2.send(Message::Peers(vec![add(2, 2), add(3, 3)]));
    c.send(Message::Peers(vec![add(8, 8)]));
    wait(&mut c, 20);
    wait(&mut c2, 20);
    assert_eq!(c.node.listen_unreachable(), None);
    assert_eq!(c2.node.listen_unreachable(), None);
}

#[test]
fn test_client_without_listen_port_never_warns() {
    let data = file(4 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    c.send(Message::Peers(vec![add(9, 9)]));
    c.send(Message::Peers(vec![add(3, 3)]));
    wait(&mut c, 20);
    assert_eq!(c.node.listen_unreachable(), None);
}

#[test]
fn test_peer_address_that_refuses_is_dialled_twice_then_dropped() {
    let data = file(4 * PIECE as usize);
    let mut c = One::client_with_manifest_and(&data, |cfg| cfg.listen_port = 7005);
    c.send(Message::Peers(vec![add(9, 9)]));
    let mut dials = 0;
    let mut slot = 10;
    for _ in 0..30 {
        for e in c.events() {
            if let Event::Connect { addr, link } = e {
                assert_eq!((addr, link), (addr_of(9), Link::ToPeer { node_id: 9 }));
                dials += 1;
                c.node.handle_open(slot, link, addr, c.now);
                c.node.handle_closed(slot, "Connection refused", c.now);
                slot += 1;
            }
        }
        wait(&mut c, 1);
    }
    assert_eq!(dials, 2, "MAX_DIAL_ATTEMPTS counts each dial and each loss");
    assert_eq!(c.node.counters().peer_dials_failed, 2);
}

#[test]
fn test_origin_probe_it_could_not_make_tells_the_client_nothing() {
    let mut o = One::origin(&file(2 * PIECE as usize));
    o.send(hello_listening(2, 7002));
    o.send(Message::Bitfield(&[0]));
    let (id, _) = probes(&mut o)[0];
    o.out();
    o.node.handle_probe_result(id, None, o.now);
    assert!(o.out().is_empty());
    assert_eq!(o.node.probes_in_flight(), 0, "its place is free");
    assert_eq!(o.node.counters().clients_unreachable, 0);
}

/// STANDING counts from the origin only, and a peer it names is nobody's newcomer: a peer
/// could otherwise name anyone.
#[test]
fn test_client_takes_standing_from_the_origin_only() {
    let data = file(4 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    let id = c.node.manifest().unwrap().id();
    // Two newcomers that lack everything; we hold nothing either, so give them a piece.
    c.node.handle_resumed(&[0], c.now);
    for slot in [1, 2] {
        c.node
            .handle_open(slot, Link::Accepted, addr_of(slot + 10), c.now);
        c.send_on(slot, hello(Role::Client, 70 + slot as u64, id));
        c.send_on(slot, Message::Bitfield(&[0]));
        c.send_on(slot, Message::Interested(true));
    }
    let naming = |node_id| {
        Message::Standing(vec![wire::StandingEntry {
            node_id,
            takes_without_giving: true,
        }])
    };
    // Peer 2 names peer 1: ignored.
    c.send_on(2, naming(71));
    assert!(!c.node.table.is_choking(1), "a newcomer is unchoked");
    // The origin names peer 1: choked, and peer 2 still served.
    c.send(naming(71));
    assert!(
        c.node.table.is_choking(1),
        "a named peer is nobody's newcomer"
    );
    assert!(!c.node.table.is_choking(2));
    // Withdrawn: a newcomer again.
    c.send(Message::Standing(vec![wire::StandingEntry {
        node_id: 71,
        takes_without_giving: false,
    }]));
    assert!(!c.node.table.is_choking(1));
}

#[test]
fn test_pipeline_holds_the_rate_for_the_round_trip_as_well() {
    let data = file(256 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    let mut asked = peer_unchokes(&mut c, 1, &[0xff; 32]);
    asked.reverse();
    // The peer answers 4 requests every 100 ms for 5 s (as many as we asked for while our
    // pipeline ramps up): then 40 pieces a second.
    for _ in 0..50 {
        for _ in 0..4 {
            let Some(p) = asked.pop() else { break };
            c.piece_arrives(1, &data, p).unwrap();
        }
        c.now += TICK;
        c.node.handle_tick(c.now);
        let mut more = requests_on(&mut c, 1);
        more.reverse();
        asked.splice(0..0, more);
    }
    let per_sec = c.node.table.down_rate(1) / PIECE as f64;
    assert!((38.0..=40.0).contains(&per_sec), "{per_sec} pieces/s");
    let no_rtt = c.node.pipeline_depth(1);
    // 0.5 s of the rate, and MIN_PIPELINE.
    assert_eq!(no_rtt, (per_sec * 0.5).ceil() as usize + 2);
    // A 600 ms round trip (a slow uplink's queue, say): 0.6 s of the rate more.
    c.node.handle_rtt(1, Duration::from_millis(600));
    let with_rtt = c.node.pipeline_depth(1);
    assert_eq!(with_rtt, (per_sec * 1.1).ceil() as usize + 2);
    // And never past what a peer queues for us.
    c.node.handle_rtt(1, Duration::from_secs(60));
    assert_eq!(c.node.pipeline_depth(1), requests::MAX_QUEUED_REQUESTS);
}

#[test]
fn test_complete_client_does_not_drop_a_peer_over_answers_it_no_longer_needs() {
    let data = file(2 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    let t0 = c.now;
    // The peer holds piece 0 and unchokes us: we ask it for 0. The origin answers our
    // wildcards with 0 (the request at the peer is cancelled, its answer still due) and 1.
    assert_eq!(peer_unchokes(&mut c, 1, &[0x80]), vec![0]);
    c.send(Message::Unchoke);
    for p in [0u32, 1] {
        assert!(requests_on(&mut c, 0).contains(&WILDCARD));
        c.piece_arrives(0, &data, p).unwrap();
    }
    assert!(c.node.is_complete());
    // The peer never answers: a complete client waits for nothing it needs.
    c.node.handle_tick(t0 + Duration::from_secs(30));
    assert!(!c.node.is_closing(1));
}

#[test]
fn test_stamping_node_precedes_each_piece_with_its_clock() {
    let data = file(3 * PIECE as usize);
    for stamping in [false, true] {
        let mut o = One::origin_with(&data, |c| c.stamp_pieces = stamping);
        o.send(hello(Role::Client, 2, 0));
        o.send(Message::Bitfield(&[0]));
        o.send(Message::Interested(true));
        o.out();
        o.now += Duration::from_millis(250);
        o.send(Message::Request(WILDCARD));
        assert!(o.node.poll_piece(0, o.now).is_some());
        let out = o.out();
        let stamps: Vec<_> = out.iter().filter(|f| f.0 == wire::ty::STAMP).collect();
        if stamping {
            // The last frame before the piece: 250 ms on the node's clock.
            assert_eq!(
                out.last().unwrap(),
                &(wire::ty::STAMP, 250_000u64.to_be_bytes().to_vec())
            );
        } else {
            assert!(stamps.is_empty(), "{out:?}");
        }
    }
}

#[test]
fn test_stamp_is_answered_with_how_late_it_arrived() {
    let mut c = One::client_with_manifest(&file(3 * PIECE as usize));
    c.out();
    let delays = |c: &mut One| -> Vec<u32> {
        let out = c.out();
        out.iter()
            .filter(|f| f.0 == wire::ty::QUEUE_DELAY)
            .map(|f| u32::from_be_bytes(f.1[..].try_into().unwrap()))
            .collect()
    };
    // The sender's clock is far ahead of ours: only differences count.
    let sent = 9_000_000_000u64;
    c.send(Message::Stamp(sent));
    assert_eq!(delays(&mut c), [0]);
    // Sent 20 ms later, arrived 100 ms later: 80 ms in a queue.
    c.now += Duration::from_millis(100);
    c.send(Message::Stamp(sent + 20_000));
    assert_eq!(delays(&mut c), [80_000]);
    // Faster than the first: the new base.
    c.now += Duration::from_millis(100);
    c.send(Message::Stamp(sent + 200_000));
    assert_eq!(delays(&mut c), [0]);
}

/// `slot` has `n` of our STAMPs to answer.
fn stamped(c: &mut One, slot: Slot, n: u32) {
    c.node.peers[slot].as_mut().expect("open").stamps_unanswered = n;
}

#[test]
fn test_own_queue_delay_is_the_median_of_fresh_answers_to_our_stamps() {
    let data = file(3 * PIECE as usize);
    let mut c = One::client_with_manifest(&data);
    let mut scratch = Vec::new();
    let own =
        |c: &One, at, scratch: &mut Vec<Duration>| Node::own_queue_delay([&c.node], at, scratch);
    // An answer to no STAMP of ours is ignored.
    c.send(Message::QueueDelay(30_000));
    assert_eq!(own(&c, c.now, &mut scratch), None);
    stamped(&mut c, 0, 2);
    c.send(Message::QueueDelay(30_000));
    assert_eq!(
        own(&c, c.now, &mut scratch),
        Some(Duration::from_millis(30))
    );
    // The latest answer of a connection replaces the one before; past the STAMPs sent,
    // answers count no more.
    c.now += Duration::from_millis(10);
    c.send(Message::QueueDelay(5_000));
    c.send(Message::QueueDelay(900_000));
    assert_eq!(own(&c, c.now, &mut scratch), Some(Duration::from_millis(5)));
    // Answers older than ANSWERS_WITHIN say nothing about now.
    let later = c.now + Duration::from_secs(2);
    assert_eq!(own(&c, later, &mut scratch), None);
    // Several nodes (an origin of several files) share one uplink: one median over all
    // their connections' answers.
    let others: Vec<One> = [100_000, 200_000]
        .into_iter()
        .map(|micros| {
            let mut d = One::client_with_manifest(&data);
            d.now = c.now;
            stamped(&mut d, 0, 1);
            d.send(Message::QueueDelay(micros));
            d
        })
        .collect();
    let nodes = [&c.node, &others[0].node, &others[1].node];
    let all = Node::own_queue_delay(nodes, c.now, &mut scratch);
    assert_eq!(all, Some(Duration::from_millis(100)));
}

#[test]
fn test_origin_counts_a_reconnecting_clients_age_from_its_first_registration() {
    use crate::proto::choke::NEWCOMER_ROUNDS;
    // A client's rounds decide when a broken promise can be judged and how long it is a
    // newcomer; counted per connection, a rider that reconnected every other round would
    // never be judged.
    let data = file(8 * PIECE as usize);
    let mut o = One::origin_with_interested_client(&data, &[0]);
    for _ in 0..(NEWCOMER_ROUNDS as u64 * 10 + 1) {
        o.now += TICK;
        o.node.handle_tick(o.now);
    }
    assert!(o.node.table.age(0) >= NEWCOMER_ROUNDS);
    o.node.handle_closed(0, "gone", o.now);
    for (slot, id) in [(1, 2), (2, 3)] {
        o.node
            .handle_open(slot, Link::Accepted, addr_of(slot + 10), o.now);
        o.send_on(slot, hello(Role::Client, id, 0));
        o.send_on(slot, Message::Bitfield(&[0]));
    }
    assert!(o.node.table.age(1) >= NEWCOMER_ROUNDS, "client 2 again");
    assert_eq!(o.node.table.age(2), 0, "a new client");
}

#[test]
fn test_origin_names_a_reconnecting_client_again() {
    // A named client stays named across a reconnection, until two receivers confirm an
    // upload of it (§4.9): reconnecting must not clear it.
    let data = file(8 * PIECE as usize);
    let mut o = One::origin_with_interested_client(&data, &[0]);
    o.node.table.set_named(0, true);
    for _ in 0..11 {
        o.now += TICK;
        o.node.handle_tick(o.now);
    }
    o.node.handle_closed(0, "gone", o.now);
    o.node.handle_open(1, Link::Accepted, addr_of(11), o.now);
    o.send_on(1, hello(Role::Client, 2, 0));
    o.send_on(1, Message::Bitfield(&[0]));
    assert!(o.node.table.is_named(1), "still named");
}

#[test]
fn test_origin_takes_resumed_pieces_for_no_peer_download() {
    // Client 2 resumed 12 of 16 pieces: its BITFIELD went out empty and HAVEs followed
    // (`handle_resumed`), before it announced any piece the origin sent it. Client 3 holds
    // the same pieces and says it sent client 2 the whole file: client 2's silence about it
    // must earn client 3 nothing.
    let data = file(16 * PIECE as usize);
    let mut o = One::origin_with_interested_client(&data, &[0, 0]);
    o.node.handle_open(1, Link::Accepted, addr_of(10), o.now);
    o.send_on(1, hello(Role::Client, 3, 0));
    o.send_on(1, Message::Bitfield(&[0xff, 0xf0]));
    for i in 0..12 {
        o.send(Message::Have(i));
    }
    let claim = wire::ReceiptEntry {
        node_id: 2,
        received: 0,
        sent: 16 * PIECE as u64,
    };
    o.send_on(1, Message::Receipt(vec![claim]));
    for _ in 0..60 {
        o.now += TICK;
        o.node.handle_tick(o.now);
    }
    assert_eq!(o.node.ledger.credit(3), 0);
    assert_eq!(o.node.ledger.taken(2, 1, |_| true), 0);
}
