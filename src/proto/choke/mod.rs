//! The choking table and the incentive policies that read it (docs/PROTOCOL.md §5.3).
//!
//! One row per connection slot holds what the policies read (rates, age, interest, the
//! origin's promise and credit records) and what they decide (weight and cap). Every `ROUND`
//! the node closes the round's counters and asks the policy for new weights: weight 0 means
//! choked; otherwise the driver shares the node's upload among backlogged connections in
//! proportion to weight (deficit round robin), and a connection with a cap never gets more
//! than its cap. Each policy lives in its own file:
//!
//! - [`all`]: every interested peer, equal weights (no incentives).
//! - [`bittorrent`]: the reference choker (BEP 3, libtorrent `choker.cpp`).
//! - [`tft`]: tit-for-tat with promises, for clients and for the origin.

mod all;
mod bittorrent;
mod meter;
mod tft;

use std::time::Duration;

use super::rng::Rng;
use meter::Meter;

/// Length of a choking round. BitTorrent and PropShare use 10 s for transfers of minutes to
/// hours; tfttp's LAN transfers take seconds, so rounds are 1 s and the rates behind them
/// are smoothed over the node's 100 ms ticks.
pub(super) const ROUND: Duration = Duration::from_secs(1);
/// A connection younger than this many rounds is a newcomer: it has had no chance to give.
pub(super) const NEWCOMER_ROUNDS: u32 = 3;
/// A peer we wait on (requests outstanding) that sends nothing for this many rounds snubs
/// us (BitTorrent's anti-snubbing, 60 s there).
pub(super) const SNUB_ROUNDS: u32 = 3;
/// Weight of a newest round in the origin's smoothed contribution rates.
const CONTRIB_ALPHA: f64 = 0.5;

/// Which incentive policy a node runs (`--policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `all`: every interested peer, equal weights; no incentives, the baseline.
    UnchokeAll,
    /// `bittorrent`: top 4 by rate last round plus one optimistic unchoke (BEP 3).
    BitTorrent,
    /// `tft`: tit-for-tat with promises, PropShare-style shares (the default).
    Tft,
}

impl Policy {
    /// The name `parse` takes.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Tft => "tft",
            Policy::BitTorrent => "bittorrent",
            Policy::UnchokeAll => "all",
        }
    }

    /// The policy named `s`: `tft`, `bittorrent` (also `baseline`) or `all`.
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "tft" => Some(Policy::Tft),
            "bittorrent" | "baseline" => Some(Policy::BitTorrent),
            "all" => Some(Policy::UnchokeAll),
            _ => None,
        }
    }
}

/// What the policy needs to know about the deciding node.
#[derive(Debug, Clone, Copy)]
pub(super) struct Me {
    pub is_origin: bool,
    /// Has every piece (a seeding client).
    pub complete: bool,
    /// Refuses to upload (test behaviour for measuring the policy).
    pub free_rider: bool,
    /// Upload capacity in bytes/s, if known (`--up-rate`), else estimated.
    pub capacity: Option<f64>,
    pub piece_size: u32,
    /// Origin: most pieces it has on their way at once (docs/PROTOCOL.md §5.2): while
    /// more peers take shares, the order of its send slots carries the weights.
    pub send_slots: usize,
}

/// One connection's facts and the policy's decision for it.
#[derive(Debug, Clone)]
struct Row {
    active: bool,
    /// The remote is the origin: it never downloads from us.
    to_origin: bool,
    up: Meter,
    down: Meter,
    /// Payload bytes received in the current round and in the last complete one.
    round_down: u64,
    last_round_down: u64,
    /// Rounds since the connection opened.
    age: u32,
    /// The peer wants something we have.
    interested: bool,
    /// Pieces the peer still lacks (set by the node before each round): a seed gives most
    /// to whoever is furthest from done.
    missing: u32,
    /// We have requests outstanding at the peer (set by the node before each round).
    waiting_on: bool,
    /// As of the round's end, it had requests to us queued or a piece on its way from us.
    asking: bool,
    /// Consecutive rounds we waited on the peer and got nothing.
    starved_rounds: u32,
    snubbed: bool,
    choking: bool,
    /// Relative upload weight (0 when choked).
    weight: f64,
    /// Absolute upload cap in bytes/s, if any.
    cap: Option<f64>,
    /// Round in which the peer last held the optimistic slot.
    optimistic_at: Option<u64>,
    /// Origin: confirmed bytes this client uploaded to other clients (receipts).
    credit: u64,
    /// Origin: the part of `credit` that two receivers vouch for (§5.6): what a partner's
    /// receipts alone cannot raise.
    witnessed: u64,
    last_credit: u64,
    /// Origin: smoothed confirmed upload rate of the client, bytes per second.
    contribution: f64,
    /// Origin: fresh pieces given to the client, and how many of those it passed on.
    promised: u32,
    kept: u32,
    /// Origin: another client announced a piece lately (set by the node before each
    /// round): only then could this one have passed its fresh pieces on.
    others_taking: bool,
    /// Takes without giving (§4.9): at the origin, a client that broke its promise or took
    /// much from its peers with no witnessed credit (kept until it has some); at a client,
    /// a peer the origin named so. Such a peer is nobody's newcomer or optimistic peer.
    named: bool,
    /// Origin: it took a fifth of the file or more from other clients (`Ledger::taken`).
    /// Only worked out for a client without witnessed credit, the only one it can name:
    /// false for the others whatever they took.
    took_much: bool,
}

impl Default for Row {
    fn default() -> Row {
        Row {
            active: false,
            to_origin: false,
            up: Meter::default(),
            down: Meter::default(),
            round_down: 0,
            last_round_down: 0,
            age: 0,
            interested: false,
            missing: 0,
            waiting_on: false,
            asking: true,
            starved_rounds: 0,
            snubbed: false,
            choking: true,
            weight: 0.0,
            cap: None,
            optimistic_at: None,
            credit: 0,
            witnessed: 0,
            last_credit: 0,
            contribution: 0.0,
            promised: 0,
            kept: 0,
            others_taking: true,
            named: false,
            took_much: false,
        }
    }
}

/// Where a policy's optimistic turn stands, and what it may draw from.
struct Turn<'a> {
    round_no: u64,
    /// A new round: the optimistic peer may rotate.
    new_round: bool,
    optimistic: &'a mut Option<usize>,
    rng: &'a mut Rng,
    /// Peak total upload rate seen, a capacity estimate when none is configured.
    peak_up: f64,
}

/// The table: a row per slot, and the state that spans rows.
#[derive(Debug, Default, Clone)]
pub(super) struct ChokeTable {
    rows: Vec<Row>,
    round_no: u64,
    optimistic: Option<usize>,
    /// Peak total upload rate seen, a capacity estimate when none is configured.
    peak_up: f64,
    /// The largest weight after the last decision.
    max_weight: f64,
}

impl ChokeTable {
    /// Makes room for `slot` and resets its row for a new connection.
    pub(super) fn open(&mut self, slot: usize, to_origin: bool) {
        if self.rows.len() <= slot {
            self.rows.resize(slot + 1, Row::default());
        }
        self.rows[slot] = Row {
            active: true,
            to_origin,
            ..Row::default()
        };
        if self.optimistic == Some(slot) {
            self.optimistic = None;
        }
    }

    /// The peer on `slot` has been known for `rounds` rounds over all its connections: a
    /// new connection starts that old (the origin's view of a reconnecting client).
    pub(super) fn carry_age(&mut self, slot: usize, rounds: u32) {
        let row = &mut self.rows[slot];
        row.age = row.age.max(rounds);
    }

    /// Rounds closed so far.
    pub(super) fn round_no(&self) -> u64 {
        self.round_no
    }

    pub(super) fn close(&mut self, slot: usize) {
        let row = &mut self.rows[slot];
        row.active = false;
        row.weight = 0.0;
        if self.optimistic == Some(slot) {
            self.optimistic = None;
        }
    }

    pub(super) fn record_up(&mut self, slot: usize, bytes: u64) {
        self.rows[slot].up.record(bytes);
    }

    pub(super) fn record_down(&mut self, slot: usize, bytes: u64) {
        let row = &mut self.rows[slot];
        row.down.record(bytes);
        row.round_down += bytes;
    }

    // ----- facts the node sets -----

    pub(super) fn set_interested(&mut self, slot: usize, yes: bool) {
        self.rows[slot].interested = yes;
    }

    /// The facts a round's decision reads about the peer: whether we wait on it, and how
    /// many pieces it lacks.
    pub(super) fn set_round_facts(
        &mut self,
        slot: usize,
        waiting_on: bool,
        asking: bool,
        missing: u32,
    ) {
        let row = &mut self.rows[slot];
        row.waiting_on = waiting_on;
        row.asking = asking;
        row.missing = missing;
    }

    /// Origin: the client's confirmed upload to other clients so far.
    pub(super) fn set_credit(&mut self, slot: usize, credit: u64, witnessed: u64, took: bool) {
        let row = &mut self.rows[slot];
        row.credit = credit;
        row.witnessed = witnessed;
        row.took_much = took;
    }

    /// Client: whether the origin names the peer on `slot` as taking without giving.
    /// Origin: a client named on an earlier connection stays named until it has witnessed
    /// credit, whichever the reason it was named.
    pub(super) fn set_named(&mut self, slot: usize, named: bool) {
        self.rows[slot].named = named;
    }

    /// Origin: whether it names the client on `slot` as taking without giving.
    pub(super) fn is_named(&self, slot: usize) -> bool {
        self.rows[slot].named
    }

    /// Origin: whether a client other than `slot` takes pieces (announced one lately).
    pub(super) fn set_others_taking(&mut self, slot: usize, taking: bool) {
        self.rows[slot].others_taking = taking;
    }

    /// Origin: the client received a fresh piece (it promises to pass it on).
    pub(super) fn promise(&mut self, slot: usize) {
        self.rows[slot].promised += 1;
    }

    /// Origin: the client passed a fresh piece on.
    pub(super) fn keep_promise(&mut self, slot: usize) {
        self.rows[slot].kept += 1;
    }

    // ----- what the node and driver read -----

    /// We choke the peer (also for a slot never opened).
    pub(super) fn is_choking(&self, slot: usize) -> bool {
        self.rows.get(slot).is_none_or(|r| r.choking)
    }

    /// The peer's upload weight, 0 when choked.
    pub(super) fn weight(&self, slot: usize) -> f64 {
        self.rows.get(slot).map_or(0.0, |r| r.weight)
    }

    /// The peer's upload cap in bytes per second, if any.
    pub(super) fn cap(&self, slot: usize) -> Option<f64> {
        self.rows.get(slot).and_then(|r| r.cap)
    }

    pub(super) fn max_weight(&self) -> f64 {
        self.max_weight
    }

    /// Smoothed payload rate from the peer, bytes per second.
    pub(super) fn down_rate(&self, slot: usize) -> f64 {
        self.rows[slot].down.rate()
    }

    /// Origin: the client's confirmed upload as last set.
    #[cfg(test)]
    pub(crate) fn credit(&self, slot: usize) -> u64 {
        self.rows[slot].credit
    }

    /// Rounds the peer on `slot` has been known.
    #[cfg(test)]
    pub(crate) fn age(&self, slot: usize) -> u32 {
        self.rows[slot].age
    }

    /// Origin: fresh pieces given to the client, and how many it passed on.
    #[cfg(test)]
    pub(crate) fn promises(&self, slot: usize) -> (u32, u32) {
        (self.rows[slot].promised, self.rows[slot].kept)
    }

    fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.rows.len()).filter(|&s| self.rows[s].active)
    }

    // ----- time -----

    /// Folds the window of `dt_secs` into the rate estimates and opens a new window.
    pub(super) fn roll(&mut self, dt_secs: f64) {
        if dt_secs <= 0.0 {
            return;
        }
        let mut total_up = 0.0;
        for row in self.rows.iter_mut().filter(|r| r.active) {
            row.up.roll(dt_secs);
            row.down.roll(dt_secs);
            total_up += row.up.rate();
        }
        self.peak_up = self.peak_up.max(total_up);
    }

    /// Closes a round: per-round counters, snubbing, the origin's contribution rates.
    pub(super) fn end_round(&mut self, round_secs: f64) {
        self.round_no += 1;
        for row in self.rows.iter_mut().filter(|r| r.active) {
            row.age = row.age.saturating_add(1);
            let got = row.round_down;
            row.last_round_down = got;
            row.round_down = 0;
            if row.waiting_on && got == 0 {
                row.starved_rounds += 1;
            } else {
                row.starved_rounds = 0;
            }
            row.snubbed = row.starved_rounds >= SNUB_ROUNDS;
            let gained = row.credit.saturating_sub(row.last_credit) as f64;
            row.last_credit = row.credit;
            let rate = gained / round_secs.max(1e-3);
            row.contribution += CONTRIB_ALPHA * (rate - row.contribution);
        }
    }

    // ----- decisions -----

    /// Applies `policy` for `me`; pushes the slots whose choke state changed. Optimistic
    /// peers rotate only when `new_round`; between rounds (a peer became interested) the
    /// decision is refreshed with the same optimistic peer.
    pub(super) fn decide(
        &mut self,
        policy: Policy,
        me: Me,
        new_round: bool,
        rng: &mut Rng,
        changed: &mut Vec<usize>,
    ) {
        for row in &mut self.rows {
            row.weight = 0.0;
            row.cap = None;
        }
        if !me.free_rider {
            let cands = self.candidates();
            let mut turn = Turn {
                round_no: self.round_no,
                new_round,
                optimistic: &mut self.optimistic,
                rng,
                peak_up: self.peak_up,
            };
            let rows = &mut self.rows;
            match (policy, me.is_origin) {
                (Policy::UnchokeAll, _) => all::decide(rows, &cands),
                (Policy::BitTorrent, _) => bittorrent::decide(rows, &cands, me, &mut turn),
                (Policy::Tft, true) => tft::decide_origin(rows, &cands, me, turn.peak_up),
                (Policy::Tft, false) => tft::decide_client(rows, &cands, me, &mut turn),
            }
        }
        self.max_weight = self.rows.iter().map(|r| r.weight).fold(0.0, f64::max);
        for (s, row) in self.rows.iter_mut().enumerate() {
            let choke = !(row.active && row.weight > 0.0);
            if row.active && choke != row.choking {
                changed.push(s);
            }
            row.choking = choke;
        }
    }

    /// Peers that may be given upload: interested and not the origin.
    fn candidates(&self) -> Vec<usize> {
        self.slots()
            .filter(|&s| self.rows[s].interested && !self.rows[s].to_origin)
            .collect()
    }
}

/// An optimistic peer from `from`: newcomers three times as likely (BitTorrent mainline).
fn pick_optimistic(rows: &[Row], from: &[usize], rng: &mut Rng) -> Option<usize> {
    let ticket = |s: usize| if rows[s].age < NEWCOMER_ROUNDS { 3 } else { 1 };
    let total: u32 = from.iter().map(|&s| ticket(s)).sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.below(total);
    for &s in from {
        let k = ticket(s);
        if r < k {
            return Some(s);
        }
        r -= k;
    }
    None
}

#[cfg(test)]
mod tests;
