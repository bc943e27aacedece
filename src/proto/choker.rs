//! The choking table and the incentive policies that read it (docs/PROTOCOL.md §5.3).
//!
//! Per-connection counters, rates, choke state, upload weights and caps live in flat arrays
//! indexed by slot. Every `ROUND` the node closes the round's counters and asks the policy
//! for new weights: weight 0 means choked; otherwise the driver shares the node's upload among
//! backlogged connections in proportion to weight (deficit round robin), and a connection with
//! a cap never gets more than its cap.
//!
//! Policies:
//! - `UnchokeAll`: every interested peer, equal weights (no incentives).
//! - `BitTorrent`: the reference choker (BEP 3, libtorrent `choker.cpp`): the 4 interested
//!   peers that gave us most (or, when complete, took most) last round, plus one optimistic
//!   unchoke rotated every 3 rounds with newcomers preferred; equal shares.
//! - `Tft`: tit-for-tat with promises. Clients split their upload in proportion to what
//!   each peer gave them last round (PropShare, Levin et al. 2008), keep `OPTIMISTIC_SHARE`
//!   for newcomers and one optimistic peer, and stop giving to peers that snub them. The
//!   origin weights each client by its confirmed upload to other clients, cut when it breaks
//!   its promise to pass fresh pieces on, and stays work-conserving.

use std::time::Duration;

use super::rng::Rng;

/// Length of a choking round. BitTorrent and PropShare use 10 s for transfers of minutes to
/// hours; tfttp's LAN transfers take seconds, so rounds are 1 s and the rates behind them
/// are smoothed over the node's 100 ms ticks.
pub const ROUND: Duration = Duration::from_secs(1);
/// Weight of the newest tick in the rate estimates: a time constant of about 0.5 s at
/// 100 ms ticks, fast enough to size request pipelines as links ramp up.
const RATE_ALPHA: f64 = 0.2;
/// BitTorrent baseline: regular unchoke slots (BEP 3 and libtorrent's default of 4).
pub const BT_SLOTS: usize = 4;
/// BitTorrent baseline: the optimistic unchoke moves every 3 rounds (30 s in BitTorrent).
pub const BT_OPTIMISTIC_ROUNDS: u64 = 3;
/// Tft: share of upload kept for newcomers and the optimistic peer. PropShare's evaluation
/// used 20%; 10% keeps a free rider (who only ever gets this share) well behind.
pub const OPTIMISTIC_SHARE: f64 = 0.10;
/// A connection younger than this many rounds is a newcomer: it has had no chance to give.
pub const NEWCOMER_ROUNDS: u32 = 3;
/// Tft client: a peer stays a newcomer only until we have sent it this many pieces: enough
/// to trade with (BitTorrent needs 4 pieces before tit-for-tat starts working), not enough
/// to live on.
pub const NEWCOMER_PIECES: u64 = 4;
/// Tft origin: a newcomer gets an average client's weight for at most this many pieces.
pub const ORIGIN_NEWCOMER_PIECES: u64 = 16;
/// Tft: a peer that got an optimistic turn and gave nothing back waits this many rounds
/// before its next turn, so a free rider cannot live on optimistic turns alone
/// (BitTorrent rotates its optimistic unchoke every 30 s, here 10 rounds).
pub const OPTIMISTIC_RETRY_ROUNDS: u64 = 10;
/// A peer we wait on (requests outstanding) that sends nothing for this many rounds snubs
/// us (BitTorrent's anti-snubbing, 60 s there).
pub const SNUB_ROUNDS: u32 = 3;
/// Origin, Tft: a client holding more than this many fresh pieces it has not passed on
/// (or than it could pass on in `PROMISE_SECS` at its confirmed rate) breaks its promise.
pub const PROMISE_SLACK_PIECES: u32 = 8;
pub const PROMISE_SECS: f64 = 2.0;
/// Origin, Tft: a promise-breaker's weight is cut to this fraction.
pub const BROKEN_PROMISE_FACTOR: f64 = 0.05;
/// Origin, Tft: every client keeps at least this fraction of the mean weight, so the origin
/// never idles while anyone wants data (work conservation).
pub const ORIGIN_FLOOR: f64 = 0.01;
/// Weight of a newest round in the origin's smoothed contribution rates.
const CONTRIB_ALPHA: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    UnchokeAll,
    BitTorrent,
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
pub struct Me {
    pub is_origin: bool,
    /// Has every piece (a seeding client).
    pub complete: bool,
    /// Refuses to upload (test behaviour for measuring the policy).
    pub free_rider: bool,
    /// Upload capacity in bytes/s, if known (`--up-rate`), else estimated.
    pub capacity: Option<f64>,
    pub piece_size: u32,
}

#[derive(Debug, Default, Clone)]
pub struct ChokeTable {
    pub active: Vec<bool>,
    /// The remote is the origin: it never downloads from us.
    pub to_origin: Vec<bool>,
    /// Payload bytes in the current 100 ms window, and over the connection's life.
    pub up_window: Vec<u64>,
    pub down_window: Vec<u64>,
    pub up_total: Vec<u64>,
    pub down_total: Vec<u64>,
    /// Smoothed rates, bytes per second.
    pub up_rate: Vec<f64>,
    pub down_rate: Vec<f64>,
    /// Payload bytes received in the current round and in the last complete one.
    pub round_down: Vec<u64>,
    pub last_round_down: Vec<u64>,
    /// Rounds since the connection opened.
    pub age: Vec<u32>,
    /// The peer wants something we have.
    pub interested: Vec<bool>,
    /// Pieces the peer still lacks (set by the node before each round): a seed gives most
    /// to whoever is furthest from done.
    pub missing: Vec<u32>,
    /// We have requests outstanding at the peer (set by the node before each round).
    pub waiting_on: Vec<bool>,
    /// Consecutive rounds we waited on the peer and got nothing.
    pub starved_rounds: Vec<u32>,
    pub snubbed: Vec<bool>,
    pub choking: Vec<bool>,
    /// Relative upload weight (0 when choked).
    pub weight: Vec<f64>,
    /// Absolute upload cap in bytes/s, if any.
    pub cap: Vec<Option<f64>>,
    /// Round in which the peer last held the optimistic slot.
    pub optimistic_at: Vec<Option<u64>>,
    /// Origin: confirmed bytes this client uploaded to other clients (receipts).
    pub credit: Vec<u64>,
    last_credit: Vec<u64>,
    /// Origin: smoothed confirmed upload rate of the client, bytes per second.
    pub contribution: Vec<f64>,
    /// Origin: fresh pieces given to the client, and how many of those it passed on.
    pub promised: Vec<u32>,
    pub kept: Vec<u32>,
    pub round_no: u64,
    optimistic: Option<usize>,
    /// Peak total upload rate seen, a capacity estimate when none is configured.
    peak_up: f64,
    /// The largest weight after the last decision.
    max_weight: f64,
}

macro_rules! reset_row {
    ($t:ident, $s:ident, $($f:ident = $v:expr),* $(,)?) => {
        $( if $t.$f.len() <= $s { $t.$f.resize($s + 1, $v); } $t.$f[$s] = $v; )*
    };
}

impl ChokeTable {
    /// Makes room for `slot` and resets its row for a new connection.
    pub fn open(&mut self, slot: usize, to_origin: bool) {
        let t = self;
        reset_row!(
            t,
            slot,
            active = true,
            to_origin = to_origin,
            up_window = 0,
            down_window = 0,
            up_total = 0,
            down_total = 0,
            up_rate = 0.0,
            down_rate = 0.0,
            round_down = 0,
            last_round_down = 0,
            age = 0,
            interested = false,
            missing = 0,
            waiting_on = false,
            starved_rounds = 0,
            snubbed = false,
            choking = true,
            weight = 0.0,
            cap = None,
            optimistic_at = None,
            credit = 0,
            last_credit = 0,
            contribution = 0.0,
            promised = 0,
            kept = 0,
        );
        if t.optimistic == Some(slot) {
            t.optimistic = None;
        }
    }

    pub fn max_weight(&self) -> f64 {
        self.max_weight
    }

    pub fn close(&mut self, slot: usize) {
        self.active[slot] = false;
        self.weight[slot] = 0.0;
        if self.optimistic == Some(slot) {
            self.optimistic = None;
        }
    }

    pub fn record_up(&mut self, slot: usize, bytes: u64) {
        self.up_window[slot] += bytes;
        self.up_total[slot] += bytes;
    }

    pub fn record_down(&mut self, slot: usize, bytes: u64) {
        self.down_window[slot] += bytes;
        self.down_total[slot] += bytes;
        self.round_down[slot] += bytes;
    }

    fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.active.len()).filter(|&s| self.active[s])
    }

    /// Folds the window of `dt_secs` into the rate estimates and opens a new window.
    pub fn roll(&mut self, dt_secs: f64) {
        if dt_secs <= 0.0 {
            return;
        }
        let mut total_up = 0.0;
        for s in 0..self.active.len() {
            if !self.active[s] {
                continue;
            }
            let up = self.up_window[s] as f64 / dt_secs;
            let down = self.down_window[s] as f64 / dt_secs;
            self.up_rate[s] += RATE_ALPHA * (up - self.up_rate[s]);
            self.down_rate[s] += RATE_ALPHA * (down - self.down_rate[s]);
            total_up += self.up_rate[s];
            self.up_window[s] = 0;
            self.down_window[s] = 0;
        }
        self.peak_up = self.peak_up.max(total_up);
    }

    /// Closes a round: per-round counters, snubbing, the origin's contribution rates.
    pub fn end_round(&mut self, round_secs: f64) {
        self.round_no += 1;
        for s in 0..self.active.len() {
            if !self.active[s] {
                continue;
            }
            self.age[s] = self.age[s].saturating_add(1);
            let got = self.round_down[s];
            self.last_round_down[s] = got;
            self.round_down[s] = 0;
            if self.waiting_on[s] && got == 0 {
                self.starved_rounds[s] += 1;
            } else {
                self.starved_rounds[s] = 0;
            }
            self.snubbed[s] = self.starved_rounds[s] >= SNUB_ROUNDS;
            let gained = self.credit[s].saturating_sub(self.last_credit[s]) as f64;
            self.last_credit[s] = self.credit[s];
            let rate = gained / round_secs.max(1e-3);
            self.contribution[s] += CONTRIB_ALPHA * (rate - self.contribution[s]);
        }
    }

    /// Applies `policy` for `me`; pushes the slots whose choke state changed. Optimistic
    /// peers rotate only when `new_round`; between rounds (a peer became interested) the
    /// decision is refreshed with the same optimistic peer.
    pub fn decide(
        &mut self,
        policy: Policy,
        me: Me,
        new_round: bool,
        rng: &mut Rng,
        changed: &mut Vec<usize>,
    ) {
        for s in 0..self.active.len() {
            self.weight[s] = 0.0;
            self.cap[s] = None;
        }
        if !me.free_rider {
            match (policy, me.is_origin) {
                (Policy::UnchokeAll, _) => self.unchoke_all(),
                (Policy::BitTorrent, _) => self.bittorrent(me, new_round, rng),
                (Policy::Tft, true) => self.tft_origin(me),
                (Policy::Tft, false) => self.tft_client(me, new_round, rng),
            }
        }
        self.max_weight = self.weight.iter().copied().fold(0.0, f64::max);
        for s in 0..self.active.len() {
            let choke = !(self.active[s] && self.weight[s] > 0.0);
            if self.active[s] && choke != self.choking[s] {
                changed.push(s);
            }
            self.choking[s] = choke;
        }
    }

    /// Peers that may be given upload: interested and not the origin.
    fn candidates(&self) -> Vec<usize> {
        self.slots()
            .filter(|&s| self.interested[s] && !self.to_origin[s])
            .collect()
    }

    fn unchoke_all(&mut self) {
        for s in self.candidates() {
            self.weight[s] = 1.0;
        }
    }

    fn bittorrent(&mut self, me: Me, new_round: bool, rng: &mut Rng) {
        let mut cands = self.candidates();
        // Leechers reward who gives them most; seeds (and the origin) who takes most.
        let seeding = me.is_origin || me.complete;
        let score = |t: &ChokeTable, s: usize| {
            if seeding {
                t.up_rate[s]
            } else if t.snubbed[s] {
                -1.0
            } else {
                t.down_rate[s]
            }
        };
        cands.sort_by(|&a, &b| score(self, b).total_cmp(&score(self, a)));
        for &s in cands.iter().take(BT_SLOTS) {
            self.weight[s] = 1.0;
        }
        let rest: Vec<usize> = cands.iter().skip(BT_SLOTS).copied().collect();
        let rotate = new_round && self.round_no.is_multiple_of(BT_OPTIMISTIC_ROUNDS);
        let keep = self.optimistic.filter(|o| rest.contains(o) && !rotate);
        self.optimistic = keep.or_else(|| pick_optimistic(self, &rest, rng));
        if let Some(o) = self.optimistic {
            self.weight[o] = 1.0;
            self.optimistic_at[o] = Some(self.round_no);
        }
    }

    fn tft_client(&mut self, me: Me, new_round: bool, rng: &mut Rng) {
        let cands = self.candidates();
        // What each peer gave us: in the last round and so far in this one while
        // downloading (a decision between rounds sees who started giving); over its whole
        // connection once we are complete, so a seed serves only those who ever helped it.
        let gift = |t: &ChokeTable, s: usize| {
            if t.snubbed[s] {
                0.0
            } else if me.complete {
                t.down_total[s] as f64
            } else {
                (t.last_round_down[s] + t.round_down[s]) as f64
            }
        };
        let givers: Vec<usize> = cands
            .iter()
            .copied()
            .filter(|&s| gift(self, s) > 0.0)
            .collect();
        let bootstrap_bytes = NEWCOMER_PIECES * me.piece_size as u64;
        let newcomers: Vec<usize> = cands
            .iter()
            .copied()
            .filter(|&s| gift(self, s) == 0.0 && self.up_total[s] < bootstrap_bytes)
            .collect();
        let others: Vec<usize> = cands
            .iter()
            .copied()
            .filter(|s| !givers.contains(s) && !newcomers.contains(s))
            .filter(|&s| {
                self.optimistic_at[s].is_none_or(|r| self.round_no >= r + OPTIMISTIC_RETRY_ROUNDS)
            })
            .collect();
        if new_round {
            self.optimistic = pick_optimistic(self, &others, rng);
            if let Some(o) = self.optimistic {
                self.optimistic_at[o] = Some(self.round_no);
            }
        } else if self
            .optimistic
            .is_some_and(|o| !cands.contains(&o) || givers.contains(&o))
        {
            self.optimistic = None;
        }
        let mut extra: Vec<usize> = newcomers;
        extra.extend(self.optimistic);
        if givers.is_empty() {
            // Nobody gives yet (start-up): share equally among newcomers and the optimistic
            // peer, uncapped, so the swarm bootstraps.
            for &s in &extra {
                self.weight[s] = 1.0;
            }
            return;
        }
        // A leecher pays back in proportion to gifts. A seed has nothing left to gain, so
        // among those who helped it, it gives in proportion to what each still lacks: the
        // slowest finish with the rest instead of alone at the end.
        let need = |t: &ChokeTable, s: usize| {
            if me.complete {
                t.missing[s].max(1) as f64
            } else {
                gift(t, s)
            }
        };
        let total: f64 = givers.iter().map(|&s| need(self, s)).sum();
        for &s in &givers {
            self.weight[s] = (1.0 - OPTIMISTIC_SHARE) * need(self, s) / total;
        }
        let capacity = me.capacity.unwrap_or(self.peak_up).max(1.0);
        for &s in &extra {
            self.weight[s] = OPTIMISTIC_SHARE / extra.len() as f64;
            // Work-conserving among givers only: a non-giver never gets more than its share
            // of our capacity, even when nobody else is asking.
            self.cap[s] = Some(capacity * OPTIMISTIC_SHARE / extra.len() as f64);
        }
    }

    fn tft_origin(&mut self, me: Me) {
        let cands = self.candidates();
        let piece = me.piece_size.max(1) as f64;
        let bootstrap_bytes = ORIGIN_NEWCOMER_PIECES * me.piece_size as u64;
        let is_newcomer = |t: &ChokeTable, s: usize| {
            t.age[s] < NEWCOMER_ROUNDS && t.up_total[s] < bootstrap_bytes
        };
        let established: Vec<usize> = cands
            .iter()
            .copied()
            .filter(|&s| !is_newcomer(self, s))
            .collect();
        let mut weights = Vec::with_capacity(established.len());
        for &s in &established {
            // Fresh pieces not yet seen elsewhere, beyond what the client could pass on in
            // PROMISE_SECS at its confirmed rate.
            let slack =
                (self.contribution[s] * PROMISE_SECS / piece).max(PROMISE_SLACK_PIECES as f64);
            let owed = self.promised[s].saturating_sub(self.kept[s]) as f64;
            let factor = if owed > slack {
                BROKEN_PROMISE_FACTOR
            } else {
                1.0
            };
            weights.push(self.contribution[s] * factor);
        }
        let mean = if weights.is_empty() {
            1.0
        } else {
            (weights.iter().sum::<f64>() / weights.len() as f64).max(1.0)
        };
        for (&s, &w) in established.iter().zip(&weights) {
            self.weight[s] = w.max(ORIGIN_FLOOR * mean);
        }
        for &s in &cands {
            if is_newcomer(self, s) {
                // A newcomer has had no chance to give: treat it as an average client.
                self.weight[s] = mean;
            }
        }
    }
}

/// An optimistic peer from `from`: newcomers three times as likely (BitTorrent mainline).
fn pick_optimistic(t: &ChokeTable, from: &[usize], rng: &mut Rng) -> Option<usize> {
    let ticket = |s: usize| if t.age[s] < NEWCOMER_ROUNDS { 3 } else { 1 };
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
mod tests {
    use super::*;

    fn me_client() -> Me {
        Me {
            is_origin: false,
            complete: false,
            free_rider: false,
            capacity: Some(1_000_000.0),
            piece_size: 1 << 18,
        }
    }

    fn table(n: usize) -> ChokeTable {
        let mut t = ChokeTable::default();
        for s in 0..n {
            t.open(s, false);
            t.interested[s] = true;
        }
        t
    }

    fn decide(t: &mut ChokeTable, p: Policy, me: Me) -> Vec<usize> {
        let mut changed = Vec::new();
        t.decide(p, me, true, &mut Rng::new(3), &mut changed);
        changed
    }

    fn me_origin() -> Me {
        Me {
            is_origin: true,
            ..me_client()
        }
    }

    /// Origin view: ages every row past the newcomer window with the given per-round
    /// confirmed uploads (receipts).
    fn settle_credit(t: &mut ChokeTable, per_round: &[u64]) {
        for _ in 0..NEWCOMER_ROUNDS {
            for (s, &c) in per_round.iter().enumerate() {
                t.credit[s] += c;
            }
            t.end_round(1.0);
        }
    }

    /// Ages every row past the newcomer window with the given per-round gifts.
    fn settle(t: &mut ChokeTable, gifts: &[u64]) {
        for _ in 0..NEWCOMER_ROUNDS {
            for (s, &g) in gifts.iter().enumerate() {
                t.record_down(s, g);
            }
            t.end_round(1.0);
        }
    }

    #[test]
    fn test_rate_converges_to_steady_input() {
        let mut t = table(3);
        for _ in 0..50 {
            t.record_down(2, 1000);
            t.roll(0.1);
        }
        assert!((t.down_rate[2] - 10_000.0).abs() < 100.0);
        assert_eq!(t.down_total[2], 50_000);
    }

    #[test]
    fn test_unchoke_all_unchokes_interested_only() {
        let mut t = table(2);
        t.interested[0] = false;
        assert_eq!(decide(&mut t, Policy::UnchokeAll, me_client()), vec![1]);
        assert!(t.choking[0]);
        assert!(!t.choking[1]);
    }

    #[test]
    fn test_reopened_slot_starts_clean() {
        let mut t = table(1);
        t.record_up(0, 5);
        t.choking[0] = false;
        t.close(0);
        t.open(0, false);
        assert_eq!(t.up_total[0], 0);
        assert!(t.choking[0]);
    }

    #[test]
    fn test_tft_client_splits_in_proportion_to_gifts() {
        let mut t = table(3);
        settle(&mut t, &[300, 100, 0]);
        decide(&mut t, Policy::Tft, me_client());
        let (w0, w1) = (t.weight[0], t.weight[1]);
        assert!((w0 / w1 - 3.0).abs() < 1e-9, "{w0} vs {w1}");
        assert!((w0 + w1 - (1.0 - OPTIMISTIC_SHARE)).abs() < 1e-9);
        // The non-giver may only be the optimistic peer, capped at its share.
        if t.weight[2] > 0.0 {
            assert!(t.cap[2].unwrap() <= 1_000_000.0 * OPTIMISTIC_SHARE + 1e-6);
        }
        assert_eq!(t.cap[0], None);
    }

    #[test]
    fn test_tft_seed_gives_helpers_in_proportion_to_what_they_lack() {
        let mut t = table(3);
        // Peer 0 gave most, peer 1 a little, peer 2 nothing.
        settle(&mut t, &[300, 100, 0]);
        t.missing[0] = 100;
        t.missing[1] = 300;
        t.missing[2] = 900;
        let me = Me {
            complete: true,
            ..me_client()
        };
        decide(&mut t, Policy::Tft, me);
        let (w0, w1) = (t.weight[0], t.weight[1]);
        assert!((w1 / w0 - 3.0).abs() < 1e-9, "{w0} vs {w1}");
        // Lacking most earns a non-giver nothing beyond the capped optimistic share.
        if t.weight[2] > 0.0 {
            assert!(t.weight[2] <= OPTIMISTIC_SHARE);
            assert!(t.cap[2].is_some());
        }
    }

    #[test]
    fn test_tft_free_rider_waits_between_optimistic_turns() {
        let mut t = table(2);
        settle(&mut t, &[500, 0]);
        let piece = me_client().piece_size as u64;
        let mut turns = 0;
        for _ in 0..30 {
            decide(&mut t, Policy::Tft, me_client());
            if t.weight[1] > 0.0 {
                turns += 1;
                // It takes a piece per turn and never gives anything back.
                t.record_up(1, piece);
                assert!(t.cap[1].is_some(), "a non-giver is always capped");
            }
            t.record_down(0, 500);
            t.end_round(1.0);
        }
        // Newcomer turns until it holds NEWCOMER_PIECES of ours, then one optimistic turn
        // every OPTIMISTIC_RETRY_ROUNDS.
        let most = NEWCOMER_PIECES as usize + 30 / OPTIMISTIC_RETRY_ROUNDS as usize + 1;
        assert!(turns <= most, "{turns} turns");
        assert!(
            turns > NEWCOMER_PIECES as usize,
            "never tried after bootstrap"
        );
    }

    #[test]
    fn test_tft_bootstrap_shares_equally_among_newcomers() {
        let mut t = table(3);
        decide(&mut t, Policy::Tft, me_client());
        assert!((0..3).all(|s| t.weight[s] == 1.0 && t.cap[s].is_none()));
    }

    #[test]
    fn test_snubbing_peer_loses_its_share() {
        let mut t = table(2);
        settle(&mut t, &[100, 100]);
        // Peer 1 stops sending while we wait on it.
        for _ in 0..SNUB_ROUNDS {
            t.waiting_on[1] = true;
            t.record_down(0, 100);
            t.end_round(1.0);
        }
        assert!(t.snubbed[1]);
        decide(&mut t, Policy::Tft, me_client());
        assert!((t.weight[0] - (1.0 - OPTIMISTIC_SHARE)).abs() < 1e-9);
    }

    #[test]
    fn test_tft_seed_rewards_past_givers() {
        let mut t = table(2);
        settle(&mut t, &[1000, 0]);
        // A round with no gifts at all: a leecher would have no givers, a seed remembers.
        t.end_round(1.0);
        let mut me = me_client();
        me.complete = true;
        decide(&mut t, Policy::Tft, me);
        assert!(t.weight[0] >= 1.0 - OPTIMISTIC_SHARE - 1e-9);
    }

    #[test]
    fn test_free_rider_chokes_everyone() {
        let mut t = table(2);
        let mut me = me_client();
        me.free_rider = true;
        decide(&mut t, Policy::Tft, me);
        assert!(t.choking.iter().all(|&c| c));
    }

    #[test]
    fn test_bittorrent_unchokes_top_four_plus_one() {
        let mut t = table(7);
        settle(&mut t, &[0; 7]);
        for s in 0..7 {
            t.down_rate[s] = s as f64;
        }
        decide(&mut t, Policy::BitTorrent, me_client());
        for s in 3..7 {
            assert!(!t.choking[s], "top-4 slot {s} choked");
        }
        let unchoked = (0..7).filter(|&s| !t.choking[s]).count();
        assert_eq!(unchoked, BT_SLOTS + 1);
    }

    #[test]
    fn test_origin_weights_follow_confirmed_contribution() {
        let mut t = table(3);
        let me = me_origin();
        settle_credit(&mut t, &[3_000_000, 1_000_000]);
        decide(&mut t, Policy::Tft, me);
        assert!(t.weight[0] > 2.0 * t.weight[1]);
        // Client 2 gave nothing but is still served (work conservation), a little.
        assert!(t.weight[2] > 0.0 && t.weight[2] < 0.05 * t.weight[0]);
    }

    #[test]
    fn test_origin_cuts_promise_breaker() {
        let mut t = table(2);
        let me = me_origin();
        settle_credit(&mut t, &[1_000_000, 1_000_000]);
        t.promised[0] = 40;
        t.kept[0] = 39;
        t.promised[1] = 40;
        t.kept[1] = 2;
        decide(&mut t, Policy::Tft, me);
        assert!(t.weight[1] < 0.1 * t.weight[0], "{:?}", t.weight);
        assert!(t.weight[1] > 0.0);
    }

    #[test]
    fn test_origin_newcomer_gets_average_weight() {
        let mut t = table(2);
        let me = me_origin();
        settle_credit(&mut t, &[2_000_000]);
        t.open(1, false);
        t.interested[1] = true;
        decide(&mut t, Policy::Tft, me);
        assert!((t.weight[1] - t.weight[0]).abs() < 1e-6 * t.weight[0]);
    }
}
