//! The origin's side: late-bound piece choice for wildcards (striping), the count of
//! copies it serves and the promise each fresh piece carries, introductions of newcomers,
//! and the swarm's end.

use std::collections::HashMap;

use super::send_limit::SendLimit;
use super::*;
use crate::proto::send_slots::SendSlots;

/// A complete client stops lingering once no peer has wanted anything from it for this
/// long: seeding is worth its wait only while someone downloads from it.
pub(super) const LINGER_IDLE: Duration = Duration::from_secs(10);
/// A client counts as taking pieces for this long after its last HAVE. A broken promise
/// counts against a client only while another client takes pieces: registered clients
/// that never announce a piece (seeds, stalled or hostile identities that never read) are
/// no one to keep a promise to.
pub(super) const TAKER_WINDOW: Duration = Duration::from_secs(10);
/// The origin's send window to a client starts at this many pieces not yet announced with
/// HAVE and grows by one per piece announced, doubling per round trip as TCP's window
/// does, so it never holds back a client that reads. One that asks and never reads gets
/// this much per connection: it took 67 copies of the file into socket buffers from an
/// origin under 1,000 hostile connections (tools/hostile.py), while a client waited 37 s.
const INITIAL_WINDOW_PIECES: u32 = 2;
/// The send window's ceiling: enough for a gigabit a second over 500 ms of round trip.
const MAX_WINDOW_BYTES: u64 = 64 << 20;
/// How many other clients must confirm what a client did before the origin believes it:
/// announce a fresh piece it got first (its promise is then kept), or confirm in receipts
/// that it uploaded to them (fewer when there are fewer other clients). One confirmation
/// is a partner's to give: two
/// identities that announce each other's pieces with HAVE, while passing nothing on,
/// kept every promise and took 27 and 31 MiB of a 64 MiB file from the origin, against
/// 3.5 MiB for a free rider (the simulator on issue 12's crowd). Two confirmations need a
/// client outside such a pair (docs/PROTOCOL.md §5.6, the threat model).
const WITNESSES: usize = 2;
/// Most peers the origin names to a newcomer.
pub(super) const MAX_ADVERTISED: usize = 64;
/// Most pieces one `poll_piece_checked` call finds changed before it answers a WILDCARD with
/// REJECT: each check reads a piece (up to 16 MiB), and the loop must not stall on a file
/// that changed throughout.
const MAX_FAILED_CHECKS: u32 = 4;

/// The origin's registry of the swarm: copies of each piece (for striping) and who owes
/// passing each fresh piece on (the promise, docs/PROTOCOL.md §5.6).
#[derive(Debug)]
pub(super) struct Registry {
    pub(super) striper: Striper,
    /// Each piece's promise: the client that received its first copy, until enough other
    /// clients announce the piece (the promise is then kept).
    fresh: Vec<Option<Promise>>,
    /// Registered clients that lack some piece: those a fresh piece can be passed on to.
    incomplete: usize,
    /// Some first copy went out while nobody could take it (a dormant promise, `owed` 0).
    dormant: bool,
    /// How many of those the origin names as taking without giving (as of the last
    /// round): nobody passes them anything, so they keep no promise and witness nothing.
    pub(super) named_incomplete: usize,
    /// Node ids of the registered clients (with their connection count, as a client may
    /// reconnect before its old connection is gone): receipts may speak of these only.
    ids: HashMap<u64, u32>,
    /// The choking round in which each node id first registered, kept for the swarm's
    /// life like its credit: a client's age counts from then, not from its connection, so
    /// reconnecting makes it neither a newcomer again nor too young to be judged.
    first_round: HashMap<u64, u64>,
    /// Pieces the served file no longer holds as the manifest says (it changed under the
    /// origin): never chosen again, and refused when asked for by index.
    withdrawn: Bitfield,
    /// The two clients whose HAVEs arrived last, newest first, and when: whether some
    /// client other than one is taking pieces, in constant time.
    takers: [Option<(Slot, Instant)>; 2],
    /// Connect-back probes of clients' listen ports (`probe.rs`).
    pub(super) probes: super::probe::Probes,
    /// Clients named as taking without giving (STANDING), as last told to everyone.
    pub(super) named: super::standing::Named,
    /// How many pieces are on their way, and who is next (`send_slots.rs`); boxed, so
    /// the origin's side of `Side` stays near the client's in size.
    pub(super) slots: Box<SendSlots>,
    /// How many may be (`send_limit.rs`).
    pub(super) send_limit: SendLimit,
}

impl Registry {
    pub(super) fn new(pieces: u32) -> Registry {
        Registry {
            striper: Striper::new(pieces),
            fresh: vec![None; pieces as usize],
            incomplete: 0,
            dormant: false,
            named_incomplete: 0,
            ids: HashMap::new(),
            first_round: HashMap::new(),
            withdrawn: Bitfield::new(pieces),
            takers: [None; 2],
            probes: Default::default(),
            named: Default::default(),
            slots: Box::default(),
            send_limit: SendLimit::default(),
        }
    }

    /// `slot` announced a piece at `now`: it is taking pieces.
    pub(super) fn note_taker(&mut self, slot: Slot, now: Instant) {
        match self.takers[0] {
            Some((s, _)) if s == slot => self.takers[0] = Some((slot, now)),
            newest => self.takers = [Some((slot, now)), newest],
        }
    }

    /// Whether a client other than `slot` announced a piece within `TAKER_WINDOW`.
    pub(super) fn another_taker(&self, slot: Slot, now: Instant) -> bool {
        self.takers
            .iter()
            .flatten()
            .any(|&(s, at)| s != slot && now.saturating_duration_since(at) <= TAKER_WINDOW)
    }

    /// Client `id` registered holding `bits` in choking round `round_no`; returns the rounds
    /// since it first registered (0 the first time).
    pub(super) fn register(&mut self, id: u64, bits: &Bitfield, round_no: u64) -> u32 {
        *self.ids.entry(id).or_default() += 1;
        if !bits.is_full() {
            self.incomplete += 1;
        }
        self.add_holdings(bits);
        let first = *self.first_round.entry(id).or_insert(round_no);
        u32::try_from(round_no.saturating_sub(first)).unwrap_or(u32::MAX)
    }

    /// How many other clients must announce a fresh piece for its promise to be kept:
    /// `WITNESSES`, or as many other clients as download if fewer (seeds announce nothing).
    fn promise_witnesses(&self) -> usize {
        let others = self.incomplete.saturating_sub(1 + self.named_incomplete);
        WITNESSES.min(others)
    }

    /// How many receivers must confirm a client's uploads for the origin to credit them:
    /// `WITNESSES`, or as many other clients as are registered if fewer. Seeds count: they
    /// may have been receivers, and counting only downloaders would let the last pair of
    /// downloaders vouch for each other alone once everyone else is done.
    pub(super) fn credit_witnesses(&self) -> usize {
        let others = self.ids.len().saturating_sub(1 + self.named_incomplete);
        WITNESSES.min(others)
    }

    /// A registered client announced its last piece.
    pub(super) fn completed(&mut self) {
        self.incomplete = self.incomplete.saturating_sub(1);
    }

    /// `id` is or was a registered client. Receipts about one that left still count: its
    /// receivers report its last round only after it is gone, and without that their
    /// receipts fell short of what they announced (`Ledger::infer`).
    pub(super) fn knows(&self, id: u64) -> bool {
        self.first_round.contains_key(&id)
    }

    /// `id` is a registered client now.
    pub(super) fn is_registered(&self, id: u64) -> bool {
        self.ids.contains_key(&id)
    }

    fn add_holdings(&mut self, bits: &Bitfield) {
        for i in bits.ones() {
            self.striper.add_copy(i);
        }
    }

    /// The origin sends `piece` to `slot` (which lacks it, so is among the incomplete);
    /// true if it is the first copy in the swarm and other clients download (the client now
    /// owes passing it on; a client alone, or among seeds, owes nothing).
    pub(super) fn send_copy(&mut self, slot: Slot, piece: u32) -> bool {
        let owed = self.promise_witnesses();
        let first = self.striper.copies(piece) == 0;
        // A second copy before the first holder passed it on: that promise lapses unkept.
        // A first copy nobody can take yet is a dormant promise (`activate_dormant`).
        self.fresh[piece as usize] = first.then_some(Promise {
            holder: slot,
            owed: owed as u8,
        });
        self.dormant |= first && owed == 0;
        self.striper.add_copy(piece);
        first && owed > 0
    }

    /// A client that downloads registered: the first copies that went out while nobody
    /// could take them become promises now, each holder once per piece (returned), since
    /// they are what the newcomer needs from the swarm. Without this a free rider arriving
    /// first took its first pieces from the origin owing nothing, was never in breach, and
    /// finished at 1.39x the honest median on the emulated network.
    pub(super) fn activate_dormant(&mut self) -> Vec<Slot> {
        let owed = self.promise_witnesses();
        if !self.dormant || owed == 0 {
            return Vec::new();
        }
        self.dormant = false;
        let mut holders = Vec::new();
        for p in self.fresh.iter_mut().flatten().filter(|p| p.owed == 0) {
            p.owed = owed as u8;
            holders.push(p.holder);
        }
        holders
    }

    /// `slot` announced `piece`, which it did not get from the origin. Returns the client
    /// whose promise this keeps, if another one holds the piece's first copy and this is
    /// the last announcement it owed.
    pub(super) fn announced(&mut self, slot: Slot, piece: u32) -> Option<Slot> {
        self.striper.add_copy(piece);
        let entry = &mut self.fresh[piece as usize];
        let promise = entry.as_mut().filter(|p| p.holder != slot)?;
        if promise.owed == 0 {
            // Dormant: nobody was owed it, and now somebody has it.
            *entry = None;
            return None;
        }
        promise.owed -= 1;
        if promise.owed > 0 {
            return None;
        }
        entry.take().map(|p| p.holder)
    }

    /// The client on `slot` left holding `has` and with `in_flight` on its way: its copies
    /// no longer count, and its promises lapse.
    pub(super) fn forget(
        &mut self,
        slot: Slot,
        id: Option<u64>,
        has: &Bitfield,
        in_flight: &[u32],
    ) {
        if let Some(id) = id
            && let Some(n) = self.ids.get_mut(&id)
        {
            *n -= 1;
            if *n == 0 {
                self.ids.remove(&id);
            }
        }
        if !has.is_full() {
            self.incomplete = self.incomplete.saturating_sub(1);
        }
        for i in has.ones() {
            self.striper.remove_copy(i);
        }
        for &i in in_flight {
            self.striper.remove_copy(i);
        }
        for p in self
            .fresh
            .iter_mut()
            .filter(|p| p.is_some_and(|p| p.holder == slot))
        {
            *p = None;
        }
        for t in &mut self.takers {
            if t.is_some_and(|(s, _)| s == slot) {
                *t = None;
            }
        }
    }
}

/// A fresh piece's first holder and the announcements by other clients it still needs.
#[derive(Debug, Clone, Copy)]
struct Promise {
    holder: Slot,
    owed: u8,
}

impl Node {
    /// The next piece to upload on `slot`, decided at `now`, when the socket can take it
    /// (late binding: the origin picks a wildcard's piece with the freshest view of the
    /// swarm, and a STAMP before it carries the moment it leaves).
    pub fn poll_piece(&mut self, slot: Slot, now: Instant) -> Option<u32> {
        self.poll_piece_checked(slot, now, |_| true)
    }

    /// `poll_piece` for an origin whose file may have changed under it: `servable(piece)`
    /// says whether the stored piece still matches the manifest (the driver reads it). One
    /// that does not is withdrawn for good: a WILDCARD gets another piece, and a request by
    /// index a REJECT, as for a piece the origin lacks (docs/PROTOCOL.md §5.2); a client
    /// then fetches it from a peer that has the original, or stalls, rather than being sent
    /// copies that fail their CRC forever.
    pub fn poll_piece_checked(
        &mut self,
        slot: Slot,
        now: Instant,
        servable: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        let admitted = match self.admit_send(slot, now) {
            Some(true) => true,
            Some(false) => return None,
            None => false,
        };
        let piece = self.next_piece(slot, now, servable);
        if admitted {
            match self.peer_mut(slot) {
                Some(p) if piece.is_some() => p.holds_send_slot = true,
                _ => self.release_send(slot),
            }
        }
        piece
    }

    fn next_piece(
        &mut self,
        slot: Slot,
        now: Instant,
        mut servable: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        self.now = now;
        // Each failed check reads a whole piece: a few per call keep one call's work bounded
        // when most of the file changed.
        let mut checks_left = MAX_FAILED_CHECKS;
        let piece_size = self.manifest.as_ref().map_or(1, |m| m.piece_size());
        loop {
            let choking = self.table.is_choking(slot);
            let is_origin = self.cfg.role == Role::Origin;
            let p = self.peer_mut(slot)?;
            if p.closing {
                return None;
            }
            if is_origin && p.in_flight.len() >= Node::send_window(p.acked, piece_size) {
                // The window is full, and the client's next HAVE reopens it (`on_have`). A
                // piece it asks for again by index while on its way failed its check, and
                // sending it again adds nothing to the window: that goes first. But only a
                // few times between HAVEs: a client asking again and again for the pieces
                // on their way (and never reading them) would get the window each time.
                if p.resent >= INITIAL_WINDOW_PIECES {
                    return None;
                }
                let in_flight = &p.in_flight;
                let again = p
                    .queue
                    .iter()
                    .position(|&r| r != WILDCARD && in_flight.contains(&r));
                let r = p.queue.remove(again?).expect("found above");
                p.resent += 1;
                p.queue.push_front(r);
            }
            let req = p.queue.pop_front()?;
            if choking {
                self.emit(slot, &Message::Reject(req));
                continue;
            }
            let withdrawn = |side: &Side, i: u32| match side {
                Side::Origin(r) => r.withdrawn.get(i),
                Side::Client(_) => false,
            };
            let piece = if req == WILDCARD {
                let Side::Origin(registry) = &mut self.side else {
                    return None;
                };
                let p = self.peers[slot].as_ref()?;
                // Not what is on its way, nor what the client asked for by name.
                let gone = &registry.withdrawn;
                let excluded = |i| p.in_flight.contains(&i) || p.queue.contains(&i) || gone.get(i);
                match registry.striper.choose(&p.has, excluded, &mut self.rng) {
                    Some(piece) => piece,
                    None => {
                        self.emit(slot, &Message::Reject(WILDCARD));
                        continue;
                    }
                }
            } else if withdrawn(&self.side, req) {
                self.emit(slot, &Message::Reject(req));
                continue;
            } else {
                req
            };
            if !servable(piece) {
                if let Side::Origin(r) = &mut self.side {
                    r.withdrawn.set(piece);
                }
                checks_left -= 1;
                if req == WILDCARD && checks_left > 0 {
                    let p = self.peer_mut(slot)?;
                    p.queue.push_front(WILDCARD);
                } else {
                    self.emit(slot, &Message::Reject(req));
                }
                continue;
            }
            if is_origin {
                self.count_origin_copy(slot, piece);
            }
            if let Some(p) = self.peer_mut(slot) {
                p.sending = true;
                p.sending_since = is_origin.then_some(now);
            }
            self.stamp_piece(slot);
            return Some(piece);
        }
    }

    /// Origin: pieces withdrawn because the served file no longer matches the manifest.
    pub fn withdrawn_pieces(&self) -> u32 {
        match &self.side {
            Side::Origin(r) => r.withdrawn.count(),
            Side::Client(_) => 0,
        }
    }

    /// Origin: how many pieces may be on their way to a client that announced `acked` of
    /// those sent to it, at `piece_size` (docs/PROTOCOL.md §5.2).
    pub(super) fn send_window(acked: u32, piece_size: u32) -> usize {
        let ceiling = (MAX_WINDOW_BYTES / piece_size.max(1) as u64) as u32;
        let ceiling = ceiling.max(2 * INITIAL_WINDOW_PIECES);
        INITIAL_WINDOW_PIECES.saturating_add(acked).min(ceiling) as usize
    }

    /// Origin: `piece` goes to `slot`. Counts the copy, and a first copy makes the client
    /// owe passing it on (the promise, docs/PROTOCOL.md §5.6).
    pub(super) fn count_origin_copy(&mut self, slot: Slot, piece: u32) {
        let (Side::Origin(registry), Some(p)) = (&mut self.side, self.peers[slot].as_mut()) else {
            return;
        };
        if p.has.get(piece) || p.in_flight.contains(&piece) {
            return;
        }
        if registry.send_copy(slot, piece) {
            self.table.promise(slot);
            self.counters.promises_made += 1;
        }
        p.in_flight.push(piece);
    }

    /// The driver finished writing piece `piece` to `slot`.
    pub fn handle_piece_sent(&mut self, slot: Slot, piece: u32, now: Instant) {
        self.now = now;
        let Some(m) = &self.manifest else { return };
        let len = m.piece_len(piece) as u64;
        if self.cfg.role == Role::Origin {
            self.piece_left(slot, piece, now);
        }
        if let Some(p) = self.peers.get_mut(slot).and_then(|p| p.as_mut()) {
            p.sending = false;
            p.last_send = now;
            self.last_useful = now;
            self.table.record_up(slot, len);
            if let (Role::Client, Some(id)) = (self.cfg.role, p.node_id()) {
                self.ledger.record_sent(id, len);
            }
        }
        self.counters.uploaded += len;
    }

    /// Origin: introduce a newly ready client to up to MAX_ADVERTISED registered clients (all
    /// of them while there are no more), and them to it. A random sample beyond that keeps
    /// the overlay a random graph and the origin's PEERS traffic linear in the crowd: naming
    /// every client to every other cost O(N²) frames: one 23-byte add per pair and one remove,
    /// 2.3 GB for 10,000 clients that arrive and leave, more than a 1 GiB file.
    pub(super) fn introduce(&mut self, slot: Slot) {
        let me = self.peer(slot).expect("caller checked");
        let (Some(id), me_addr) = (me.node_id(), me.listen_addr()) else {
            return;
        };
        let mut chosen: Vec<Slot> = Vec::new();
        let mut seen = 0u32;
        for (s, p) in self.peers.iter().enumerate() {
            if s == slot || !p.as_ref().is_some_and(|p| p.registered && !p.closing) {
                continue;
            }
            // Reservoir sampling (Algorithm R): each candidate kept with chance k/seen.
            seen += 1;
            if chosen.len() < MAX_ADVERTISED {
                chosen.push(s);
            } else {
                let j = self.rng.below(seen) as usize;
                if j < MAX_ADVERTISED {
                    chosen[j] = s;
                }
            }
        }
        chosen.sort_unstable();
        let others: Vec<PeerEntry> = chosen
            .iter()
            .filter_map(|&s| {
                let p = self.peer(s)?;
                Some(PeerEntry {
                    op: PeerOp::Add,
                    node_id: p.node_id()?,
                    addr: p.listen_addr()?,
                })
            })
            .collect();
        for chunk in others.chunks(wire::MAX_PEER_ENTRIES) {
            self.emit(slot, &Message::Peers(chunk.to_vec()));
        }
        for &s in &chosen {
            let other = self.peer(s).and_then(|p| p.node_id()).unwrap_or(0);
            if let Some(p) = self.peer_mut(s) {
                p.acquaintances.push((slot, id));
            }
            if let Some(p) = self.peer_mut(slot) {
                p.acquaintances.push((s, other));
            }
        }
        if let Some(addr) = me_addr {
            let entry = PeerEntry {
                op: PeerOp::Add,
                node_id: id,
                addr,
            };
            let msg = Message::Peers(vec![entry]);
            for &s in &chosen {
                self.emit(s, &msg);
            }
        }
    }

    /// Client: leave once complete and nobody needs us any more.
    pub(super) fn check_exit(&mut self) {
        if self.exiting || self.cfg.role != Role::Client {
            return;
        }
        let Some(done_at) = self.completed_at else {
            return;
        };
        let origin_gone = self.client_side().is_none_or(|c| c.origin.slot.is_none());
        let alone = origin_gone && self.peer_count() == 0;
        if self.peers.iter().flatten().any(|p| !p.queue.is_empty()) {
            self.last_useful = self.now;
        }
        let idle = self.now >= self.last_useful.max(done_at) + LINGER_IDLE;
        if self.swarm_done
            || alone
            || idle
            || !self.cfg.use_peers
            || passed(self.now, done_at, self.cfg.linger)
        {
            self.exiting = true;
            self.events.push_back(Event::Exit);
        }
    }

    /// Origin: tell everyone when every connected client is complete; exit if asked to.
    pub(super) fn update_swarm_done(&mut self) {
        let mut any = false;
        let mut all = true;
        for p in self
            .peers
            .iter()
            .flatten()
            .filter(|p| p.registered && !p.closing)
        {
            any = true;
            all &= p.has.is_full();
        }
        let done = any && all;
        if done && !self.swarm_done {
            self.broadcast_ready(&Message::SwarmDone);
        }
        self.swarm_done = done;
        if let Some(n) = self.cfg.exit_after
            && self.counters.clients_completed >= n
            && (done || !any)
            && !self.exiting
        {
            self.exiting = true;
            self.events.push_back(Event::Exit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_client_alone_owes_nothing_for_first_copies() {
        let mut r = Registry::new(4);
        r.register(1, &Bitfield::new(4), 0);
        // Nobody to pass piece 0 on to: no promise, or a lone client would be cut as a
        // promise-breaker for pieces no one could take.
        assert!(!r.send_copy(0, 0));
        r.register(2, &Bitfield::new(4), 0);
        assert!(
            r.send_copy(0, 1),
            "a first copy with another client there is a promise"
        );
        assert!(!r.send_copy(1, 1), "a second copy is not fresh");
    }

    #[test]
    fn test_first_copies_sent_to_a_lone_client_become_promises_when_another_arrives() {
        let mut r = Registry::new(4);
        r.register(1, &Bitfield::new(4), 0);
        assert!(!r.send_copy(0, 0), "alone: nobody to pass it to");
        assert!(!r.send_copy(0, 1));
        assert!(r.activate_dormant().is_empty(), "still alone");
        r.register(2, &Bitfield::new(4), 0);
        assert_eq!(r.activate_dormant(), vec![0, 0], "both pieces are owed now");
        assert!(r.activate_dormant().is_empty(), "once");
        assert_eq!(r.announced(1, 0), Some(0), "and kept as any promise");
    }

    #[test]
    fn test_receipts_about_a_client_that_left_still_count() {
        let mut r = Registry::new(4);
        r.register(7, &Bitfield::new(4), 0);
        r.forget(0, Some(7), &Bitfield::new(4), &[]);
        assert!(
            r.knows(7),
            "its receivers report its last round after it left"
        );
        assert!(!r.is_registered(7), "and nobody is inferred for it");
        assert!(!r.knows(8), "a made-up id is still dropped");
    }

    #[test]
    fn test_a_promise_is_kept_by_two_other_clients() {
        let mut r = Registry::new(4);
        for id in 1..=4 {
            r.register(id, &Bitfield::new(4), 0);
        }
        assert!(r.send_copy(0, 0));
        assert_eq!(
            r.announced(0, 0),
            None,
            "its own announcement keeps nothing"
        );
        // One partner's word is not enough: a pair of identities would vouch for each other.
        assert_eq!(r.announced(1, 0), None);
        assert_eq!(r.announced(2, 0), Some(0), "a second client keeps it");
        assert_eq!(r.announced(3, 0), None, "kept once");
    }

    #[test]
    fn test_a_promise_asks_no_more_announcements_than_there_are_downloaders() {
        let mut r = Registry::new(4);
        for id in 1..=3 {
            r.register(id, &Bitfield::new(4), 0);
        }
        assert_eq!(r.promise_witnesses(), 2);
        // Client 3 completes (from its peers): only client 2 is left to confirm the piece.
        r.completed();
        assert_eq!(r.promise_witnesses(), 1);
        assert_eq!(r.credit_witnesses(), 2, "a seed may have been a receiver");
        assert!(r.send_copy(0, 0));
        assert_eq!(r.announced(1, 0), Some(0));
        // Client 2 completes too: nobody is left to pass a piece to.
        r.completed();
        assert!(!r.send_copy(0, 1), "every other client holds the file");
        let mut full = Bitfield::new(4);
        (0..4).for_each(|i| _ = full.set(i));
        r.forget(0, Some(1), &Bitfield::new(4), &[]);
        r.forget(1, Some(2), &full, &[]);
        assert_eq!(r.promise_witnesses(), 0);
        assert_eq!(r.credit_witnesses(), 0, "client 3 is alone");
    }

    #[test]
    fn test_takers_are_clients_that_announced_a_piece_lately() {
        let t0 = Instant::now();
        let mut r = Registry::new(8);
        for id in 1..=100 {
            // Registered identities that never announce a piece take nothing.
            r.register(id, &Bitfield::new(8), 0);
        }
        assert!(!r.another_taker(0, t0));
        r.note_taker(0, t0);
        assert!(!r.another_taker(0, t0), "its own HAVEs do not count");
        r.note_taker(5, t0);
        r.note_taker(0, t0);
        r.note_taker(0, t0);
        assert!(r.another_taker(0, t0 + TAKER_WINDOW), "within the window");
        assert!(r.another_taker(5, t0), "and for the other one");
        let later = t0 + TAKER_WINDOW + Duration::from_millis(1);
        assert!(!r.another_taker(0, later), "a taker that went quiet lapses");
        r.forget(5, None, &Bitfield::new(8), &[]);
        assert!(!r.another_taker(0, t0), "and one that left");
    }
}
