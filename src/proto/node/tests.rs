//! Whole-protocol tests: real nodes stepped in virtual time over in-memory links, no
//! sockets and no sleeps (after quinn-proto's `tests/util.rs`). Each node may upload a fixed
//! number of pieces per step, which stands in for link rates.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::origin::MAX_ADVERTISED;
use super::requests::{ENDGAME_PIPELINE, REJECT_BACKOFF};
use super::*;
use crate::wire::{FrameHead, HEAD_SIZE};

const PIECE: u32 = 16 * 1024;

struct Link_ {
    a: (usize, Slot),
    b: (usize, Slot),
}

struct SimNode {
    node: Node,
    data: Vec<u8>,
    next_slot: Slot,
    /// Pieces this node may upload per step.
    budget: usize,
    complete: bool,
    exited: bool,
    fatal: Option<String>,
    alive: bool,
}

struct Sim {
    nodes: Vec<SimNode>,
    links: Vec<Option<Link_>>,
    now: Instant,
    /// Frames received, for assertions: (node, type).
    seen: Vec<(usize, u8)>,
    steps: usize,
}

fn addr_of(node: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1000 + node as u16)
}

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

impl Sim {
    fn new(data: &[u8], origin_budget: usize) -> Sim {
        let now = Instant::now();
        let m = Manifest::build(data, PIECE).unwrap();
        let mut cfg = Config::new(Role::Origin, 1);
        cfg.listen_port = addr_of(0).port();
        Sim {
            nodes: vec![SimNode {
                node: Node::origin(cfg, m, now),
                data: data.to_vec(),
                next_slot: 0,
                budget: origin_budget,
                complete: true,
                exited: false,
                fatal: None,
                alive: true,
            }],
            links: Vec::new(),
            now,
            seen: Vec::new(),
            steps: 0,
        }
    }

    fn add_client(&mut self, budget: usize) -> usize {
        self.add_client_as(budget, Behaviour::Honest)
    }

    fn add_client_as(&mut self, budget: usize, behaviour: Behaviour) -> usize {
        let idx = self.nodes.len();
        let mut cfg = Config::new(Role::Client, 100 + idx as u64);
        cfg.behaviour = behaviour;
        cfg.listen_port = addr_of(idx).port();
        cfg.server = Some(addr_of(0));
        cfg.linger = Duration::from_secs(1);
        self.nodes.push(SimNode {
            node: Node::client(cfg, self.now),
            data: Vec::new(),
            next_slot: 0,
            budget,
            complete: false,
            exited: false,
            fatal: None,
            alive: true,
        });
        self.connect(idx, 0, Link::ToOrigin);
        idx
    }

    fn connect(&mut self, from: usize, to: usize, link: Link) {
        let sa = self.nodes[from].next_slot;
        self.nodes[from].next_slot += 1;
        let sb = self.nodes[to].next_slot;
        self.nodes[to].next_slot += 1;
        self.links.push(Some(Link_ {
            a: (from, sa),
            b: (to, sb),
        }));
        let now = self.now;
        self.nodes[from]
            .node
            .handle_open(sa, link, addr_of(to), now);
        self.nodes[to]
            .node
            .handle_open(sb, Link::Accepted, addr_of(from), now);
    }

    fn other_end(&self, node: usize, slot: Slot) -> Option<(usize, (usize, Slot))> {
        self.links.iter().enumerate().find_map(|(i, l)| {
            let l = l.as_ref()?;
            if l.a == (node, slot) {
                Some((i, l.b))
            } else if l.b == (node, slot) {
                Some((i, l.a))
            } else {
                None
            }
        })
    }

    fn drop_link(&mut self, idx: usize, cause: &str) {
        if let Some(l) = self.links[idx].take() {
            let now = self.now;
            self.nodes[l.a.0].node.handle_closed(l.a.1, cause, now);
            self.nodes[l.b.0].node.handle_closed(l.b.1, cause, now);
        }
    }

    /// Kills a node: every link it had dies.
    fn kill(&mut self, node: usize) {
        self.nodes[node].alive = false;
        for i in 0..self.links.len() {
            let hit = self.links[i]
                .as_ref()
                .is_some_and(|l| l.a.0 == node || l.b.0 == node);
            if hit {
                self.drop_link(i, "killed");
            }
        }
    }

    fn handle_events(&mut self, n: usize) {
        while let Some(ev) = self.nodes[n].node.poll_event() {
            match ev {
                Event::Connect { addr, link } => {
                    let to = (addr.port() - 1000) as usize;
                    if self.nodes[to].alive {
                        self.connect(n, to, link);
                    } else {
                        let s = self.nodes[n].next_slot;
                        self.nodes[n].next_slot += 1;
                        let now = self.now;
                        self.nodes[n].node.handle_open(s, link, addr, now);
                        self.nodes[n].node.handle_closed(s, "refused", now);
                    }
                }
                Event::Close { slot, flush, .. } => {
                    if flush {
                        self.flush_control(n, slot);
                    }
                    if let Some((i, _)) = self.other_end(n, slot) {
                        self.drop_link(i, "closed");
                    } else {
                        let now = self.now;
                        self.nodes[n].node.handle_closed(slot, "closed", now);
                    }
                }
                Event::Manifest => {
                    let len = self.nodes[n].node.manifest().unwrap().file_len();
                    self.nodes[n].data = vec![0; len as usize];
                }
                Event::Complete => self.nodes[n].complete = true,
                Event::Exit => self.nodes[n].exited = true,
                Event::Fatal(why) => self.nodes[n].fatal = Some(why),
            }
        }
    }

    fn flush_control(&mut self, n: usize, slot: Slot) {
        let mut out = Vec::new();
        self.nodes[n].node.take_outbox(slot, &mut out);
        let Some((_, (m, ms))) = self.other_end(n, slot) else {
            return;
        };
        let mut rest = &out[..];
        while let Ok(Some(h)) = FrameHead::parse(rest) {
            let body = &rest[HEAD_SIZE..h.frame_len()];
            self.seen.push((m, h.ty));
            let now = self.now;
            self.nodes[m].node.handle_frame(ms, h.ty, body, now);
            rest = &rest[h.frame_len()..];
        }
    }

    fn send_pieces(&mut self, n: usize, slot: Slot, budget: &mut usize) {
        while *budget > 0 {
            let Some((_, (m, ms))) = self.other_end(n, slot) else {
                return;
            };
            let Some(piece) = self.nodes[n].node.poll_piece(slot) else {
                return;
            };
            *budget -= 1;
            let man = self.nodes[n].node.manifest().unwrap().clone();
            let (off, len) = (man.piece_offset(piece) as usize, man.piece_len(piece));
            let payload = self.nodes[n].data[off..off + len as usize].to_vec();
            let now = self.now;
            let sink = self.nodes[m].node.begin_piece(ms, piece, len, now);
            match sink {
                Some(Sink::Store { offset }) => {
                    let o = offset as usize;
                    self.nodes[m].data[o..o + payload.len()].copy_from_slice(&payload);
                    let region = self.nodes[m].data[o..o + payload.len()].to_vec();
                    self.nodes[m]
                        .node
                        .end_piece(ms, Some(crc32fast::hash(&region)), now);
                }
                Some(Sink::Discard) => self.nodes[m].node.end_piece(ms, None, now),
                None => {}
            }
            self.nodes[n].node.handle_piece_sent(slot, piece, now);
            self.handle_events(m);
            // Control frames the receiver produced (HAVE, new requests) go out at once.
        }
    }

    fn step(&mut self) {
        self.steps += 1;
        self.now += Duration::from_millis(10);
        for n in 0..self.nodes.len() {
            if !self.nodes[n].alive {
                continue;
            }
            let now = self.now;
            if now >= self.nodes[n].node.poll_timeout() {
                self.nodes[n].node.handle_tick(now);
            }
            self.handle_events(n);
            let mut budget = self.nodes[n].budget;
            // Round-robin over dirty slots until nothing changes.
            let mut slots = Vec::new();
            while let Some(s) = self.nodes[n].node.poll_dirty() {
                slots.push(s);
            }
            for s in 0..self.nodes[n].next_slot {
                if !slots.contains(&s) {
                    slots.push(s);
                }
            }
            for s in slots {
                self.flush_control(n, s);
                self.handle_events(n);
            }
            // Round-robin: each step starts the upload at the next slot, as the driver does.
            let k = self.nodes[n].next_slot;
            let start = if k == 0 { 0 } else { self.steps % k };
            for i in 0..k {
                let s = (start + i) % k;
                self.send_pieces(n, s, &mut budget);
                self.flush_control(n, s);
            }
            for m in 0..self.nodes.len() {
                self.handle_events(m);
            }
        }
    }

    fn run_until_done(&mut self, max_steps: usize) -> usize {
        for i in 0..max_steps {
            self.step();
            if self.nodes.iter().skip(1).all(|n| !n.alive || n.complete) {
                return i;
            }
        }
        panic!(
            "swarm did not complete in {max_steps} steps: {:?}",
            self.nodes
                .iter()
                .map(|n| (n.node.progress(), n.fatal.clone()))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn test_single_client_downloads_file() {
    let data = file(5 * PIECE as usize + 100);
    let mut sim = Sim::new(&data, 2);
    let c = sim.add_client(2);
    sim.run_until_done(200);
    assert_eq!(sim.nodes[c].data, data);
    let k = sim.nodes[c].node.counters().clone();
    assert_eq!(k.from_origin, data.len() as u64);
    assert_eq!(k.from_peers, 0);
    assert!(sim.nodes[c].node.latency().len() >= 6);
}

#[test]
fn test_swarm_trades_and_origin_sends_about_one_copy() {
    let data = file(64 * PIECE as usize);
    // Origin uploads one piece per step, each client four: the "slow server" case.
    let mut sim = Sim::new(&data, 1);
    let clients: Vec<usize> = (0..4).map(|_| sim.add_client(4)).collect();
    sim.run_until_done(2000);
    for &c in &clients {
        assert_eq!(sim.nodes[c].data, data, "client {c} data differs");
        let k = sim.nodes[c].node.counters();
        assert!(k.from_peers > k.from_origin, "client {c}: {k:?}");
    }
    let sent = sim.nodes[0].node.counters().uploaded as f64 / data.len() as f64;
    assert!(sent < 1.5, "origin sent {sent:.2} copies");
}

#[test]
fn test_free_rider_breaks_promises_and_gets_little_from_peers() {
    let data = file(96 * PIECE as usize);
    let mut sim = Sim::new(&data, 1);
    let honest: Vec<usize> = (0..3).map(|_| sim.add_client(4)).collect();
    let rider = sim.add_client_as(4, Behaviour::FreeRider);
    sim.run_until_done(20_000);
    for &c in &honest {
        assert_eq!(sim.nodes[c].data, data);
    }
    assert_eq!(sim.nodes[rider].data, data);
    // Origin slot k belongs to client k + 1 (connection order).
    let t = sim.nodes[0].node.table();
    let owed = |c: usize| {
        let (p, k) = t.promises(c - 1);
        p.saturating_sub(k)
    };
    for &c in &honest {
        assert!(owed(c) <= 2, "honest client {c} owes {}", owed(c));
    }
    assert!(
        t.promises(rider - 1).0 > 0,
        "the rider was given fresh pieces"
    );
    assert_eq!(t.promises(rider - 1).1, 0, "a free rider passes nothing on");
    // Nobody received anything from the rider, and it uploaded nothing.
    assert_eq!(sim.nodes[rider].node.counters().uploaded, 0);
}

#[test]
fn test_receipts_credit_confirmed_uploads_at_origin() {
    let data = file(64 * PIECE as usize);
    let mut sim = Sim::new(&data, 1);
    let a = sim.add_client(4);
    let b = sim.add_client(4);
    let liar = sim.add_client_as(4, Behaviour::Liar);
    sim.run_until_done(20_000);
    // Let a final round of receipts arrive.
    for _ in 0..150 {
        sim.step();
    }
    let origin = &sim.nodes[0].node;
    for &c in &[a, b] {
        let sent = sim.nodes[c].node.counters().uploaded;
        let credit = origin.table().credit(c - 1);
        assert!(
            credit > 0 && credit <= sent,
            "client {c}: credit {credit} of {sent} sent"
        );
    }
    assert_eq!(
        origin.table().credit(liar - 1),
        0,
        "claims alone earn no credit"
    );
}

#[test]
fn test_origin_stripes_first_copies_across_clients() {
    let data = file(8 * PIECE as usize);
    let mut sim = Sim::new(&data, 0);
    let a = sim.add_client(0);
    let b = sim.add_client(0);
    for _ in 0..5 {
        sim.step();
    }
    // Both clients asked for wildcards; hand out one piece to each.
    let sa = 0;
    let sb = 1;
    let pa = sim.nodes[0].node.poll_piece(sa).unwrap();
    let pb = sim.nodes[0].node.poll_piece(sb).unwrap();
    assert_ne!(pa, pb);
    let _ = (a, b);
}

#[test]
fn test_origin_tells_clients_about_each_other_and_swarm_done() {
    let data = file(4 * PIECE as usize);
    let mut sim = Sim::new(&data, 2);
    let a = sim.add_client(2);
    let b = sim.add_client(2);
    sim.run_until_done(500);
    assert!(sim.seen.contains(&(a, wire::ty::PEERS)));
    assert!(sim.seen.contains(&(b, wire::ty::PEERS)));
    for _ in 0..20 {
        sim.step();
    }
    assert!(sim.seen.contains(&(a, wire::ty::SWARM_DONE)));
    assert!(sim.nodes[a].exited && sim.nodes[b].exited);
}

#[test]
fn test_client_killed_midway_others_complete() {
    let data = file(48 * PIECE as usize);
    let mut sim = Sim::new(&data, 1);
    let a = sim.add_client(3);
    let b = sim.add_client(3);
    let c = sim.add_client(3);
    for _ in 0..15 {
        sim.step();
    }
    sim.kill(b);
    sim.run_until_done(3000);
    assert_eq!(sim.nodes[a].data, data);
    assert_eq!(sim.nodes[c].data, data);
}

#[test]
fn test_late_joiner_completes() {
    let data = file(32 * PIECE as usize);
    let mut sim = Sim::new(&data, 1);
    let a = sim.add_client(3);
    for _ in 0..10 {
        sim.step();
    }
    let b = sim.add_client(3);
    sim.run_until_done(3000);
    assert_eq!(sim.nodes[a].data, data);
    assert_eq!(sim.nodes[b].data, data);
}

#[test]
fn test_empty_file_completes_without_pieces() {
    let mut sim = Sim::new(&[], 1);
    let c = sim.add_client(1);
    sim.run_until_done(10);
    assert!(sim.nodes[c].data.is_empty());
    assert!(sim.nodes[c].complete);
}

// ----- single-connection fixtures: one node, frames scripted by the test -----

struct One {
    node: Node,
    now: Instant,
}

impl One {
    fn origin(data: &[u8]) -> One {
        let now = Instant::now();
        let m = Manifest::build(data, PIECE).unwrap();
        let mut n = Node::origin(Config::new(Role::Origin, 1), m, now);
        n.handle_open(0, Link::Accepted, addr_of(9), now);
        let mut o = One { node: n, now };
        o.out();
        o
    }

    /// An origin whose client (slot 0) holds `bits` and is interested; outputs drained.
    fn origin_with_interested_client(data: &[u8], bits: &[u8]) -> One {
        let mut o = One::origin(data);
        o.send(hello(Role::Client, 2, 0));
        o.send(Message::Bitfield(bits));
        o.send(Message::Interested(true));
        o.out();
        o
    }

    fn client() -> One {
        let now = Instant::now();
        let mut cfg = Config::new(Role::Client, 5);
        cfg.server = Some(addr_of(0));
        let mut n = Node::client(cfg, now);
        n.handle_open(0, Link::ToOrigin, addr_of(0), now);
        let mut o = One { node: n, now };
        o.out();
        o
    }

    /// A client that has the origin's HELLO, MANIFEST and BITFIELD for `data`, its own
    /// replies and events drained.
    fn client_with_manifest(data: &[u8]) -> One {
        let mut c = One::client();
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
    fn send(&mut self, msg: Message) {
        self.send_on(0, msg);
    }

    /// Delivers `msg` as if it arrived on connection `slot`.
    #[track_caller]
    fn send_on(&mut self, slot: Slot, msg: Message) {
        let mut buf = Vec::new();
        msg.emit(&mut buf);
        let h = FrameHead::parse(&buf).unwrap().unwrap();
        self.node
            .handle_frame(slot, h.ty, &buf[HEAD_SIZE..], self.now);
    }

    /// Frames the node queued for slot 0, as (type, body).
    fn out(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut buf = Vec::new();
        self.node.take_outbox(0, &mut buf);
        frames(&buf)
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.node.poll_event()).collect()
    }
}

fn hello(role: Role, id: u64, file_id: u64) -> Message<'static> {
    Message::Hello(Hello {
        version: VERSION,
        role,
        node_id: id,
        file_id,
        listen_port: 7000,
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
    o.send(Message::Hello(Hello {
        version: 9,
        role: Role::Client,
        node_id: 2,
        file_id: 0,
        listen_port: 0,
    }));
    let out = o.out();
    assert_eq!(out[0].0, wire::ty::ERROR);
    assert_eq!(u16::from_be_bytes([out[0].1[0], out[0].1[1]]), 2);
    assert!(matches!(
        o.events().as_slice(),
        [Event::Close {
            slot: 0,
            flush: true,
            ..
        }]
    ));
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
    assert_eq!(o.node.poll_piece(0), Some(0));
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
    assert_eq!(o.node.poll_piece(0), Some(1));
    assert_eq!(o.node.poll_piece(0), None);
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
    assert_eq!(o.events(), vec![Event::Exit]);
}

#[test]
fn test_client_fatal_when_server_closes_before_manifest() {
    let mut c = One::client();
    c.node.handle_closed(0, "Connection refused", c.now);
    match &c.events()[..] {
        [Event::Fatal(why)] => assert!(why.contains("Connection refused"), "{why}"),
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
    assert!(c.events().iter().any(|e| matches!(e, Event::Fatal(_))));
}

#[test]
fn test_client_fatal_when_server_is_not_an_origin() {
    let mut c = One::client();
    c.send(hello(Role::Client, 1, 0));
    assert!(c.events().iter().any(|e| matches!(e, Event::Fatal(_))));
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
    c.node.end_piece(0, Some(crc32fast::hash(&bad)), c.now);
    assert_eq!(c.node.counters().corrupt_pieces, 1);
    assert_eq!(c.node.progress(), (0, 2));
    let out = c.out();
    assert!(out.iter().any(|f| f.0 == wire::ty::REQUEST), "re-requested");
    for p in 0..2u32 {
        let s = c.node.begin_piece(0, p, PIECE, c.now);
        assert!(matches!(s, Some(Sink::Store { .. })));
        let o = p as usize * PIECE as usize;
        c.node.end_piece(
            0,
            Some(crc32fast::hash(&data[o..o + PIECE as usize])),
            c.now,
        );
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
    c.node
        .end_piece(0, Some(crc32fast::hash(&data[..PIECE as usize])), c.now);
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
    assert!(
        c.events()
            .iter()
            .any(|e| matches!(e, Event::Fatal(w) if w.contains("no progress")))
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
    assert!(c.events().iter().any(|e| matches!(e, Event::Fatal(_))));
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
    assert_eq!(o.node.poll_piece(0), None, "the cancelled request is gone");
    // A cancel for something not queued is ignored.
    o.send(Message::Cancel(0));
    assert!(o.out().is_empty());
}

/// Opens slot `slot` on `c` to a client peer holding `bits` that unchokes us, and returns
/// the piece indices we then asked it for.
fn peer_unchokes(c: &mut One, slot: Slot, bits: &[u8]) -> Vec<u32> {
    let id = c.node.manifest().unwrap().id();
    c.node
        .handle_open(slot, Link::Accepted, addr_of(slot + 10), c.now);
    c.send_on(slot, hello(Role::Client, 70 + slot as u64, id));
    c.send_on(slot, Message::Bitfield(bits));
    c.send_on(slot, Message::Unchoke);
    requests_on(c, slot)
}

fn requests_on(c: &mut One, slot: Slot) -> Vec<u32> {
    let mut out = Vec::new();
    c.node.take_outbox(slot, &mut out);
    frames(&out)
        .into_iter()
        .filter(|f| f.0 == wire::ty::REQUEST)
        .map(|f| wire::be_u32(&f.1))
        .collect()
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
        c.node.begin_piece(0, p, PIECE, c.now);
        let o = p as usize * PIECE as usize;
        let crc = crc32fast::hash(&data[o..o + PIECE as usize]);
        c.node.end_piece(0, Some(crc), c.now);
    }
    assert!(requests_on(&mut c, 0).iter().all(|&r| r != WILDCARD));
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
    let crc = crc32fast::hash(&data[..PIECE as usize]);
    c.node.end_piece(0, Some(crc), c.now);
    c.send(Message::Reject(WILDCARD));
    c.now += REJECT_BACKOFF + TICK;
    c.node.handle_tick(c.now);
    assert_eq!(requests_on(&mut c, 0), vec![1]);
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
    let id = c.node.manifest().unwrap().id();
    c.node.handle_open(1, Link::Accepted, addr_of(11), c.now);
    c.send_on(1, hello(Role::Client, 71, id));
    c.send_on(1, Message::Bitfield(&[0xf0]));
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
    assert_eq!(o.node.poll_piece(0), Some(1));
    assert_eq!(o.node.poll_piece(0), Some(0));
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

fn frames(buf: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut v = Vec::new();
    let mut rest = buf;
    while let Ok(Some(h)) = FrameHead::parse(rest) {
        v.push((h.ty, rest[HEAD_SIZE..h.frame_len()].to_vec()));
        rest = &rest[h.frame_len()..];
    }
    v
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
