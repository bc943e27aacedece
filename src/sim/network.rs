//! The simulator's network: a fluid model of flows sharing per-host upload and download
//! capacities (docs/SIMULATOR.md, "What the model covers").
//!
//! A flow is one connection direction while it carries a piece. Its rate is decided at both
//! ends: the sender water-fills its upload among its flows (equal shares, as TCP flows through
//! one bottleneck get; or in proportion to the node's DRR weights when the node's own
//! `--up-rate` is the bottleneck), each flow bounded by its cap (the policy's per-peer cap and
//! the TCP window over the RTT) and by its receiver's last water level; the receiver then
//! water-fills its download among the offers it gets. The result is always feasible; it is
//! max-min fair up to the one-step lag with which a sender learns its receivers' levels
//! (refreshed on every change at the sender and on its 100 ms tick).
//!
//! Cost per change: O(k log k) for the sender's k flows, plus O(k') for each receiver whose
//! downlink is saturated; an unsaturated receiver costs O(1).

use slab::Slab;

pub(super) type FlowId = usize;

/// Flows whose rate changed by less than this fraction keep their scheduled completion:
/// floating-point noise must not cost a heap push.
const RATE_EPSILON: f64 = 1e-9;
/// An uplink sending at this fraction of its capacity is saturated (its queue is full).
const UPLINK_FULL: f64 = 0.99;
/// A downlink whose offers add up to this fraction of it is full (rounding in the sums).
const FULL: f64 = 1.0 - 1e-9;

#[derive(Debug, Clone)]
pub(super) struct Flow {
    pub sender: usize,
    pub receiver: usize,
    /// Bytes per second this flow may not exceed (policy cap, TCP window / RTT).
    cap: f64,
    /// DRR weight when the sender shares by weight; 1 otherwise.
    weight: f64,
    /// What the sender would give it, before the receiver's share.
    offer: f64,
    rate: f64,
    /// Bytes left of what was queued on this flow, as of `settled_at`.
    remaining: f64,
    settled_at: f64,
    /// Bumped whenever the completion time moves, so stale completion events are ignored.
    pub generation: u64,
    up_idx: usize,
    down_idx: usize,
    rate_changed: bool,
}

#[derive(Debug, Clone)]
struct Host {
    up: f64,
    down: f64,
    /// Upload shared by weight (the node's token bucket is the bottleneck) or equally.
    weighted: bool,
    up_flows: Vec<FlowId>,
    down_flows: Vec<FlowId>,
    /// Sum of the offers of the incoming flows, kept incrementally.
    offered_in: f64,
    /// Water level of the downlink; infinite while the offers fit.
    level: f64,
    /// Sum of the rates of the upload flows.
    sending: f64,
    /// Sums over the upload flows of `remaining` and of `rate * settled_at`: with
    /// `sending`, what is still queued on them at any time (`backlog`) without a visit to
    /// each, which the origin's thousands of flows would make dear.
    remaining_sum: f64,
    rate_settled_sum: f64,
    /// Bytes the uplink carried up to `carried_at` (what TCP would count as acknowledged).
    carried: f64,
    carried_at: f64,
    /// Something its upload sharing reads (a flow's cap or weight, a receiver's level)
    /// moved since it last shared: until then `refresh` would change nothing, and skips it.
    reshare: bool,
}

#[derive(Debug, Default)]
pub(super) struct Network {
    flows: Slab<Flow>,
    hosts: Vec<Host>,
    /// Flows whose rate changed since the last `take_changed`.
    changed: Vec<FlowId>,
    scratch: Vec<(f64, f64, FlowId)>,
    receivers: Vec<usize>,
    /// Source of flow generations: unique over the run, so a completion event of a removed
    /// flow never matches the flow that reuses its id.
    next_generation: u64,
}

impl Network {
    /// Adds a host; `down` may be infinite.
    pub(super) fn add_host(&mut self, up: f64, down: f64, weighted: bool) -> usize {
        self.hosts.push(Host {
            up,
            down,
            weighted,
            up_flows: Vec::new(),
            down_flows: Vec::new(),
            offered_in: 0.0,
            level: f64::INFINITY,
            sending: 0.0,
            remaining_sum: 0.0,
            rate_settled_sum: 0.0,
            carried: 0.0,
            carried_at: 0.0,
            reshare: false,
        });
        self.hosts.len() - 1
    }

    /// The flow's generation, if it exists: a completion event is current only if it
    /// carries this.
    pub(super) fn generation(&self, id: FlowId) -> Option<u64> {
        self.flows.get(id).map(|f| f.generation)
    }

    pub(super) fn weight(&self, id: FlowId) -> f64 {
        self.flows[id].weight
    }

    #[cfg(test)]
    fn rate(&self, id: FlowId) -> f64 {
        self.flows[id].rate
    }

    /// A new flow of `bytes` from `sender` to `receiver`.
    pub(super) fn start(
        &mut self,
        sender: usize,
        receiver: usize,
        bytes: f64,
        cap: f64,
        weight: f64,
        now: f64,
    ) -> FlowId {
        let id = self.flows.insert(Flow {
            sender,
            receiver,
            cap,
            weight,
            offer: 0.0,
            rate: 0.0,
            remaining: bytes,
            settled_at: now,
            generation: 0,
            up_idx: self.hosts[sender].up_flows.len(),
            down_idx: self.hosts[receiver].down_flows.len(),
            rate_changed: false,
        });
        self.hosts[sender].up_flows.push(id);
        self.hosts[receiver].down_flows.push(id);
        self.count_backlog(id, 1.0);
        self.mark(id);
        self.share_upload(sender, now);
        id
    }

    /// Queues `bytes` more on a flow that just finished its previous bytes: the flow stays
    /// active, so no other flow's rate moves.
    pub(super) fn refill(&mut self, id: FlowId, bytes: f64, now: f64) {
        self.count_backlog(id, -1.0);
        let f = &mut self.flows[id];
        f.remaining = bytes;
        f.settled_at = now;
        self.count_backlog(id, 1.0);
        self.mark(id);
    }

    /// Removes a flow (finished or cut) and shares its capacity among the rest.
    pub(super) fn stop(&mut self, id: FlowId, now: f64) {
        self.count_backlog(id, -1.0);
        let f = self.flows.remove(id);
        self.settle_carried(f.sender, now);
        let s = &mut self.hosts[f.sender];
        s.sending -= f.rate;
        if s.up_flows.len() == 1 {
            // No drift left behind by the running sums.
            s.sending = 0.0;
            s.remaining_sum = 0.0;
            s.rate_settled_sum = 0.0;
        }
        s.up_flows.swap_remove(f.up_idx);
        if let Some(&moved) = s.up_flows.get(f.up_idx) {
            self.flows[moved].up_idx = f.up_idx;
        }
        let r = &mut self.hosts[f.receiver];
        r.down_flows.swap_remove(f.down_idx);
        if let Some(&moved) = r.down_flows.get(f.down_idx) {
            self.flows[moved].down_idx = f.down_idx;
        }
        r.offered_in -= f.offer;
        self.share_download(f.receiver, now);
        self.share_upload(f.sender, now);
    }

    /// New cap and weight for a flow; shares the sender's upload again if they changed.
    pub(super) fn set_limits(&mut self, id: FlowId, cap: f64, weight: f64, now: f64) {
        if self.record_limits(id, cap, weight) {
            let sender = self.flows[id].sender;
            self.share_upload(sender, now);
        }
    }

    /// New cap and weight for a flow, taking effect at the sender's next sharing (`refresh`,
    /// which a tick calls once after updating every flow); true if they changed.
    pub(super) fn record_limits(&mut self, id: FlowId, cap: f64, weight: f64) -> bool {
        let f = &mut self.flows[id];
        let changed = f.cap != cap || f.weight != weight;
        f.cap = cap;
        f.weight = weight;
        if changed {
            self.hosts[f.sender].reshare = true;
        }
        changed
    }

    /// Shares `host`'s upload again (on its tick: picks up its receivers' current levels).
    ///
    /// Skipped when nothing it reads moved since it last shared (`Host::reshare`): the same
    /// offers again would leave every rate as it is (each receiver whose offers moved since
    /// its own last sharing has an infinite level and rates equal to those offers; any other
    /// receiver would share the same offers to the same level).
    pub(super) fn refresh(&mut self, host: usize, now: f64) {
        if self.hosts[host].reshare && !self.hosts[host].up_flows.is_empty() {
            self.share_upload(host, now);
        }
    }

    /// The flows `host` is sending on.
    pub(super) fn up_flows(&self, host: usize) -> &[FlowId] {
        &self.hosts[host].up_flows
    }

    pub(super) fn is_weighted(&self, host: usize) -> bool {
        self.hosts[host].weighted
    }

    /// When the flow's queued bytes will have left, at its current rate (infinite if the
    /// rate is zero).
    pub(super) fn eta(&self, id: FlowId) -> f64 {
        let f = &self.flows[id];
        if f.remaining <= 0.0 {
            f.settled_at
        } else if f.rate > 0.0 {
            f.settled_at + f.remaining / f.rate
        } else {
            f64::INFINITY
        }
    }

    /// The flow's queued bytes have left (its completion event fired).
    pub(super) fn drained(&mut self, id: FlowId, now: f64) {
        self.count_backlog(id, -1.0);
        let f = &mut self.flows[id];
        f.remaining = 0.0;
        f.settled_at = now;
        self.count_backlog(id, 1.0);
    }

    /// Flows whose completion time moved since the last call, each once.
    pub(super) fn take_changed(&mut self, out: &mut Vec<FlowId>) {
        out.clear();
        for id in self.changed.drain(..) {
            if let Some(f) = self.flows.get_mut(id)
                && f.rate_changed
            {
                f.rate_changed = false;
                out.push(id);
            }
        }
    }

    fn mark(&mut self, id: FlowId) {
        self.next_generation += 1;
        let f = &mut self.flows[id];
        f.generation = self.next_generation;
        if !f.rate_changed {
            f.rate_changed = true;
            self.changed.push(id);
        }
    }

    fn set_rate(&mut self, id: FlowId, rate: f64, now: f64) {
        let f = &mut self.flows[id];
        if (f.rate - rate).abs() <= RATE_EPSILON * f.rate.max(rate) {
            return;
        }
        self.count_backlog(id, -1.0);
        let f = &mut self.flows[id];
        f.remaining = (f.remaining - f.rate * (now - f.settled_at)).max(0.0);
        f.settled_at = now;
        let old = std::mem::replace(&mut f.rate, rate);
        let sender = f.sender;
        self.count_backlog(id, 1.0);
        self.settle_carried(sender, now);
        self.hosts[sender].sending += rate - old;
        self.mark(id);
    }

    /// Adds (`sign` 1) or takes away (-1) flow `id`'s terms in its sender's backlog sums.
    fn count_backlog(&mut self, id: FlowId, sign: f64) {
        let f = &self.flows[id];
        let h = &mut self.hosts[f.sender];
        h.remaining_sum += sign * f.remaining;
        h.rate_settled_sum += sign * f.rate * f.settled_at;
    }

    /// Bytes queued on `host`'s upload flows and not yet sent at `now`: the rest of the
    /// piece each flow carries.
    pub(super) fn backlog(&self, host: usize, now: f64) -> f64 {
        let h = &self.hosts[host];
        (h.remaining_sum - (h.sending * now - h.rate_settled_sum)).max(0.0)
    }

    /// Brings `carried` up to `now` at the current sending rate, before that rate moves.
    fn settle_carried(&mut self, host: usize, now: f64) {
        let h = &mut self.hosts[host];
        h.carried += h.sending * (now - h.carried_at);
        h.carried_at = now;
    }

    /// Bytes `host`'s uplink has carried by `now`.
    pub(super) fn carried(&self, host: usize, now: f64) -> f64 {
        let h = &self.hosts[host];
        h.carried + h.sending * (now - h.carried_at)
    }

    /// A new upload capacity for `host` (its node's pacer moved), shared by weight while
    /// the node's own pace is below the link; takes effect at the next `refresh`.
    pub(super) fn set_uplink(&mut self, host: usize, up: f64, weighted: bool) {
        let h = &mut self.hosts[host];
        h.up = up;
        h.weighted = weighted;
        h.reshare = true;
    }

    /// The host's upload is used to capacity: a queue builds at its bottleneck.
    pub(super) fn uplink_full(&self, host: usize) -> bool {
        let h = &self.hosts[host];
        h.sending >= h.up * UPLINK_FULL
    }

    /// The sender's water-filling, then each receiver whose offers moved.
    fn share_upload(&mut self, sender: usize, now: f64) {
        // Cleared first: the receivers' sharing below may move a level this sender reads.
        self.hosts[sender].reshare = false;
        let host = &self.hosts[sender];
        let weighted = host.weighted;
        let mut items = std::mem::take(&mut self.scratch);
        items.clear();
        for &id in &host.up_flows {
            let f = &self.flows[id];
            let limit = f.cap.min(self.hosts[f.receiver].level);
            let w = if weighted { f.weight } else { 1.0 };
            items.push((limit, w, id));
        }
        let up = host.up;
        water_fill(up, &mut items);
        let mut receivers = std::mem::take(&mut self.receivers);
        receivers.clear();
        for &(offer, _, id) in &items {
            let f = &mut self.flows[id];
            let delta = offer - f.offer;
            f.offer = offer;
            let r = f.receiver;
            let h = &mut self.hosts[r];
            h.offered_in += delta;
            if h.offered_in >= h.down * FULL || h.level.is_finite() {
                receivers.push(r);
            } else {
                self.set_rate(id, offer, now);
            }
        }
        self.scratch = items;
        receivers.sort_unstable();
        receivers.dedup();
        for &r in &receivers {
            self.share_download(r, now);
        }
        self.receivers = receivers;
    }

    /// The receiver's water-filling over the offers it gets.
    fn share_download(&mut self, receiver: usize, now: f64) {
        let h = &mut self.hosts[receiver];
        if h.down_flows.is_empty() {
            h.offered_in = 0.0;
            h.level = f64::INFINITY;
            return;
        }
        // Re-add exactly near the limit, where drift in the running sum could matter.
        let sum: f64 = h.down_flows.iter().map(|&id| self.flows[id].offer).sum();
        h.offered_in = sum;
        let down = h.down;
        // Offers that exactly fill the downlink keep its level: they were cut to it, and
        // lifting it would make the senders offer more and oscillate.
        let level = if sum < down * FULL {
            f64::INFINITY
        } else {
            let mut items: Vec<(f64, f64, FlowId)> = h
                .down_flows
                .iter()
                .map(|&id| (self.flows[id].offer, 1.0, id))
                .collect();
            water_level(down, &mut items)
        };
        let h = &mut self.hosts[receiver];
        let moved = h.level != level;
        h.level = level;
        for k in 0..h.down_flows.len() {
            let id = self.hosts[receiver].down_flows[k];
            let rate = self.flows[id].offer.min(level);
            self.set_rate(id, rate, now);
            if moved {
                let sender = self.flows[id].sender;
                self.hosts[sender].reshare = true;
            }
        }
    }
}

/// Weighted max-min sharing of `capacity` among `(limit, weight, id)` items: each gets
/// `capacity · w / Σw` of what is left, but no more than its limit, and what a limited item
/// leaves goes to the others. On return each item's first field is its share.
fn water_fill(capacity: f64, items: &mut [(f64, f64, FlowId)]) {
    let level = water_level(capacity, items);
    for it in items.iter_mut() {
        it.0 = it.0.min(level * it.1);
    }
}

/// The share per unit of weight that `water_fill` gives unlimited items (infinite when
/// every limit fits). Sorts `items` by limit per weight, ties by id, so that the result does
/// not depend on the order they came in.
fn water_level(capacity: f64, items: &mut [(f64, f64, FlowId)]) -> f64 {
    // Common case first, without sorting: no item is limited below the equal level. The
    // weights are whole numbers, so the sum is exact in any order.
    let weight: f64 = items.iter().map(|it| it.1).sum();
    if weight > 0.0 {
        let level = capacity / weight;
        if items.iter().all(|it| it.0 / it.1 >= level) {
            return level;
        }
    }
    items.sort_unstable_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)).then(a.2.cmp(&b.2)));
    let mut left = capacity;
    let mut weight: f64 = items.iter().map(|it| it.1).sum();
    for it in items.iter() {
        if weight <= 0.0 {
            break;
        }
        let level = left / weight;
        if it.0 / it.1 >= level {
            return level;
        }
        left -= it.0;
        weight -= it.1;
    }
    f64::INFINITY
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(cap: f64, items: &[(f64, f64)]) -> Vec<f64> {
        let mut v: Vec<(f64, f64, FlowId)> = items
            .iter()
            .enumerate()
            .map(|(i, &(l, w))| (l, w, i))
            .collect();
        water_fill(cap, &mut v);
        v.sort_by_key(|it| it.2);
        v.into_iter().map(|it| it.0).collect()
    }

    #[test]
    fn test_water_fill_equal_shares_without_limits() {
        assert_eq!(shares(90.0, &[(f64::INFINITY, 1.0); 3]), vec![30.0; 3]);
    }

    #[test]
    fn test_water_fill_limited_item_leaves_rest_to_others() {
        let s = shares(
            90.0,
            &[(10.0, 1.0), (f64::INFINITY, 1.0), (f64::INFINITY, 1.0)],
        );
        assert_eq!(s, vec![10.0, 40.0, 40.0]);
    }

    #[test]
    fn test_water_fill_weights_split_in_proportion() {
        let s = shares(90.0, &[(f64::INFINITY, 2.0), (f64::INFINITY, 1.0)]);
        assert_eq!(s, vec![60.0, 30.0]);
    }

    #[test]
    fn test_water_fill_all_limited_under_capacity() {
        assert_eq!(shares(100.0, &[(10.0, 1.0), (20.0, 1.0)]), vec![10.0, 20.0]);
    }

    #[test]
    fn test_two_senders_into_slow_receiver_share_its_downlink() {
        let mut n = Network::default();
        let a = n.add_host(100.0, f64::INFINITY, false);
        let b = n.add_host(100.0, f64::INFINITY, false);
        let r = n.add_host(100.0, 60.0, false);
        let fa = n.start(a, r, 1000.0, f64::INFINITY, 1.0, 0.0);
        assert_eq!(n.rate(fa), 60.0);
        let fb = n.start(b, r, 1000.0, f64::INFINITY, 1.0, 0.0);
        assert_eq!((n.rate(fa), n.rate(fb)), (30.0, 30.0));
        n.stop(fb, 1.0);
        assert_eq!(n.rate(fa), 60.0);
        // 60 bytes/s for 1 s, then 30 bytes/s for 1 s: 910 bytes left after 2 s.
        assert!((n.eta(fa) - (2.0 + 910.0 / 60.0)).abs() < 1e-9);
    }

    #[test]
    fn test_sender_learns_receiver_level_on_refresh() {
        let mut n = Network::default();
        let s = n.add_host(100.0, f64::INFINITY, false);
        let slow = n.add_host(100.0, 10.0, false);
        let fast = n.add_host(100.0, f64::INFINITY, false);
        let f1 = n.start(s, slow, 1e6, f64::INFINITY, 1.0, 0.0);
        let f2 = n.start(s, fast, 1e6, f64::INFINITY, 1.0, 0.0);
        assert_eq!(n.rate(f1), 10.0);
        // The slow receiver's level is known now: the sender gives the rest to the other.
        n.refresh(s, 0.1);
        assert_eq!((n.rate(f1), n.rate(f2)), (10.0, 90.0));
    }

    #[test]
    fn test_cap_limits_flow_and_rest_goes_to_others() {
        let (mut n, s, r1, r2) = sender_and_two_receivers();
        let f1 = n.start(s, r1, 1e6, 5.0, 1.0, 0.0);
        let f2 = n.start(s, r2, 1e6, f64::INFINITY, 1.0, 0.0);
        assert_eq!((n.rate(f1), n.rate(f2)), (5.0, 95.0));
        n.set_limits(f1, f64::INFINITY, 1.0, 0.0);
        assert_eq!((n.rate(f1), n.rate(f2)), (50.0, 50.0));
    }

    /// A sender of 100 bytes/s and two receivers whose downlinks take anything.
    fn sender_and_two_receivers() -> (Network, usize, usize, usize) {
        let mut n = Network::default();
        let s = n.add_host(100.0, f64::INFINITY, false);
        let r1 = n.add_host(1.0, f64::INFINITY, false);
        let r2 = n.add_host(1.0, f64::INFINITY, false);
        (n, s, r1, r2)
    }

    #[test]
    fn test_carried_integrates_the_rates_through_every_change() {
        let (mut n, s, r1, r2) = sender_and_two_receivers();
        let f1 = n.start(s, r1, 1e6, f64::INFINITY, 1.0, 0.0);
        assert_eq!(n.carried(s, 1.0), 100.0);
        let f2 = n.start(s, r2, 1e6, 30.0, 1.0, 1.0); // 70 + 30 from t = 1
        n.set_limits(f2, 10.0, 1.0, 2.0); // 90 + 10 from t = 2
        n.stop(f1, 3.0); // 10 from t = 3
        assert_eq!(n.carried(s, 4.0), 100.0 + 100.0 + 100.0 + 10.0);
        n.stop(f2, 4.0);
        assert_eq!(n.carried(s, 9.0), 310.0, "nothing carried without flows");
        assert_eq!(n.carried(r1, 9.0), 0.0);
    }

    #[test]
    fn test_backlog_is_what_the_flows_have_left_to_send_through_every_change() {
        let (mut n, s, r1, r2) = sender_and_two_receivers();
        let f1 = n.start(s, r1, 1000.0, f64::INFINITY, 1.0, 0.0);
        assert_eq!(n.backlog(s, 2.0), 800.0);
        let f2 = n.start(s, r2, 500.0, 30.0, 1.0, 2.0); // 70 + 30 from t = 2
        assert_eq!(n.backlog(s, 4.0), 800.0 - 140.0 + 500.0 - 60.0);
        n.drained(f2, 4.0); // f2's bytes counted as gone, then 200 more
        n.refill(f2, 200.0, 4.0);
        assert_eq!(n.backlog(s, 5.0), 660.0 - 70.0 + 200.0 - 30.0);
        n.stop(f1, 5.0); // cut: its unsent bytes leave the queue with it
        assert_eq!(n.backlog(s, 5.0), 170.0);
        assert_eq!(n.backlog(s, 100.0), 0.0, "never below empty");
        n.stop(f2, 6.0);
        assert_eq!(n.backlog(s, 7.0), 0.0);
        assert_eq!(n.backlog(r1, 7.0), 0.0, "receivers queue nothing");
    }

    #[test]
    fn test_set_uplink_takes_effect_at_refresh_and_shares_by_weight() {
        let mut n = Network::default();
        let s = n.add_host(90.0, f64::INFINITY, false);
        let r1 = n.add_host(1.0, f64::INFINITY, false);
        let r2 = n.add_host(1.0, f64::INFINITY, false);
        let f1 = n.start(s, r1, 1e6, f64::INFINITY, 2.0, 0.0);
        let f2 = n.start(s, r2, 1e6, f64::INFINITY, 1.0, 0.0);
        assert_eq!(
            (n.rate(f1), n.rate(f2)),
            (45.0, 45.0),
            "equal shares at the link"
        );
        assert!(n.uplink_full(s));
        n.set_uplink(s, 60.0, true);
        assert_eq!(n.rate(f1), 45.0, "not before the refresh");
        n.refresh(s, 1.0);
        assert_eq!((n.rate(f1), n.rate(f2)), (40.0, 20.0));
        assert!(n.is_weighted(s));
        assert_eq!(n.carried(s, 2.0), 90.0 + 60.0);
    }

    /// Everything a run can observe of a network, bit for bit.
    fn state(n: &Network) -> Vec<u64> {
        let mut v = vec![n.next_generation];
        for (id, f) in &n.flows {
            v.push(id as u64);
            for x in [f.cap, f.weight, f.offer, f.rate, f.remaining, f.settled_at] {
                v.push(x.to_bits());
            }
            v.push(f.generation);
        }
        for h in &n.hosts {
            for x in [h.offered_in, h.level, h.sending] {
                v.push(x.to_bits());
            }
        }
        v
    }

    /// Skipping a `refresh` that `reshare` says would change nothing changes nothing: random
    /// flows, limits and refreshes on senders sharing slow receivers leave a network that
    /// skips exactly as one that always shares.
    #[test]
    fn test_skipped_refresh_changes_nothing() {
        let mut rng = crate::proto::Rng::new(0x2545_f491_4f6c_dd1d);
        let mut next = move |n: u64| rng.below(n as u32) as u64;
        let (mut skips, mut always) = (Network::default(), Network::default());
        for h in 0..8 {
            let up = 50.0 + 37.0 * h as f64;
            let down = if h % 2 == 0 {
                60.0 + 11.0 * h as f64
            } else {
                f64::INFINITY
            };
            for n in [&mut skips, &mut always] {
                n.add_host(up, down, h % 3 == 0);
            }
        }
        let (mut flows, mut skipped) = (Vec::new(), 0);
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        for step in 0..20_000u32 {
            let now = step as f64 * 0.01;
            match next(10) {
                0 if flows.len() < 24 => {
                    let (s, r) = (next(8) as usize, next(8) as usize);
                    if s != r {
                        let cap = [5.0, 20.0, f64::INFINITY][next(3) as usize];
                        let a = skips.start(s, r, 1e6, cap, 1.0, now);
                        let b = always.start(s, r, 1e6, cap, 1.0, now);
                        assert_eq!(a, b);
                        flows.push(a);
                    }
                }
                1 if !flows.is_empty() => {
                    let f = flows.swap_remove(next(flows.len() as u64) as usize);
                    skips.stop(f, now);
                    always.stop(f, now);
                }
                2 | 3 if !flows.is_empty() => {
                    // A tick's new limits: often the same ones.
                    let f = flows[next(flows.len() as u64) as usize];
                    let cap = [5.0, 20.0, f64::INFINITY][next(3) as usize];
                    let weight = (1 + next(2)) as f64;
                    skips.record_limits(f, cap, weight);
                    always.record_limits(f, cap, weight);
                }
                _ => {
                    let h = next(8) as usize;
                    skipped += !skips.hosts[h].reshare as u32;
                    skips.refresh(h, now);
                    always.hosts[h].reshare = true;
                    always.refresh(h, now);
                }
            }
            assert_eq!(state(&skips), state(&always), "step {step}");
            skips.take_changed(&mut out_a);
            always.take_changed(&mut out_b);
            assert_eq!(out_a, out_b, "step {step}");
        }
        assert!(skipped > 1000, "the test skips refreshes ({skipped})");
    }

    #[test]
    fn test_changed_lists_each_moved_flow_once() {
        let mut n = Network::default();
        let s = n.add_host(100.0, f64::INFINITY, false);
        let r = n.add_host(1.0, f64::INFINITY, false);
        let f1 = n.start(s, r, 10.0, f64::INFINITY, 1.0, 0.0);
        let f2 = n.start(s, r, 10.0, f64::INFINITY, 1.0, 0.0);
        let mut out = Vec::new();
        n.take_changed(&mut out);
        out.sort_unstable();
        assert_eq!(out, vec![f1, f2]);
        n.take_changed(&mut out);
        assert!(out.is_empty());
    }
}
