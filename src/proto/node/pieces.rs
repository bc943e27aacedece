//! Pieces arriving: HAVE announcements, PIECE payload into its sink, verification,
//! receipts for the origin, and completion.

use super::*;

impl Node {
    /// Payload bytes of the PIECE being received on `slot` arrived (the driver calls this per
    /// read, not per byte): the connection is alive even while one large piece streams in,
    /// and the download is making progress (the stall timer restarts).
    pub fn handle_payload(&mut self, slot: Slot, now: Instant) {
        if let Some(p) = self.peers.get_mut(slot).and_then(|p| p.as_mut()) {
            p.last_recv = now;
            p.last_data = now;
            self.last_progress = now;
        }
    }

    /// The head of a PIECE frame for `piece` with `len` payload bytes arrived on `slot`.
    /// Returns where the payload goes, or `None` if the connection is being closed.
    pub fn begin_piece(&mut self, slot: Slot, piece: u32, len: u32, now: Instant) -> Option<Sink> {
        self.now = now;
        let (Some(m), Some(_)) = (&self.manifest, &self.picker) else {
            self.fail(slot, ErrorCode::Protocol, "PIECE before the manifest");
            return None;
        };
        if piece >= m.piece_count() || len != m.piece_len(piece) {
            self.fail(
                slot,
                ErrorCode::Protocol,
                "PIECE index or length out of range",
            );
            return None;
        }
        let offset = m.piece_offset(piece);
        let peer = self.peer_mut(slot)?;
        if peer.closing {
            return None;
        }
        peer.last_recv = now;
        peer.last_data = now;
        let found = peer
            .asked
            .iter()
            .position(|a| a.piece == piece)
            .or_else(|| {
                // The origin answers a wildcard with a piece of its choice.
                peer.is_origin_link()
                    .then(|| peer.asked.iter().position(|a| a.piece == WILDCARD))
                    .flatten()
            });
        let Some(idx) = found else {
            self.fail(slot, ErrorCode::Protocol, "PIECE that was not requested");
            return None;
        };
        let asked = peer.asked.remove(idx);
        peer.receiving = Some(Asked {
            piece,
            at: asked.at,
            cancelled: false,
        });
        let picker = self.picker.as_mut()?;
        // Claimed before the request is counted done, so the piece never looks free (and
        // wakes every dry peer) in between.
        let store = picker.try_claim(piece, slot);
        // A wildcard's answer that we already hold or are receiving from a peer was no
        // first copy: the origin has none left for us, and its next choices (its
        // least-copied pieces) would race our peers' pieces again. From now on it is asked
        // by index, for the pieces no peer has first. (A peer's HAVE would say as much
        // sooner, but a liar's HAVEs would then turn a client from the origin's first
        // copies; only bytes arriving twice are evidence nobody can forge.)
        let no_fresh = asked.piece == WILDCARD && !store;
        if asked.piece != WILDCARD {
            picker.on_request_done(piece);
        }
        if no_fresh {
            self.ask_origin_by_index(slot);
        }
        if store {
            self.cancel_elsewhere(piece, slot);
            Some(Sink::Store { offset })
        } else {
            Some(Sink::Discard)
        }
    }

    /// The payload of the PIECE begun on `slot` has fully arrived; `stored` is the BLAKE3
    /// hash of the bytes written (`None` if they were discarded). The driver computes it as
    /// the payload streams through, so each byte is read once (docs/PROTOCOL.md §5.4).
    pub fn end_piece(&mut self, slot: Slot, stored: Option<Hash>, now: Instant) {
        self.now = now;
        let Some(peer) = self.peer_mut(slot) else {
            return;
        };
        let Some(r) = peer.receiving.take() else {
            return;
        };
        peer.note_piece_time(r.at, now);
        let from_origin = peer.is_origin_link();
        let (Some(m), Some(picker)) = (&self.manifest, self.picker.as_mut()) else {
            return;
        };
        let len = m.piece_len(r.piece) as u64;
        self.table.record_down(slot, len);
        let Some(hash) = stored else {
            self.counters.discarded += len;
            if from_origin {
                self.counters.discarded_from_origin += len;
            }
            self.fill_requests(slot);
            return;
        };
        if !m.verify(r.piece, &hash) {
            picker.release(r.piece, false);
            self.counters.corrupt_pieces += 1;
            // A peer that sends a bad piece is dropped for good (it would only reconnect and
            // do it again); the piece is fetched elsewhere. The origin is trusted, so its bad
            // piece is only fetched again.
            if !from_origin {
                let id = self.peer(slot).and_then(|p| p.node_id());
                if let (Some(c), Some(id)) = (self.client_side_mut(), id) {
                    c.banned.insert(id);
                }
                return self.fail(slot, ErrorCode::Corrupt, "piece failed its BLAKE3 hash");
            }
            // The origin counts the piece as on its way to us, in its send window, until we
            // announce it: ask for it again by index (docs/PROTOCOL.md §5.2).
            picker.on_request(r.piece);
            if let Some(p) = self.peer_mut(slot) {
                p.asked.push(Asked {
                    piece: r.piece,
                    at: now,
                    cancelled: false,
                });
            }
            self.emit(slot, &Message::Request(r.piece));
            self.fill_requests(slot);
            return;
        }
        picker.release(r.piece, true);
        let micros = now.saturating_duration_since(r.at).as_micros().max(1) as u64;
        let _ = self.latency_all.record(micros.min(3_600_000_000));
        if from_origin {
            self.counters.from_origin += len;
        } else {
            self.counters.from_peers += len;
            if let Some(id) = self.peer(slot).and_then(|p| p.node_id()) {
                self.ledger.record_received(id, len);
            }
        }
        self.last_progress = now;
        self.on_piece_verified(r.piece);
        self.fill_requests(slot);
    }

    pub(super) fn on_have(&mut self, slot: Slot, i: u32) {
        let Some(n) = self.manifest.as_ref().map(|m| m.piece_count()) else {
            return self.fail(slot, ErrorCode::Protocol, "HAVE before the manifest");
        };
        if i >= n || !self.peer(slot).is_some_and(|p| p.ready) {
            return self.fail(
                slot,
                ErrorCode::Protocol,
                "HAVE out of range or before BITFIELD",
            );
        }
        let role = self.cfg.role;
        let p = self.peers[slot].as_mut().expect("checked above");
        if p.has.get(i) {
            return;
        }
        if p.held >= n {
            // Its PROGRESS counted a piece it had not announced and then announced more.
            return self.fail(slot, ErrorCode::Protocol, "HAVE beyond the pieces it holds");
        }
        p.has.set(i);
        p.held += 1;
        p.dry = None;
        match role {
            Role::Origin => {
                let was_in_flight = match p.in_flight.iter().position(|&x| x == i) {
                    Some(k) => {
                        p.in_flight.swap_remove(k);
                        p.acked = p.acked.saturating_add(1);
                        p.resent = 0;
                        true
                    }
                    None => false,
                };
                let queued = !p.queue.is_empty();
                let full = p.has.is_full();
                let (id, acked) = (p.node_id(), p.acked);
                self.time_round_trip(slot, i);
                // A named client is passed nothing: nobody could keep a promise to it.
                if let Side::Origin(registry) = &mut self.side
                    && !self.table.is_named(slot)
                {
                    registry.note_taker(slot, self.now);
                }
                if was_in_flight && queued {
                    // The send window may have been full.
                    self.mark_dirty(slot);
                }
                if !was_in_flight && let Side::Origin(registry) = &mut self.side {
                    // Another client got the piece without the origin: whoever received its
                    // first copy has kept that promise. A peer uploaded it if another
                    // client held it and the client has announced a piece the origin sent
                    // it: before that come the pieces it had already, read back after a
                    // restart and announced right after its BITFIELD (§5.5).
                    let from_peer = acked > 0 && registry.striper.copies(i) > 0;
                    if let Some(holder) = registry.announced(slot, i) {
                        self.table.keep_promise(holder);
                        self.counters.promises_kept += 1;
                    }
                    if let (true, Some(id), Some(m)) = (from_peer, id, &self.manifest) {
                        self.ledger.note_peer_piece(id, m.piece_len(i) as u64);
                    }
                }
                if full {
                    if let Side::Origin(registry) = &mut self.side {
                        registry.completed();
                    }
                    self.counters.clients_completed += 1;
                    self.update_swarm_done();
                }
            }
            Role::Client => {
                let from_origin = p.is_origin_link();
                let picker = self.picker.as_mut().expect("manifest implies picker");
                if !from_origin {
                    picker.peer_has(i);
                }
                if !picker.have().get(i) {
                    self.peer_mut(slot).expect("checked").useful += 1;
                    self.update_interest(slot);
                    self.fill_requests(slot);
                    self.vouch_for_holdings(slot, &[i]);
                }
            }
        }
    }

    /// Client: report per-peer counters to the origin (RECEIPT, docs/PROTOCOL.md §5.6).
    pub(super) fn send_receipts(&mut self) {
        let Some(origin) = self.ready_origin_slot() else {
            return;
        };
        self.vouch_for_uploads();
        if !self.cfg.behaviour.sends_receipts() {
            return;
        }
        let entries = self
            .ledger
            .take_receipt(self.cfg.behaviour == Behaviour::Liar);
        for chunk in entries.chunks(wire::MAX_RECEIPT_ENTRIES) {
            self.emit(origin, &Message::Receipt(chunk.to_vec()));
        }
    }

    /// Client, right after `Event::Manifest`: the driver found `pieces` already in the output
    /// (an interrupted run's), verified against the manifest. They count as had and are
    /// announced with HAVE, after the BITFIELD that went out without them.
    pub fn handle_resumed(&mut self, pieces: &[u32], now: Instant) {
        self.now = now;
        let Some(picker) = self.picker.as_mut() else {
            return;
        };
        let mut fresh = Vec::with_capacity(pieces.len());
        for &i in pieces {
            if i < picker.have().len() && !picker.have().get(i) && picker.claimed_by(i).is_none() {
                picker.release(i, true);
                fresh.push(i);
            }
        }
        // Every HAVE before the completion check: the PROGRESS that completion sends must
        // not count a piece whose HAVE is still to come (docs/PROTOCOL.md §4.11).
        for &i in &fresh {
            self.announce(i);
        }
        if !fresh.is_empty() && self.is_complete() {
            self.on_complete();
        }
        self.last_progress = now;
    }

    pub(super) fn on_piece_verified(&mut self, piece: u32) {
        self.announce(piece);
        if self.is_complete() {
            self.on_complete();
        }
    }

    /// HAVE of a piece we now hold to every peer that needs it; our interest follows.
    fn announce(&mut self, piece: u32) {
        let have = Message::Have(piece);
        for s in 0..self.peers.len() {
            let Some(p) = self.peer_mut(s) else { continue };
            // Once our BITFIELD is out, not only once theirs is in: a piece verified in
            // between would otherwise be one they never hear we hold.
            if !p.sent_bitfield || p.closing {
                continue;
            }
            if p.has.get(piece) {
                p.useful = p.useful.saturating_sub(1);
            }
            if Self::needs_have(p, piece) {
                p.told += 1;
                self.emit(s, &have);
            }
            self.update_interest(s);
        }
    }

    pub(super) fn on_complete(&mut self) {
        if self.completed_at.is_some() {
            return;
        }
        self.completed_at = Some(self.now);
        self.events.push_back(Event::Complete);
        self.tell_everyone_progress();
        for s in 0..self.peers.len() {
            self.update_interest(s);
        }
        self.check_exit();
    }
}
