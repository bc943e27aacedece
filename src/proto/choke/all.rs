//! `--policy all`: every interested peer, equal weights; no incentives, the baseline the
//! others are measured against.

use super::Row;

pub(super) fn decide(rows: &mut [Row], cands: &[usize]) {
    for &s in cands {
        rows[s].weight = 1.0;
    }
}
