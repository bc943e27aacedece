//! The choking table: per-connection transfer counters, rate estimates and choke state in
//! flat arrays indexed by slot, recomputed on the node's tick. The policy that reads it is
//! pluggable; this version has the work-conserving "unchoke every interested peer" policy,
//! and the tit-for-tat-with-promises policy slots in beside it.

/// Weight of the newest tick in the rate estimate. With the node's 100 ms tick this is a
/// time constant of about 0.5 s: fast enough to size request pipelines as links ramp up,
/// slow enough that one late piece does not halve a peer's estimate.
const RATE_ALPHA: f64 = 0.2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Unchoke every interested peer and let the driver's round-robin split the upload.
    UnchokeAll,
}

#[derive(Debug, Default, Clone)]
pub struct ChokeTable {
    pub active: Vec<bool>,
    /// Payload bytes sent to / received from each slot since the last tick.
    pub up_window: Vec<u64>,
    pub down_window: Vec<u64>,
    /// Payload bytes over the connection's life.
    pub up_total: Vec<u64>,
    pub down_total: Vec<u64>,
    /// Smoothed rates in bytes per second.
    pub up_rate: Vec<f64>,
    pub down_rate: Vec<f64>,
    /// Whether we choke the peer (it may not request from us).
    pub choking: Vec<bool>,
    /// Whether the peer wants something we have.
    pub interested: Vec<bool>,
}

impl ChokeTable {
    /// Makes room for `slot` and resets its row for a new connection.
    pub fn open(&mut self, slot: usize) {
        if self.active.len() <= slot {
            let n = slot + 1;
            self.active.resize(n, false);
            self.up_window.resize(n, 0);
            self.down_window.resize(n, 0);
            self.up_total.resize(n, 0);
            self.down_total.resize(n, 0);
            self.up_rate.resize(n, 0.0);
            self.down_rate.resize(n, 0.0);
            self.choking.resize(n, true);
            self.interested.resize(n, false);
        }
        self.active[slot] = true;
        self.up_window[slot] = 0;
        self.down_window[slot] = 0;
        self.up_total[slot] = 0;
        self.down_total[slot] = 0;
        self.up_rate[slot] = 0.0;
        self.down_rate[slot] = 0.0;
        self.choking[slot] = true;
        self.interested[slot] = false;
    }

    pub fn close(&mut self, slot: usize) {
        self.active[slot] = false;
    }

    pub fn record_up(&mut self, slot: usize, bytes: u64) {
        self.up_window[slot] += bytes;
        self.up_total[slot] += bytes;
    }

    pub fn record_down(&mut self, slot: usize, bytes: u64) {
        self.down_window[slot] += bytes;
        self.down_total[slot] += bytes;
    }

    /// Folds the window of `dt_secs` into the rate estimates and opens a new window.
    pub fn roll(&mut self, dt_secs: f64) {
        if dt_secs <= 0.0 {
            return;
        }
        for s in 0..self.active.len() {
            if !self.active[s] {
                continue;
            }
            let up = self.up_window[s] as f64 / dt_secs;
            let down = self.down_window[s] as f64 / dt_secs;
            self.up_rate[s] += RATE_ALPHA * (up - self.up_rate[s]);
            self.down_rate[s] += RATE_ALPHA * (down - self.down_rate[s]);
            self.up_window[s] = 0;
            self.down_window[s] = 0;
        }
    }

    /// Applies `policy`; returns the slots whose choke state changed.
    pub fn decide(&mut self, policy: Policy, changed: &mut Vec<usize>) {
        match policy {
            Policy::UnchokeAll => {
                for s in 0..self.active.len() {
                    let want_choke = !self.interested[s];
                    if self.active[s] && self.choking[s] != want_choke {
                        // Unchoke at once on interest; keep an idle peer unchoked so a
                        // renewed interest does not pay a round trip.
                        if !want_choke {
                            self.choking[s] = false;
                            changed.push(s);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rate_converges_to_steady_input() {
        let mut t = ChokeTable::default();
        t.open(2);
        for _ in 0..50 {
            t.record_down(2, 1000);
            t.roll(0.1);
        }
        assert!((t.down_rate[2] - 10_000.0).abs() < 100.0);
        assert_eq!(t.down_total[2], 50_000);
    }

    #[test]
    fn test_unchoke_all_unchokes_interested_only() {
        let mut t = ChokeTable::default();
        t.open(0);
        t.open(1);
        t.interested[1] = true;
        let mut changed = Vec::new();
        t.decide(Policy::UnchokeAll, &mut changed);
        assert_eq!(changed, vec![1]);
        assert!(t.choking[0]);
        assert!(!t.choking[1]);
    }

    #[test]
    fn test_reopened_slot_starts_clean() {
        let mut t = ChokeTable::default();
        t.open(0);
        t.record_up(0, 5);
        t.choking[0] = false;
        t.close(0);
        t.open(0);
        assert_eq!(t.up_total[0], 0);
        assert!(t.choking[0]);
    }
}
