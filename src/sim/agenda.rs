//! The simulator's event queue, in virtual nanoseconds.
//!
//! Most events are scheduled once and happen once; a flow's completion is different: every
//! change of the flow's rate moves it, and an origin sharing its upload among thousands of
//! flows moves thousands of them at once. Those live in a keyed heap, one entry per flow,
//! moved in place, so the queue never fills with superseded completions. Both queues order by
//! (time, scheduling sequence), and the sequence is shared, so the order of events is the
//! same as if every event sat in one heap.
//!
//! Plain events are most of a large run's (a HAVE to each neighbour of every piece), and a
//! binary heap of hundreds of thousands of them spent most of each pop waiting on memory
//! (README, scaling). Time only moves forward, so they sit in a radix heap instead
//! (Ahuja, Mehlhorn, Orlin and Tarjan, 1990): buckets by the highest bit in which an event's
//! time differs from the last time taken out, each a plain vector, so pushing appends and
//! an event is moved a few times, in sequence, before it comes out.

use std::collections::VecDeque;

/// An event, when it happens, and its place among events at the same time.
struct Scheduled<E> {
    at: u64,
    seq: u64,
    ev: E,
}

impl<E> Scheduled<E> {
    fn key(&self) -> (u64, u64) {
        (self.at, self.seq)
    }
}

/// Events at virtual times; plain events and keyed ones (at most one per key).
pub(super) struct Agenda<E> {
    plain: RadixQueue<E>,
    keyed: KeyedHeap<E>,
    seq: u64,
}

impl<E> Default for Agenda<E> {
    fn default() -> Self {
        Agenda {
            plain: RadixQueue::default(),
            keyed: KeyedHeap::default(),
            seq: 0,
        }
    }
}

/// `secs` in nanoseconds, rounded up; `None` if infinite (never).
fn to_ns(secs: f64) -> Option<u64> {
    secs.is_finite().then(|| (secs * 1e9).ceil() as u64)
}

impl<E> Agenda<E> {
    /// At `secs` seconds, rounded up to the next nanosecond; never if infinite.
    pub(super) fn at(&mut self, secs: f64, ev: E) {
        if let Some(ns) = to_ns(secs) {
            self.at_ns(ns, ev);
        }
    }

    /// At exactly `at` nanoseconds: connection timings add up exactly, so what a handshake
    /// step sends never overtakes the step itself. Never before the last event taken out.
    pub(super) fn at_ns(&mut self, at: u64, ev: E) {
        self.seq += 1;
        self.plain.push(Scheduled {
            at,
            seq: self.seq,
            ev,
        });
    }

    /// The event of `key` happens at `secs` instead of whenever it was due; never (removed)
    /// if infinite.
    pub(super) fn set_keyed(&mut self, key: usize, secs: f64, ev: E) {
        match to_ns(secs) {
            Some(at) => self.set_keyed_ns(key, at, ev),
            None => self.keyed.remove(key),
        }
    }

    /// The event of `key` happens at exactly `at` nanoseconds.
    pub(super) fn set_keyed_ns(&mut self, key: usize, at: u64, ev: E) {
        self.seq += 1;
        let seq = self.seq;
        self.keyed.set(key, Scheduled { at, seq, ev });
    }

    /// Forgets the event of `key`, if any.
    pub(super) fn remove_keyed(&mut self, key: usize) {
        self.keyed.remove(key);
    }

    /// The earliest event and its time in nanoseconds.
    pub(super) fn pop(&mut self) -> Option<(u64, E)> {
        let keyed_first = match (self.plain.peek_key(), self.keyed.peek()) {
            (None, None) => return None,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(a), Some(b)) => b.key() < a,
        };
        let s = if keyed_first {
            self.keyed.pop()
        } else {
            self.plain.pop()
        }?;
        Some((s.at, s.ev))
    }
}

/// Most events an emptied bucket keeps room for (48 bytes each).
const KEPT_ROOM: usize = 4096;

/// Plain events by (time, sequence), for times that never go back: no event is pushed
/// before the last one popped.
struct RadixQueue<E> {
    /// Time of the last event out; no event is earlier. Only a pop moves it: the agenda may
    /// peek here, take a keyed event that is due sooner, and schedule plain ones before this
    /// queue's earliest.
    last: u64,
    /// The events at `last`, in scheduling order.
    now: VecDeque<Scheduled<E>>,
    /// `buckets[b]`: the later events whose time's highest bit that differs from `last` is
    /// bit `b`, in scheduling order (pushes append, and a refill only fills buckets below
    /// the lowest filled one, which are empty, in the order it takes them out).
    buckets: [Vec<Scheduled<E>>; 64],
    /// Bit `b` is set while `buckets[b]` holds events.
    filled: u64,
    /// The (time, sequence) of the earliest event of the lowest filled bucket, once looked
    /// up: peeking must not scan that bucket again and again.
    lowest: Option<(u64, u64)>,
}

impl<E> Default for RadixQueue<E> {
    fn default() -> Self {
        RadixQueue {
            last: 0,
            now: VecDeque::new(),
            buckets: std::array::from_fn(|_| Vec::new()),
            filled: 0,
            lowest: None,
        }
    }
}

impl<E> RadixQueue<E> {
    fn push(&mut self, s: Scheduled<E>) {
        debug_assert!(
            s.at >= self.last,
            "scheduled at {} before {}",
            s.at,
            self.last
        );
        if s.at <= self.last {
            // The sequence only grows, so appending keeps `now` in order.
            self.now.push_back(s);
            return;
        }
        let b = 63 - (s.at ^ self.last).leading_zeros() as usize;
        let lowest = self.filled.trailing_zeros() as usize;
        if b < lowest {
            self.lowest = Some(s.key()); // alone in the new lowest bucket
        } else if b == lowest && self.lowest.is_some_and(|k| s.key() < k) {
            self.lowest = Some(s.key());
        }
        self.buckets[b].push(s);
        self.filled |= 1 << b;
    }

    /// The (time, sequence) of the earliest event.
    fn peek_key(&mut self) -> Option<(u64, u64)> {
        if let Some(s) = self.now.front() {
            return Some(s.key());
        }
        if self.filled == 0 {
            return None;
        }
        if self.lowest.is_none() {
            let b = self.filled.trailing_zeros() as usize;
            self.lowest = self.buckets[b].iter().map(Scheduled::key).min();
        }
        self.lowest
    }

    fn pop(&mut self) -> Option<Scheduled<E>> {
        if self.now.is_empty() {
            self.refill();
        }
        self.now.pop_front()
    }

    /// Time moves to the earliest event of the lowest filled bucket: the events at that
    /// time become `now`, the rest go to lower buckets (they share every bit above the
    /// bucket's with the new `last`).
    fn refill(&mut self) {
        if self.filled == 0 {
            return;
        }
        let b = self.filled.trailing_zeros() as usize;
        let mut taken = std::mem::take(&mut self.buckets[b]);
        self.filled &= !(1 << b);
        self.last = match self.lowest {
            Some((at, _)) => at,
            None => taken.iter().map(|s| s.at).min().expect("a filled bucket"),
        };
        self.lowest = None;
        for s in taken.drain(..) {
            if s.at == self.last {
                self.now.push_back(s);
            } else {
                let c = 63 - (s.at ^ self.last).leading_zeros() as usize;
                self.buckets[c].push(s);
                self.filled |= 1 << c;
            }
        }
        // Keep the vector's room for the next events of this bucket, unless a burst made it
        // large: every bucket passes here, so what the queue holds on to stays bounded.
        if taken.capacity() <= KEPT_ROOM {
            self.buckets[b] = taken;
        }
    }
}

/// A binary min-heap of at most one entry per key, with each key's position so that an entry
/// can be moved or removed in O(log n).
struct KeyedHeap<E> {
    items: Vec<(usize, Scheduled<E>)>,
    /// Position in `items` of each key's entry; `NONE` if it has none.
    pos: Vec<usize>,
}

const NONE: usize = usize::MAX;

impl<E> Default for KeyedHeap<E> {
    fn default() -> Self {
        KeyedHeap {
            items: Vec::new(),
            pos: Vec::new(),
        }
    }
}

impl<E> KeyedHeap<E> {
    fn peek(&self) -> Option<&Scheduled<E>> {
        self.items.first().map(|(_, s)| s)
    }

    fn set(&mut self, key: usize, s: Scheduled<E>) {
        if self.pos.len() <= key {
            self.pos.resize(key + 1, NONE);
        }
        match self.pos[key] {
            NONE => {
                self.items.push((key, s));
                self.pos[key] = self.items.len() - 1;
                self.up(self.items.len() - 1);
            }
            i => {
                let later = s.key() > self.items[i].1.key();
                self.items[i].1 = s;
                if later {
                    self.down(i);
                } else {
                    self.up(i);
                }
            }
        }
    }

    fn remove(&mut self, key: usize) {
        if let Some(&i) = self.pos.get(key)
            && i != NONE
        {
            self.take(i);
        }
    }

    fn pop(&mut self) -> Option<Scheduled<E>> {
        (!self.items.is_empty()).then(|| self.take(0))
    }

    /// Removes the entry at position `i`: the last entry takes its place and settles.
    fn take(&mut self, i: usize) -> Scheduled<E> {
        let last = self.items.len() - 1;
        self.swap(i, last);
        let (key, s) = self.items.pop().expect("not empty");
        self.pos[key] = NONE;
        if i < self.items.len() {
            self.down(i);
            self.up(i);
        }
        s
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.items.swap(a, b);
        self.pos[self.items[a].0] = a;
        self.pos[self.items[b].0] = b;
    }

    fn earlier(&self, a: usize, b: usize) -> bool {
        self.items[a].1.key() < self.items[b].1.key()
    }

    fn up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.earlier(i, parent) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut first = i;
            if l < self.items.len() && self.earlier(l, first) {
                first = l;
            }
            if r < self.items.len() && self.earlier(r, first) {
                first = r;
            }
            if first == i {
                break;
            }
            self.swap(i, first);
            i = first;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(a: &mut Agenda<u32>) -> Vec<(u64, u32)> {
        std::iter::from_fn(|| a.pop()).collect()
    }

    #[test]
    fn test_earliest_first_and_scheduling_order_at_equal_times() {
        let mut a = Agenda::default();
        a.at_ns(5, 1);
        a.set_keyed_ns(3, 5, 2);
        a.at_ns(2, 3);
        a.at_ns(5, 4);
        assert_eq!(drain(&mut a), vec![(2, 3), (5, 1), (5, 2), (5, 4)]);
    }

    #[test]
    fn test_keyed_event_moves_in_place() {
        let mut a = Agenda::default();
        a.set_keyed_ns(7, 10, 1);
        a.set_keyed_ns(8, 20, 2);
        a.set_keyed_ns(7, 30, 3); // later: replaces the first
        a.set_keyed_ns(8, 5, 4); // earlier
        assert_eq!(drain(&mut a), vec![(5, 4), (30, 3)]);
    }

    #[test]
    fn test_infinite_time_removes_and_remove_forgets() {
        let mut a = Agenda::default();
        a.set_keyed_ns(1, 1, 1);
        a.set_keyed_ns(2, 2, 2);
        a.set_keyed_ns(3, 3, 3);
        a.set_keyed(1, f64::INFINITY, 9);
        a.remove_keyed(2);
        a.remove_keyed(40); // never had one
        a.at(f64::INFINITY, 10);
        assert_eq!(drain(&mut a), vec![(3, 3)]);
    }

    /// Plain events, pushed and popped in random turns, come out by (time, scheduling
    /// order); each is pushed at or after the last one out (time never goes back), up to
    /// `spread` later, or at a distant time one push in 16.
    fn check_plain_against_sorted_list(seed: u64, spread: u32) {
        let mut rng = crate::proto::Rng::new(seed);
        let mut a = Agenda::default();
        let (mut pending, mut got, mut pushed, mut floor) = (Vec::new(), 0, 0u32, 0u64);
        for _ in 0..20_000 {
            if rng.below(3) == 0 {
                if let Some((at, ev)) = a.pop() {
                    // Nothing pending may come before what popped.
                    let want = pending.iter().copied().min().expect("pending");
                    assert_eq!((at, ev), want);
                    pending.retain(|&e| e != want);
                    floor = at;
                    got += 1;
                }
            } else {
                let later = match rng.below(16) {
                    0 => u64::from(rng.below(1 << 30)) << 20,
                    _ => u64::from(rng.below(spread)),
                };
                a.at_ns(floor + later, pushed);
                pending.push((floor + later, pushed));
                pushed += 1;
            }
        }
        pending.sort();
        assert_eq!(drain(&mut a), pending);
        assert!(got > 5_000, "{got} popped along the way");
    }

    /// Few distinct times, so equal times must keep the scheduling order, also among events
    /// that reached the same time through different buckets.
    #[test]
    fn test_plain_events_come_out_as_a_sorted_list_would() {
        check_plain_against_sorted_list(11, 64);
        check_plain_against_sorted_list(12, 4);
        check_plain_against_sorted_list(13, 1 << 24);
    }

    /// Peeking at the plain events must not move their clock: a keyed event due sooner
    /// comes out, and a plain event scheduled then, before the plain ones waiting, comes out
    /// before them.
    #[test]
    fn test_plain_event_scheduled_after_a_keyed_one_before_the_waiting_ones() {
        let mut a = Agenda::default();
        a.at_ns(1 << 20, 1);
        a.set_keyed_ns(0, 5, 2);
        assert_eq!(a.pop(), Some((5, 2)));
        a.at_ns(7, 3);
        a.set_keyed_ns(0, 6, 4);
        a.at_ns(1 << 20, 5);
        assert_eq!(
            drain(&mut a),
            vec![(6, 4), (7, 3), (1 << 20, 1), (1 << 20, 5)]
        );
    }

    /// Against a plain sorted list: random moves and removals keep the heap's order.
    #[test]
    fn test_keyed_heap_matches_a_sorted_list() {
        let mut rng = crate::proto::Rng::new(7);
        let mut a = Agenda::default();
        // A plain event at time 500 interleaves by sequence with the keyed ones.
        a.at_ns(500, 99);
        let mut model: Vec<Option<(u64, u64)>> = vec![None; 50];
        let plain = (500, 1, 99);
        let mut seq = 0;
        for _ in 0..5_000 {
            let key = rng.below(50) as usize;
            if rng.below(4) == 0 {
                a.remove_keyed(key);
                model[key] = None;
            } else {
                let at = u64::from(rng.below(1_000));
                seq += 1;
                a.set_keyed_ns(key, at, key as u32);
                model[key] = Some((at, seq));
            }
        }
        let mut want: Vec<(u64, u64, u32)> = (0..50)
            .filter_map(|k| model[k].map(|(at, s)| (at, s, k as u32)))
            .chain([plain])
            .collect();
        want.sort();
        let want: Vec<(u64, u32)> = want.into_iter().map(|(at, _, k)| (at, k)).collect();
        assert_eq!(drain(&mut a), want);
    }
}
