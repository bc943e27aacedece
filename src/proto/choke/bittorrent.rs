//! `--policy bittorrent`: the reference choker (BEP 3, libtorrent `choker.cpp`): the 4
//! interested peers that gave us most (or, when seeding, took most) last round, plus one
//! optimistic unchoke rotated every 3 rounds with newcomers preferred; equal shares.

use super::{Me, Row, Turn, pick_optimistic};

/// Regular unchoke slots (BEP 3 and libtorrent's default of 4).
pub(super) const BT_SLOTS: usize = 4;
/// The optimistic unchoke moves every 3 rounds (30 s in BitTorrent).
pub(super) const BT_OPTIMISTIC_ROUNDS: u64 = 3;

pub(super) fn decide(rows: &mut [Row], cands: &[usize], me: Me, turn: &mut Turn) {
    let mut cands = cands.to_vec();
    // Leechers reward who gives them most; seeds (and the origin) who takes most.
    let seeding = me.is_origin || me.complete;
    let score = |r: &Row| {
        if seeding {
            r.up.rate()
        } else if r.snubbed {
            -1.0
        } else {
            r.down.rate()
        }
    };
    cands.sort_by(|&a, &b| score(&rows[b]).total_cmp(&score(&rows[a])));
    for &s in cands.iter().take(BT_SLOTS) {
        rows[s].weight = 1.0;
    }
    let rest: Vec<usize> = cands.iter().skip(BT_SLOTS).copied().collect();
    let rotate = turn.new_round && turn.round_no.is_multiple_of(BT_OPTIMISTIC_ROUNDS);
    let keep = turn.optimistic.filter(|o| rest.contains(o) && !rotate);
    *turn.optimistic = keep.or_else(|| pick_optimistic(rows, &rest, turn.rng));
    if let Some(o) = *turn.optimistic {
        rows[o].weight = 1.0;
        rows[o].optimistic_at = Some(turn.round_no);
    }
}
