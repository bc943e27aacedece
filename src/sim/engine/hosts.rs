//! Hosts coming and going: a client's configuration, arrival, tick and departure, and the
//! node's requests (events) acted on.

use super::*;

impl Sim {
    pub(super) fn client_config(&self, h: usize) -> Config {
        let host = &self.hosts[h];
        let mut cfg = Config::new(Role::Client, self.client_ids[h - 1]);
        cfg.listen_port = CLIENT_PORT;
        cfg.server = Some(addr_of(ORIGIN));
        cfg.policy = self.policy;
        cfg.behaviour = host.behave;
        cfg.set_up_rate(host.up_rate);
        if host.leave == Leave::OnComplete {
            cfg.linger = Duration::ZERO;
        }
        cfg
    }

    pub(super) fn arrive(&mut self, h: usize) {
        let cfg = self.client_config(h);
        let now = self.instant();
        let host = &mut self.hosts[h];
        host.node = Some(Node::client(cfg, now));
        host.start_pacer(now);
        host.presence = Presence::Here;
        if let Leave::After(secs) = host.leave {
            self.agenda.at(self.now + secs, Ev::Depart(h));
        }
        self.dial(h, addr_of(ORIGIN), Link::ToOrigin);
        self.drain(h);
        let t = self.node_timeout(h);
        self.agenda.at(t, Ev::Tick(h));
    }

    /// The host leaves: its connections end (flushed if `graceful`), its node is dropped.
    pub(super) fn depart(&mut self, h: usize, graceful: bool) {
        if self.hosts[h].presence != Presence::Here {
            return;
        }
        // The node goes first: a leaving process hears nothing of its own closes.
        let node = self.hosts[h].node.take();
        for slot in 0..self.hosts[h].slots.len() {
            if let Some(c) = self.hosts[h].slots[slot] {
                let k = self.conns[c].end_of(h);
                self.close_end(c, k, graceful && node.is_some(), "");
            }
        }
        let host = &mut self.hosts[h];
        if let Some(node) = node {
            host.counters = node.counters().clone();
        }
        host.presence = Presence::Gone;
        host.pacer = None;
        host.left = Some(self.now);
        if host.complete.is_none() && h != ORIGIN {
            self.unfinished -= 1;
        }
    }

    pub(super) fn tick(&mut self, h: usize) {
        let now = self.instant();
        let host = &mut self.hosts[h];
        let Some(node) = host.node.as_mut() else {
            return;
        };
        // Payload streaming in keeps a connection alive, as each read does in the driver.
        for (slot, _) in host.streaming_in.iter().enumerate().filter(|(_, s)| **s) {
            node.handle_payload(slot, now);
        }
        self.feed_rtts(h);
        // What the uplink carried, as the driver reads TCP's acknowledgements: the origin's
        // send slots and the pacer measure by it.
        let carried = self.net.carried(h, self.now) as u64;
        let node = self.hosts[h].node.as_mut().expect("checked above");
        node.handle_delivered(carried);
        node.handle_tick(now);
        self.pace(h, carried);
        self.update_limits(h);
        self.net.refresh(h, self.now);
        self.drain(h);
        let t = self.node_timeout(h);
        self.agenda.at(t, Ev::Tick(h));
    }

    /// Each connection's round trip as its TCP would smooth it: the wires' both ways, what
    /// a segment waits in this host's uplink queue, and what its ACK waits in the far
    /// host's (ACKs share the uplink with that host's data). Only where a piece is
    /// streaming in, as the driver does: a pipeline's depth scales the rate from that peer
    /// (so the origin, which receives nothing, hears none), and visiting every slot of
    /// 10,000 clients at each tick made their first 15 s cost 31–39 s of CPU instead of 29 s.
    pub(super) fn feed_rtts(&mut self, h: usize) {
        let mine = self.queue_delay(h);
        for slot in 0..self.hosts[h].slots.len() {
            let (Some(c), true) = (self.hosts[h].slots[slot], self.hosts[h].streaming_in[slot])
            else {
                continue;
            };
            let conn = &self.conns[c];
            let far = conn
                .far_host(conn.end_of(h))
                .map_or(0, |f| self.queue_delay(f));
            let rtt = Duration::from_nanos(conn.rtt_ns + mine + far);
            if let Some(node) = self.hosts[h].node.as_mut() {
                node.handle_rtt(slot, rtt);
            }
        }
    }

    /// The node's pacer sees what its uplink carried and its queue's delay; a new pace
    /// becomes the host's upload capacity, shared by the node's weights while below the
    /// link (its driver's DRR), equally at the link (the kernel's).
    fn pace(&mut self, h: usize, carried: u64) {
        let now = self.instant();
        let host = &mut self.hosts[h];
        let (Some(pacer), Some(node)) = (host.pacer.as_mut(), host.node.as_ref()) else {
            return;
        };
        // The node's receivers' answers, as the driver reads them: the model's queue shows
        // in when its STAMPs arrive.
        let delay = Node::own_queue_delay([node], now, &mut self.answers);
        if pacer.sample(now, carried, delay) {
            let link = host.link_up;
            let pace = pacer.rate().filter(|&r| r < link);
            self.net.set_uplink(h, pace.unwrap_or(link), pace.is_some());
        }
    }

    /// The node's per-connection caps and weights onto its flows; the tick shares the
    /// host's upload once afterwards.
    pub(super) fn update_limits(&mut self, h: usize) {
        let Some(node) = self.hosts[h].node.as_ref() else {
            return;
        };
        let weighted = self.net.is_weighted(h);
        for i in 0..self.net.up_flows(h).len() {
            let f = self.net.up_flows(h)[i];
            let (c, k) = self.flow_pipe[f];
            let conn = &self.conns[c];
            let slot = conn.ends[k].as_ref().expect("a flow has its sender").slot;
            let pipe = &conn.pipes[k];
            let (cap, weight) = flow_limits(node, slot, weighted, pipe.cwnd, conn.rtt);
            let cap = cap.min(self.ack_bound(c, k));
            self.net.record_limits(f, cap, weight);
        }
    }

    /// Acts on everything the host's node asked for, until it asks for nothing more.
    pub(super) fn drain(&mut self, h: usize) {
        loop {
            let Some(node) = self.hosts[h].node.as_mut() else {
                return;
            };
            if let Some(ev) = node.poll_event() {
                self.on_event(h, ev);
                continue;
            }
            if let Some(slot) = node.poll_dirty() {
                self.pump(h, slot);
                continue;
            }
            return;
        }
    }

    pub(super) fn on_event(&mut self, h: usize, ev: Event) {
        match ev {
            Event::Connect { addr, link } => self.dial(h, addr, link),
            Event::Probe { id, addr } => {
                // Answered at once, with no connection and nothing on the agenda: the
                // REACHABILITY frame joins the control bytes of the same instant, so a
                // swarm of listening clients runs as it did before probes existed.
                let reachable = self.accepts_at(h, addr);
                let now = self.instant();
                if let Some(node) = self.hosts[h].node.as_mut() {
                    node.handle_probe_result(id, Some(reachable), now);
                }
            }
            Event::Close { slot, flush, why } => {
                if let Some(c) = self.hosts[h].slots.get(slot).copied().flatten() {
                    let k = self.conns[c].end_of(h);
                    self.close_end(c, k, flush, &why);
                }
            }
            Event::Manifest => {}
            Event::Standing { node_id, named } => {
                // Only an origin names.
                if let Some(&c) = self.host_of.get(&node_id) {
                    let now = self.now;
                    self.hosts[c].set_named(named, now);
                }
            }
            Event::Complete => {
                let host = &mut self.hosts[h];
                if host.complete.is_none() {
                    host.complete = Some(self.now - host.arrive);
                    self.unfinished -= 1;
                }
            }
            Event::Exit => self.depart(h, true),
            Event::Fatal(why) => {
                self.hosts[h].failed = Some(why.to_string());
                self.depart(h, false);
            }
        }
    }
}
