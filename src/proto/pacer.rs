//! Keeps the node's own uplink queue short without being told the link's rate.
//!
//! A home uplink shaped by its modem (or `tc tbf`) queues what the node sends beyond its
//! rate: at 5 Mbit/s a full queue holds about half a second. Every REQUEST and HAVE the node
//! sends, and every ACK of its downloads, waits behind it, so a slow client asks late, learns
//! late and downloads slower than its downlink allows. Pacing the node's upload a little
//! below the link empties that queue, and hands the split of the upload to the node's own
//! weights (the policy's) instead of the kernel's equal shares.
//!
//! The pacer is sans-IO. The driver reports, every sample, the bytes the link delivered so
//! far (TCP's acknowledged bytes, summed over connections) and the delay of the node's own
//! queue (the smallest smoothed RTT above its minimum among the connections that sent); the
//! simulator reports its model's. The pacer answers with a rate or none:
//!
//! - `Open`: no limit. A queue above the target through a whole sample means the link was
//!   busy all that time, so what it delivered is its rate: drain.
//! - `Draining`: half the rate until the queue is gone, or has shrunk by the target and
//!   stopped shrinking (what is left is others': the new floor), then `Paced`. If halving
//!   the rate did not shrink it, the delay is not this node's (a peer's queue delays its
//!   ACKs): that level becomes the floor the target is counted from, and the pacer goes
//!   back to the mode and capacity it had before.
//!
//! The drain and the probe gain of 1.25 follow BBR's (Cardwell et al., 2016); the target,
//! the headroom and the probe period were chosen on the simulator's suite (README).
//! - `Paced`: `HEADROOM` of the rate. A queue standing again means the link slowed: measure
//!   and drain again. Every `PROBE_EVERY`, `Probing`.
//! - `Probing`: `PROBE_GAIN` of the rate for `PROBE_FOR`, to find a link that got faster:
//!   if more was delivered, that is the new rate and the probe goes on from it; a queue
//!   means it did not.

use std::time::{Duration, Instant};

/// A queue delay above this (over the floor) is a standing queue worth pacing away. Below
/// it a queue costs little: at 100 Mbit/s tbf's whole queue is 25 ms.
const QUEUE_TARGET: Duration = Duration::from_millis(40);
/// Shorter samples are folded into the next: their rates are noise.
const MIN_SAMPLE: Duration = Duration::from_millis(80);
/// Paced at this fraction of the measured capacity: no queue stands, and the link loses
/// little (over the simulator's suite 0.98 beat 0.95: honest means 1-2% faster).
const HEADROOM: f64 = 0.98;
/// Draining sends at this fraction: a queue of delay D empties in about 2·D.
const DRAIN_GAIN: f64 = 0.5;
/// A drain is given twice the excess delay (what half the rate needs to empty it) plus
/// this slack for the readings to follow, and at most `MAX_DRAIN`; a delay still standing
/// then is not the node's.
const DRAIN_SLACK: Duration = Duration::from_millis(300);
const MAX_DRAIN: Duration = Duration::from_secs(3);
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// The first probe after a fresh measurement comes sooner: a queue that stood at both
/// ends of a sample may not have stood all through it, so the measurement can be low.
const PROBE_SOON: Duration = Duration::from_millis(500);
/// No uplink worth pacing is slower (256 kbit/s): a "full" sample that delivered less
/// measured a peer's queue on a connection that carried a few control frames.
const MIN_CAPACITY: f64 = 32_000.0;
const PROBE_FOR: Duration = Duration::from_millis(200);
const PROBE_GAIN: f64 = 1.25;
/// A probe that delivered this much more than the estimate found a faster link.
const PROBE_FOUND: f64 = 1.02;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Open,
    Draining(Drain),
    Paced { probe_at: Instant },
    Probing { until: Instant },
}

/// A drain under way, and what to go back to if the queue turns out not to be ours.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Drain {
    until: Instant,
    /// The delay when it began, and at the last sample.
    from: Duration,
    last: Duration,
    /// How long after the drain the first probe comes.
    probe_in: Duration,
    /// The capacity before it: 0 when it began from `Open` (the only mode without one).
    undo: f64,
}

/// The uplink pacer: feed it `sample`s, read its `rate`.
#[derive(Debug, Clone)]
pub struct Pacer {
    mode: Mode,
    /// The link's rate as measured while a queue stood, bytes per second.
    capacity: f64,
    /// Delay that pacing did not remove, the level the target is counted from.
    floor: Duration,
    last_at: Instant,
    last_delivered: u64,
    /// The last sample saw a queue.
    queued: bool,
}

impl Pacer {
    /// A pacer that has seen nothing yet: open.
    pub fn new(now: Instant) -> Pacer {
        Pacer {
            mode: Mode::Open,
            capacity: 0.0,
            floor: Duration::ZERO,
            last_at: now,
            last_delivered: 0,
            queued: false,
        }
    }

    /// The pacing rate, bytes per second; `None` while the link sets the pace.
    pub fn rate(&self) -> Option<f64> {
        let gain = match self.mode {
            Mode::Open => return None,
            Mode::Draining(_) => DRAIN_GAIN,
            Mode::Paced { .. } => HEADROOM,
            Mode::Probing { .. } => PROBE_GAIN,
        };
        Some(self.capacity * gain)
    }

    /// The link's rate as last measured while it was full; `None` while open and after a
    /// drain from open was undone.
    pub fn capacity(&self) -> Option<f64> {
        (self.capacity > 0.0).then_some(self.capacity)
    }

    /// One observation: `delivered` is the total bytes the link has delivered (it only
    /// grows), `delay` the node's own queue delay now, if it could be measured. Returns
    /// whether the rate changed.
    pub fn sample(&mut self, now: Instant, delivered: u64, delay: Option<Duration>) -> bool {
        let dt = now.saturating_duration_since(self.last_at);
        if dt < MIN_SAMPLE {
            return false;
        }
        let bytes = delivered.saturating_sub(self.last_delivered);
        self.last_at = now;
        self.last_delivered = delivered;
        let rate = bytes as f64 / dt.as_secs_f64();
        let before = self.rate();
        let Some(delay) = delay else {
            // Nothing delivered: no queue is left to drain.
            self.queued = false;
            if let Mode::Draining(d) = self.mode {
                self.mode = Mode::Paced {
                    probe_at: now + d.probe_in,
                };
            }
            return self.rate() != before;
        };
        self.floor = self.floor.min(delay);
        let queued = delay > self.floor + QUEUE_TARGET;
        // A queue at both ends of the sample kept the link busy all through it: what it
        // delivered is its rate.
        let was_queued = self.queued;
        self.queued = queued;
        let full = queued && was_queued && rate >= MIN_CAPACITY;
        self.mode = match self.mode {
            Mode::Open | Mode::Paced { .. } if full => self.drain(now, delay, rate, PROBE_SOON),
            Mode::Probing { .. } if full => {
                let capacity = rate.max(self.capacity);
                self.drain(now, delay, capacity, PROBE_EVERY)
            }
            Mode::Open => Mode::Open,
            // Gone, or shrunk by more than the target and no longer shrinking: the queue
            // was ours, and what is left is what others add (their queues delaying the
            // ACKs), the new floor.
            Mode::Draining(d) if delay < self.floor + QUEUE_TARGET / 2 => Mode::Paced {
                probe_at: now + d.probe_in,
            },
            Mode::Draining(d)
                if d.from.saturating_sub(delay) >= QUEUE_TARGET
                    && d.last.saturating_sub(delay) < QUEUE_TARGET / 4 =>
            {
                self.floor = delay;
                Mode::Paced {
                    probe_at: now + d.probe_in,
                }
            }
            Mode::Draining(d) if now >= d.until => {
                // Half the rate did not shrink it: not this node's queue. Back to where it
                // was, counting from this level.
                self.floor = delay;
                self.capacity = d.undo;
                if d.undo > 0.0 {
                    Mode::Paced {
                        probe_at: now + PROBE_EVERY,
                    }
                } else {
                    Mode::Open
                }
            }
            Mode::Draining(d) => Mode::Draining(Drain { last: delay, ..d }),
            Mode::Paced { probe_at } if now >= probe_at => Mode::Probing {
                until: now + PROBE_FOR,
            },
            Mode::Paced { probe_at } => Mode::Paced { probe_at },
            Mode::Probing { until } if rate > self.capacity * PROBE_FOUND => {
                // More got through: the link is faster. Climb on at once.
                self.capacity = rate;
                Mode::Probing {
                    until: until.max(now + PROBE_FOR),
                }
            }
            Mode::Probing { until } if now >= until => Mode::Paced {
                probe_at: now + PROBE_EVERY,
            },
            Mode::Probing { until } => Mode::Probing { until },
        };
        self.rate() != before
    }

    /// A queue stands: the link is full, delivering `capacity`.
    fn drain(&mut self, now: Instant, delay: Duration, capacity: f64, probe_in: Duration) -> Mode {
        let undo = std::mem::replace(&mut self.capacity, capacity);
        let excess = delay.saturating_sub(self.floor);
        Mode::Draining(Drain {
            until: now + (excess * 2 + DRAIN_SLACK).min(MAX_DRAIN),
            from: delay,
            last: delay,
            probe_in,
            undo,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_millis(100);

    /// A link of `link` bytes/s with a tbf-like queue of `limit` seconds, driven by a
    /// sender that always has data: what the pacer sees, sample by sample.
    struct Link {
        link: f64,
        limit: f64,
        /// Bytes in the queue.
        queued: f64,
        delivered: f64,
        /// Delay added by others (a peer's queue delaying its ACKs).
        foreign: Duration,
    }

    impl Link {
        fn new(link: f64, limit: f64) -> Link {
            Link {
                link,
                limit,
                queued: 0.0,
                delivered: 0.0,
                foreign: Duration::ZERO,
            }
        }

        /// One step of `dt` with the sender at `rate` (unlimited: as fast as the queue
        /// takes). Returns the delay then.
        fn step(&mut self, rate: Option<f64>, dt: f64) -> Duration {
            let offered = rate.map_or(f64::INFINITY, |r| r * dt);
            let room = self.link * self.limit - self.queued + self.link * dt;
            let sent = offered.min(room);
            let out = (self.queued + sent).min(self.link * dt);
            self.queued = self.queued + sent - out;
            self.delivered += out;
            self.delay()
        }

        /// What the node would measure now: its own queue and what others add.
        fn delay(&self) -> Duration {
            Duration::from_secs_f64(self.queued / self.link) + self.foreign
        }
    }

    fn run(p: &mut Pacer, l: &mut Link, t: &mut Instant, steps: usize) -> Vec<Option<f64>> {
        let mut rates = Vec::new();
        for _ in 0..steps {
            let delay = l.step(p.rate(), STEP.as_secs_f64());
            *t += STEP;
            p.sample(*t, l.delivered as u64, Some(delay));
            rates.push(p.rate());
        }
        rates
    }

    #[test]
    fn test_paces_below_a_full_link_and_empties_its_queue() {
        let t0 = Instant::now();
        let (mut t, mut p) = (t0, Pacer::new(t0));
        let mut l = Link::new(625_000.0, 0.47);
        run(&mut p, &mut l, &mut t, 50);
        let c = p.capacity().expect("measured");
        assert!((c - 625_000.0).abs() < 625_000.0 * 0.03, "{c}");
        // Over the next 20 s: mostly paced, the queue short, the link still well used.
        let before = l.delivered;
        let mut worst = Duration::ZERO;
        let mut long = 0;
        for _ in 0..200 {
            let d = l.step(p.rate(), 0.1);
            t += STEP;
            p.sample(t, l.delivered as u64, Some(d));
            worst = worst.max(d);
            if d > QUEUE_TARGET * 2 {
                long += 1;
            }
        }
        let used = (l.delivered - before) / (625_000.0 * 20.0);
        assert!(used > 0.9, "link used {used}");
        assert!(
            long <= 10,
            "{long} samples with a long queue, worst {worst:?}"
        );
    }

    #[test]
    fn test_stays_open_while_no_queue_forms() {
        let t0 = Instant::now();
        let (mut t, mut p) = (t0, Pacer::new(t0));
        for i in 1..100u64 {
            t += STEP;
            assert!(!p.sample(t, i * 10_000, Some(Duration::from_millis(2))));
        }
        assert_eq!(p.rate(), None);
        assert_eq!(p.capacity(), None);
    }

    #[test]
    fn test_a_queue_it_cannot_drain_is_not_its_own() {
        // Every path's delay is high because of others: pacing must not spiral down.
        let t0 = Instant::now();
        let (mut t, mut p) = (t0, Pacer::new(t0));
        // Its own queue never passes the target.
        let mut l = Link::new(1_000_000.0, 0.02);
        l.foreign = Duration::from_millis(300);
        let rates = run(&mut p, &mut l, &mut t, 100);
        assert!(rates.iter().any(|r| r.is_some()), "it tried");
        assert_eq!(p.rate(), None, "and gave up");
        // Opened, it keeps the floor and does not pace again at the same delay.
        let rates = run(&mut p, &mut l, &mut t, 100);
        assert!(rates.iter().all(|r| r.is_none()));
    }

    #[test]
    fn test_paces_its_own_queue_away_behind_what_others_add() {
        // Every connection's RTT also holds 300 ms of the peers' queues (their ACKs wait
        // behind their uploads), on top of the node's own 0.47 s queue.
        let t0 = Instant::now();
        let (mut t, mut p) = (t0, Pacer::new(t0));
        let mut l = Link::new(625_000.0, 0.47);
        l.foreign = Duration::from_millis(300);
        run(&mut p, &mut l, &mut t, 50);
        let before = l.delivered;
        let mut own = Vec::new();
        for _ in 0..200 {
            l.step(p.rate(), 0.1);
            t += STEP;
            p.sample(t, l.delivered as u64, Some(l.delay()));
            own.push(l.queued / l.link);
        }
        let used = (l.delivered - before) / (625_000.0 * 20.0);
        assert!(used > 0.9, "link used {used}");
        let long = own.iter().filter(|&&q| q > 0.08).count();
        assert!(long <= 20, "{long} samples with a long queue of its own");
    }

    #[test]
    fn test_probe_finds_a_faster_link() {
        let t0 = Instant::now();
        let (mut t, mut p) = (t0, Pacer::new(t0));
        let mut l = Link::new(500_000.0, 0.5);
        run(&mut p, &mut l, &mut t, 50);
        l.link = 1_000_000.0;
        run(&mut p, &mut l, &mut t, 200);
        let c = p.capacity().unwrap();
        assert!(c > 900_000.0, "{c}");
    }

    #[test]
    fn test_a_slower_link_is_followed_down() {
        let t0 = Instant::now();
        let (mut t, mut p) = (t0, Pacer::new(t0));
        let mut l = Link::new(1_000_000.0, 0.5);
        run(&mut p, &mut l, &mut t, 50);
        l.link = 400_000.0;
        run(&mut p, &mut l, &mut t, 100);
        let c = p.capacity().unwrap();
        assert!((c - 400_000.0).abs() < 40_000.0, "{c}");
    }

    #[test]
    fn test_nothing_delivered_ends_a_drain() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        let long = Some(Duration::from_millis(500));
        p.sample(t0 + STEP, 100_000, long);
        p.sample(t0 + STEP * 2, 200_000, long);
        assert_eq!(p.rate(), Some(500_000.0), "draining at half");
        // No connection delivered, so none had a delay to report: the queue is gone.
        assert!(p.sample(t0 + STEP * 3, 200_000, None));
        assert_eq!(p.rate(), Some(1_000_000.0 * HEADROOM));
    }

    #[test]
    fn test_a_trickle_measures_no_capacity() {
        // A few control frames on a connection behind a peer's queue: high delay, no rate.
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        for k in 1..20u32 {
            p.sample(
                t0 + STEP * k,
                u64::from(k) * 500,
                Some(Duration::from_millis(400)),
            );
        }
        assert_eq!(p.rate(), None);
        assert_eq!(p.capacity(), None);
    }

    #[test]
    fn test_short_samples_are_folded_into_the_next() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        let long = Some(Duration::from_millis(500));
        assert!(!p.sample(t0 + Duration::from_millis(10), 1_000, long));
        assert!(
            !p.sample(t0 + STEP, 100_000, long),
            "one queued sample is not enough"
        );
        assert_eq!(p.rate(), None);
        assert!(p.sample(t0 + STEP * 2, 200_000, long));
        assert_eq!(p.capacity(), Some(1_000_000.0));
    }
}
