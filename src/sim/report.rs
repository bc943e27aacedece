//! What a simulation reports: the output JSON of docs/SIMULATOR.md ("Output") and a short
//! table, with the Kumar–Ross minimum the run is measured against.

use serde_json::{Value, json};

use super::engine::Outcome;
use super::scenario::{Scenario, TCP_GOODPUT};
use crate::bounds::{kumar_ross, kumar_ross_arrivals};
use crate::proto::Behaviour;

/// A finished run with what it needs to report itself.
pub struct Report<'a> {
    /// The scenario as run (its seed, file and clients' links go into the report).
    pub scenario: &'a Scenario,
    /// What the run produced.
    pub outcome: &'a Outcome,
    /// Wall-clock seconds the run took (every other time in the report is virtual).
    pub wall_s: f64,
    /// The process's peak resident memory (VmHWM) in bytes, for the simulator's own footprint.
    pub peak_rss_bytes: u64,
}

fn behave_name(b: Behaviour) -> &'static str {
    match b {
        Behaviour::Honest => "honest",
        Behaviour::FreeRider => "free-rider",
        Behaviour::Liar => "liar",
        Behaviour::Colluder => "colluder",
    }
}

/// Seconds rounded to the nanosecond the simulator keeps, so the JSON stays readable.
fn secs(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

impl Report<'_> {
    /// Kumar–Ross minimum over the clients `keep` selects, nominal and at TCP goodput (free
    /// riders and liars upload nothing to peers, so "honest" counts only the honest ones).
    fn t_min(&self, keep: impl Fn(Behaviour) -> bool) -> (f64, f64) {
        let sc = self.scenario;
        let clients: Vec<(f64, Option<f64>)> = sc
            .clients
            .iter()
            .filter(|c| keep(c.behave))
            .map(|c| (c.link.up, c.link.down))
            .collect();
        let file = sc.file_size as f64;
        let nominal = kumar_ross(file, sc.origin.up, &clients);
        // Every rate times the same factor: the minimum divides by it.
        (nominal, nominal / TCP_GOODPUT)
    }

    /// The bound on the honest clients' last completion with their real arrival times, at
    /// TCP goodput: the honest clients that completed each need the file after arriving, and
    /// every honest client's upload counts (churned clients' too, which only loosens it), at
    /// most its `up_rate`: a client told 80% of its link never uploads more, so no schedule
    /// has the rest of the link (`UpRate::cap`, as the hosts' links in the engine). Counted from the first arrival of any client, as `honest_last_s` is: from the first
    /// honest client that completed, a free rider arriving 133 s before the honest clients
    /// made the ratio 5.6 for a swarm within 6% of the bound.
    fn t_min_arrivals(&self) -> f64 {
        let sc = self.scenario;
        let honest = |c: &&super::scenario::ClientSpec| c.behave == Behaviour::Honest;
        // At goodput every rate shrinks; arrival times do not.
        let receivers: Vec<(f64, Option<f64>)> = sc
            .clients
            .iter()
            .zip(&self.outcome.clients)
            .filter(|(c, o)| honest(c) && o.complete.is_some())
            .map(|(c, _)| (c.arrive, c.link.down.map(|d| d * TCP_GOODPUT)))
            .collect();
        let up: f64 = sc
            .clients
            .iter()
            .filter(honest)
            .map(|c| c.up_rate.cap(c.link.up))
            .sum();
        kumar_ross_arrivals(
            sc.file_size as f64,
            sc.origin_up_rate.cap(sc.origin.up) * TCP_GOODPUT,
            up * TCP_GOODPUT,
            self.first_arrival(),
            &receivers,
        )
    }

    /// The earliest arrival of any client: what `honest_last_s` and its bound count from.
    fn first_arrival(&self) -> f64 {
        self.scenario
            .clients
            .iter()
            .map(|c| c.arrive)
            .fold(f64::INFINITY, f64::min)
    }

    /// Honest clients' mean time from arrival to completion, and the last one's completion
    /// measured from the first arrival (`None` when no honest client completed).
    pub fn honest_times(&self) -> (Option<f64>, Option<f64>) {
        let sc = self.scenario;
        let first = self.first_arrival();
        let done: Vec<(f64, f64)> = sc
            .clients
            .iter()
            .zip(&self.outcome.clients)
            .filter(|(c, _)| c.behave == Behaviour::Honest)
            .filter_map(|(c, o)| o.complete.map(|t| (c.arrive, t)))
            .collect();
        if done.is_empty() {
            return (None, None);
        }
        let mean = done.iter().map(|d| d.1).sum::<f64>() / done.len() as f64;
        let last = done.iter().map(|d| d.0 + d.1).fold(0.0, f64::max) - first;
        (Some(mean), Some(last))
    }

    /// The output JSON of docs/SIMULATOR.md ("Output").
    pub fn to_json(&self) -> Value {
        let (sc, o) = (self.scenario, self.outcome);
        let (all, all_g) = self.t_min(|_| true);
        let (honest, honest_g) = self.t_min(|b| b == Behaviour::Honest);
        let (mean, last) = self.honest_times();
        let clients: Vec<Value> = sc
            .clients
            .iter()
            .zip(&o.clients)
            .enumerate()
            .map(|(i, (c, r))| {
                json!({
                    "i": i,
                    "arrive_s": c.arrive,
                    "complete_s": r.complete.map(secs),
                    "left_s": r.left.map(secs),
                    "behave": behave_name(c.behave),
                    "up": c.link.up,
                    "down": c.link.down,
                    "from_origin": r.counters.from_origin,
                    "from_peers": r.counters.from_peers,
                    "uploaded": r.counters.uploaded,
                    "discarded": r.counters.discarded,
                    "failed": r.failed,
                    "first_piece_s": secs(r.startup_wait),
                    "max_piece_gap_s": secs(r.max_piece_gap),
                    "named_s": secs(r.named),
                    "named_downloading_s": secs(r.named_downloading),
                })
            })
            .collect();
        let discarded_by_receivers: u64 = o
            .clients
            .iter()
            .map(|c| c.counters.discarded_from_origin)
            .sum();
        json!({
            "tfttp_sim": 1,
            "seed": sc.seed,
            "file_size": sc.file_size,
            "piece_size": o.piece_size,
            "pieces": o.pieces,
            "policy": sc.policy.name(),
            "goodput": sc.goodput,
            "t_min_s": {
                "all": secs(all), "all_goodput": secs(all_g),
                "honest": secs(honest), "honest_goodput": secs(honest_g),
                "honest_arrivals_goodput": secs(self.t_min_arrivals()),
            },
            "summary": {
                "honest_mean_s": mean.map(secs),
                "honest_last_s": last.map(secs),
                "completed": o.clients.iter().filter(|c| c.complete.is_some()).count(),
                "clients": o.clients.len(),
                "end_s": secs(o.end),
            },
            "origin": {
                "uploaded": o.origin.uploaded,
                "discarded_by_receivers": discarded_by_receivers,
            },
            "clients": clients,
            "events": o.events,
            "wall_s": (self.wall_s * 1e3).round() / 1e3,
            "peak_rss_bytes": self.peak_rss_bytes,
        })
    }

    /// A few lines for the terminal: the run against its minimum, and each class of client.
    pub fn table(&self) -> String {
        let (sc, o) = (self.scenario, self.outcome);
        let (_, honest_g) = self.t_min(|b| b == Behaviour::Honest);
        let (mean, last) = self.honest_times();
        let mut s = String::new();
        let file = sc.file_size as f64;
        s += &format!(
            "{} clients, {:.1} MiB in {} pieces of {} KiB, policy {}\n",
            o.clients.len(),
            file / (1 << 20) as f64,
            o.pieces,
            o.piece_size / 1024,
            sc.policy.name()
        );
        s += &format!(
            "Kumar-Ross minimum (honest clients, TCP goodput): {:.2} s\n",
            honest_g
        );
        match (mean, last) {
            (Some(m), Some(l)) => {
                s += &format!(
                    "honest clients: mean {m:.2} s, last {l:.2} s = {:.2}x the minimum\n",
                    l / honest_g
                )
            }
            _ => s += "honest clients: none completed\n",
        }
        s += &format!(
            "origin sent {:.2} copies; {} of {} clients completed; {:.2} s simulated\n",
            o.origin.uploaded as f64 / file.max(1.0),
            o.clients.iter().filter(|c| c.complete.is_some()).count(),
            o.clients.len(),
            o.end
        );
        s += "  class                      n   mean s    max s  from peers\n";
        let mut classes: Vec<(Behaviour, u64)> = sc
            .clients
            .iter()
            .map(|c| (c.behave, c.link.up as u64))
            .collect();
        classes.sort_by_key(|&(b, up)| (behave_name(b), up));
        classes.dedup();
        for (b, up) in classes {
            let members: Vec<_> = sc
                .clients
                .iter()
                .zip(&o.clients)
                .filter(|(c, _)| c.behave == b && c.link.up as u64 == up)
                .collect();
            let times: Vec<f64> = members.iter().filter_map(|m| m.1.complete).collect();
            let got: u64 = members
                .iter()
                .map(|m| m.1.counters.from_origin + m.1.counters.from_peers)
                .sum();
            let peers: u64 = members.iter().map(|m| m.1.counters.from_peers).sum();
            let label = format!("{} up {:.1} Mbit/s", behave_name(b), up as f64 * 8e-6);
            let (mean, max) = if times.is_empty() {
                ("-".to_string(), "-".to_string())
            } else {
                (
                    format!("{:.2}", times.iter().sum::<f64>() / times.len() as f64),
                    format!("{:.2}", times.iter().fold(0.0, |a: f64, &b| a.max(b))),
                )
            };
            s += &format!(
                "  {label:<24} {:>3} {mean:>8} {max:>8} {:>10.0}%\n",
                members.len(),
                100.0 * peers as f64 / (got as f64).max(1.0)
            );
        }
        s
    }
}
