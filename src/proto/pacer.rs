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
//! queue (its receivers' QUEUE_DELAY answers, `proto::oneway`); the simulator reports the
//! same, its STAMPs delayed by its model's queue. The pacer answers with a rate or none:
//!
//! - `Calibrating`: the receivers count delay from the fastest STAMP they saw, so a
//!   connection opened while the queue already stood (every connection of a flash crowd's
//!   origin) reads that queue as none. Once the link has been busy for `CALIBRATE_AFTER`
//!   while open, and every `CALIBRATE_EVERY` after, the pacer sends at half the rate it
//!   saw until the link delivers no more than that (nothing is left queued, and the STAMPs
//!   sent then show the path without a queue), then opens again. Draining a standing queue
//!   costs nothing, as the queue keeps the link busy meanwhile; with no queue it costs
//!   half a sample's upload. BBR's PROBE_RTT does the same for its minimum RTT.
//! - `Open`: no limit. A queue above the target standing through `MEASURE_FOR` means the
//!   link was busy all that time, so what it delivered meanwhile is its rate (a single
//!   sample is not: ACKs that waited behind the peers' own uploads arrive in bursts): drain.
//! - `Draining`: half the rate until the queue is gone (the answers say so, or, sooner,
//!   the link delivers no more than the drain's pace), or has shrunk by the target and
//!   stopped shrinking (what is left is others': the new floor), then `Paced`. If halving
//!   the rate did not shrink it, the delay is not this node's (a receiver's busy downlink):
//!   that level becomes the floor the target is counted from, and the pacer goes back to
//!   the mode and capacity it had before.
//! - `Paced`: `HEADROOM` of the rate. A queue standing again while the link delivers less
//!   than the pace means the link slowed: measure and drain again; one standing while the
//!   link takes all the pace sends is others': the new floor. Every `PROBE_EVERY`, `Probing`.
//! - `Probing`: `PROBE_GAIN` of the rate for `PROBE_FOR`, to find a link that got faster:
//!   if more got through over the probe, that is the new rate and the probe goes on from
//!   it; a queue means it did not, and what the probe queued is drained at once.
//!
//! The drain and the probe gain of 1.25 follow BBR's (Cardwell et al., 2016); the target,
//! the headroom and the probe period were chosen on the simulator's suite, the measuring
//! windows on the emulated network (README).

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
/// The first probe after a fresh measurement comes sooner: the measurement can be low.
const PROBE_SOON: Duration = Duration::from_millis(500);
/// No uplink worth pacing is slower (256 kbit/s): a "full" sample that delivered less
/// measured a peer's queue on a connection that carried a few control frames.
const MIN_CAPACITY: f64 = 32_000.0;
/// A probe's rate is what got through over all of it: on the emulated network a 100 ms
/// sample delivered up to 3x the link's rate when ACKs that had waited behind the peers'
/// own uploads arrived together.
const PROBE_FOR: Duration = Duration::from_millis(600);
/// A queue must stand this long before what the link delivered meanwhile counts as its
/// rate, for the same reason.
const MEASURE_FOR: Duration = Duration::from_millis(800);
const PROBE_GAIN: f64 = 1.25;
/// Calibrate after the uplink has been busy this long while open...
const CALIBRATE_AFTER: Duration = Duration::from_millis(500);
/// ...and again this long after the last calibration (BBR's PROBE_RTT interval).
const CALIBRATE_EVERY: Duration = Duration::from_secs(10);
/// A link that delivers at most this much above the pace over `EMPTY_SAMPLES` samples has
/// nothing left queued: a calibration or a drain is done. Over one sample it says little:
/// delayed ACKs arrive together, so 100 ms samples swing between a third and twice the rate.
const EMPTY_WITHIN: f64 = 1.1;
const EMPTY_SAMPLES: usize = 3;
/// Paced, a standing queue is the node's only if the link delivers less than this share of
/// the pace (it got slower); otherwise the node sends less than the link takes, and the
/// delay is others' (a receiver's busy downlink).
const SLOWED: f64 = 0.9;
/// A probe that delivered this much more than the estimate found a faster link (above what
/// a measured link's rate varies by from one 0.6 s stretch to the next).
const PROBE_FOUND: f64 = 1.02;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Open,
    Calibrating { until: Instant, pace: f64 },
    Draining(Drain),
    Paced { probe_at: Instant },
    Probing { until: Instant, from: Mark },
}

/// A moment and what the link had delivered by then: the start of a measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Mark {
    at: Instant,
    delivered: u64,
}

impl Mark {
    /// The rate delivered from this mark to `to`, and over how long.
    fn rate_to(&self, to: Mark) -> (Duration, f64) {
        let dt = to.at.saturating_duration_since(self.at);
        let bytes = to.delivered.saturating_sub(self.delivered);
        (dt, bytes as f64 / dt.as_secs_f64().max(1e-9))
    }
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
    /// It empties what a probe queued: ours for certain, and gone at `until`.
    after_probe: bool,
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
    /// Since when a queue has stood in every sample.
    queued_since: Option<Mark>,
    /// Open, the uplink has delivered at least `MIN_CAPACITY` in every sample since then.
    busy_since: Option<Mark>,
    /// When the last calibration ended.
    calibrated_at: Option<Instant>,
    /// Where the last `EMPTY_SAMPLES` samples started, oldest first.
    starts: [Option<Mark>; EMPTY_SAMPLES],
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
            queued_since: None,
            busy_since: None,
            calibrated_at: None,
            starts: [None; EMPTY_SAMPLES],
        }
    }

    /// The pacing rate, bytes per second; `None` while the link sets the pace.
    pub fn rate(&self) -> Option<f64> {
        let gain = match self.mode {
            Mode::Open => return None,
            Mode::Calibrating { pace, .. } => return Some(pace),
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
        let start = Mark {
            at: self.last_at,
            delivered: self.last_delivered,
        };
        let end = Mark { at: now, delivered };
        self.last_at = now;
        self.last_delivered = delivered;
        let rate = bytes as f64 / dt.as_secs_f64();
        self.starts.rotate_left(1);
        self.starts[EMPTY_SAMPLES - 1] = Some(start);
        // Whether the link delivers no more than `pace`: nothing of ours is queued.
        let recent = self.starts[0].map(|m| m.rate_to(end).1);
        let empty = |pace: f64| recent.is_some_and(|r| r <= pace * EMPTY_WITHIN);
        let before = self.rate();
        // A queue the answers show needs no calibration to be seen.
        let visible = delay.is_some_and(|d| d > self.floor + QUEUE_TARGET);
        if self.calibrate(end, rate, visible, empty) {
            // The receivers' bases move meanwhile: their answers say nothing yet.
            return self.rate() != before;
        }
        let Some(delay) = delay else {
            // No receiver answered lately (none stamped to, or all predate STAMP): only the
            // link can end a drain, by delivering nothing or no more than the pace.
            self.queued = false;
            self.queued_since = None;
            if let Mode::Draining(d) = self.mode
                && (bytes == 0 || empty(self.capacity * DRAIN_GAIN) || now >= d.until)
            {
                self.mode = Mode::Paced {
                    probe_at: now + d.probe_in,
                };
            }
            return self.rate() != before;
        };
        self.floor = self.floor.min(delay);
        let queued = delay > self.floor + QUEUE_TARGET;
        // A queue that stood all through `MEASURE_FOR` kept the link busy: what it
        // delivered meanwhile is its rate.
        self.queued = queued;
        // A drain's own samples say nothing of the link's rate.
        let draining = matches!(self.mode, Mode::Draining(_));
        self.queued_since = if queued && !draining {
            Some(self.queued_since.unwrap_or(start))
        } else {
            None
        };
        let (stood, link_rate) = self
            .queued_since
            .map_or((Duration::ZERO, 0.0), |m| m.rate_to(end));
        let full = stood >= MEASURE_FOR && link_rate >= MIN_CAPACITY;
        self.mode = match self.mode {
            Mode::Open if full => self.drain(now, delay, link_rate, PROBE_SOON),
            // The link got slower than the pace: measure it and drain.
            Mode::Paced { .. } if full && link_rate < self.capacity * HEADROOM * SLOWED => {
                self.drain(now, delay, link_rate, PROBE_SOON)
            }
            // The link takes all the pace sends, and a delay stands: not ours.
            Mode::Paced { probe_at } if full => {
                self.floor = delay;
                self.queued_since = None;
                Mode::Paced { probe_at }
            }
            // The probe filled the link: no faster than measured.
            Mode::Probing { .. } if queued => self.drain_probe(now, delay),
            Mode::Open => Mode::Open,
            // `calibrate` took the sample.
            Mode::Calibrating { .. } => self.mode,
            // Gone: the queue was ours.
            Mode::Draining(d) if delay < self.floor + QUEUE_TARGET / 2 => Mode::Paced {
                probe_at: now + d.probe_in,
            },
            // The link delivers no more than the drain's pace: nothing of ours is queued,
            // sooner known than from the answers, which lag by up to `ANSWERS_WITHIN`. A
            // delay that stands after it is judged paced (above).
            Mode::Draining(d) if empty(self.capacity * DRAIN_GAIN) => Mode::Paced {
                probe_at: now + d.probe_in,
            },
            // What a probe queued is gone by now, whatever the lagging answers say.
            Mode::Draining(d) if d.after_probe && now >= d.until => Mode::Paced {
                probe_at: now + d.probe_in,
            },
            Mode::Draining(d) if d.after_probe => Mode::Draining(d),
            // Shrunk by more than the target and no longer shrinking: the queue was ours,
            // and what is left is what others add, the new floor.
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
                self.undo(d)
            }
            Mode::Draining(d) => Mode::Draining(Drain { last: delay, ..d }),
            Mode::Paced { probe_at } if now >= probe_at => Mode::Probing {
                until: now + PROBE_FOR,
                from: end,
            },
            Mode::Paced { probe_at } => Mode::Paced { probe_at },
            Mode::Probing { until, from } if now >= until => {
                let (_, got) = from.rate_to(end);
                if got > self.capacity * PROBE_FOUND {
                    // More got through: the link is faster. Climb on from there.
                    self.capacity = got;
                    Mode::Probing {
                        until: now + PROBE_FOR,
                        from: end,
                    }
                } else {
                    // No faster: drain what the probe queued (BBR's gain cycle), not left
                    // to the answers, which may come after the next probe.
                    self.drain_probe(now, delay)
                }
            }
            Mode::Probing { until, from } => Mode::Probing { until, from },
        };
        self.rate() != before
    }

    /// Starts, goes on with or ends a calibration (the module's doc) on the sample ending at
    /// `end`, in which the link delivered `rate`, the answers showed a queue if `visible`,
    /// and `empty(pace)` says whether the link delivers no more than `pace`. Whether one is
    /// under way.
    fn calibrate(
        &mut self,
        end: Mark,
        rate: f64,
        visible: bool,
        empty: impl Fn(f64) -> bool,
    ) -> bool {
        let now = end.at;
        let start = self.starts[EMPTY_SAMPLES - 1].unwrap_or(end);
        match self.mode {
            Mode::Calibrating { until, pace } => {
                if empty(pace) || now >= until {
                    self.mode = Mode::Open;
                    self.calibrated_at = Some(now);
                    self.busy_since = None;
                    self.queued = false;
                    self.queued_since = None;
                }
                true
            }
            Mode::Open if rate >= MIN_CAPACITY && !visible => {
                let since = *self.busy_since.get_or_insert(start);
                let due = self
                    .calibrated_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= CALIBRATE_EVERY);
                let (busy, busy_rate) = since.rate_to(end);
                if due && busy >= CALIBRATE_AFTER {
                    self.mode = Mode::Calibrating {
                        until: now + MAX_DRAIN,
                        pace: busy_rate * DRAIN_GAIN,
                    };
                    return true;
                }
                false
            }
            Mode::Open => {
                self.busy_since = None;
                false
            }
            _ => false,
        }
    }

    /// Back to the capacity and mode from before drain `d`.
    fn undo(&mut self, d: Drain) -> Mode {
        self.capacity = d.undo;
        if d.undo > 0.0 {
            Mode::Paced {
                probe_at: self.last_at + PROBE_EVERY,
            }
        } else {
            Mode::Open
        }
    }

    /// A probe sent `PROBE_GAIN` of the capacity for up to `PROBE_FOR`: drain that excess
    /// at `DRAIN_GAIN` for as long as it takes, keeping the capacity.
    fn drain_probe(&mut self, now: Instant, delay: Duration) -> Mode {
        let excess = PROBE_FOR.mul_f64((PROBE_GAIN - 1.0) / (1.0 - DRAIN_GAIN));
        let capacity = self.capacity;
        match self.drain(now, delay, capacity, PROBE_EVERY) {
            Mode::Draining(d) => Mode::Draining(Drain {
                until: now + excess,
                after_probe: true,
                ..d
            }),
            other => other,
        }
    }

    /// A queue stands: the link is full, delivering `capacity`.
    fn drain(&mut self, now: Instant, delay: Duration, capacity: f64, probe_in: Duration) -> Mode {
        let undo = std::mem::replace(&mut self.capacity, capacity);
        // The link's rate is measured anew, from a queue that stands after the drain.
        self.queued_since = None;
        let excess = delay.saturating_sub(self.floor);
        Mode::Draining(Drain {
            until: now + (excess * 2 + DRAIN_SLACK).min(MAX_DRAIN),
            from: delay,
            last: delay,
            probe_in,
            undo,
            after_probe: false,
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
        /// Delay added by others (a receiver's busy downlink).
        foreign: Duration,
        /// What the node has to send, bytes/s; `None`: always more than the link takes.
        demand: Option<f64>,
    }

    impl Link {
        fn new(link: f64, limit: f64) -> Link {
            Link {
                link,
                limit,
                queued: 0.0,
                delivered: 0.0,
                foreign: Duration::ZERO,
                demand: None,
            }
        }

        /// One step of `dt` with the sender at `rate` (unlimited: as fast as the queue
        /// takes). Returns the delay then.
        fn step(&mut self, rate: Option<f64>, dt: f64) -> Duration {
            let offered = rate
                .map_or(f64::INFINITY, |r| r * dt)
                .min(self.demand.map_or(f64::INFINITY, |d| d * dt));
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
    fn test_stays_open_while_no_queue_forms_but_for_short_calibrations() {
        let t0 = Instant::now();
        let (mut t, mut p) = (t0, Pacer::new(t0));
        // The node has 300 kB/s to send on a 1 MB/s link: no queue forms.
        let mut l = Link::new(1_000_000.0, 0.47);
        l.demand = Some(300_000.0);
        let rates = run(&mut p, &mut l, &mut t, 300);
        assert_eq!(p.capacity(), None);
        let paced = rates.iter().filter(|r| r.is_some()).count();
        // One calibration after the first half second of upload, then one every 10 s,
        // each over once the link has delivered no more than its pace for EMPTY_SAMPLES.
        assert!(
            (3..=4 * EMPTY_SAMPLES).contains(&paced),
            "{paced} paced samples"
        );
        assert_eq!(p.rate(), None);
    }

    #[test]
    fn test_a_queue_it_cannot_drain_is_not_its_own() {
        // Every receiver's answers hold 300 ms of others' queues: pacing must not spiral
        // down.
        let t0 = Instant::now();
        let (mut t, mut p) = (t0, Pacer::new(t0));
        // Its own queue never passes the target.
        let mut l = Link::new(1_000_000.0, 0.02);
        l.foreign = Duration::from_millis(300);
        let before = l.delivered;
        let rates = run(&mut p, &mut l, &mut t, 100);
        assert!(rates.iter().any(|r| r.is_some()), "it tried");
        // And found the delay others': open, or paced just below the link it measured.
        assert!(p.rate().is_none_or(|r| r > 950_000.0), "{:?}", p.rate());
        // It keeps the floor and does not drain again at the same delay: what holds it
        // back is at most a calibration.
        let rates = run(&mut p, &mut l, &mut t, 100);
        let held = rates
            .iter()
            .filter(|r| r.is_some_and(|r| r < 900_000.0))
            .count();
        assert!(held <= EMPTY_SAMPLES, "{held} samples held back");
        let used = (l.delivered - before) / (1_000_000.0 * 20.0);
        assert!(used > 0.95, "link used {used}");
    }

    #[test]
    fn test_paces_its_own_queue_away_behind_what_others_add() {
        // Every receiver's answer also holds 300 ms of others' queues (busy downlinks), on
        // top of the node's own 0.47 s queue.
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
        for k in 1..=8u32 {
            p.sample(t0 + STEP * k, u64::from(k) * 100_000, long);
        }
        assert_eq!(p.rate(), Some(500_000.0), "draining at half");
        // No answers while the link still delivers at its full rate: the queue stands.
        let mut q = p.clone();
        assert!(!q.sample(t0 + STEP * 9, 900_000, None));
        assert_eq!(q.rate(), Some(500_000.0), "still draining");
        // Nothing delivered, nor answered: no queue is left to drain.
        assert!(p.sample(t0 + STEP * 9, 800_000, None));
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
        // A queue must stand MEASURE_FOR before what got through counts as the link's rate.
        for k in 1..8u32 {
            assert!(
                !p.sample(t0 + STEP * k, u64::from(k) * 100_000, long),
                "sample {k}"
            );
        }
        assert_eq!(p.rate(), None);
        assert!(p.sample(t0 + STEP * 8, 800_000, long));
        assert_eq!(p.capacity(), Some(1_000_000.0));
    }

    #[test]
    fn test_link_rate_is_measured_over_the_whole_queued_stretch() {
        // ACKs that waited behind the peers' own uploads arrive in bursts: 100 ms samples
        // at 0.3 and 1.7 times the link's rate.
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        let long = Some(Duration::from_millis(500));
        let mut delivered = 0;
        for k in 1..=8u32 {
            delivered += if k % 2 == 0 { 170_000 } else { 30_000 };
            p.sample(t0 + STEP * k, delivered, long);
        }
        assert_eq!(p.capacity(), Some(1_000_000.0));
    }

    #[test]
    fn test_paces_its_queue_away_through_bursty_acks_and_late_answers() {
        // As on the emulated network: every other sample's ACKs are held back and arrive
        // with the next (0.3x then 1.7x the rate), and the answers are a few samples late.
        for lag in [1, 3, 5] {
            let t0 = Instant::now();
            let (mut t, mut p) = (t0, Pacer::new(t0));
            let mut l = Link::new(625_000.0, 0.47);
            let (mut held, mut reported) = (0.0, 0.0);
            let mut delays = std::collections::VecDeque::from(vec![Duration::ZERO; lag]);
            let (mut long, mut before) = (0, 0.0);
            for k in 0..400 {
                let was = l.delivered;
                delays.push_back(l.step(p.rate(), STEP.as_secs_f64()));
                let out = l.delivered - was + held;
                held = if k % 2 == 0 { 0.7 * out } else { 0.0 };
                reported += out - held;
                t += STEP;
                p.sample(t, reported as u64, delays.pop_front());
                if k == 199 {
                    before = l.delivered;
                }
                if k >= 200 && l.delay() > QUEUE_TARGET * 2 {
                    long += 1;
                }
            }
            let used = (l.delivered - before) / (625_000.0 * 20.0);
            assert!(used > 0.85, "lag {lag}: link used {used}");
            assert!(
                long <= 40,
                "lag {lag}: {long} of 200 samples with a long queue"
            );
        }
    }

    #[test]
    fn test_calibration_drains_a_queue_the_answers_cannot_see() {
        // Every receiver's base was taken behind the queue: the answers read none while a
        // 0.47 s queue stands.
        let t0 = Instant::now();
        let (mut t, mut p) = (t0, Pacer::new(t0));
        let mut l = Link::new(625_000.0, 0.47);
        let mut drained = false;
        for _ in 0..40 {
            let own = l.step(p.rate(), STEP.as_secs_f64());
            t += STEP;
            p.sample(t, l.delivered as u64, Some(Duration::ZERO));
            drained |=
                matches!(p.mode, Mode::Calibrating { .. }) && own < Duration::from_millis(20);
        }
        assert!(drained, "calibration emptied the queue");
        // Open again, with the queue gone: STAMPs sent then show the path without it.
        assert_eq!(p.rate(), None);
    }

    #[test]
    fn test_a_probe_that_fills_the_link_drains_at_once() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        p.capacity = 1_000_000.0;
        p.mode = Mode::Probing {
            until: t0 + PROBE_FOR,
            from: Mark {
                at: t0,
                delivered: 0,
            },
        };
        p.last_at = t0;
        assert!(p.sample(t0 + STEP, 100_000, Some(Duration::from_millis(60))));
        assert_eq!(p.rate(), Some(500_000.0));
        assert_eq!(p.capacity(), Some(1_000_000.0));
    }
}
