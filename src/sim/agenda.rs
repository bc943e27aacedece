//! The simulator's event queue, in virtual nanoseconds.
//!
//! Most events are scheduled once and happen once; a flow's completion is different: every
//! change of the flow's rate moves it, and an origin sharing its upload among thousands of
//! flows moves thousands of them at once. Those live in a keyed heap, one entry per flow,
//! moved in place, so the queue never fills with superseded completions. Both heaps order by
//! (time, scheduling sequence), and the sequence is shared, so the order of events is the
//! same as if every event sat in one heap.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

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

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, o: &Self) -> bool {
        self.key() == o.key()
    }
}
impl<E> Eq for Scheduled<E> {}
impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Scheduled<E> {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest event must come out first.
    fn cmp(&self, o: &Self) -> Ordering {
        o.key().cmp(&self.key())
    }
}

/// Events at virtual times; plain events and keyed ones (at most one per key).
pub(super) struct Agenda<E> {
    heap: BinaryHeap<Scheduled<E>>,
    keyed: KeyedHeap<E>,
    seq: u64,
}

impl<E> Default for Agenda<E> {
    fn default() -> Self {
        Agenda {
            heap: BinaryHeap::new(),
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
    /// step sends never overtakes the step itself.
    pub(super) fn at_ns(&mut self, at: u64, ev: E) {
        self.seq += 1;
        self.heap.push(Scheduled {
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
        let keyed_first = match (self.heap.peek(), self.keyed.peek()) {
            (None, None) => return None,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(a), Some(b)) => b.key() < a.key(),
        };
        let s = if keyed_first {
            self.keyed.pop()
        } else {
            self.heap.pop()
        }?;
        Some((s.at, s.ev))
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

    /// Plain events, pushed and popped in random turns, come out by (time, scheduling order).
    #[test]
    fn test_plain_events_come_out_as_a_sorted_list_would() {
        let mut rng = crate::proto::Rng::new(11);
        let mut a = Agenda::default();
        let (mut pending, mut got, mut pushed) = (Vec::new(), Vec::new(), 0u32);
        for _ in 0..20_000 {
            if rng.below(3) == 0 {
                if let Some((at, ev)) = a.pop() {
                    // Nothing pending may come before what popped.
                    let want = pending.iter().copied().min().expect("pending");
                    assert_eq!((at, ev), want);
                    pending.retain(|&e| e != want);
                    got.push(ev);
                }
            } else {
                // Few distinct times, so equal times must keep the scheduling order.
                let at = u64::from(rng.below(64));
                a.at_ns(at, pushed);
                pending.push((at, pushed));
                pushed += 1;
            }
        }
        pending.sort();
        assert_eq!(drain(&mut a), pending);
        assert!(got.len() > 5_000, "{} popped along the way", got.len());
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
