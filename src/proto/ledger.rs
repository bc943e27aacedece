//! Who gave what to whom, for the promise mechanism (docs/PROTOCOL.md §5.6).
//!
//! Each client keeps cumulative per-peer counters and reports them to the origin in RECEIPT
//! frames. The origin credits an upload from U to R only as far as both agree: the least of
//! what R says it received from U and what U says it sent to R. A client cannot raise its own
//! credit without the receiver confirming it, and an honest receiver's report is all an
//! honest uploader needs. A receiver that confirms less than half of what it announced
//! having from peers has its uploaders' words stand in for its own (`infer`), for their
//! credit but not for what witnesses it.

use std::collections::HashMap;

use crate::wire::ReceiptEntry;

/// The liar's claim: this many bytes sent per byte received, plus a flat amount (test-only
/// behaviour, to show that claims alone earn nothing).
const LIAR_FACTOR: u64 = 2;
const LIAR_EXTRA: u64 = 4 << 20;
/// Round ends by which a client's announcements must be older than the receipts that are
/// to account for them: it reports once a round (its uploaders too), and a RECEIPT sent
/// just before a departure or a long stall may be a round late.
const EVIDENCE_LAG_ROUNDS: usize = 3;
/// A client whose receipts, as its uploaders confirm them, account for less than
/// 1/`WITHHOLDS_BELOW` of what its announcements show it took from peers withholds
/// receipts (`Ledger::infer`). With no threshold, liars claiming 4 MiB to each of their
/// uploaders lived on honest receivers' last-round shortfalls (README, rule 28).
const WITHHOLDS_BELOW: u64 = 2;

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    received: u64,
    sent: u64,
    dirty: bool,
}

/// What the two ends of one upload said about it, and what the origin inferred the
/// receiver got from the sender when the receiver withheld its receipts (`Ledger::infer`).
#[derive(Debug, Clone, Copy, Default)]
struct Pair {
    receiver_says: u64,
    sender_says: u64,
    inferred: u64,
}

impl Pair {
    /// The upload as both ends' own words confirm it.
    fn attested(&self) -> u64 {
        self.receiver_says.min(self.sender_says)
    }

    /// The upload as credited: the receiver's word, or what was inferred in its place.
    fn confirmed(&self) -> u64 {
        self.receiver_says.max(self.inferred).min(self.sender_says)
    }

    /// What the sender says beyond what is credited.
    fn unconfirmed(&self) -> u64 {
        self.sender_says - self.confirmed()
    }
}

/// Origin: what one client gave other clients.
#[derive(Debug, Clone, Copy, Default)]
struct Given {
    /// Its uploads as credited (`Pair::confirmed`, inferred parts included): its
    /// contribution.
    credit: u64,
    /// The part of its credit its receivers' own words confirm (`Pair::attested`), and its
    /// two receivers that attest most: what witnesses it.
    attested: u64,
    top: TopTwo,
}

/// Origin: what one client took from other clients, as its announcements show it and as
/// the receipts attest and credit it.
#[derive(Debug, Clone, Copy, Default)]
struct Taken {
    /// Bytes of the pieces it announced that the origin had not sent it and another client
    /// held.
    announced: u64,
    /// `announced` at the last `EVIDENCE_LAG_ROUNDS` round ends, newest first.
    past: [u64; EVIDENCE_LAG_ROUNDS],
    /// The sums of `Pair::attested`, `Pair::confirmed` and `Pair::unconfirmed` over its
    /// senders.
    attested: u64,
    confirmed: u64,
    unconfirmed: u64,
    /// Its two senders whose uploads to it both ends attest most (`Ledger::infer`).
    top_senders: TopTwo,
}

impl Taken {
    /// A round ends: returns `announced` as it stood `EVIDENCE_LAG_ROUNDS` round ends ago.
    fn roll(&mut self) -> u64 {
        let due = self.past[EVIDENCE_LAG_ROUNDS - 1];
        self.past.rotate_right(1);
        self.past[0] = self.announced;
        due
    }
}

#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// Client: counters per peer node id.
    mine: HashMap<u64, Counts>,
    /// Origin: (uploader, receiver) → reports.
    pairs: HashMap<(u64, u64), Pair>,
    /// Origin: per client, what it gave and what it took.
    given: HashMap<u64, Given>,
    taken: HashMap<u64, Taken>,
    /// Origin: per client, the clients with some credit that say they sent it something
    /// (their figures are in `pairs`): what it took, in words it cannot withhold.
    claimants: HashMap<u64, Vec<u64>>,
    /// Origin: per client with no credit yet, the clients it says it sent something. Its
    /// words count for nothing until it has credit (`taken` counts senders with witnessed
    /// credit), so they join `claimants` only then: identities that never upload and
    /// claim to have sent to every client would otherwise lengthen what `taken` walks
    /// each round.
    unconfirmed_claims: HashMap<u64, Vec<u64>>,
    /// Origin: per client, every client that says it sent it something, credit or not
    /// (walked each round for each client that withholds its receipts).
    senders: HashMap<u64, Vec<u64>>,
}

/// The largest of a set of per-client figures (and whose), and the second largest: one
/// client's confirmed upload to each receiver, or what each sender says it sent one
/// client. Figures only grow, which is what keeps this exact.
#[derive(Debug, Clone, Copy, Default)]
struct TopTwo {
    first: u64,
    first_id: u64,
    second: u64,
}

impl TopTwo {
    /// Client `id`'s figure grew to `bytes` (from 0 the first time).
    fn update(&mut self, id: u64, bytes: u64) {
        if id == self.first_id {
            self.first = bytes;
        } else if bytes > self.first {
            self.second = self.first;
            self.first = bytes;
            self.first_id = id;
        } else {
            self.second = self.second.max(bytes);
        }
    }

    /// The part of `sum` that `witnesses` clients (at most 2) vouch for: with two, no
    /// client counts for more than the second largest figure; with fewer, all of it.
    fn witnessed(&self, sum: u64, witnesses: usize) -> u64 {
        if witnesses < 2 {
            sum
        } else {
            sum - (self.first - self.second)
        }
    }
}

impl Ledger {
    pub(super) fn record_received(&mut self, peer: u64, bytes: u64) {
        let c = self.mine.entry(peer).or_default();
        c.received += bytes;
        c.dirty = true;
    }

    pub(super) fn record_sent(&mut self, peer: u64, bytes: u64) {
        let c = self.mine.entry(peer).or_default();
        c.sent += bytes;
        c.dirty = true;
    }

    /// Colluder: claim that at least `bytes` went each way between us and `peer`.
    pub(super) fn vouch(&mut self, peer: u64, bytes: u64) {
        let c = self.mine.entry(peer).or_default();
        if c.received < bytes || c.sent < bytes {
            c.received = c.received.max(bytes);
            c.sent = c.sent.max(bytes);
            c.dirty = true;
        }
    }

    /// Entries changed since the last call; `lie` inflates the sent counts and denies
    /// having received anything (either lie serves a cheat: credit it did not earn, and
    /// neither what it took nor its uploaders' credit on record).
    pub(super) fn take_receipt(&mut self, lie: bool) -> Vec<ReceiptEntry> {
        let mut out = Vec::new();
        for (&node_id, c) in self.mine.iter_mut() {
            if !c.dirty && !lie {
                continue;
            }
            c.dirty = false;
            let sent = if lie {
                c.sent.max(c.received * LIAR_FACTOR + LIAR_EXTRA)
            } else {
                c.sent
            };
            out.push(ReceiptEntry {
                node_id,
                received: if lie { 0 } else { c.received },
                sent,
            });
        }
        out.sort_by_key(|e| e.node_id);
        out
    }

    /// Origin: a receipt from client `reporter` about the registered clients for which
    /// `known` holds (entries about others are dropped: made-up ids would grow the ledger
    /// without bound). No client can verify more than `file_len` bytes from one peer, so
    /// larger figures are cut to it.
    pub(super) fn handle_receipt(
        &mut self,
        reporter: u64,
        entries: &[ReceiptEntry],
        file_len: u64,
        known: impl Fn(u64) -> bool,
    ) {
        for e in entries {
            if e.node_id == reporter || !known(e.node_id) {
                continue;
            }
            let received = e.received.min(file_len);
            let sent = e.sent.min(file_len);
            // What the reporter received from e.node_id: that upload's receiver side.
            self.update((e.node_id, reporter), |p| {
                p.receiver_says = p.receiver_says.max(received)
            });
            // What the reporter sent to e.node_id: its own upload's sender side.
            self.update((reporter, e.node_id), |p| {
                p.sender_says = p.sender_says.max(sent)
            });
        }
    }

    /// Counters only grow, so a report lower than a previous one is ignored (`max` above).
    fn update(&mut self, key: (u64, u64), f: impl FnOnce(&mut Pair)) {
        let p = self.pairs.entry(key).or_default();
        let (before, attested_before, said_before) = (p.confirmed(), p.attested(), p.sender_says);
        let unconfirmed_before = p.unconfirmed();
        f(p);
        let (first_claim, gained, attested) = (
            said_before == 0 && p.sender_says > 0,
            p.confirmed() - before,
            p.attested() - attested_before,
        );
        let (now_attested, now_unconfirmed) = (p.attested(), p.unconfirmed());
        let t = self.taken.entry(key.1).or_default();
        t.unconfirmed =
            (t.unconfirmed.saturating_add(now_unconfirmed)).saturating_sub(unconfirmed_before);
        t.confirmed = t.confirmed.saturating_add(gained);
        if attested > 0 {
            t.attested = t.attested.saturating_add(attested);
            t.top_senders.update(key.0, now_attested);
        }
        if first_claim {
            self.senders.entry(key.1).or_default().push(key.0);
            if self.credit(key.0) > 0 {
                self.claimants.entry(key.1).or_default().push(key.0);
            } else {
                self.unconfirmed_claims
                    .entry(key.0)
                    .or_default()
                    .push(key.1);
            }
        }
        let g = self.given.entry(key.0).or_default();
        if gained > 0 {
            if g.credit == 0 {
                for receiver in self.unconfirmed_claims.remove(&key.0).unwrap_or_default() {
                    self.claimants.entry(receiver).or_default().push(key.0);
                }
            }
            g.credit = g.credit.saturating_add(gained);
        }
        if attested > 0 {
            g.attested = g.attested.saturating_add(attested);
            g.top.update(key.1, now_attested);
        }
    }

    /// Origin: `node` announced a piece of `bytes` that the origin had not sent it, so some
    /// peer did.
    pub(super) fn note_peer_piece(&mut self, node: u64, bytes: u64) {
        let t = self.taken.entry(node).or_default();
        t.announced = t.announced.saturating_add(bytes);
    }

    /// Origin, at each round's end: a client `present` (registered) that withholds its
    /// receipts (`withholds`: a free rider sends none; a liar denies what it got) would
    /// leave its uploaders without their credit. What its announcements show beyond what
    /// is credited, if a piece or more (`min_short`), is inferred received from the
    /// clients that say they sent it more than is credited, in proportion to what each
    /// says beyond that (`split`). Inferred bytes count for credit, not for what witnesses
    /// it (`top`) nor for what the receiver took: a claim to a withholder proves nothing
    /// about the claimant, and anyone may make one.
    pub(super) fn infer(&mut self, present: impl Fn(u64) -> bool, min_short: u64) {
        let dues: Vec<(u64, u64)> = self
            .taken
            .iter_mut()
            .map(|(&receiver, t)| (receiver, t.roll()))
            .collect();
        let mut grants = Vec::new();
        for (receiver, due) in dues {
            if present(receiver) && self.withholds(receiver, due) {
                grants.extend(self.grants(receiver, due, min_short));
            }
        }
        // The map's order differs from run to run; credit must not.
        grants.sort_unstable();
        for (sender, receiver, received) in grants {
            self.update((sender, receiver), |p| {
                p.inferred = p.inferred.max(received)
            });
        }
    }

    /// Whether `receiver`'s receipts, as its uploaders confirm them, account for less than
    /// half (`WITHHOLDS_BELOW`) of `due`, what it had announced from peers
    /// `EVIDENCE_LAG_ROUNDS` round ends ago. The uploader that confirms most counts in
    /// full only if its own uploads are witnessed, else for no more than the second: a
    /// helper identity attesting for a withholder would end its withholding.
    fn withholds(&self, receiver: u64, due: u64) -> bool {
        let t = &self.taken[&receiver];
        let witnessed = if self.trusted_credit(t.top_senders.first_id, 2) > 0 {
            t.attested
        } else {
            t.top_senders.witnessed(t.attested, 2)
        };
        witnessed.saturating_mul(WITHHOLDS_BELOW) < due
    }

    /// (sender, `receiver`, inferred figure) for each claimant's share of what `due`
    /// shows beyond what is credited.
    fn grants(&self, receiver: u64, due: u64, min_short: u64) -> Vec<(u64, u64, u64)> {
        let t = &self.taken[&receiver];
        let short = due.saturating_sub(t.confirmed);
        if short < min_short.max(1) || t.unconfirmed == 0 {
            return Vec::new();
        }
        let pair = |s: u64| self.pairs.get(&(s, receiver)).copied().unwrap_or_default();
        let claims: Vec<(u64, u64)> = self
            .senders
            .get(&receiver)
            .into_iter()
            .flatten()
            .map(|&s| (s, pair(s).unconfirmed()))
            .collect();
        split(short, &claims)
            .into_iter()
            .map(|(sender, grant)| (sender, receiver, pair(sender).confirmed() + grant))
            .collect()
    }

    /// Origin: confirmed bytes `node` uploaded to other clients.
    pub(super) fn credit(&self, node: u64) -> u64 {
        self.given.get(&node).map_or(0, |g| g.credit)
    }

    /// Origin: bytes `node` received from other clients: what it confirmed itself, or, if
    /// that is more, what the clients with credit for which `vouched` holds say they sent
    /// it, with no such sender counted for more than the second who says most once
    /// `witnesses` (at most 2) can be had, as for credit. A receiver's own word can only
    /// understate what it took (a free rider that sends no RECEIPT confirmed nothing, and
    /// took half the file from its peers unnamed in the simulator), so its senders' count
    /// too; but anyone can send a RECEIPT about anyone, so only senders with witnessed credit
    /// (`vouched`): two identities that never uploaded could otherwise have any client
    /// named with one RECEIPT each.
    pub(super) fn taken(&self, node: u64, witnesses: usize, vouched: impl Fn(u64) -> bool) -> u64 {
        let confirmed = self.taken.get(&node).map_or(0, |t| t.attested);
        let (mut sum, mut top) = (0u64, TopTwo::default());
        for &sender in self.claimants.get(&node).into_iter().flatten() {
            if !vouched(sender) {
                continue;
            }
            let said = self.pairs.get(&(sender, node)).map_or(0, |p| p.sender_says);
            sum = sum.saturating_add(said);
            top.update(sender, said);
        }
        confirmed.max(top.witnessed(sum, witnesses))
    }

    /// Origin: the part of `node`'s credit that `witnesses` receivers (at most 2) confirm:
    /// with two, no receiver counts for more than the second largest does. A partner
    /// confirms anything, so a pair of identities that vouch for each other earns nothing;
    /// an honest uploader to several peers loses only what its largest receiver got beyond
    /// the next one (all but its largest receiver's part cost small swarms up to 8%).
    /// Inferred credit counts only when nobody else could witness: beside a lone liar that
    /// denies every receipt, an honest uploader was otherwise in breach and named.
    pub(super) fn trusted_credit(&self, node: u64, witnesses: usize) -> u64 {
        if witnesses < 2 {
            return self.credit(node);
        }
        let g = self.given.get(&node).copied().unwrap_or_default();
        g.top.witnessed(g.attested, witnesses)
    }
}

/// `short` bytes shared among `claims` (sender, bytes it says beyond its credit) in
/// proportion to them, none given more than its claim; all of them if `short` covers them.
/// Returns the non-zero grants. Rounding down leaves at most a byte per claim unshared.
fn split(short: u64, claims: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let claimed: u128 = claims.iter().map(|&(_, c)| c as u128).sum();
    claims
        .iter()
        .map(|&(sender, claim)| {
            let grant = if short as u128 >= claimed {
                claim
            } else {
                (short as u128 * claim as u128 / claimed) as u64
            };
            (sender, grant)
        })
        .filter(|&(_, grant)| grant > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file length far above any counter these tests use.
    const FILE: u64 = 1 << 40;

    #[test]
    fn test_entries_about_unknown_clients_are_dropped() {
        let mut l = Ledger::default();
        let made_up: Vec<ReceiptEntry> = (1000..1256).map(|id| entry(id, 5, 5)).collect();
        l.handle_receipt(1, &made_up, FILE, |id| id < 1000);
        assert!(l.pairs.is_empty() && l.given.is_empty());
    }

    #[test]
    fn test_colluders_cannot_overflow_credit() {
        let mut l = Ledger::default();
        let file = 64 << 20;
        // Three identities vouch for each other with the largest counters there are.
        for (a, b) in [(1, 2), (2, 3), (3, 1), (2, 1), (3, 2), (1, 3)] {
            l.handle_receipt(a, &[entry(b, u64::MAX, u64::MAX)], file, |_| true);
        }
        // Each pair counts at most one file: no wrap, and a bound on what lies buy.
        for id in 1..=3 {
            assert_eq!(l.credit(id), 2 * file, "client {id}");
        }
    }

    #[test]
    fn test_a_pair_vouching_for_each_other_earns_no_trusted_credit() {
        let mut l = Ledger::default();
        let file = 64 << 20;
        for (a, b) in [(1, 2), (2, 1)] {
            l.handle_receipt(a, &[entry(b, file, file)], file, |_| true);
        }
        assert_eq!(l.credit(1), file);
        assert_eq!(
            l.trusted_credit(1, 1),
            file,
            "a lone other client is witness enough"
        );
        assert_eq!(
            l.trusted_credit(1, 2),
            0,
            "with more there, one witness is not"
        );
        // An honest uploader to three receivers loses its largest receiver's part.
        for (r, bytes) in [(4, 100), (5, 300), (6, 200)] {
            l.handle_receipt(3, &[entry(r, 0, bytes)], file, |_| true);
            l.handle_receipt(r, &[entry(3, bytes, 0)], file, |_| true);
        }
        assert_eq!(l.credit(3), 600);
        assert_eq!(
            l.trusted_credit(3, 2),
            500,
            "client 5 counts for client 6's 200"
        );
        // A receiver that overtakes the largest moves the cut to itself.
        l.handle_receipt(3, &[entry(4, 0, 500)], file, |_| true);
        l.handle_receipt(4, &[entry(3, 500, 0)], file, |_| true);
        assert_eq!(l.credit(3), 1000);
        assert_eq!(
            l.trusted_credit(3, 2),
            800,
            "client 4 counts for client 5's 300"
        );
        // The largest growing further changes nothing.
        l.handle_receipt(3, &[entry(4, 0, 900)], file, |_| true);
        l.handle_receipt(4, &[entry(3, 900, 0)], file, |_| true);
        assert_eq!(l.trusted_credit(3, 2), 800);
    }

    #[test]
    fn test_taken_counts_what_both_ends_confirm_was_received() {
        let mut l = Ledger::default();
        // Client 1 says it sent 500 to client 2, which says it received 300.
        l.handle_receipt(1, &[entry(2, 0, 500)], FILE, |_| true);
        assert_eq!(
            l.taken(2, 2, |_| true),
            0,
            "an uploader's word alone frames nobody"
        );
        l.handle_receipt(2, &[entry(1, 300, 0)], FILE, |_| true);
        assert_eq!(l.taken(2, 2, |_| true), 300);
        l.handle_receipt(3, &[entry(2, 0, 100)], FILE, |_| true);
        l.handle_receipt(2, &[entry(3, 100, 0)], FILE, |_| true);
        assert_eq!(l.taken(2, 2, |_| true), 400);
        assert_eq!(l.credit(2), 0);
    }

    #[test]
    fn test_taken_counts_two_uploaders_words_when_the_receiver_is_silent() {
        let mut l = Ledger::default();
        for id in [1, 2, 3, 5] {
            give_credit(&mut l, id);
        }
        // Client 9 never reports; clients 1-3 say what they sent it.
        l.handle_receipt(1, &[entry(9, 0, 700)], FILE, |_| true);
        assert_eq!(
            l.taken(9, 2, |_| true),
            0,
            "one uploader's word frames nobody"
        );
        l.handle_receipt(2, &[entry(9, 0, 300)], FILE, |_| true);
        assert_eq!(
            l.taken(9, 2, |_| true),
            600,
            "client 1 counts for client 2's 300"
        );
        l.handle_receipt(3, &[entry(9, 0, 200)], FILE, |_| true);
        assert_eq!(l.taken(9, 2, |_| true), 800);
        // A report lower than an earlier one changes nothing; a higher one counts.
        l.handle_receipt(2, &[entry(9, 0, 100)], FILE, |_| true);
        assert_eq!(l.taken(9, 2, |_| true), 800);
        l.handle_receipt(2, &[entry(9, 0, 900)], FILE, |_| true);
        assert_eq!(
            l.taken(9, 2, |_| true),
            1600,
            "client 2 now says most; client 1's 700 is second"
        );
        // What the receiver confirms itself counts whole.
        l.handle_receipt(4, &[entry(8, 0, 500)], FILE, |_| true);
        l.handle_receipt(8, &[entry(4, 500, 0)], FILE, |_| true);
        assert_eq!(l.taken(8, 2, |_| true), 500);
        // With fewer than two possible witnesses, one sender's word is enough.
        l.handle_receipt(5, &[entry(7, 0, 300)], FILE, |_| true);
        assert_eq!(l.taken(7, 1, |_| true), 300);
        assert_eq!(l.taken(7, 2, |_| true), 0);
    }

    #[test]
    fn test_senders_without_witnessed_credit_frame_nobody() {
        let mut l = Ledger::default();
        // Clients 1 and 2 never uploaded anything; each says it sent client 9 a file.
        for sybil in [1, 2] {
            l.handle_receipt(sybil, &[entry(9, 0, FILE)], FILE, |_| true);
        }
        let vouched = |id| id == 3;
        assert_eq!(l.taken(9, 2, vouched), 0, "their words count for nothing");
        assert!(
            l.claimants.is_empty(),
            "nor are they kept where taken() looks"
        );
        // Once one has credit (client 3 confirms an upload of it), its words join.
        l.handle_receipt(1, &[entry(3, 0, 10)], FILE, |_| true);
        l.handle_receipt(3, &[entry(1, 10, 0)], FILE, |_| true);
        assert_eq!(l.claimants.get(&9), Some(&vec![1]));
        assert_eq!(
            l.taken(9, 1, |_| true),
            FILE,
            "counted as any vouched sender's"
        );
    }

    #[test]
    fn test_a_receiver_that_denies_receipts_leaves_its_uploaders_their_credit() {
        let mut l = Ledger::default();
        // Client 9 announced 1000 bytes it got from peers; clients 1 and 2 say they sent it
        // 600 each, and it says it received nothing from either.
        l.note_peer_piece(9, 1000);
        l.handle_receipt(1, &[entry(9, 0, 600)], FILE, |_| true);
        l.handle_receipt(2, &[entry(9, 0, 600)], FILE, |_| true);
        // Nor does a receipt from client 5, which says it sent nothing, cover for it.
        l.handle_receipt(
            9,
            &[entry(1, 0, 0), entry(2, 0, 0), entry(5, 1000, 0)],
            FILE,
            |_| true,
        );
        for round in 0..EVIDENCE_LAG_ROUNDS {
            l.infer(|_| true, 1);
            assert_eq!(l.credit(1), 0, "round {round}: its receipts may still come");
        }
        l.infer(|_| true, 1);
        assert_eq!(
            (l.credit(1), l.credit(2)),
            (500, 500),
            "split by their claims"
        );
        assert_eq!(
            l.trusted_credit(1, 1),
            500,
            "with one witness, all of it counts"
        );
        assert_eq!(l.trusted_credit(1, 2), 0, "inferred bytes witness nothing");
        assert_eq!(
            l.taken(9, 2, |_| false),
            0,
            "nor do they charge the receiver"
        );
        // More announced, and a third uploader claims: only the new shortfall is shared.
        l.note_peer_piece(9, 300);
        l.handle_receipt(3, &[entry(9, 0, 100)], FILE, |_| true);
        for _ in 0..=EVIDENCE_LAG_ROUNDS {
            l.infer(|_| true, 1);
        }
        assert_eq!(l.credit(1) + l.credit(2) + l.credit(3), 1300);
        assert!(l.credit(3) <= 100, "nobody gets more than it claims");
    }

    #[test]
    fn test_one_helper_attesting_for_a_withholder_does_not_end_it() {
        let mut l = Ledger::default();
        // Client 9 announced 1000 bytes from peers; client 1 uploaded them and says so;
        // identity 5 and client 9 attest to each other that 5 sent 9 half of it.
        l.note_peer_piece(9, 1000);
        l.handle_receipt(1, &[entry(9, 0, 1000)], FILE, |_| true);
        l.handle_receipt(5, &[entry(9, 0, 500)], FILE, |_| true);
        l.handle_receipt(9, &[entry(1, 0, 0), entry(5, 500, 0)], FILE, |_| true);
        for _ in 0..=EVIDENCE_LAG_ROUNDS {
            l.infer(|_| true, 1);
        }
        assert_eq!(
            l.credit(1),
            500,
            "what the helper does not cover goes to client 1"
        );
        assert_eq!(l.credit(5), 500);
    }

    #[test]
    fn test_claims_to_withholders_buy_no_witnessed_credit() {
        let mut l = Ledger::default();
        // Free riders 8 and 9 announced 1000 bytes each from client 1, which says so;
        // identity 7 says it sent each of them 4 MiB.
        for rider in [8, 9] {
            l.note_peer_piece(rider, 1000);
            l.handle_receipt(1, &[entry(rider, 0, 1000)], FILE, |_| true);
            l.handle_receipt(7, &[entry(rider, 0, 4 << 20)], FILE, |_| true);
        }
        for _ in 0..=EVIDENCE_LAG_ROUNDS {
            l.infer(|_| true, 1);
        }
        assert!(l.credit(7) > 0, "its claims dwarf client 1's and take most");
        assert_eq!(
            l.trusted_credit(7, 2),
            0,
            "but two withholders are no witnesses"
        );
        assert_eq!(l.trusted_credit(1, 2), 0);
    }

    #[test]
    fn test_a_shortfall_under_a_piece_is_left() {
        let mut l = Ledger::default();
        l.note_peer_piece(9, 1001);
        for s in [1, 2, 3] {
            l.handle_receipt(s, &[entry(9, 0, 1000)], FILE, |_| true);
        }
        for _ in 0..=EVIDENCE_LAG_ROUNDS {
            l.infer(|_| true, 100);
        }
        // 333 each; the bytes that rounding leaves are not shared again round after round.
        assert_eq!(l.credit(1) + l.credit(2) + l.credit(3), 999);
        assert_eq!(split(2, &[(1, 1000), (2, 1000), (3, 1000)]), vec![]);
        assert_eq!(split(5000, &[(1, 10), (2, 0)]), vec![(1, 10)]);
    }

    #[test]
    fn test_claims_about_a_receiver_that_reports_earn_nothing() {
        let mut l = Ledger::default();
        // Client 9 reports 600 of the 1000 it announced, 300 from each of clients 1 and 2
        // (its last round is on the way); client 3 says it sent it 4 MiB.
        l.note_peer_piece(9, 1000);
        for uploader in [1, 2] {
            l.handle_receipt(uploader, &[entry(9, 0, 300)], FILE, |_| true);
            l.handle_receipt(9, &[entry(uploader, 300, 0)], FILE, |_| true);
        }
        l.handle_receipt(3, &[entry(9, 0, 4 << 20)], FILE, |_| true);
        // Client 8 reported nothing of its 1000 and has left: it can report no more.
        l.note_peer_piece(8, 1000);
        l.handle_receipt(3, &[entry(8, 0, 4 << 20)], FILE, |_| true);
        for _ in 0..=EVIDENCE_LAG_ROUNDS {
            l.infer(|id| id != 8, 1);
        }
        assert_eq!(l.credit(3), 0);
        assert_eq!(l.credit(1), 300);
    }

    /// `id` uploaded a byte to client 1000, and both say so.
    fn give_credit(l: &mut Ledger, id: u64) {
        l.handle_receipt(id, &[entry(1000, 0, 1)], FILE, |_| true);
        l.handle_receipt(1000, &[entry(id, 1, 0)], FILE, |_| true);
    }

    fn entry(node_id: u64, received: u64, sent: u64) -> ReceiptEntry {
        ReceiptEntry {
            node_id,
            received,
            sent,
        }
    }

    #[test]
    fn test_credit_needs_both_sides() {
        let mut l = Ledger::default();
        // 1 says it sent 100 to 2; 2 has not reported yet.
        l.handle_receipt(1, &[entry(2, 0, 100)], FILE, |_| true);
        assert_eq!(l.credit(1), 0);
        // 2 confirms 80 of it.
        l.handle_receipt(2, &[entry(1, 80, 0)], FILE, |_| true);
        assert_eq!(l.credit(1), 80);
        l.handle_receipt(1, &[entry(2, 0, 150)], FILE, |_| true);
        l.handle_receipt(2, &[entry(1, 150, 0)], FILE, |_| true);
        assert_eq!(l.credit(1), 150);
        assert_eq!(l.credit(2), 0);
    }

    #[test]
    fn test_liar_claims_earn_nothing() {
        let mut l = Ledger::default();
        let mut liar = Ledger::default();
        liar.record_received(2, 1000);
        let r = liar.take_receipt(true);
        assert!(r[0].sent > 1000);
        assert_eq!(r[0].received, 0, "and it denies what it took");
        l.handle_receipt(9, &r, FILE, |_| true);
        l.handle_receipt(2, &[entry(9, 0, 1000)], FILE, |_| true);
        assert_eq!(l.credit(9), 0);
        assert_eq!(l.credit(2), 0, "the liar confirms nothing it received");
        // Client 2's claim counts once it has credit from another receiver.
        give_credit(&mut l, 2);
        give_credit(&mut l, 3);
        assert_eq!(
            l.taken(9, 2, |_| true),
            0,
            "one uploader's word is not enough"
        );
        l.handle_receipt(3, &[entry(9, 0, 400)], FILE, |_| true);
        assert_eq!(l.taken(9, 2, |_| true), 800, "two uploaders' words are");
    }

    #[test]
    fn test_counters_never_go_back() {
        let mut l = Ledger::default();
        l.handle_receipt(1, &[entry(2, 0, 100)], FILE, |_| true);
        l.handle_receipt(2, &[entry(1, 100, 0)], FILE, |_| true);
        l.handle_receipt(2, &[entry(1, 10, 0)], FILE, |_| true);
        assert_eq!(l.credit(1), 100);
    }

    #[test]
    fn test_receipt_lists_changes_only() {
        let mut l = Ledger::default();
        l.record_sent(5, 10);
        assert_eq!(l.take_receipt(false).len(), 1);
        assert!(l.take_receipt(false).is_empty());
        l.record_received(6, 1);
        let r = l.take_receipt(false);
        assert_eq!(r, vec![entry(6, 1, 0)]);
    }
}
