//! Whole-protocol runs: real nodes stepped in virtual time over in-memory links.

use super::*;

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
    /// Origin: its `Event::Standing`s in order, (node id, named).
    standing: Vec<(u64, bool)>,
}

struct Sim {
    nodes: Vec<SimNode>,
    links: Vec<Option<Link_>>,
    now: Instant,
    /// Frames received, for assertions: (node, type).
    seen: Vec<(usize, u8)>,
    steps: usize,
    /// (sender, piece): the next copy of `piece` that `sender` sends arrives with a byte
    /// flipped (each entry is used once).
    corrupt: Vec<(usize, u32)>,
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
                standing: Vec::new(),
            }],
            links: Vec::new(),
            now,
            seen: Vec::new(),
            steps: 0,
            corrupt: Vec::new(),
        }
    }

    fn add_client(&mut self, budget: usize) -> usize {
        self.add_client_as(budget, Behaviour::Honest)
    }

    fn add_client_as(&mut self, budget: usize, behaviour: Behaviour) -> usize {
        let idx = self.nodes.len();
        let mut cfg = Config::new(Role::Client, behaviour.node_id(100 + idx as u64));
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
            standing: Vec::new(),
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
                Event::Probe { id, addr } => {
                    // Reachable when the node it names is up: its port listens.
                    let to = (addr.port() - 1000) as usize;
                    let ok = self.nodes.get(to).is_some_and(|n| n.alive);
                    let now = self.now;
                    self.nodes[n].node.handle_probe_result(id, Some(ok), now);
                }
                Event::Manifest => {
                    let len = self.nodes[n].node.manifest().unwrap().file_len();
                    self.nodes[n].data = vec![0; len as usize];
                }
                Event::Complete => self.nodes[n].complete = true,
                Event::Standing { node_id, named } => self.nodes[n].standing.push((node_id, named)),
                Event::Exit => self.nodes[n].exited = true,
                Event::Fatal(why) => self.nodes[n].fatal = Some(why.to_string()),
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
            let Some(piece) = self.nodes[n].node.poll_piece(slot, self.now) else {
                return;
            };
            *budget -= 1;
            let man = self.nodes[n].node.manifest().unwrap().clone();
            let (off, len) = (man.piece_offset(piece) as usize, man.piece_len(piece));
            let mut payload = self.nodes[n].data[off..off + len as usize].to_vec();
            if let Some(k) = self.corrupt.iter().position(|&c| c == (n, piece)) {
                self.corrupt.swap_remove(k);
                payload[len as usize / 2] ^= 0x01;
            }
            let now = self.now;
            let sink = self.nodes[m].node.begin_piece(ms, piece, len, now);
            match sink {
                Some(Sink::Store { offset }) => {
                    let o = offset as usize;
                    self.nodes[m].data[o..o + payload.len()].copy_from_slice(&payload);
                    let region = self.nodes[m].data[o..o + payload.len()].to_vec();
                    self.nodes[m]
                        .node
                        .end_piece(ms, Some(crate::manifest::hash(&region)), now);
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
    // Long enough (about 7 s, 7 rounds) for the rider's breach to be judged: the origin
    // names none before its third round, when receipts can have come back.
    let data = file(384 * PIECE as usize);
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
    // The origin named it (STANDING), and every honest client heard so.
    let id = sim.nodes[rider].node.node_id();
    assert!(t.is_named(rider - 1));
    // What the origin reported (the log's, the simulator's view) is what it told.
    let last_event = |id| {
        let events = &sim.nodes[0].standing;
        events.iter().rev().find(|e| e.0 == id).map(|e| e.1)
    };
    assert_eq!(last_event(id), Some(true));
    for &c in &honest {
        let side = sim.nodes[c].node.client_side().expect("a client");
        assert!(side.named.contains(id), "client {c} was not told");
        for &h in &honest {
            let hid = sim.nodes[h].node.node_id();
            assert!(!side.named.contains(hid), "honest client {h} named");
            assert!(
                !sim.nodes[0].standing.contains(&(hid, true)),
                "honest client {h} reported named"
            );
        }
    }
}

/// A swarm of three honest clients and two clients of `behaviour`, run until the honest
/// ones complete; the origin bytes each of the two received, and the origin's (promises,
/// kept) for each.
fn two_misbehaving(behaviour: Behaviour) -> Vec<(u64, (u32, u32))> {
    let data = file(96 * PIECE as usize);
    let mut sim = Sim::new(&data, 1);
    let first = sim.add_client_as(2, behaviour);
    let honest: Vec<usize> = (0..3).map(|_| sim.add_client(2)).collect();
    let second = sim.add_client_as(2, behaviour);
    for _ in 0..20_000 {
        sim.step();
        if honest.iter().all(|&c| sim.nodes[c].complete) {
            break;
        }
    }
    for &c in &honest {
        assert_eq!(sim.nodes[c].data, data, "client {c}");
    }
    let t = sim.nodes[0].node.table();
    [first, second]
        .iter()
        .map(|&c| (sim.nodes[c].node.counters().from_origin, t.promises(c - 1)))
        .collect()
}

#[test]
fn test_a_colluding_pair_gets_no_more_from_the_origin_than_free_riders() {
    // Colluders confirm each other's uploads in receipts and repeat each other's HAVEs to
    // the origin. A partner's HAVE alone keeps no promise (two other clients must announce
    // a fresh piece), and receipts neither lift the breach cap nor widen the allowance.
    let riders = two_misbehaving(Behaviour::FreeRider);
    let colluders = two_misbehaving(Behaviour::Colluder);
    for &(_, (promised, kept)) in &colluders {
        assert!(promised > 0, "the colluders were given fresh pieces");
        assert_eq!(kept, 0, "a partner's word keeps no promise");
    }
    let total = |v: &[(u64, (u32, u32))]| v.iter().map(|x| x.0).sum::<u64>();
    assert!(
        total(&colluders) <= total(&riders),
        "colluders {colluders:?}, free riders {riders:?}"
    );
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
    let pa = sim.nodes[0].node.poll_piece(sa, sim.now).unwrap();
    let pb = sim.nodes[0].node.poll_piece(sb, sim.now).unwrap();
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

/// Issue 13, case 4: a piece from the origin that fails its hash at the client (flipped in
/// transit here) is asked for again and sent again. The origin counted it as on its way
/// and refused the client's wildcards for it, so a lone client sat at 1023/1024 until its
/// stall timeout; now the refused wildcard makes it ask for the piece by index.
#[test]
fn test_origin_piece_that_fails_verification_is_sent_again() {
    let data = file(8 * PIECE as usize);
    let mut sim = Sim::new(&data, 1);
    let c = sim.add_client(2);
    // Every piece's first copy, so the last one too: only the origin has any of them.
    sim.corrupt = (0..8).map(|p| (0, p)).collect();
    sim.run_until_done(2000);
    assert!(sim.corrupt.is_empty());
    assert_eq!(sim.nodes[c].data, data);
    let k = sim.nodes[c].node.counters();
    assert_eq!((k.corrupt_pieces, k.from_origin), (8, data.len() as u64));
    assert_eq!(sim.nodes[0].node.counters().uploaded, 2 * data.len() as u64);
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
fn test_seed_dials_a_listening_newcomer_with_a_larger_id() {
    // Of two listening clients the smaller id dials. A seeds, then B (a larger id) joins:
    // only A can open their connection, and a seed that dialled nobody left B to the
    // origin alone.
    let data = file(32 * PIECE as usize);
    let mut sim = Sim::new(&data, 1);
    let a = sim.add_client(4);
    for _ in 0..2000 {
        if sim.nodes[a].complete {
            break;
        }
        sim.step();
    }
    assert!(sim.nodes[a].complete);
    let b = sim.add_client(4);
    sim.run_until_done(3000);
    assert_eq!(sim.nodes[b].data, data);
    assert!(
        sim.nodes[b].node.counters().from_peers > 0,
        "the seed served the newcomer"
    );
}

#[test]
fn test_empty_file_completes_without_pieces() {
    let mut sim = Sim::new(&[], 1);
    let c = sim.add_client(1);
    sim.run_until_done(10);
    assert!(sim.nodes[c].data.is_empty());
    assert!(sim.nodes[c].complete);
}
