//! Version 2 handshakes: AUTH with a swarm secret (docs/PROTOCOL.md §4.7), the HELLO path
//! at the origin (§4.1), and the digest a client expects (§4.2).

use super::one::{One, hello};
use super::*;
use crate::proto::auth::SwarmKey;
use crate::wire::{NONCE_LEN, ty};

const SECRET: &[u8] = b"0123456789abcdef";
/// The test peer's nonce in every HELLO it sends.
const PEER_NONCE: [u8; NONCE_LEN] = [0x42; NONCE_LEN];

fn key() -> SwarmKey {
    SwarmKey::derive(SECRET)
}

/// A node of `cfg` with connection 0 open; returns it and the nonce of its HELLO.
fn open(cfg: Config, manifest: Option<Manifest>, link: Link) -> (One, [u8; NONCE_LEN]) {
    let now = Instant::now();
    let mut node = match manifest {
        Some(m) => Node::origin(cfg, m, now),
        None => Node::client(cfg, now),
    };
    node.handle_open(0, link, addr_of(0), now);
    let mut o = One { node, now };
    let out = o.out();
    assert_eq!(out[0].0, ty::HELLO);
    let Ok(Message::Hello(h)) = Message::parse(ty::HELLO, &out[0].1) else {
        panic!("{out:?}")
    };
    (o, h.nonce)
}

fn origin_cfg(secret: bool) -> Config {
    let mut cfg = Config::new(Role::Origin, 1);
    cfg.secret = secret.then(key);
    cfg.serve_name = Some("big.iso".into());
    cfg
}

fn origin(secret: bool) -> (One, [u8; NONCE_LEN]) {
    let m = Manifest::build(&file(3 * PIECE as usize), PIECE).unwrap();
    open(origin_cfg(secret), Some(m), Link::Accepted)
}

fn client(secret: bool) -> (One, [u8; NONCE_LEN]) {
    let mut cfg = Config::new(Role::Client, 5);
    cfg.server = Some(addr_of(0));
    cfg.secret = secret.then(key);
    open(cfg, None, Link::ToOrigin)
}

/// A client with the secret that authenticated the origin (id 1) and has its manifest.
fn client_with_manifest(data: &[u8]) -> One {
    let (mut c, nonce) = client(true);
    let m = Manifest::build(data, PIECE).unwrap();
    let mut h = hello(Role::Origin, 1, m.id());
    if let Message::Hello(x) = &mut h {
        x.auth = true;
        x.nonce = PEER_NONCE;
    }
    c.send(h);
    c.send(Message::Auth(key().tag(&nonce, &PEER_NONCE, 1, 5)));
    let mut body = Vec::new();
    m.encode(&mut body);
    c.send(Message::Manifest(&body));
    c.send(Message::Bitfield(
        Bitfield::full(m.piece_count()).as_bytes(),
    ));
    c.out();
    c.events();
    c
}

fn peer_hello(role: Role, id: u64, auth: bool, path: &str) -> Message<'_> {
    Message::Hello(Hello {
        role,
        auth,
        node_id: id,
        file_id: 0,
        listen_port: 7000,
        nonce: PEER_NONCE,
        path,
    })
}

#[track_caller]
fn error_code(out: &[(u8, Vec<u8>)]) -> (u16, String) {
    let e = out
        .iter()
        .find(|f| f.0 == ty::ERROR)
        .unwrap_or_else(|| panic!("no ERROR in {out:?}"));
    (
        u16::from_be_bytes([e.1[0], e.1[1]]),
        String::from_utf8_lossy(&e.1[2..]).into(),
    )
}

fn types(out: &[(u8, Vec<u8>)]) -> Vec<u8> {
    out.iter().map(|f| f.0).collect()
}

#[track_caller]
fn fatal(o: &mut One) -> Failure {
    o.events()
        .into_iter()
        .find_map(|e| match e {
            Event::Fatal(f) => Some(f),
            _ => None,
        })
        .expect("a fatal event")
}

#[test]
fn test_origin_with_secret_hello_answered_with_auth_alone() {
    let (mut o, nonce) = origin(true);
    o.send(peer_hello(Role::Client, 2, true, ""));
    let out = o.out();
    assert_eq!(
        types(&out),
        vec![ty::AUTH],
        "no MANIFEST before the client's AUTH"
    );
    // The origin's tag covers our nonce first, then its own, then its id and ours.
    assert_eq!(out[0].1, key().tag(&PEER_NONCE, &nonce, 1, 2));
    assert!(!o.node.is_admitted(0));
}

#[test]
fn test_origin_with_secret_valid_auth_gets_manifest() {
    let (mut o, nonce) = origin(true);
    o.send(peer_hello(Role::Client, 2, true, ""));
    o.out();
    o.send(Message::Auth(key().tag(&nonce, &PEER_NONCE, 2, 1)));
    assert_eq!(types(&o.out()), vec![ty::MANIFEST, ty::BITFIELD]);
    assert!(o.node.is_admitted(0));
}

/// The connect-back probe (§4.8) is for registered clients only: a stranger that says
/// HELLO, with a port, cannot make the origin dial an address of its choosing.
#[test]
fn test_origin_with_secret_probes_only_after_auth_and_bitfield() {
    let is_probe = |e: &Event| matches!(e, Event::Probe { .. });
    let (mut o, _) = origin(true);
    o.send(peer_hello(Role::Client, 2, true, ""));
    o.send(Message::Bitfield(&[0]));
    assert!(!o.events().iter().any(is_probe), "refused before AUTH");
    let (mut o, nonce2) = origin(true);
    o.send(peer_hello(Role::Client, 2, true, ""));
    o.send(Message::Auth(key().tag(&nonce2, &PEER_NONCE, 2, 1)));
    assert!(!o.events().iter().any(is_probe), "not before BITFIELD");
    o.send(Message::Bitfield(&[0]));
    assert_eq!(o.events().iter().filter(|e| is_probe(e)).count(), 1);
}

#[test]
fn test_origin_with_secret_wrong_tag_gets_error_10_and_nothing_else() {
    let (mut o, nonce) = origin(true);
    o.send(peer_hello(Role::Client, 2, true, ""));
    o.out();
    let wrong = SwarmKey::derive(b"not the secret at all");
    o.send(Message::Auth(wrong.tag(&nonce, &PEER_NONCE, 2, 1)));
    let out = o.out();
    assert_eq!(types(&out), vec![ty::ERROR]);
    assert_eq!(error_code(&out).0, 10);
    assert!(o.node.is_closing(0));
}

#[test]
fn test_origin_with_secret_replayed_tag_from_another_nonce_refused() {
    // A tag made for another connection's nonce is worth nothing here.
    let (mut o, _nonce) = origin(true);
    o.send(peer_hello(Role::Client, 2, true, ""));
    o.out();
    o.send(Message::Auth(key().tag(&[0; NONCE_LEN], &PEER_NONCE, 2, 1)));
    assert_eq!(error_code(&o.out()).0, 10);
}

#[test]
fn test_origin_with_secret_hello_without_flag_gets_error_10() {
    let (mut o, _) = origin(true);
    o.send(peer_hello(Role::Client, 2, false, ""));
    let out = o.out();
    assert_eq!(types(&out), vec![ty::ERROR]);
    assert_eq!(error_code(&out).0, 10);
}

#[test]
fn test_origin_without_secret_hello_with_flag_gets_error_10() {
    let (mut o, _) = origin(false);
    o.send(peer_hello(Role::Client, 2, true, ""));
    let out = o.out();
    assert_eq!(types(&out), vec![ty::ERROR]);
    let (code, why) = error_code(&out);
    assert_eq!(code, 10);
    assert!(why.contains("--secret-file"), "{why}");
}

#[test]
fn test_origin_with_secret_frame_before_auth_gets_error_10() {
    let (mut o, _) = origin(true);
    o.send(peer_hello(Role::Client, 2, true, ""));
    o.out();
    o.send(Message::Bitfield(&[0]));
    let out = o.out();
    assert_eq!(error_code(&out).0, 10);
    assert!(!out.iter().any(|f| f.0 == ty::MANIFEST));
}

#[test]
fn test_auth_without_secret_or_twice_is_a_protocol_error() {
    let (mut o, _) = origin(false);
    o.send(peer_hello(Role::Client, 2, false, ""));
    o.out();
    o.send(Message::Auth([0; 32]));
    assert_eq!(error_code(&o.out()).0, 1);

    let (mut o, nonce) = origin(true);
    o.send(peer_hello(Role::Client, 2, true, ""));
    let tag = key().tag(&nonce, &PEER_NONCE, 2, 1);
    o.send(Message::Auth(tag));
    o.out();
    o.send(Message::Auth(tag));
    assert_eq!(error_code(&o.out()).0, 1);
}

#[test]
fn test_origin_waiting_for_auth_times_out() {
    let (mut o, _) = origin(true);
    o.send(peer_hello(Role::Client, 2, true, ""));
    o.out();
    let later = o.now + Duration::from_secs(11);
    o.node.handle_tick(later);
    let (code, why) = error_code(&o.out());
    assert_eq!(code, 8);
    assert!(why.contains("AUTH"), "{why}");
}

#[test]
fn test_client_with_secret_answers_origin_hello_with_auth_then_takes_manifest() {
    let (mut c, nonce) = client(true);
    let m = Manifest::build(&file(2 * PIECE as usize), PIECE).unwrap();
    let mut h = hello(Role::Origin, 1, m.id());
    if let Message::Hello(x) = &mut h {
        x.auth = true;
        x.nonce = PEER_NONCE;
    }
    c.send(h);
    let out = c.out();
    assert_eq!(types(&out), vec![ty::AUTH]);
    assert_eq!(out[0].1, key().tag(&PEER_NONCE, &nonce, 5, 1));
    c.send(Message::Auth(key().tag(&nonce, &PEER_NONCE, 1, 5)));
    let mut body = Vec::new();
    m.encode(&mut body);
    c.send(Message::Manifest(&body));
    assert!(c.events().contains(&Event::Manifest));
    assert_eq!(types(&c.out()), vec![ty::BITFIELD]);
}

#[test]
fn test_client_with_secret_wrong_origin_tag_is_fatal_refused() {
    let (mut c, nonce) = client(true);
    c.send(peer_hello(Role::Origin, 1, true, ""));
    c.out();
    let wrong = SwarmKey::derive(b"a different swarm secret");
    c.send(Message::Auth(wrong.tag(&nonce, &PEER_NONCE, 1, 5)));
    let f = fatal(&mut c);
    assert_eq!(f.kind, FailureKind::Refused);
    assert!(f.to_string().contains("--secret-file"), "{f}");
    assert_eq!(error_code(&c.out()).0, 10);
}

#[test]
fn test_client_without_secret_origin_with_flag_is_fatal_refused() {
    let (mut c, _) = client(false);
    c.send(peer_hello(Role::Origin, 1, true, ""));
    let f = fatal(&mut c);
    assert_eq!(f.kind, FailureKind::Refused);
    assert!(f.to_string().contains("--secret-file"), "{f}");
    assert_eq!(error_code(&c.out()).0, 10);
}

#[test]
fn test_client_with_secret_origin_without_flag_is_fatal_refused() {
    let (mut c, _) = client(true);
    c.send(peer_hello(Role::Origin, 1, false, ""));
    assert_eq!(fatal(&mut c).kind, FailureKind::Refused);
    assert_eq!(error_code(&c.out()).0, 10);
}

#[test]
fn test_client_refused_by_origin_error_10_or_11_is_fatal_refused() {
    for code in [ErrorCode::Unauthorized, ErrorCode::NotFound] {
        let (mut c, _) = client(false);
        c.send(peer_hello(Role::Origin, 1, false, ""));
        c.send(Message::Error { code, reason: "no" });
        assert_eq!(fatal(&mut c).kind, FailureKind::Refused);
    }
}

#[test]
fn test_origin_path_empty_or_its_name_accepted() {
    for path in ["", "big.iso"] {
        let (mut o, _) = origin(false);
        o.send(peer_hello(Role::Client, 2, false, path));
        assert_eq!(types(&o.out()), vec![ty::MANIFEST, ty::BITFIELD], "{path}");
    }
}

#[test]
fn test_origin_of_many_files_empty_path_gets_error_11_its_name_accepted() {
    let m = Manifest::build(&file(3 * PIECE as usize), PIECE).unwrap();
    let mut cfg = origin_cfg(false);
    cfg.served_files = 2;
    let (mut o, _) = open(cfg.clone(), Some(m.clone()), Link::Accepted);
    o.send(peer_hello(Role::Client, 2, false, ""));
    let out = o.out();
    assert_eq!(types(&out), vec![ty::ERROR]);
    let (code, why) = error_code(&out);
    assert_eq!(code, 11);
    assert!(why.contains("serves 2 files: ask for one by name"), "{why}");
    let (mut o, _) = open(cfg, Some(m), Link::Accepted);
    o.send(peer_hello(Role::Client, 2, false, "big.iso"));
    assert_eq!(types(&o.out()), vec![ty::MANIFEST, ty::BITFIELD]);
}

#[test]
fn test_origin_other_or_unsafe_path_gets_error_11() {
    for path in [
        "small.iso",
        "dir/big.iso",
        "BIG.ISO",
        "../big.iso",
        "/big.iso",
        "a//b",
        "a\0",
    ] {
        let (mut o, _) = origin(false);
        o.send(peer_hello(Role::Client, 2, false, path));
        let out = o.out();
        assert_eq!(types(&out), vec![ty::ERROR], "{path:?}");
        let (code, why) = error_code(&out);
        assert_eq!(code, 11, "{path:?}");
        assert!(
            !why.contains("big.iso") || path.contains("big.iso"),
            "{why}"
        );
    }
}

#[test]
fn test_origin_with_secret_checks_path_only_after_auth() {
    // An unauthenticated client learns nothing, not even whether a name exists.
    let (mut o, _) = origin(true);
    o.send(peer_hello(Role::Client, 2, false, "nothing-here"));
    assert_eq!(error_code(&o.out()).0, 10);
    let (mut o, nonce) = origin(true);
    o.send(peer_hello(Role::Client, 2, true, "nothing-here"));
    o.out();
    o.send(Message::Auth(key().tag(&nonce, &PEER_NONCE, 2, 1)));
    assert_eq!(error_code(&o.out()).0, 11);
}

#[test]
fn test_client_sends_its_path_to_the_origin_only() {
    let now = Instant::now();
    let mut cfg = Config::new(Role::Client, 5);
    cfg.path = "big.iso".into();
    let mut n = Node::client(cfg, now);
    n.handle_open(0, Link::ToOrigin, addr_of(0), now);
    n.handle_open(1, Link::Accepted, addr_of(1), now);
    for (slot, want) in [(0, "big.iso"), (1, "")] {
        let mut buf = Vec::new();
        n.take_outbox(slot, &mut buf);
        let f = frames(&buf);
        let Ok(Message::Hello(h)) = Message::parse(ty::HELLO, &f[0].1) else {
            panic!()
        };
        assert_eq!(h.path, want);
        assert!(!h.auth);
    }
}

#[test]
fn test_nonces_differ_per_connection() {
    let now = Instant::now();
    let mut n = Node::client(Config::new(Role::Client, 5), now);
    let mut nonces = Vec::new();
    for slot in 0..3 {
        n.handle_open(slot, Link::Accepted, addr_of(slot), now);
        let mut buf = Vec::new();
        n.take_outbox(slot, &mut buf);
        let f = frames(&buf);
        let Ok(Message::Hello(h)) = Message::parse(ty::HELLO, &f[0].1) else {
            panic!()
        };
        nonces.push(h.nonce);
    }
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 3);
}

#[test]
fn test_client_expect_digest_mismatch_is_fatal_before_any_piece() {
    let m = Manifest::build(&file(2 * PIECE as usize), PIECE).unwrap();
    for (want, ok) in [(*m.digest(), true), ([7u8; 32], false)] {
        let now = Instant::now();
        let mut cfg = Config::new(Role::Client, 5);
        cfg.server = Some(addr_of(0));
        cfg.expect_digest = Some(want);
        let mut node = Node::client(cfg, now);
        node.handle_open(0, Link::ToOrigin, addr_of(0), now);
        let mut c = One { node, now };
        c.out();
        c.send(hello(Role::Origin, 1, m.id()));
        let mut body = Vec::new();
        m.encode(&mut body);
        c.send(Message::Manifest(&body));
        let events = c.events();
        assert_eq!(events.contains(&Event::Manifest), ok, "{events:?}");
        if !ok {
            let f = events
                .iter()
                .find_map(|e| match e {
                    Event::Fatal(f) => Some(f.clone()),
                    _ => None,
                })
                .unwrap();
            assert_eq!(f.kind, FailureKind::WrongFile);
            let text = f.to_string();
            assert!(
                text.contains(&crate::manifest::to_hex(m.digest())),
                "{text}"
            );
            assert!(c.node.manifest().is_none());
            assert!(!types(&c.out()).contains(&ty::BITFIELD));
        }
    }
}

#[test]
fn test_peers_with_secret_authenticate_both_ways() {
    // Two clients that both have the manifest: AUTH each way, then BITFIELDs.
    let data = file(2 * PIECE as usize);
    let (mut a, a_nonce) = {
        let mut c = client_with_manifest(&data);
        c.node.handle_open(1, Link::Accepted, addr_of(1), c.now);
        let mut buf = Vec::new();
        c.node.take_outbox(1, &mut buf);
        let f = frames(&buf);
        let Ok(Message::Hello(h)) = Message::parse(ty::HELLO, &f[0].1) else {
            panic!()
        };
        (c, h.nonce)
    };
    let id = a.node.manifest().unwrap().id();
    let mut h = hello(Role::Client, 70, id);
    if let Message::Hello(x) = &mut h {
        x.auth = true;
        x.nonce = PEER_NONCE;
    }
    a.send_on(1, h);
    let mut buf = Vec::new();
    a.node.take_outbox(1, &mut buf);
    assert_eq!(types(&frames(&buf)), vec![ty::AUTH]);
    a.send_on(1, Message::Auth(key().tag(&a_nonce, &PEER_NONCE, 70, 5)));
    let mut buf = Vec::new();
    a.node.take_outbox(1, &mut buf);
    assert_eq!(types(&frames(&buf))[0], ty::BITFIELD);
    assert!(a.node.is_admitted(1));
}

#[test]
fn test_unproven_connection_does_not_block_the_real_node_id() {
    // An impostor that read node id 2 off the wire connects first and never sends AUTH;
    // the real node 2 still gets in, and the impostor, were it to prove itself later,
    // would be the duplicate.
    let m = Manifest::build(&file(3 * PIECE as usize), PIECE).unwrap();
    let now = Instant::now();
    let mut node = Node::origin(origin_cfg(true), m, now);
    let mut nonces = Vec::new();
    for slot in 0..2 {
        node.handle_open(slot, Link::Accepted, addr_of(slot), now);
        let mut buf = Vec::new();
        node.take_outbox(slot, &mut buf);
        let f = frames(&buf);
        let Ok(Message::Hello(h)) = Message::parse(ty::HELLO, &f[0].1) else {
            panic!()
        };
        nonces.push(h.nonce);
    }
    let mut o = One { node, now };
    o.send_on(0, peer_hello(Role::Client, 2, true, ""));
    o.send_on(1, peer_hello(Role::Client, 2, true, ""));
    o.send_on(1, Message::Auth(key().tag(&nonces[1], &PEER_NONCE, 2, 1)));
    let mut buf = Vec::new();
    o.node.take_outbox(1, &mut buf);
    assert_eq!(
        types(&frames(&buf)),
        vec![ty::AUTH, ty::MANIFEST, ty::BITFIELD]
    );
    o.send_on(0, Message::Auth(key().tag(&nonces[0], &PEER_NONCE, 2, 1)));
    let out = o.out();
    assert_eq!(error_code(&out).0, 5);
}
