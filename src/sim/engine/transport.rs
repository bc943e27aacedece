//! Connections and what crosses them: dial, accept and close, control frames and pieces on
//! each direction's pipe, flows in the fluid network, slow start.

use super::*;

impl Sim {
    pub(super) fn alloc_slot(&mut self, h: usize, conn: usize) -> Slot {
        let host = &mut self.hosts[h];
        host.live += 1;
        match host.free.pop() {
            Some(s) => {
                host.slots[s] = Some(conn);
                s
            }
            None => {
                host.slots.push(Some(conn));
                host.streaming_in.push(false);
                host.slots.len() - 1
            }
        }
    }

    pub(super) fn free_slot(&mut self, h: usize, slot: Slot) {
        let now = self.now;
        let host = &mut self.hosts[h];
        host.slots[slot] = None;
        host.set_streaming(slot, false, now);
        host.free.push(slot);
        host.live -= 1;
    }

    pub(super) fn rtt(&self, a: usize, b: usize) -> f64 {
        self.hosts[a].rtt + self.hosts[b].rtt + BASE_RTT
    }

    pub(super) fn dial(&mut self, h: usize, addr: SocketAddr, link: Link) {
        let target = host_of(addr).filter(|&t| t < self.hosts.len() && t != h);
        let rtt = target.map_or(self.hosts[h].rtt + BASE_RTT, |t| self.rtt(h, t));
        self.next_generation += 1;
        let generation = self.next_generation;
        let id = self.conns.insert(Conn {
            generation,
            ends: [None, None],
            pipes: [Pipe::default(), Pipe::default()],
            rtt,
            rtt_ns: (rtt * 1e9).round() as u64,
            owd_ns: (rtt * 0.5e9).round() as u64,
            target: target.unwrap_or(ORIGIN),
        });
        let slot = self.alloc_slot(h, id);
        let conn = &mut self.conns[id];
        conn.ends[0] = Some(End {
            host: h,
            slot,
            closed: false,
        });
        for p in &mut conn.pipes {
            p.cwnd = INITIAL_WINDOW;
        }
        let now = self.instant();
        if let Some(node) = self.hosts[h].node.as_mut() {
            node.handle_open(slot, link, addr, now);
        }
        let r = ConnRef { id, generation };
        let reachable = self.accepts_at(h, addr);
        let (rtt_ns, owd_ns) = (self.conns[id].rtt_ns, self.conns[id].owd_ns);
        if reachable {
            self.agenda.at_ns(self.now_ns + rtt_ns, Ev::Established(r));
            self.agenda
                .at_ns(self.now_ns + rtt_ns + owd_ns, Ev::Accept(r));
        } else {
            self.agenda.at_ns(self.now_ns + rtt_ns, Ev::Refused(r));
        }
    }

    /// Whether a dial from host `h` to `addr` finds a listener: a present host, other than
    /// `h`, that listens on that port.
    pub(super) fn accepts_at(&self, h: usize, addr: SocketAddr) -> bool {
        let target = host_of(addr).filter(|&t| t < self.hosts.len() && t != h);
        target.is_some_and(|t| {
            let host = &self.hosts[t];
            host.presence == Presence::Here && host.listen && addr.port() == addr_of(t).port()
        })
    }

    pub(super) fn accept(&mut self, r: ConnRef) {
        let conn = &self.conns[r.id];
        let (t, dialler) = (
            conn.target,
            conn.ends[0].as_ref().map_or(ORIGIN, |e| e.host),
        );
        let host = &self.hosts[t];
        if host.presence != Presence::Here || host.live >= host.max_conns {
            // Gone since the dial, or turned away by the driver's connection limit.
            self.close_end(r.id, 0, false, "connection refused");
            return;
        }
        let slot = self.alloc_slot(t, r.id);
        let conn = &mut self.conns[r.id];
        conn.ends[1] = Some(End {
            host: t,
            slot,
            closed: false,
        });
        conn.pipes[1].open = true;
        let now = self.instant();
        if let Some(node) = self.hosts[t].node.as_mut() {
            node.handle_open(slot, Link::Accepted, addr_of(dialler), now);
        }
        self.drain(t);
    }
    /// End `k` of connection `c` closes: its held control bytes go out first if `flush`, the
    /// pieces on the connection stop, and the other end hears of it one-way delay later.
    pub(super) fn close_end(&mut self, c: usize, k: usize, flush: bool, why: &str) {
        let now_s = self.now;
        // Counted before its flows stop, which empties the queue in the model.
        let at = self.conns[c].ends[k]
            .as_ref()
            .map_or(0, |e| self.departure(e.host, c));
        let conn = &mut self.conns[c];
        let Some(end) = conn.ends[k].as_mut().filter(|e| !e.closed) else {
            return;
        };
        end.closed = true;
        let (h, slot) = (end.host, end.slot);
        let generation = conn.generation;
        let other_open = conn.receiver(k).is_some();
        // A piece cut off mid-way ends the byte stream: nothing framed can follow it.
        let cut = conn.pipes[k].sending.is_some();
        for dir in 0..2 {
            self.stop_flow(c, dir, now_s);
        }
        let conn = &mut self.conns[c];
        if other_open {
            // The far end has accepted, so this end's pipe is open.
            if let Some(node) = self.hosts[h].node.as_mut() {
                node.take_outbox(slot, &mut conn.pipes[k].held);
            }
            if flush && !cut {
                self.transmit_held(c, k, at);
            }
            let r = ConnRef { id: c, generation };
            self.conns[c].pipes[k].transmit(&mut self.agenda, r, k, at, Item::Fin);
        } else if conn.ends.iter().flatten().all(|e| e.closed) || conn.ends[1 - k].is_none() {
            // Nobody at the other end (never accepted, or closed already): the connection
            // is gone, and its pending events with it.
            self.conns.remove(c);
        }
        self.free_slot(h, slot);
        let now = self.instant();
        if let Some(node) = self.hosts[h].node.as_mut() {
            let cause = if why.is_empty() { "closed" } else { why };
            node.handle_closed(slot, cause, now);
        }
    }

    /// Moves what the node queued on `slot` onto the pipe: control bytes at once unless a
    /// piece is on its way, and the next piece (chosen now, when the pipe can take it).
    pub(super) fn pump(&mut self, h: usize, slot: Slot) {
        let Some(c) = self.hosts[h].slots.get(slot).copied().flatten() else {
            return;
        };
        let now = self.instant();
        let k = self.conns[c].end_of(h);
        let Some(node) = self.hosts[h].node.as_mut() else {
            return;
        };
        let conn = &mut self.conns[c];
        let receiver = conn.far_host(k);
        let pipe = &mut conn.pipes[k];
        node.take_outbox(slot, &mut pipe.held);
        if !pipe.open || pipe.sending.is_some() {
            return;
        }
        let Some(receiver) = receiver else {
            // The other end is gone; what we send is lost.
            pipe.held.clear();
            self.stop_flow(c, k, self.now);
            return;
        };
        let piece = if node.is_closing(slot) {
            None
        } else {
            node.poll_piece(slot, now)
        };
        // poll_piece may have queued REJECTs.
        node.take_outbox(slot, &mut pipe.held);
        let Some(piece) = piece else {
            if !self.conns[c].pipes[k].held.is_empty() {
                let at = self.departure(h, c);
                self.transmit_held(c, k, at);
            }
            self.stop_flow(c, k, self.now);
            return;
        };
        let at = self.departure(h, c);
        self.transmit_held(c, k, at);
        let len = self.manifest.piece_len(piece);
        let r = ConnRef {
            id: c,
            generation: self.conns[c].generation,
        };
        let pipe = &mut self.conns[c].pipes[k];
        pipe.transmit(&mut self.agenda, r, k, at, Item::Head { piece, len });
        pipe.sending = Some(piece);
        let bytes = (len as usize + PIECE_HEAD_SIZE) as f64;
        if let Some(f) = pipe.flow {
            self.net.refill(f, bytes, self.now);
            return;
        }
        // Only a flow that starts here needs the bound; most pumps carry control frames.
        let ack_bound = self.ack_bound(c, k);
        let weighted = self.net.is_weighted(h);
        let node = self.hosts[h].node.as_ref().expect("checked above");
        let conn = &mut self.conns[c];
        let pipe = &mut conn.pipes[k];
        let (cap, weight) = flow_limits(node, slot, weighted, pipe.cwnd, conn.rtt);
        let cap = cap.min(ack_bound);
        let f = self.net.start(h, receiver, bytes, cap, weight, self.now);
        if self.flow_pipe.len() <= f {
            self.flow_pipe.resize(f + 1, (usize::MAX, 0));
        }
        self.flow_pipe[f] = (c, k);
        pipe.flow = Some(f);
        let window_bound = pipe.cwnd / conn.rtt < self.hosts[h].up;
        if window_bound && !pipe.ramping && pipe.cwnd < MAX_WINDOW {
            pipe.ramping = true;
            self.agenda.at(self.now + conn.rtt, Ev::Ramp(r, k));
        }
    }

    /// When what host `h` sends now on connection `c` arrives: a one-way delay after it
    /// has waited in `h`'s uplink queue.
    fn departure(&self, h: usize, c: usize) -> u64 {
        self.now_ns + self.conns[c].owd_ns + self.queue_delay(h)
    }

    /// Puts the control bytes held on pipe `k` of connection `c`, if any, in transit to
    /// arrive at `at`.
    fn transmit_held(&mut self, c: usize, k: usize, at: u64) {
        let conn = &mut self.conns[c];
        let r = ConnRef {
            id: c,
            generation: conn.generation,
        };
        let pipe = &mut conn.pipes[k];
        if !pipe.held.is_empty() {
            let bytes = std::mem::replace(&mut pipe.held, self.spare.pop().unwrap_or_default());
            pipe.transmit(&mut self.agenda, r, k, at, Item::Control(bytes));
        }
    }

    /// Ends the flow of pipe `dir` of connection `c`, if it has one, and forgets its piece.
    pub(super) fn stop_flow(&mut self, c: usize, dir: usize, now: f64) {
        let pipe = &mut self.conns[c].pipes[dir];
        pipe.sending = None;
        if let Some(f) = pipe.flow.take() {
            self.net.stop(f, now);
            self.agenda.remove_keyed(f);
            self.flow_pipe[f] = (usize::MAX, 0);
        }
    }

    /// A piece's last byte left its sender.
    pub(super) fn sent(&mut self, f: FlowId) {
        let (c, k) = self.flow_pipe[f];
        self.net.drained(f, self.now);
        let now = self.instant();
        let Some(h) = self.conns[c].ends[k].as_ref().map(|e| e.host) else {
            return;
        };
        let queue = self.queue_delay(h);
        let conn = &mut self.conns[c];
        let generation = conn.generation;
        let at = self.now_ns + conn.owd_ns + queue;
        let Some(end) = conn.ends[k].as_ref() else {
            return;
        };
        let (h, slot) = (end.host, end.slot);
        let pipe = &mut conn.pipes[k];
        let Some(piece) = pipe.sending.take() else {
            return;
        };
        let r = ConnRef { id: c, generation };
        pipe.transmit(&mut self.agenda, r, k, at, Item::End { piece });
        if let Some(node) = self.hosts[h].node.as_mut() {
            node.handle_piece_sent(slot, piece, now);
        }
        self.pump(h, slot);
        self.drain(h);
    }

    /// The oldest item in transit on pipe `dir` of connection `r` arrives; the next one's
    /// delivery goes on the agenda.
    pub(super) fn deliver(&mut self, r: ConnRef, dir: usize) {
        self.deliver_oldest(r.id, dir);
        if self.live_conn(r)
            && let Some(&(at, _)) = self.conns[r.id].pipes[dir].transit.front()
        {
            self.agenda.at_ns(at, Ev::Deliver(r, dir));
        }
    }

    pub(super) fn deliver_oldest(&mut self, c: usize, dir: usize) {
        let now = self.instant();
        let conn = &mut self.conns[c];
        let Some((_, item)) = conn.pipes[dir].transit.pop_front() else {
            return;
        };
        let Some(end) = conn.ends[1 - dir].as_ref().filter(|e| !e.closed) else {
            return;
        };
        let (h, slot) = (end.host, end.slot);
        let Some(node) = self.hosts[h].node.as_mut() else {
            return;
        };
        let pipe = &mut conn.pipes[dir];
        let was_streaming = pipe.sink.is_some();
        match item {
            Item::Control(bytes) => {
                let mut rest = &bytes[..];
                while let Ok(Some(head)) = FrameHead::parse(rest) {
                    let len = head.frame_len();
                    node.handle_frame(slot, head.ty, &rest[HEAD_SIZE..len], now);
                    rest = &rest[len..];
                    if node.is_closing(slot) {
                        break;
                    }
                }
                // Nodes emit whole frames, and a batch is never split.
                debug_assert!(rest.is_empty() || node.is_closing(slot));
                if self.spare.len() < SPARE_BUFFERS && bytes.capacity() <= SPARE_CAPACITY {
                    let mut bytes = bytes;
                    bytes.clear();
                    self.spare.push(bytes);
                }
            }
            Item::Head { piece, len } => {
                pipe.sink = node.begin_piece(slot, piece, len, now);
            }
            Item::End { piece } => {
                // Virtual bytes are never wrong: the stored piece "hashes" to its manifest
                // entry.
                let hash = match pipe.sink.take() {
                    Some(Sink::Store { .. }) => Some(*self.manifest.piece_hash(piece)),
                    _ => None,
                };
                node.end_piece(slot, hash, now);
            }
            Item::Fin => {
                pipe.sink = None;
                let end = conn.ends[1 - dir].as_mut().expect("checked above");
                end.closed = true;
                if conn.ends.iter().flatten().all(|e| e.closed) {
                    self.conns.remove(c);
                }
                self.free_slot(h, slot);
                if let Some(node) = self.hosts[h].node.as_mut() {
                    node.handle_closed(slot, "closed by peer", now);
                }
                self.drain(h);
                return;
            }
        }
        let streaming = pipe.sink.is_some();
        if streaming != was_streaming {
            let now = self.now;
            self.hosts[h].set_streaming(slot, streaming, now);
        }
        self.drain(h);
    }

    /// One RTT of slow start: the window doubles while it is what limits the flow.
    pub(super) fn ramp(&mut self, r: ConnRef, dir: usize) {
        let ack_bound = self.ack_bound(r.id, dir);
        let conn = &mut self.conns[r.id];
        let rtt = conn.rtt;
        let pipe = &mut conn.pipes[dir];
        pipe.ramping = false;
        let Some(f) = pipe.flow else {
            return; // idle: the window grows again when data flows
        };
        pipe.cwnd = (pipe.cwnd * 2.0).min(MAX_WINDOW);
        let Some(end) = conn.ends[dir].as_ref() else {
            return;
        };
        let (h, slot) = (end.host, end.slot);
        let Some(node) = self.hosts[h].node.as_ref() else {
            return;
        };
        let cap = flow_cap(node.upload_cap(slot), pipe.cwnd, rtt).min(ack_bound);
        let weight = self.net.weight(f);
        if pipe.cwnd / rtt < self.hosts[h].up && pipe.cwnd < MAX_WINDOW {
            pipe.ramping = true;
            self.agenda.at(self.now + rtt, Ev::Ramp(r, dir));
        }
        self.net.set_limits(f, cap, weight, self.now);
    }

    pub(super) fn finish(mut self) -> Outcome {
        let mut clients = Vec::with_capacity(self.hosts.len() - 1);
        for h in 0..self.hosts.len() {
            let host = &mut self.hosts[h];
            if let Some(node) = host.node.as_ref() {
                host.counters = node.counters().clone();
            }
            if h == ORIGIN {
                continue;
            }
            // Still named, or waiting, when it left or the run ended.
            host.set_named(false, self.now);
            if host.streams == 0 {
                host.end_wait(host.left.unwrap_or(self.now));
            }
            clients.push(ClientOutcome {
                complete: host.complete,
                left: host.left,
                counters: host.counters.clone(),
                failed: host.failed.clone(),
                startup_wait: host.startup_wait.unwrap_or(0.0),
                max_piece_gap: host.max_piece_gap,
                named: host.named,
                named_downloading: host.named_downloading,
            });
        }
        Outcome {
            piece_size: self.manifest.piece_size(),
            pieces: self.manifest.piece_count(),
            origin: self.hosts[ORIGIN].counters.clone(),
            clients,
            events: self.events,
            end: self.now,
            timeline: std::mem::take(&mut self.timeline),
        }
    }
}

/// What the node says about the flow of `slot`: its rate limit (below) and its share weight
/// (the driver's DRR quantum when the node's own rate limit is its bottleneck, else equal).
pub(super) fn flow_limits(
    node: &Node,
    slot: Slot,
    weighted: bool,
    cwnd: f64,
    rtt: f64,
) -> (f64, f64) {
    let cap = flow_cap(node.upload_cap(slot), cwnd, rtt);
    let weight = if weighted {
        quantum(node.upload_weight(slot), node.max_upload_weight()) as f64
    } else {
        1.0
    };
    (cap, weight)
}

/// A flow's rate limit: the policy's cap for the peer, and one window per round trip.
pub(super) fn flow_cap(policy_cap: Option<f64>, cwnd: f64, rtt: f64) -> f64 {
    let window = cwnd / rtt;
    policy_cap.map_or(window, |c| c.max(1.0).min(window))
}

/// How long a full tbf queue on an uplink of `rate` bytes per second delays what enters it,
/// with the parameters of the emulated network (../shared/README.md): burst = max(96 KiB,
/// 2 ms of rate), limit = max(25 ms of rate, 3 bursts). About 47 ms at 50 Mbit/s, 118 ms at
/// 20 Mbit/s, 1.2 s at 2 Mbit/s.
pub(super) fn queue_ns(rate: f64, modelled: bool) -> u64 {
    if !modelled {
        return 0;
    }
    let burst = (96.0 * 1024.0f64).max(0.002 * rate);
    let limit = (0.025 * rate).max(3.0 * burst);
    (limit / rate * 1e9).round() as u64
}
