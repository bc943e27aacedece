//! The origin's send slots in the node: how many pieces may be on their way at once, from
//! its capacity and the round trip its pieces see, and the glue between `poll_piece` and
//! the schedule of who is next (`proto::send_slots`; docs/PROTOCOL.md §5.2).

use super::*;
use crate::bounds::payload_rate;

/// The origin sends so many pieces at once that at its capacity each takes about this long
/// to leave, plus a round trip: long enough to keep the uplink busy, short enough that a
/// fresh piece reaches the swarm soon after it is chosen.
const SEND_SLICE_SECS: f64 = 0.25;
/// The fewest pieces the origin sends at once (all it sends before it has measured its
/// capacity).
const MIN_SEND_SLOTS: usize = 8;
/// A timed piece not announced after this long was lost to the timing (the client failed
/// its check, or left): another is timed.
const LOST_TIMING: Duration = Duration::from_secs(10);
/// Spans over which the origin measures its upload rate (`SendLimit::measure_rates`).
const MIN_RATE_SPAN: Duration = Duration::from_secs(1);
const MAX_RATE_SPAN: Duration = Duration::from_secs(30);
/// The uplink counts as underused below the first share of the capacity (then, while
/// clients wait, the limit grows) and as full from the second (then it shrinks back to
/// the base); between them the limit holds, so it neither chases a rate's noise nor keeps
/// a grown limit on a full uplink. Measured by what the uplink delivered, the capacity is
/// the highest rate it has delivered, and a rate under 80% of it shows room: at half,
/// 1,000 clients of a 1 Gbit/s origin held it to 68 MB/s of its 119 and finished 7% later
/// (README rule 31).
const DELIVERED_USE: (f64, f64) = (0.8, 0.9);
/// Counted by pieces written (a driver that reports no deliveries), bursts of pieces read
/// up to a third above the uplink, and a full uplink read 0.76 of such a peak: growing at
/// 80% took a 238-client swarm from 1.21x its minimum to 1.54x (README rule 30).
const WRITTEN_USE: (f64, f64) = (0.5, 0.75);
/// The limit grows or shrinks by this fraction of itself (at least 1) at a tick, ten a
/// second: it doubles in about 1.1 s.
const STEP_DIVISOR: usize = 16;
/// Weight of each new sample in the smoothed round trip and piece time (as TCP's SRTT).
const GAIN: f64 = 0.125;

/// What sets the origin's limit on pieces on their way.
#[derive(Debug)]
pub(super) struct SendLimit {
    limit: usize,
    /// Smoothed time from a piece's last byte leaving to its HAVE, in seconds.
    round_trip: f64,
    /// Smoothed time from choosing a piece to its last byte leaving, in seconds.
    piece_secs: f64,
    /// Bytes delivered (or else written) by each tick of the last `MAX_RATE_SPAN`.
    sent_at: VecDeque<(Instant, u64)>,
    /// The highest upload rate measured: the capacity when the origin is not told one.
    peak_rate: f64,
    /// The upload rate over the last piece time (at least a second), once measured.
    recent_rate: Option<f64>,
    /// Payload the uplink delivered in all, as the driver reads it from TCP
    /// (`Node::handle_delivered`); without it, what the driver finished writing.
    delivered: Option<u64>,
}

impl Default for SendLimit {
    fn default() -> SendLimit {
        SendLimit {
            limit: MIN_SEND_SLOTS,
            round_trip: 0.0,
            piece_secs: 0.0,
            sent_at: VecDeque::new(),
            peak_rate: 0.0,
            recent_rate: None,
            delivered: None,
        }
    }
}

/// `avg` moved towards `sample`, or `sample` itself for the first one.
fn smooth(avg: &mut f64, sample: f64) {
    if *avg == 0.0 {
        *avg = sample;
    } else {
        *avg += GAIN * (sample - *avg);
    }
}

impl SendLimit {
    /// A piece took `took` from being chosen to its last byte leaving.
    fn note_piece_sent(&mut self, took: Duration) {
        smooth(&mut self.piece_secs, took.as_secs_f64());
    }

    /// A piece's HAVE came `rtt` after its last byte left (`Peer::timed`).
    fn note_round_trip(&mut self, rtt: Duration) {
        smooth(&mut self.round_trip, rtt.as_secs_f64());
    }

    /// At a tick, `sent` bytes delivered by `now`: the highest upload rate measured so far,
    /// over a span of four pieces' time (1 to 30 s; over the ticks so far until it has been
    /// up that long), which it returns; and the recent rate (`recent_rate`).
    /// Pieces sharing the uplink leave together, so counted as they finish their bursts
    /// read as more than the uplink: over a second 50 of them read 3.7 times it (the
    /// simulator, 282 ADSL clients), and over the first tick the first 8 pieces, written
    /// at once, 1.68 times a 6.3 Mbit/s uplink. What the receivers acknowledged
    /// (`Node::handle_delivered`) has no such bursts.
    fn measure_rates(&mut self, sent: u64, now: Instant) -> f64 {
        self.sent_at.push_back((now, sent));
        // One tick older than the longest span, so the recent rate can span all of it.
        let kept = MAX_RATE_SPAN + MIN_RATE_SPAN;
        let old = |&(t, _): &(Instant, u64)| now.saturating_duration_since(t) > kept;
        while self.sent_at.front().is_some_and(old) {
            self.sent_at.pop_front();
        }
        let span = |pieces: f64| {
            Duration::from_secs_f64(pieces * self.piece_secs).clamp(MIN_RATE_SPAN, MAX_RATE_SPAN)
        };
        let rate_since = |&(t, bytes): &(Instant, u64)| {
            let secs = now.saturating_duration_since(t).as_secs_f64();
            // A driver that began reporting deliveries after pieces were counted reads 0,
            // not a wrapped rate.
            (secs > 0.0).then(|| sent.saturating_sub(bytes) as f64 / secs)
        };
        // Each over at least its whole span: counted by pieces (a driver that reports no
        // deliveries), a shorter window between two bursts of pieces read a full uplink as
        // idle.
        let rate_over = |pieces: f64| {
            let span = span(pieces);
            self.sent_at
                .iter()
                .rfind(|&&(t, _)| now.saturating_duration_since(t) >= span)
                .and_then(rate_since)
        };
        let peak = rate_over(4.0).or_else(|| self.sent_at.front().and_then(rate_since));
        if let Some(rate) = peak {
            self.peak_rate = self.peak_rate.max(rate);
        }
        self.recent_rate = rate_over(1.0);
        self.peak_rate
    }

    /// At a tick, the limit moves by a step from where it is, never below `base` (enough
    /// pieces for the uplink if each leaves at its full rate). While clients wait and the
    /// uplink is underused, pieces leave slower than the uplink could send them (their
    /// receivers' downlinks are shared with other peers: 1,000 clients took an origin's
    /// pieces at 13% of its uplink at the base), so more go at once, up to the slots in
    /// demand; once the uplink is full, each piece more would only slow the others, and
    /// the limit goes back towards the base; while nobody waits, towards the slots in use.
    /// Without a recent rate yet, it holds.
    fn adjust(&mut self, base: usize, capacity: f64, (busy, queued): (usize, usize)) {
        let step = (self.limit / STEP_DIVISOR).max(1);
        let (under_use, full_use) = if self.delivered.is_some() {
            DELIVERED_USE
        } else {
            WRITTEN_USE
        };
        if let Some(rate) = self.recent_rate {
            if queued > 0 && rate < under_use * capacity {
                self.limit = (self.limit + step).min(busy + queued);
            } else {
                let floor = if rate >= full_use * capacity {
                    base
                } else if queued == 0 {
                    busy
                } else {
                    self.limit
                };
                self.limit = self.limit.saturating_sub(step).max(floor).min(self.limit);
            }
        }
        self.limit = self.limit.max(base);
    }
}

impl Node {
    /// Origin: whether `slot` may start a piece now (`Some(true)`, and it holds a send
    /// slot), must wait for one (`Some(false)`), or has none to start (`None`: choked,
    /// nothing asked, its window full, a piece being written, or a client's node). One
    /// with nothing to start gives up its place and any slot granted to it.
    pub(super) fn admit_send(&mut self, slot: Slot, now: Instant) -> Option<bool> {
        let limit = self.send_limit();
        let piece_size = self.manifest.as_ref().map_or(1, |m| m.piece_size());
        let weight = self.table.weight(slot);
        let p = self.peers.get(slot)?.as_ref()?;
        let Side::Origin(registry) = &mut self.side else {
            return None;
        };
        if p.sending {
            return None;
        }
        if p.closing
            || p.queue.is_empty()
            || weight <= 0.0
            || p.in_flight.len() >= Node::send_window(p.acked, piece_size)
        {
            // Polled whenever its socket takes data: only a place given up frees anything.
            if registry.slots.withdraw(slot) {
                self.grant_send_slots();
            }
            return None;
        }
        Some(registry.slots.admit(slot, weight, piece_size, limit, now))
    }

    /// Origin: most pieces on their way at once (unbounded for a client).
    pub(super) fn send_limit(&self) -> usize {
        match &self.side {
            Side::Origin(r) => r.send_limit.limit,
            Side::Client(_) => usize::MAX,
        }
    }

    /// Origin, at each tick: at least as many pieces on their way at once as its capacity
    /// (told, or the peak measured) sends in `SEND_SLICE_SECS` plus the smoothed round
    /// trip, and at least `MIN_SEND_SLOTS`; more while the uplink is underused and
    /// clients wait (`SendLimit::adjust`). While the peak is low the limit holds the rate
    /// down, but the next measure raises it: a piece that leaves in under the slice plus a
    /// round trip makes the next limit higher than the pieces now on their way.
    pub(super) fn update_send_limit(&mut self) {
        let piece_size = self.manifest.as_ref().map_or(1, |m| m.piece_size()) as f64;
        let (uploaded, now, told) = (self.counters.uploaded, self.now, self.cfg.capacity);
        let Side::Origin(r) = &mut self.side else {
            return;
        };
        let l = &mut r.send_limit;
        let peak = l.measure_rates(l.delivered.unwrap_or(uploaded), now);
        let capacity = told.map_or(peak, |c| payload_rate(c) as f64);
        let pieces = (capacity * (SEND_SLICE_SECS + l.round_trip) / piece_size).ceil();
        let base = (pieces.min(1e9) as usize).max(MIN_SEND_SLOTS);
        l.adjust(base, capacity, r.slots.demand());
        // A higher limit frees slots.
        self.grant_send_slots();
    }

    /// What the uplink has delivered in all (payload the receivers' TCP acknowledged), read
    /// by the driver before each tick: the origin measures its rates by it rather than by
    /// pieces finished, whose last bytes leave together when many share the uplink.
    pub fn handle_delivered(&mut self, delivered: u64) {
        if let Side::Origin(r) = &mut self.side {
            r.send_limit.delivered = Some(delivered);
        }
    }

    /// Origin: the driver wrote the last byte of `piece` to `slot`: its send slot is free,
    /// the piece's time counts, and its HAVE may time a round trip.
    pub(super) fn piece_left(&mut self, slot: Slot, piece: u32, now: Instant) {
        let Some(p) = self.peers.get_mut(slot).and_then(|p| p.as_mut()) else {
            return;
        };
        let since = p.sending_since.take();
        if p.timed
            .is_none_or(|(_, at)| now.saturating_duration_since(at) > LOST_TIMING)
        {
            p.timed = Some((piece, now));
        }
        let held = std::mem::take(&mut p.holds_send_slot);
        if let (Some(since), Side::Origin(r)) = (since, &mut self.side) {
            r.send_limit
                .note_piece_sent(now.saturating_duration_since(since));
        }
        // A piece sent again past a full window took no slot.
        if held {
            self.release_send(slot);
        }
    }

    /// Origin: `slot` announced `piece`; if it was the timed one, the round trip counts.
    pub(super) fn time_round_trip(&mut self, slot: Slot, piece: u32) {
        let now = self.now;
        let Some(p) = self.peers.get_mut(slot).and_then(|p| p.as_mut()) else {
            return;
        };
        let Some((_, sent)) = p.timed.filter(|&(timed, _)| timed == piece) else {
            return;
        };
        p.timed = None;
        if let Side::Origin(r) = &mut self.side {
            r.send_limit
                .note_round_trip(now.saturating_duration_since(sent));
        }
    }

    /// Origin: a piece admitted by `admit_send` left or will not be sent; the free slot
    /// goes to whoever is next.
    pub(super) fn release_send(&mut self, slot: Slot) {
        if let Side::Origin(r) = &mut self.side {
            r.slots.release(slot);
        }
        self.grant_send_slots();
    }

    /// Origin: wakes the clients given a free send slot.
    pub(super) fn grant_send_slots(&mut self) {
        let limit = self.send_limit();
        loop {
            let Side::Origin(r) = &mut self.side else {
                return;
            };
            let Some(slot) = r.slots.poll_grant(limit, self.now) else {
                return;
            };
            if self.peer(slot).is_some_and(|p| !p.closing) {
                self.mark_dirty(slot);
            } else if let Side::Origin(r) = &mut self.side {
                r.slots.forget(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPLINK: f64 = 100e6;

    /// A limit measured by what the uplink delivered.
    fn at(limit: usize, recent_rate: f64) -> SendLimit {
        SendLimit {
            limit,
            recent_rate: Some(recent_rate),
            delivered: Some(0),
            ..SendLimit::default()
        }
    }

    #[test]
    fn test_an_underused_uplink_with_clients_waiting_takes_more_pieces_at_once() {
        // Receivers' shared downlinks hold each piece to a fraction of the uplink.
        let mut l = at(32, 0.3 * UPLINK);
        l.adjust(32, UPLINK, (32, 500));
        assert_eq!(l.limit, 34);
        for _ in 0..100 {
            l.adjust(32, UPLINK, (l.limit, 500 - l.limit));
        }
        assert_eq!(l.limit, 500, "no more slots than clients that want one");
    }

    #[test]
    fn test_between_underused_and_full_the_limit_holds_while_clients_wait() {
        for rate in [0.8, 0.85, 0.89] {
            let mut l = at(40, rate * UPLINK);
            l.adjust(32, UPLINK, (40, 100));
            assert_eq!(l.limit, 40, "at {rate} of the best it delivered");
        }
        // Counted by pieces written, from half of the peak.
        for rate in [0.5, 0.6, 0.74] {
            let mut l = SendLimit {
                delivered: None,
                ..at(40, rate * UPLINK)
            };
            l.adjust(32, UPLINK, (40, 100));
            assert_eq!(l.limit, 40, "at {rate} of the peak written");
        }
        // Nobody waits: it goes back towards the slots in use.
        let mut l = at(40, 0.3 * UPLINK);
        l.adjust(32, UPLINK, (38, 0));
        assert_eq!(l.limit, 38);
        // Not measured yet: it holds.
        let mut l = SendLimit {
            limit: 40,
            ..SendLimit::default()
        };
        l.adjust(32, UPLINK, (40, 100));
        assert_eq!(l.limit, 40);
    }

    #[test]
    fn test_a_full_uplink_shrinks_the_limit_back_to_its_base() {
        let mut l = at(200, 0.9 * UPLINK);
        for _ in 0..100 {
            l.adjust(32, UPLINK, (l.limit, 300));
        }
        assert_eq!(l.limit, 32);
        // The base itself rises with the capacity at once.
        l.adjust(48, UPLINK, (32, 300));
        assert_eq!(l.limit, 48);
    }

    /// Ticks each 100 ms from `from` for `secs`, `uploaded` growing at `rate` per second,
    /// the limit adjusted with 50 clients waiting and its capacity the measured peak.
    fn feed(l: &mut SendLimit, t0: Instant, from: f64, secs: f64, uploaded: &mut u64, rate: f64) {
        for i in 0..(secs * 10.0) as u32 {
            let now = t0 + Duration::from_secs_f64(from + (i + 1) as f64 * 0.1);
            *uploaded += (rate * 0.1) as u64;
            let peak = l.measure_rates(*uploaded, now);
            l.adjust(8, peak, (l.limit, 50));
        }
    }

    #[test]
    fn test_a_rate_well_under_the_best_delivered_grows_the_limit_and_one_near_it_shrinks_it() {
        let (t0, mut up) = (Instant::now(), 0);
        let mut l = SendLimit {
            piece_secs: 0.5,
            delivered: Some(0),
            ..SendLimit::default()
        };
        feed(&mut l, t0, 0.0, 3.0, &mut up, 1e6);
        assert_eq!(l.limit, 8, "the uplink delivers what it did at 8");
        // Receivers now share their downlinks with other uploads: pieces leave slower.
        feed(&mut l, t0, 3.0, 3.0, &mut up, 0.7e6);
        assert!((l.peak_rate - 1e6).abs() < 1e3, "{}", l.peak_rate);
        assert!(l.limit > 16, "{}", l.limit);
        // Back near the best it delivered: it may be all the uplink can do.
        feed(&mut l, t0, 6.0, 20.0, &mut up, 0.95e6);
        assert_eq!(l.limit, 8);
    }

    #[test]
    fn test_a_full_uplink_under_a_peak_inflated_by_pieces_written_shrinks_the_limit() {
        // Counted by pieces written, a burst read 1.31 MB/s of a 0.99 MB/s uplink.
        let (t0, mut up) = (Instant::now(), 0);
        let mut l = SendLimit {
            limit: 160,
            piece_secs: 0.5,
            ..SendLimit::default()
        };
        feed(&mut l, t0, 0.0, 3.0, &mut up, 1.31e6);
        feed(&mut l, t0, 3.0, 30.0, &mut up, 0.99e6);
        assert!((l.peak_rate - 1.31e6).abs() < 1e4, "{}", l.peak_rate);
        assert_eq!(l.limit, 8);
    }

    #[test]
    fn test_the_origin_measures_what_its_uplink_delivered_not_what_it_wrote() {
        let data = vec![7u8; 1 << 20];
        let m = Manifest::build(&data, 16_384).unwrap();
        let mut now = Instant::now();
        let mut node = Node::origin(Config::new(Role::Origin, 1), m, now);
        for tick in 1..=30u64 {
            now += Duration::from_millis(100);
            // 1 MB/s acknowledged; no piece written (`counters.uploaded` stays 0).
            node.handle_delivered(tick * 100_000);
            node.handle_tick(now);
        }
        let Side::Origin(r) = &node.side else {
            panic!("an origin")
        };
        let peak = r.send_limit.peak_rate;
        assert!((peak - 1e6).abs() < 1e3, "{peak}");
    }

    #[test]
    fn test_pieces_leaving_in_bursts_on_a_full_uplink_never_read_as_idle() {
        // 8 pieces of 128 KB leave together every 1.25 s: 0.8 MB/s, the uplink full.
        let (t0, mut up) = (Instant::now(), 0u64);
        let mut l = SendLimit {
            piece_secs: 1.25,
            ..SendLimit::default()
        };
        for tick in 1..=300u32 {
            if tick % 12 == 0 {
                up += 8 * 128_000;
            }
            let now = t0 + Duration::from_millis(100 * tick as u64);
            l.measure_rates(up, now);
            if let Some(rate) = l.recent_rate {
                assert!(rate > 0.5 * 0.8e6, "tick {tick}: {rate}");
            }
        }
        assert!(l.recent_rate.is_some());
    }
}
