//! Time: the node's 100 ms tick (rates, request pipelines, per-connection timeouts), the
//! client's stall and origin-retry timers, and the choking round.

use std::borrow::Cow;

use super::requests::TailBudget;
use super::*;
use crate::bounds::payload_rate;

/// How often the node re-estimates rates, re-decides chokes and checks timers. 100 ms keeps
/// request pipelines sized to within a fraction of a second of a link's ramp-up.
pub(super) const TICK: Duration = Duration::from_millis(100);
/// Send a KEEPALIVE after this long without sending anything (BEP 3 uses 2 minutes; a
/// shorter one lets the peer's idle timeout below be short too).
pub(super) const KEEPALIVE_AFTER: Duration = Duration::from_secs(15);
/// Drop a connection that sent nothing for four keepalive periods.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Close a connection we have been waiting on this long without a byte of payload from it:
/// a serving peer trickles at least its smallest share, so silence means it is stuck, and
/// its pieces are better fetched elsewhere. Only while we lack pieces: a complete node
/// waits for nothing it needs (the answers to its cancelled endgame requests), and closing
/// would cut off the piece it may be sending that peer.
pub(super) const SERVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Drop a connection whose handshake (HELLO, and AUTH in a swarm with a secret) is not done
/// in time.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait between attempts to reach a peer, and how many attempts it gets.
pub(super) const DIAL_RETRY: Duration = Duration::from_secs(2);
pub(super) const MAX_DIAL_ATTEMPTS: u32 = 3;
/// Wait between attempts to reconnect to an origin lost after the manifest arrived.
pub(super) const ORIGIN_RETRY: Duration = Duration::from_secs(2);
/// Origin: a client that other clients confirm sending a fifth of the file or more, with no
/// witnessed credit (two receivers confirming an upload of it), takes without giving
/// (`choke::tft`).
const TOOK_MUCH_DIVISOR: u64 = 5;

/// True once `after` has passed since `since`. A deadline beyond what `Instant` can hold
/// never passes: `--linger 18446744073709551615` means "as long as the swarm wants", where
/// `since + after` panicked (`overflow when adding duration to instant`, issue 13).
pub(super) fn passed(now: Instant, since: Instant, after: Duration) -> bool {
    since.checked_add(after).is_some_and(|at| now >= at)
}

/// Why the connection to `p` has timed out at `now`, if it has: no handshake in time, no
/// frame for too long, or (while we are incomplete) no piece data for a request.
fn expired(p: &Peer, now: Instant, complete: bool) -> Option<Cow<'static, str>> {
    if !p.admitted && now >= p.opened_at + HANDSHAKE_TIMEOUT {
        let what = if p.hello.is_none() { "HELLO" } else { "AUTH" };
        Some(format!("no {what} in time").into())
    } else if now >= p.last_recv + IDLE_TIMEOUT {
        Some("peer silent for too long".into())
    } else if !complete
        // last_data first: waiting_since reads the requests' heap buffer, a cache miss
        // for each peer at each tick.
        && now >= p.last_data + SERVE_TIMEOUT
        && p.waiting_since().is_some_and(|w| now >= w + SERVE_TIMEOUT)
    {
        Some("no piece data for 10 s".into())
    } else {
        None
    }
}

impl Node {
    /// Timers: rates, chokes, keepalives, timeouts, dials, lingering.
    pub fn handle_tick(&mut self, now: Instant) {
        self.now = now;
        let dt = now.saturating_duration_since(self.last_tick).as_secs_f64();
        if now < self.last_tick + TICK {
            return;
        }
        self.last_tick = now;
        self.table.roll(dt);
        self.update_send_limit();
        if now >= self.last_round + ROUND {
            self.end_round(now);
        }
        let complete = self.is_complete();
        let mut budget = TailBudget::default();
        for slot in 0..self.peers.len() {
            let Some(p) = self.peer(slot) else { continue };
            if p.closing {
                continue;
            }
            if let Some(why) = expired(p, now, complete) {
                self.fail(slot, ErrorCode::Timeout, &why);
                // The peer may have counted in the budget.
                budget.forget();
            } else if now >= p.last_send + KEEPALIVE_AFTER {
                self.emit(slot, &Message::KeepAlive);
            } else if p.ready {
                // Pipelines grow with the measured rate, and back-offs expire.
                self.fill_requests_within(slot, &mut budget);
            }
        }
        if self.client_side().is_some() {
            self.client_timers(now);
        }
    }

    pub(super) fn client_timers(&mut self, now: Instant) {
        if self.manifest.is_some() && !self.is_complete() {
            if passed(now, self.last_progress, self.cfg.stall_timeout) {
                let (have, total) = self.progress();
                self.fatal(
                    FailureKind::Stalled,
                    format!(
                        "no progress for {} s ({have}/{total} pieces); giving up",
                        self.cfg.stall_timeout.as_secs()
                    ),
                );
                return;
            }
            let server = self.cfg.server;
            if let Some(c) = self.client_side_mut()
                && c.origin.slot.is_none()
                && !c.origin.dialing
                && let (Some(lost), Some(addr)) = (c.origin.lost_at, server)
                && now >= lost + ORIGIN_RETRY
            {
                c.origin.lost_at = Some(now);
                c.origin.dialing = true;
                self.events.push_back(Event::Connect {
                    addr,
                    link: Link::ToOrigin,
                });
            }
        }
        if self.cfg.listen_port != 0
            && let Some(c) = self.client_side_mut()
        {
            c.reach.check(now);
        }
        self.maybe_dial(now);
        self.check_exit();
    }

    /// Closes a choking round: receipts out, counters in, chokes decided anew.
    pub(super) fn end_round(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.last_round).as_secs_f64();
        self.last_round = now;
        let took_much =
            self.manifest.as_ref().map_or(u64::MAX, |m| m.file_len()) / TOOK_MUCH_DIVISOR;
        if let Side::Origin(registry) = &self.side {
            let piece = self.manifest.as_ref().map_or(1, |m| m.piece_size() as u64);
            self.ledger.infer(|id| registry.is_registered(id), piece);
        }
        self.tell_seeds_progress();
        for s in 0..self.peers.len() {
            if let Some(p) = self.peers[s].as_ref() {
                let missing = p.has.len().saturating_sub(p.held);
                let asking = !p.queue.is_empty() || p.sending;
                self.table
                    .set_round_facts(s, !p.asked.is_empty(), asking, missing);
                if let (Some(id), Side::Origin(registry)) = (p.node_id(), &self.side) {
                    let witnesses = registry.credit_witnesses();
                    let trusted = self.ledger.trusted_credit(id, witnesses);
                    let vouched = |sender| self.ledger.trusted_credit(sender, witnesses) > 0;
                    // Taking much names only a client without witnessed credit; the sum
                    // over its senders is not worth doing for the others, every round.
                    let took =
                        trusted == 0 && self.ledger.taken(id, witnesses, vouched) >= took_much;
                    self.table
                        .set_credit(s, self.ledger.credit(id), trusted, took);
                }
                if let Side::Origin(registry) = &self.side {
                    self.table
                        .set_others_taking(s, registry.another_taker(s, now));
                }
            }
        }
        self.table.end_round(secs);
        self.decide_chokes(true);
        self.publish_standing();
        if self.cfg.role == Role::Client {
            self.send_receipts();
        }
    }

    pub(super) fn decide_chokes(&mut self, new_round: bool) {
        let mut changed = std::mem::take(&mut self.changed);
        changed.clear();
        let me = Me {
            is_origin: self.cfg.role == Role::Origin,
            complete: self.is_complete(),
            free_rider: self.cfg.behaviour.uploads_nothing(),
            capacity: self.cfg.capacity.map(|c| payload_rate(c) as f64),
            piece_size: self.manifest.as_ref().map_or(1, |m| m.piece_size()),
            // Unbounded at a client.
            send_slots: self.send_limit(),
        };
        self.table
            .decide(self.cfg.policy, me, new_round, &mut self.rng, &mut changed);
        for &s in &changed {
            if self.peer(s).is_some_and(|p| p.admitted && !p.closing) {
                let msg = if self.table.is_choking(s) {
                    Message::Choke
                } else {
                    Message::Unchoke
                };
                self.emit(s, &msg);
            }
        }
        self.changed = changed;
    }
}
