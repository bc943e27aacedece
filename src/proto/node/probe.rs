//! The origin's connect-back check (docs/PROTOCOL.md §4.8, §9): once a listening client has
//! registered, the origin asks its driver to open a TCP connection to the client's
//! advertised address (the address the client connected from, with its HELLO's `listen`
//! port) and tells the client what came of it with REACHABILITY. A client behind NAT or a
//! firewall learns within one connect timeout that peers cannot dial it, instead of
//! inferring it from dials that never came (`reach.rs`), which takes 10 s and a newcomer.
//!
//! The node stays sans-IO: it asks with `Event::Probe` and hears back through
//! `handle_probe_result`; the connect, its timeout and the close are the driver's. Probes are
//! made only for registered clients (after HELLO, AUTH in a swarm with a secret, and
//! BITFIELD), never for `listen = 0`, once per connection, and at most `MAX_PROBES` at once:
//! a crowd of registrations waits its turn rather than making the origin open a socket for
//! each at once.

use super::*;

/// Most probes in flight at once. Each holds one socket in the driver for up to its connect
/// timeout (3 s); 64 keeps that far below the origin's connection limit and still checks a
/// flash crowd of 1,000 clients within 1,000 / 64 × 3 s ≈ 47 s when every probe times out,
/// and in a few round trips when they are answered.
pub(super) const MAX_PROBES: usize = 64;

/// Which probe a result answers: the node's own counter, never reused, so a result that
/// comes back after its client left (and its slot was given to another) is recognised.
pub type ProbeId = u64;

/// The origin's probes: asked of the driver, and waiting for room.
#[derive(Debug, Default)]
pub(super) struct Probes {
    next_id: ProbeId,
    /// Asked and not answered: (probe, client slot, client node id).
    in_flight: Vec<(ProbeId, Slot, u64)>,
    /// Registered listening clients waiting for room, oldest first: (slot, node id).
    waiting: VecDeque<(Slot, u64)>,
}

impl Probes {
    /// Probes asked of the driver and not yet answered.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

impl Node {
    /// Origin: the client on `slot` registered; probe its listen port if it has one.
    pub(super) fn queue_probe(&mut self, slot: Slot) {
        let Some((id, true)) = self
            .peer(slot)
            .and_then(|p| Some((p.node_id()?, p.listen_addr().is_some())))
        else {
            return;
        };
        if let Side::Origin(r) = &mut self.side {
            r.probes.waiting.push_back((slot, id));
        }
        self.start_probes();
    }

    /// Asks the driver for waiting probes while there is room; a client that left (or
    /// whose slot another took) while waiting is skipped.
    fn start_probes(&mut self) {
        loop {
            let Side::Origin(r) = &mut self.side else {
                return;
            };
            if r.probes.in_flight.len() >= MAX_PROBES {
                return;
            }
            let Some((slot, id)) = r.probes.waiting.pop_front() else {
                return;
            };
            let addr = self
                .peer(slot)
                .filter(|p| p.registered && !p.closing && p.node_id() == Some(id))
                .and_then(|p| p.listen_addr());
            let Some(addr) = addr else { continue };
            let Side::Origin(r) = &mut self.side else {
                return;
            };
            let probe = r.probes.next_id;
            r.probes.next_id += 1;
            r.probes.in_flight.push((probe, slot, id));
            self.events.push_back(Event::Probe { id: probe, addr });
        }
    }

    /// Origin: the driver's answer to `Event::Probe { id, .. }`: whether a TCP connection
    /// to the address opened within its timeout, or `None` when the driver could not try
    /// (its own error, no verdict on the client's port). The client, if still connected, is
    /// told a verdict with REACHABILITY, and the next waiting probe starts.
    pub fn handle_probe_result(&mut self, id: ProbeId, reachable: Option<bool>, now: Instant) {
        self.now = now;
        let Side::Origin(r) = &mut self.side else {
            return;
        };
        let Some(k) = r.probes.in_flight.iter().position(|p| p.0 == id) else {
            return;
        };
        let (_, slot, node_id) = r.probes.in_flight.swap_remove(k);
        let same = self
            .peer(slot)
            .is_some_and(|p| p.registered && !p.closing && p.node_id() == Some(node_id));
        if same && let Some(reachable) = reachable {
            if !reachable {
                self.counters.clients_unreachable += 1;
                // From now on it is named to no newcomer (they would dial in vain), and it
                // dials every peer it is told about (`maybe_dial`), as `--no-listen` does.
                if let Some(p) = self.peer_mut(slot) {
                    p.unreachable = true;
                }
            }
            self.emit(slot, &Message::Reachability(reachable));
        }
        self.start_probes();
    }

    /// Origin: probes asked of the driver and not answered yet.
    pub fn probes_in_flight(&self) -> usize {
        match &self.side {
            Side::Origin(r) => r.probes.in_flight(),
            Side::Client(_) => 0,
        }
    }

    /// Client: the origin's REACHABILITY. Only the origin's is taken; an origin, or a peer,
    /// that receives one ignores it (as it ignores RECEIPT, §4.6).
    pub(super) fn on_reachability(&mut self, slot: Slot, reachable: bool) {
        let from_origin = self.peer(slot).is_some_and(|p| p.is_origin_link());
        if !from_origin || self.cfg.listen_port == 0 {
            return;
        }
        if let Some(c) = self.client_side_mut() {
            c.reach.on_origin_verdict(reachable);
        }
        // Unreachable, it dials the peers it left to dial it (`maybe_dial`).
        self.maybe_dial(self.now);
    }
}
