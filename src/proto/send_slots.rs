//! The origin's send slots: how many pieces it has on their way at once, and who gets the
//! next free slot (docs/PROTOCOL.md §5.2, "Send slots").
//!
//! An uplink shared by every connection that has a piece to send delivers each piece late:
//! 224 clients sharing 8 Mbit/s got their first pieces after 3.6 s, and the last fresh
//! pieces reached the swarm seconds after the origin started them, while the origin spent
//! its upload on second copies (the simulator's `at-once-bimodal-n238`, 1.52x its
//! minimum). With a few pieces at a time each arrives in a fraction of a second and the
//! swarm passes it on. Who is next follows the policy's weights by start-time fair
//! queueing: each waiting client's turn starts at the later of the schedule's virtual time
//! and the end of its last turn, and a turn lasts a piece's length over its weight.
//!
//! Weights a hundred times apart among hundreds of clients starve the lightest for
//! minutes, which an honest client the policy misjudged should not suffer. So a client that
//! has waited `MAX_WAIT` goes next, one such client at a time: a floor that costs the
//! origin at most one slot (in the simulator free riders of a slow origin still give up
//! after 60 s without a piece, README rule 29, but no honest client did).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

type Slot = usize;

/// A client waiting this long for a send slot is served next (one at a time): a sixth of
/// a client's default `--stall-timeout` (60 s).
const MAX_WAIT: Duration = Duration::from_secs(10);

/// A waiting client's place: its virtual start, then its slot (ties go to the lower slot,
/// so equal weights are served in a fixed order).
#[derive(Debug, Clone, Copy)]
struct Place {
    start: f64,
    slot: Slot,
    /// The slot's `generation` when it queued: a stale place (it left, withdrew or was
    /// served by the floor) is skipped.
    generation: u32,
}

impl PartialEq for Place {
    fn eq(&self, other: &Place) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Place {}

impl Ord for Place {
    fn cmp(&self, other: &Place) -> std::cmp::Ordering {
        self.start
            .total_cmp(&other.start)
            .then(self.slot.cmp(&other.slot))
    }
}

impl PartialOrd for Place {
    fn partial_cmp(&self, other: &Place) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One connection's state in the schedule.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// Virtual time at which its last turn ends.
    finish: f64,
    /// It waits for a send slot (a place in `waiting` is current).
    queued: bool,
    /// It was given a send slot and has not used it yet.
    granted: bool,
    /// Bumped when it leaves or its place goes stale.
    generation: u32,
    /// Its queued place's start and turn length.
    start: f64,
    turn: f64,
}

/// A waiting client in order of arrival, for the starvation floor.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    slot: Slot,
    generation: u32,
    since: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct SendSlots {
    /// Pieces on their way plus slots granted and not yet used.
    busy: usize,
    virtual_time: f64,
    waiting: BinaryHeap<Reverse<Place>>,
    /// The same places in order of arrival.
    arrivals: VecDeque<Arrival>,
    /// The client holding the slot given for having waited `MAX_WAIT`.
    overdue: Option<Slot>,
    /// Clients with a current place (the heap also holds stale ones).
    queued: usize,
    clients: Vec<Entry>,
}

impl SendSlots {
    fn entry(&mut self, slot: Slot) -> &mut Entry {
        if self.clients.len() <= slot {
            self.clients.resize(slot + 1, Entry::default());
        }
        &mut self.clients[slot]
    }

    /// `slot` wants to start a piece of `len` bytes at `weight` while at most `limit` may
    /// be on their way: true if it may (it then holds a slot until `release`), false if it
    /// waits for `poll_grant` to name it.
    pub(crate) fn admit(
        &mut self,
        slot: Slot,
        weight: f64,
        len: u32,
        limit: usize,
        now: Instant,
    ) -> bool {
        let turn = len as f64 / weight.max(f64::MIN_POSITIVE);
        let (busy, idle, vt) = (self.busy, self.queued == 0, self.virtual_time);
        let c = self.entry(slot);
        if c.granted {
            c.granted = false;
            return true;
        }
        if c.queued {
            return false;
        }
        let start = vt.max(c.finish);
        if busy < limit && idle {
            c.finish = start + turn;
            self.virtual_time = start;
            self.busy += 1;
            return true;
        }
        c.queued = true;
        c.start = start;
        c.turn = turn;
        let generation = c.generation;
        self.queued += 1;
        self.compact();
        self.waiting.push(Reverse(Place {
            start,
            slot,
            generation,
        }));
        self.arrivals.push_back(Arrival {
            slot,
            generation,
            since: now,
        });
        false
    }

    /// The piece `slot` was admitted for has left (or will not be sent): its slot is free.
    pub(crate) fn release(&mut self, slot: Slot) {
        self.busy = self.busy.saturating_sub(1);
        if self.overdue == Some(slot) {
            self.overdue = None;
        }
    }

    /// Slots in use (pieces on their way and grants not yet used) and clients waiting.
    pub(crate) fn demand(&self) -> (usize, usize) {
        (self.busy, self.queued)
    }

    /// The next waiting client to give a free slot to, while fewer than `limit` are busy;
    /// the caller wakes it (its next `admit` returns true).
    pub(crate) fn poll_grant(&mut self, limit: usize, now: Instant) -> Option<Slot> {
        if self.busy >= limit {
            return None;
        }
        let (slot, overdue) = match self.oldest_waiting() {
            Some(a)
                if self.overdue.is_none() && now.saturating_duration_since(a.since) >= MAX_WAIT =>
            {
                self.overdue = Some(a.slot);
                (a.slot, true)
            }
            _ => loop {
                let Reverse(place) = self.waiting.pop()?;
                if is_current(&self.clients, place.slot, place.generation) {
                    break (place.slot, false);
                }
            },
        };
        let c = &mut self.clients[slot];
        c.queued = false;
        c.granted = true;
        c.generation = c.generation.wrapping_add(1);
        c.finish = c.start + c.turn;
        // A turn out of order moves nobody's clock: it would wipe out what the others are
        // owed (a light client's start runs far ahead of theirs).
        if !overdue {
            self.virtual_time = self.virtual_time.max(c.start);
        }
        self.queued -= 1;
        self.busy += 1;
        Some(slot)
    }

    /// `slot` has nothing to start after all (its request was cancelled or refused, or
    /// its window is full): its place and any unused grant go, and what it owes stays.
    /// True if it had either.
    pub(crate) fn withdraw(&mut self, slot: Slot) -> bool {
        let Some(c) = self.clients.get_mut(slot) else {
            return false;
        };
        let (granted, queued) = (c.granted, c.queued);
        if !granted && !queued {
            return false;
        }
        c.granted = false;
        c.queued = false;
        c.generation = c.generation.wrapping_add(1);
        if queued {
            self.queued -= 1;
        }
        if granted {
            self.release(slot);
        }
        true
    }

    /// Drops the stale places once they outnumber the current ones: the places of clients
    /// served by the floor, withdrawn or gone are otherwise dropped only at the top.
    fn compact(&mut self) {
        if self.waiting.len() <= 2 * self.queued + 64 {
            return;
        }
        let clients = &self.clients;
        self.waiting
            .retain(|Reverse(p)| is_current(clients, p.slot, p.generation));
        self.arrivals
            .retain(|a| is_current(clients, a.slot, a.generation));
    }

    /// The longest-waiting client still queued (older arrivals that went are dropped).
    fn oldest_waiting(&mut self) -> Option<Arrival> {
        while let Some(&a) = self.arrivals.front() {
            if is_current(&self.clients, a.slot, a.generation) {
                return Some(a);
            }
            self.arrivals.pop_front();
        }
        None
    }

    /// `slot` closed: as `withdraw`, and a new connection on the slot owes nothing.
    pub(crate) fn forget(&mut self, slot: Slot) {
        self.withdraw(slot);
        if let Some(c) = self.clients.get_mut(slot) {
            c.finish = 0.0;
        }
    }
}

/// Whether a place or arrival of `slot` made at `generation` is still its current one.
fn is_current(clients: &[Entry], slot: Slot, generation: u32) -> bool {
    let c = &clients[slot];
    c.queued && c.generation == generation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> Instant {
        ms(secs * 1000)
    }

    fn ms(millis: u64) -> Instant {
        // A fixed origin keeps the tests deterministic.
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now) + Duration::from_millis(millis)
    }

    #[test]
    fn test_admits_up_to_the_limit_then_queues() {
        let mut s = SendSlots::default();
        assert!(s.admit(0, 1.0, 100, 2, t(0)));
        assert!(s.admit(1, 1.0, 100, 2, t(0)));
        assert!(!s.admit(2, 1.0, 100, 2, t(0)));
        assert_eq!(s.poll_grant(2, t(0)), None);
        s.release(0);
        assert_eq!(s.poll_grant(2, t(0)), Some(2));
        assert_eq!(s.poll_grant(2, t(0)), None);
        assert!(s.admit(2, 1.0, 100, 2, t(0)), "the grant is used");
        assert_eq!(s.busy, 2);
    }

    #[test]
    fn test_a_queue_is_not_jumped() {
        let mut s = SendSlots::default();
        assert!(s.admit(0, 1.0, 100, 1, t(0)));
        assert!(!s.admit(1, 1.0, 100, 1, t(0)));
        s.release(0);
        // Slot 0 asks again before the waiting one is woken: it queues behind it.
        assert!(!s.admit(0, 1.0, 100, 1, t(0)));
        assert_eq!(s.poll_grant(1, t(0)), Some(1));
    }

    #[test]
    fn test_grants_follow_weights() {
        let mut s = SendSlots::default();
        let weights = [3.0, 1.0];
        let mut served = [0u32; 2];
        // Both always waiting for one slot, granted at once (no one waits MAX_WAIT).
        assert!(s.admit(0, weights[0], 100, 1, t(0)));
        served[0] += 1;
        assert!(!s.admit(0, weights[0], 100, 1, t(0)), "it queues again");
        assert!(!s.admit(1, weights[1], 100, 1, t(0)));
        let mut holder = 0;
        for _ in 0..400 {
            s.release(holder);
            holder = s.poll_grant(1, t(0)).expect("someone waits");
            served[holder] += 1;
            assert!(s.admit(holder, weights[holder], 100, 1, t(0)));
            assert!(
                !s.admit(holder, weights[holder], 100, 1, t(0)),
                "it queues again"
            );
        }
        let ratio = served[0] as f64 / served[1] as f64;
        assert!((2.8..=3.2).contains(&ratio), "{served:?}");
    }

    #[test]
    fn test_a_client_waiting_max_wait_goes_next_one_at_a_time() {
        let mut s = SendSlots::default();
        // Slot 9 weighs a thousandth of the others and waits from the start.
        assert!(s.admit(0, 1.0, 100, 1, t(0)));
        assert!(!s.admit(9, 0.001, 100, 1, t(0)));
        assert!(!s.admit(1, 1.0, 100, 1, t(1)));
        assert!(!s.admit(2, 1.0, 100, 1, t(1)));
        s.release(0);
        assert_eq!(s.poll_grant(1, t(5)), Some(1), "by weight before MAX_WAIT");
        s.release(1);
        assert_eq!(s.poll_grant(1, t(10)), Some(9), "overdue");
        assert!(s.admit(9, 0.001, 100, 2, t(10)));
        // With a second slot, another overdue client waits for slot 9's to come back.
        assert!(!s.admit(3, 0.001, 100, 2, t(0)));
        assert_eq!(
            s.poll_grant(2, t(30)),
            Some(2),
            "by weight: the floor is in use"
        );
        s.release(9);
        s.release(2);
        assert_eq!(
            s.poll_grant(2, t(30)),
            Some(3),
            "overdue, the floor free again"
        );
    }

    /// One slot: client 0 holds it, 1 and 2 wait, in that order.
    fn one_sending_two_waiting() -> SendSlots {
        let mut s = SendSlots::default();
        assert!(s.admit(0, 1.0, 100, 1, t(0)));
        assert!(!s.admit(1, 1.0, 100, 1, t(0)));
        assert!(!s.admit(2, 1.0, 100, 1, t(0)));
        s
    }

    #[test]
    fn test_a_client_with_nothing_to_start_passes_its_grant_on() {
        let mut s = one_sending_two_waiting();
        s.release(0);
        assert_eq!(s.poll_grant(1, t(0)), Some(1));
        // Its request was cancelled while it waited.
        s.withdraw(1);
        assert_eq!(s.poll_grant(1, t(0)), Some(2));
        assert!(s.admit(2, 1.0, 100, 1, t(0)));
        assert_eq!(s.busy, 1);
    }

    /// A turn given for waiting `MAX_WAIT` moves nobody's clock: the others keep their
    /// shares by weight (a rider's start runs far ahead, and jumping to it wiped out what
    /// the light clients were owed).
    #[test]
    fn test_turns_for_waiting_keep_the_others_shares() {
        let mut s = SendSlots::default();
        let weight = |slot: Slot| match slot {
            0..4 => 10.0,
            4..8 => 1.0,
            _ => 0.01,
        };
        let mut holders = Vec::new();
        for slot in 0..9 {
            if s.admit(slot, weight(slot), 100, 2, t(0)) {
                holders.push(slot);
            }
        }
        let mut served = [0u32; 9];
        for k in 0..20_000u64 {
            let done = holders.remove(0);
            s.release(done);
            // A grant each 10 ms: the rider waits 10 s now and then.
            assert!(
                !s.admit(done, weight(done), 100, 2, ms(10 * k)),
                "it queues again"
            );
            let next = s.poll_grant(2, ms(10 * k)).expect("someone waits");
            served[next] += 1;
            assert!(s.admit(next, weight(next), 100, 2, ms(10 * k)));
            holders.push(next);
        }
        let heavy: u32 = served[0..4].iter().sum();
        let light: u32 = served[4..8].iter().sum();
        let ratio = heavy as f64 / light as f64;
        assert!((9.5..=10.5).contains(&ratio), "{served:?}");
        assert!(served[8] > 0, "the rider got its turns for waiting");
        assert!(
            s.waiting.len() <= 2 * s.queued + 64,
            "stale places are dropped"
        );
    }

    #[test]
    fn test_a_client_that_leaves_frees_its_grant_and_place() {
        let mut s = one_sending_two_waiting();
        s.forget(1);
        s.release(0);
        assert_eq!(s.poll_grant(1, t(0)), Some(2));
        s.forget(2);
        assert_eq!(s.busy, 0, "the unused grant came back");
        assert_eq!(s.poll_grant(1, t(60)), None, "nobody waits");
    }
}
