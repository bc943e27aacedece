//! Request scheduling: pipeline depth, wildcards to the origin versus rarest-first by
//! index, endgame duplicates, cancels and rejects, and serving peers' requests.

use super::*;

/// Most requests a node queues for one peer; more are rejected. Our own pipelines are at most
/// MAX_PIPELINE deep, so only a misbehaving peer goes past it.
pub(super) const MAX_QUEUED_REQUESTS: usize = 256;
/// Request pipelines hold the connection's current rate for its round trip and this much
/// longer (plus MIN_PIPELINE), so a peer never idles waiting for our next request;
/// libtorrent's `request_queue_time` is the same idea.
pub(super) const PIPELINE_SECS: f64 = 0.5;
pub(super) const MIN_PIPELINE: usize = 2;
/// As many as a peer queues (`MAX_QUEUED_REQUESTS`): at 16 KiB pieces that is 4 MiB, a
/// 600 ms round trip at 7 MB/s.
pub(super) const MAX_PIPELINE: usize = MAX_QUEUED_REQUESTS;
/// Endgame: a peer is asked for pieces already requested elsewhere only while fewer than this
/// many of our requests wait at it, so duplicates use a peer's idle time and no more.
pub(super) const ENDGAME_PIPELINE: usize = 2;
/// A peer that takes longer than this over each piece for us is slow: a fresh request
/// goes to it only if it would end before the node expects to hold every piece
/// (`tail_budget_secs`), or within `TAIL_FLOOR_SECS` anyway. Faster peers are never held
/// back: their pieces cannot hold up the end for long, and the endgame duplicates them.
pub(super) const SLOW_PIECE_SECS: f64 = 1.0;
pub(super) const TAIL_FLOOR_SECS: f64 = 2.0;
/// Pause before asking a peer again after it rejected a request while unchoking us.
pub(super) const REJECT_BACKOFF: Duration = Duration::from_millis(500);

/// `Node::tail_budget_secs` kept for one pass over the peers (a tick, `fill_all`): it is
/// an O(peers) sum, and summing it for every slow peer made a pass O(peers²). Requests
/// change it only when they turn a peer with a known pace into one serving us.
#[derive(Default)]
pub(super) struct TailBudget(Option<f64>);

impl TailBudget {
    /// The budget as kept, or `compute`d now if none is.
    fn secs(&mut self, compute: impl FnOnce() -> f64) -> f64 {
        *self.0.get_or_insert_with(compute)
    }

    pub(super) fn forget(&mut self) {
        self.0 = None;
    }
}

impl Node {
    pub(super) fn on_request(&mut self, slot: Slot, i: u32) {
        let Some(n) = self.manifest.as_ref().map(|m| m.piece_count()) else {
            return self.fail(slot, ErrorCode::Protocol, "REQUEST before the manifest");
        };
        let is_origin = self.cfg.role == Role::Origin;
        if (i == WILDCARD && !is_origin) || (i != WILDCARD && i >= n) {
            return self.fail(slot, ErrorCode::Protocol, "REQUEST for an invalid piece");
        }
        let held = is_origin || self.picker.as_ref().is_some_and(|p| p.have().get(i));
        let choking = self.table.is_choking(slot);
        let p = self.peer_mut(slot).expect("frame came from it");
        // The origin serves registered clients only: one that never sent its BITFIELD has
        // no holdings the striper could count, nor copies it could forget when it leaves.
        let unregistered = is_origin && !p.registered;
        // A piece the peer announced is one it holds: an honest node never asks for it, and
        // one whose announcements were false gets nothing for them (§5.6).
        let announced = i != WILDCARD && p.has.get(i);
        if choking || !held || unregistered || announced || p.queue.len() >= MAX_QUEUED_REQUESTS {
            return self.emit(slot, &Message::Reject(i));
        }
        p.queue.push_back(i);
        self.mark_dirty(slot);
    }

    /// A copy of `piece` is arriving on `from`: withdraw the other requests for it (BEP 3's
    /// cancel), so the peers' uplinks carry something else instead of a duplicate.
    pub(super) fn cancel_elsewhere(&mut self, piece: u32, from: Slot) {
        for s in 0..self.peers.len() {
            if s == from {
                continue;
            }
            let Some(p) = self.peers[s].as_mut() else {
                continue;
            };
            let Some(a) = p
                .asked
                .iter_mut()
                .find(|a| a.piece == piece && !a.cancelled)
            else {
                continue;
            };
            a.cancelled = true;
            self.emit(s, &Message::Cancel(piece));
        }
    }

    /// From now on the origin (on `slot`) is asked by index; the wildcards still waiting
    /// there are withdrawn, as their answers would be no better than the one that showed it.
    pub(super) fn ask_origin_by_index(&mut self, slot: Slot) {
        match self.client_side_mut() {
            Some(c) if !c.origin.asks_by_index => c.origin.asks_by_index = true,
            _ => return,
        }
        let Some(p) = self.peer_mut(slot) else {
            return;
        };
        let mut withdrawn = 0;
        for a in p.asked.iter_mut() {
            if a.piece == WILDCARD && !a.cancelled {
                a.cancelled = true;
                withdrawn += 1;
            }
        }
        for _ in 0..withdrawn {
            self.emit(slot, &Message::Cancel(WILDCARD));
        }
    }

    /// The peer withdraws a request: drop it if it is still queued, and answer it.
    pub(super) fn on_cancel(&mut self, slot: Slot, i: u32) {
        let p = self.peer_mut(slot).expect("frame came from it");
        if let Some(k) = p.queue.iter().position(|&q| q == i) {
            p.queue.remove(k);
            self.emit(slot, &Message::Reject(i));
        }
        // Otherwise it is being sent or was answered already: nothing to do.
    }

    pub(super) fn on_reject(&mut self, slot: Slot, i: u32) {
        let now = self.now;
        let p = self.peer_mut(slot).expect("frame came from it");
        let Some(idx) = p.asked.iter().position(|a| a.piece == i) else {
            return self.fail(slot, ErrorCode::Protocol, "REJECT of a piece not requested");
        };
        let asked = p.asked.remove(idx);
        let unchoked = !p.peer_choking;
        if unchoked && !asked.cancelled {
            p.backoff_until = Some(now + REJECT_BACKOFF);
        }
        if i == WILDCARD {
            // An unchoking origin refuses a wildcard when every piece we lack is, as it
            // sees it, on its way to us. One it sent may have been discarded here (another
            // copy was arriving, and that one then failed): only asking by index gets it.
            if let Some(c) = self.client_side_mut() {
                c.origin.backoff_until = Some(now + REJECT_BACKOFF);
                c.origin.asks_by_index |= unchoked;
            }
        } else if let Some(picker) = self.picker.as_mut() {
            picker.on_request_done(i);
        }
        // Another peer may serve what this one would not.
        self.fill_all();
    }

    /// Requests to keep outstanding on `slot`. Without its round trip in it, a pipeline
    /// caps the rate at what it holds per round trip, and the rate it is sized from then
    /// never grows: over a 600 ms round trip (or a slow uplink's full queue) a connection
    /// stalled at a few pieces per second.
    pub(super) fn pipeline_depth(&self, slot: Slot) -> usize {
        let piece = self.manifest.as_ref().map_or(1, |m| m.piece_size().max(1)) as f64;
        let rate = self.table.down_rate(slot);
        let rtt = self.peer(slot).map_or(0.0, |p| p.rtt.as_secs_f64());
        let want = (rate * (rtt + PIPELINE_SECS) / piece).ceil() as usize + MIN_PIPELINE;
        want.clamp(MIN_PIPELINE, MAX_PIPELINE)
    }

    /// How long until the node holds every piece if its sources go on at their pace: the
    /// pieces it lacks over the pieces per second of the peers serving it now (infinite
    /// while none has a known pace). Whole pieces cannot be taken back once they start,
    /// so a request handed to a peer that needs longer than this holds the node's last
    /// piece: a 5 Mbit/s peer sharing its upload among 4 takes 7 s over a 1 MiB piece
    /// that a seed sends in 0.1 s, and with two requests at each slow peer the last 5%
    /// of a 1,000-client crowd's slow clients took 40 s.
    pub(super) fn tail_budget_secs(&self) -> f64 {
        let Some(picker) = self.picker.as_ref() else {
            return f64::INFINITY;
        };
        let per_sec: f64 = self
            .peers
            .iter()
            .flatten()
            .filter(|p| p.counts_in_tail_budget())
            .filter_map(|p| p.piece_secs)
            .map(|s| 1.0 / s.max(1e-3))
            .sum();
        picker.missing() as f64 / per_sec
    }

    pub(super) fn fill_all(&mut self) {
        let mut budget = TailBudget::default();
        for s in 0..self.peers.len() {
            if self.peer(s).is_some_and(|p| p.ready) {
                self.fill_requests_within(s, &mut budget);
            }
        }
    }

    /// Keep the pipeline to `slot` full: wildcards to the origin, rarest-first to peers.
    pub(super) fn fill_requests(&mut self, slot: Slot) {
        self.fill_requests_within(slot, &mut TailBudget::default());
    }

    /// `fill_requests` as one step of a pass over many peers, which shares `tail`.
    pub(super) fn fill_requests_within(&mut self, slot: Slot, tail: &mut TailBudget) {
        if self.cfg.role != Role::Client || self.is_complete() {
            return;
        }
        let now = self.now;
        let depth = self.pipeline_depth(slot);
        // Most calls find the pipeline full or the peer choking us: skip the O(peers) scans
        // (endgame candidates, tail budget) for them.
        match self.peer(slot) {
            Some(p) if p.asked.len() < depth && p.may_ask(now) => {}
            _ => return,
        }
        let endgame = self.endgame_candidates(slot);
        // Only a slow peer needs the budget (an O(peers) sum).
        let budget = match self.peer(slot) {
            Some(p) if !p.is_origin_link() && p.piece_secs.is_some_and(|s| s > SLOW_PIECE_SECS) => {
                tail.secs(|| self.tail_budget_secs()).max(TAIL_FLOOR_SECS)
            }
            _ => f64::INFINITY,
        };
        let serving_before = self.peer(slot).is_some_and(Peer::counts_in_tail_budget);
        let Some(c) = self.client_side() else {
            return;
        };
        let origin_backoff = c.origin.backoff_until.is_some_and(|t| now < t);
        let asks_by_index = c.origin.asks_by_index;
        let Some(p) = self.peers.get_mut(slot).and_then(|p| p.as_mut()) else {
            return;
        };
        let Some(picker) = self.picker.as_mut() else {
            return;
        };
        let mut out = std::mem::take(&mut p.outbox);
        let mut wildcards = p.asked.iter().filter(|a| a.piece == WILDCARD).count() as u32;
        while p.asked.len() < depth {
            // The origin chooses the piece (WILDCARD) while it holds pieces no peer has: its
            // global view spreads fresh pieces. Once the peers hold everything unassigned, a
            // wildcard could only duplicate a request made elsewhere, so the rest of the
            // pipeline asks the origin by index, which can be cancelled like any other
            // request (the origin's choice for the wildcards still out skips those pieces,
            // §5.2); while wildcards are out, only for pieces a peer holds, as the wildcards
            // may bring the others. Waiting for those wildcards instead held the pipeline to
            // as many as there are unseen pieces, which a choking peer's arriving pieces can
            // keep at a few for the whole download.
            let origin = p.is_origin_link();
            let piece = if origin && !asks_by_index && picker.unseen() > wildcards {
                if origin_backoff || picker.missing() <= p.asked.len() as u32 {
                    break;
                }
                wildcards += 1;
                WILDCARD
            } else {
                let late = || {
                    if p.asked.len() >= ENDGAME_PIPELINE {
                        return None;
                    }
                    let asked_here = |i| p.asked.iter().any(|a| a.piece == i);
                    endgame
                        .iter()
                        .copied()
                        .find(|&i| picker.endgame_allows(i) && !asked_here(i))
                };
                // Nothing to a slow peer that would bring it after the end: neither a
                // fresh piece nor an endgame duplicate, which it might start first and
                // then hold as long.
                if !origin && p.expected_secs().is_some_and(|t| t > budget) {
                    break;
                }
                let picked = if origin && wildcards > 0 {
                    picker.pick_held(&p.has, &mut self.rng)
                } else {
                    picker.pick_unless_dry(&p.has, &mut p.dry, &mut self.rng)
                };
                match picked.or_else(late) {
                    Some(i) => {
                        picker.on_request(i);
                        i
                    }
                    None => break,
                }
            };
            p.asked.push(Asked {
                piece,
                at: now,
                cancelled: false,
            });
            Message::Request(piece).emit(&mut out);
        }
        let sent = !out.is_empty();
        p.outbox = out;
        if sent {
            p.last_send = now;
            if !serving_before && p.counts_in_tail_budget() {
                tail.forget();
            }
            self.mark_dirty(slot);
        }
    }

    /// Endgame: pieces `slot` has that another peer was asked for and has not started
    /// sending, longest waiting first: those are the requests stuck behind a slow peer.
    /// Empty before the endgame.
    pub(super) fn endgame_candidates(&self, slot: Slot) -> Vec<u32> {
        let (Some(picker), Some(me)) = (self.picker.as_ref(), self.peer(slot)) else {
            return Vec::new();
        };
        if !picker.all_assigned() || me.asked.len() >= ENDGAME_PIPELINE {
            return Vec::new();
        }
        let mut waiting: Vec<(Instant, u32)> = self
            .peers
            .iter()
            .enumerate()
            .filter(|&(s, _)| s != slot)
            .filter_map(|(_, p)| p.as_ref())
            .flat_map(|p| p.asked.iter())
            .filter(|a| !a.cancelled && a.piece != WILDCARD && me.has.get(a.piece))
            .map(|a| (a.at, a.piece))
            .collect();
        waiting.sort_unstable();
        waiting.into_iter().map(|(_, i)| i).collect()
    }

    /// Send INTERESTED / not-interested when `useful` crosses zero.
    pub(super) fn update_interest(&mut self, slot: Slot) {
        let complete = self.is_complete();
        let Some(p) = self.peer_mut(slot) else { return };
        let want = !complete && p.useful > 0;
        if p.am_interested != want && p.admitted {
            p.am_interested = want;
            self.emit(slot, &Message::Interested(want));
        }
    }
}
