//! Opening a connection: HELLO, MANIFEST and BITFIELD, and a peer's ERROR.

use super::*;

impl Node {
    pub(super) fn on_hello(&mut self, slot: Slot, h: Hello) {
        if self.peer(slot).is_some_and(|p| p.hello.is_some()) {
            return self.fail(slot, ErrorCode::Protocol, "second HELLO");
        }
        if h.version != VERSION {
            let why = format!(
                "unsupported protocol version {} (this node speaks {VERSION})",
                h.version
            );
            if self.peer(slot).is_some_and(|p| p.is_origin_link()) && self.manifest.is_none() {
                self.fatal(FailureKind::Incompatible, format!("server speaks {why}"));
            }
            return self.fail(slot, ErrorCode::Version, &why);
        }
        if h.node_id == 0 {
            // §4.1: 0 is never a node's id (it is what an unparsed HELLO carries), so a peer
            // sending it is broken, and taking it would let it collide with others.
            let why = "node id 0 in HELLO (ids are never 0)";
            if self.peer(slot).is_some_and(|p| p.is_origin_link()) && self.manifest.is_none() {
                self.fatal(FailureKind::NotTftp, format!("the server sent {why}"));
            }
            return self.fail(slot, ErrorCode::Protocol, why);
        }
        if h.node_id == self.cfg.node_id {
            return self.fail(slot, ErrorCode::Duplicate, "connected to itself");
        }
        let duplicate =
            self.peers.iter().enumerate().any(|(s, p)| {
                s != slot && p.as_ref().is_some_and(|p| p.node_id() == Some(h.node_id))
            });
        if duplicate {
            return self.fail(slot, ErrorCode::Duplicate, "already connected to this node");
        }
        let link = self.peer(slot).map(|p| p.link);
        if let Some(p) = self.peer_mut(slot) {
            p.hello = Some(h);
        }
        match (self.cfg.role, link) {
            (Role::Origin, _) => {
                let m = self.manifest.as_ref().expect("origin has a manifest");
                if h.role != Role::Client {
                    return self.fail(slot, ErrorCode::Protocol, "an origin cannot join a swarm");
                }
                if h.file_id != 0 && h.file_id != m.id() {
                    return self.fail(
                        slot,
                        ErrorCode::WrongFile,
                        "this server serves another file",
                    );
                }
                let mut body = Vec::new();
                m.encode(&mut body);
                let all = Bitfield::full(m.piece_count());
                self.emit(slot, &Message::Manifest(&body));
                self.emit(slot, &Message::Bitfield(all.as_bytes()));
            }
            (Role::Client, Some(Link::ToOrigin)) => {
                if h.role != Role::Origin {
                    let why = "the server is not a TFTTP origin".to_string();
                    self.fatal(FailureKind::NotTftp, why.clone());
                    return self.fail(slot, ErrorCode::Protocol, &why);
                }
                if let Some(m) = &self.manifest
                    && h.file_id != m.id()
                {
                    // Reconnected to an origin that now serves something else.
                    let why = "the server now serves a different file".to_string();
                    self.fatal(FailureKind::WrongFile, why.clone());
                    return self.fail(slot, ErrorCode::WrongFile, &why);
                }
                if let Some(c) = self.client_side_mut() {
                    c.origin.file_id = h.file_id;
                    c.origin.lost_at = None;
                }
            }
            (Role::Client, _) => {
                let Some(m) = &self.manifest else {
                    return self.fail(slot, ErrorCode::NotReady, "no manifest yet; retry later");
                };
                if h.role != Role::Client || h.file_id != m.id() {
                    return self.fail(slot, ErrorCode::WrongFile, "peer is in another swarm");
                }
                if !self.cfg.use_peers {
                    return self.fail(slot, ErrorCode::TooManyPeers, "not trading with peers");
                }
                if self
                    .client_side()
                    .is_some_and(|c| c.banned.contains(&h.node_id))
                {
                    return self.fail(slot, ErrorCode::Corrupt, "banned: sent a corrupt piece");
                }
                if let Some(c) = self.client_side_mut() {
                    c.connected(h.node_id, slot);
                }
                self.counters.peers_connected += 1;
                self.send_bitfield(slot);
            }
        }
    }

    pub(super) fn send_bitfield(&mut self, slot: Slot) {
        let bits = self.picker.as_ref().map(|p| p.have().as_bytes().to_vec());
        if let Some(bits) = bits {
            self.emit(slot, &Message::Bitfield(&bits));
        }
    }

    pub(super) fn on_manifest(&mut self, slot: Slot, body: &[u8]) {
        let from_origin = self.peer(slot).is_some_and(|p| p.is_origin_link());
        if self.cfg.role != Role::Client || !from_origin {
            return self.fail(slot, ErrorCode::Protocol, "MANIFEST from a non-origin");
        }
        let m = match Manifest::decode(body) {
            Ok(m) => m,
            Err(e) => {
                self.fatal(
                    FailureKind::BadManifest,
                    format!("the server sent a bad manifest: {e}"),
                );
                return self.fail(slot, ErrorCode::Protocol, "bad manifest");
            }
        };
        if self
            .client_side()
            .is_none_or(|c| m.id() != c.origin.file_id)
        {
            self.fatal(
                FailureKind::WrongFile,
                "the server's manifest does not match its file id",
            );
            return self.fail(slot, ErrorCode::WrongFile, "manifest id mismatch");
        }
        if let Some(have) = &self.manifest {
            if *have != m {
                self.fatal(
                    FailureKind::WrongFile,
                    "the server now serves a different file",
                );
            }
        } else {
            self.picker = Some(Picker::new(Bitfield::new(m.piece_count())));
            self.manifest = Some(m);
            self.last_progress = self.now;
            self.events.push_back(Event::Manifest);
        }
        self.send_bitfield(slot);
        if self.is_complete() {
            self.on_complete();
        }
    }

    pub(super) fn on_bitfield(&mut self, slot: Slot, bytes: &[u8]) {
        let Some(n) = self.manifest.as_ref().map(|m| m.piece_count()) else {
            return self.fail(slot, ErrorCode::Protocol, "BITFIELD before the manifest");
        };
        if self.peer(slot).is_some_and(|p| p.ready) {
            return self.fail(slot, ErrorCode::Protocol, "second BITFIELD");
        }
        let Some(bits) = Bitfield::from_bytes(bytes, n) else {
            return self.fail(slot, ErrorCode::Protocol, "BITFIELD of the wrong length");
        };
        match self.cfg.role {
            Role::Origin => {
                let id = self.peer(slot).and_then(|p| p.node_id());
                if let (Side::Origin(registry), Some(id)) = (&mut self.side, id) {
                    registry.register(id, &bits);
                }
                let full = bits.is_full();
                let p = self.peer_mut(slot).expect("checked above");
                p.has = bits;
                p.ready = true;
                p.registered = true;
                if full {
                    self.counters.clients_completed += 1;
                }
                self.introduce(slot);
                self.update_swarm_done();
            }
            Role::Client => {
                let from_origin = self.peer(slot).is_some_and(|p| p.is_origin_link());
                let picker = self.picker.as_mut().expect("manifest implies picker");
                let mut useful = 0;
                for i in bits.ones() {
                    if !from_origin {
                        picker.peer_has(i);
                    }
                    if !picker.have().get(i) {
                        useful += 1;
                    }
                }
                let p = self.peer_mut(slot).expect("checked above");
                p.has = bits;
                p.useful = useful;
                p.ready = true;
                self.update_interest(slot);
                self.fill_requests(slot);
            }
        }
    }

    pub(super) fn on_error(&mut self, slot: Slot, code: ErrorCode, reason: &str) {
        let from_origin = self.peer(slot).is_some_and(|p| p.is_origin_link());
        if from_origin
            && (self.manifest.is_none()
                || matches!(code, ErrorCode::WrongFile | ErrorCode::Version))
        {
            self.fatal(
                FailureKind::Refused,
                format!("the server refused: {reason}"),
            );
        }
        self.close(
            slot,
            false,
            &format!("peer sent ERROR ({code:?}): {reason}"),
        );
    }
}
