//! Peer discovery: the PEERS the origin sends, and dialling the peers it named.

use super::*;

impl Node {
    pub(super) fn on_peers(&mut self, slot: Slot, entries: &[PeerEntry]) {
        if self.cfg.role != Role::Client || !self.peer(slot).is_some_and(|p| p.is_origin_link()) {
            return self.fail(slot, ErrorCode::Protocol, "PEERS from a non-origin");
        }
        let (my_id, now) = (self.cfg.node_id, self.now);
        let Side::Client(c) = &mut self.side else {
            return;
        };
        if !self.cfg.use_peers {
            return;
        }
        let listening = self.cfg.listen_port != 0;
        let mut smaller = 0;
        for e in entries {
            match e.op {
                PeerOp::Add if e.node_id != my_id => {
                    if !c.known.iter().any(|k| k.node_id == e.node_id) {
                        // The dial rule below makes a smaller id dial us.
                        smaller += u32::from(e.node_id < my_id);
                        c.dial_quiet = None;
                        c.known.push(Known {
                            node_id: e.node_id,
                            addr: e.addr,
                            slot: None,
                            attempts: 0,
                            next_attempt: now,
                            failed_dials: 0,
                        });
                    }
                }
                PeerOp::Add => {}
                PeerOp::Remove => c
                    .known
                    .retain(|k| k.node_id != e.node_id || k.slot.is_some()),
            }
        }
        if listening && entries.iter().any(|e| e.op == PeerOp::Add) {
            c.reach.on_peers(smaller, now);
        }
        self.maybe_dial(self.now);
    }

    /// Connect to known peers we are responsible for dialling. Of two listening clients the
    /// one with the smaller id dials, so a pair does not open two connections. A complete
    /// client (a seed) dials too: a listening newcomer with a larger id than the seed's
    /// waits for the seed to dial it, and a seed that dialled nobody never served it.
    pub(super) fn maybe_dial(&mut self, now: Instant) {
        if !self.cfg.use_peers || self.manifest.is_none() {
            return;
        }
        let my_id = self.cfg.node_id;
        let Side::Client(c) = &self.side else {
            return;
        };
        // A port the origin could not reach is no port: dial every peer, as without one.
        let listening = self.cfg.listen_port != 0 && c.reach.origin_verdict() != Some(false);
        if c.dial_quiet.is_some_and(|q| q.holds(now, listening)) {
            return;
        }
        let mut room = self.cfg.max_peers.saturating_sub(self.peer_count());
        let Side::Client(c) = &mut self.side else {
            return;
        };
        // The earliest retry among the peers we may still dial; worth keeping only if
        // the scan saw them all (room did not run out).
        let (mut until, mut saw_all) = (None::<Instant>, true);
        for k in c.known.iter_mut() {
            let ours = !listening || my_id < k.node_id;
            if k.slot.is_some() || !ours || k.attempts >= MAX_DIAL_ATTEMPTS {
                continue;
            }
            if c.banned.contains(&k.node_id) {
                continue;
            }
            if now >= k.next_attempt {
                if room == 0 {
                    saw_all = false;
                    break;
                }
                k.next_attempt = now + DIAL_RETRY;
                k.attempts += 1;
                room -= 1;
                self.events.push_back(Event::Connect {
                    addr: k.addr,
                    link: Link::ToPeer { node_id: k.node_id },
                });
            }
            if k.attempts < MAX_DIAL_ATTEMPTS {
                until = Some(until.map_or(k.next_attempt, |t| t.min(k.next_attempt)));
            }
        }
        c.dial_quiet = saw_all.then_some(DialQuiet { until, listening });
    }
}
