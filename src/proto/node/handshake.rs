//! Opening a connection: HELLO, AUTH in a swarm with a secret, MANIFEST and BITFIELD, and
//! a peer's ERROR (docs/PROTOCOL.md §4.1, §4.7, §5.1).

use super::*;
use crate::manifest::to_hex;

impl Node {
    /// A HELLO of another protocol version: ERROR 2 with a reason naming both versions.
    pub(super) fn on_version(&mut self, slot: Slot, version: u8) {
        if self.peer(slot).is_some_and(|p| p.hello.is_some()) {
            return self.fail(slot, ErrorCode::Protocol, "second HELLO");
        }
        let why = WireError::Version(version).to_string();
        if self.peer(slot).is_some_and(|p| p.is_origin_link()) && self.manifest.is_none() {
            self.fatal(
                FailureKind::Incompatible,
                format!("the server speaks {why}"),
            );
        }
        self.fail(slot, ErrorCode::Version, &why)
    }

    pub(super) fn on_hello(&mut self, slot: Slot, h: Hello) {
        if self.peer(slot).is_some_and(|p| p.hello.is_some()) {
            return self.fail(slot, ErrorCode::Protocol, "second HELLO");
        }
        if h.node_id == self.cfg.node_id {
            return self.fail(slot, ErrorCode::Duplicate, "connected to itself");
        }
        if self.is_duplicate(slot, h.node_id) {
            return self.fail(slot, ErrorCode::Duplicate, "already connected to this node");
        }
        let to_origin = self.peer(slot).is_some_and(|p| p.is_origin_link());
        if let Some(p) = self.peer_mut(slot) {
            p.hello = Some(h.without_path());
            p.path = h.path.to_string();
        }
        // §4.7: both sides hold a secret, or neither does; nothing else is said until then.
        match (&self.cfg.secret, h.auth) {
            (None, false) => self.admit(slot),
            (None, true) => {
                if to_origin {
                    self.fatal(
                        FailureKind::Refused,
                        "the server needs the swarm secret: give it with --secret-file",
                    );
                }
                self.fail(
                    slot,
                    ErrorCode::Unauthorized,
                    "this swarm needs a secret: --secret-file",
                )
            }
            (Some(_), false) => {
                if to_origin {
                    self.fatal(
                        FailureKind::Refused,
                        "the server has no swarm secret (it was started without \
                         --secret-file); not sending it anything",
                    );
                }
                self.fail(
                    slot,
                    ErrorCode::Unauthorized,
                    "this node needs the swarm secret: --secret-file",
                )
            }
            (Some(key), true) => {
                let Some(nonce) = self.peer(slot).map(|p| p.nonce) else {
                    return;
                };
                let tag = key.tag(&h.nonce, &nonce, self.cfg.node_id, h.node_id);
                self.emit(slot, &Message::Auth(tag));
            }
        }
    }

    /// The peer's AUTH: its tag over our nonce must verify before anything else is said.
    pub(super) fn on_auth(&mut self, slot: Slot, tag: &[u8; wire::AUTH_TAG_LEN]) {
        let Some(p) = self.peer(slot) else { return };
        let (Some(key), Some(h), false) = (&self.cfg.secret, p.hello, p.admitted) else {
            return self.fail(slot, ErrorCode::Protocol, "unexpected AUTH");
        };
        if !h.auth {
            return self.fail(slot, ErrorCode::Protocol, "AUTH without the AUTH flag");
        }
        if !key.verify(tag, &p.nonce, &h.nonce, h.node_id, self.cfg.node_id) {
            if p.is_origin_link() {
                self.fatal(
                    FailureKind::Refused,
                    "the server holds another swarm secret: check --secret-file",
                );
            }
            return self.fail(
                slot,
                ErrorCode::Unauthorized,
                "wrong AUTH tag: not this swarm's secret",
            );
        }
        self.admit(slot);
    }

    /// Whether a connection other than `slot` whose handshake is done speaks for `id`. Only
    /// admitted connections count: one that has not proven the secret must not keep the
    /// real holder of a node id (which anyone can read off the wire) from connecting.
    fn is_duplicate(&self, slot: Slot, id: u64) -> bool {
        self.peers.iter().enumerate().any(|(s, p)| {
            s != slot
                && p.as_ref()
                    .is_some_and(|p| p.admitted && p.node_id() == Some(id))
        })
    }

    /// The handshake on `slot` is done: the origin checks the path and file id and sends
    /// its MANIFEST; a client takes a peer into the swarm.
    fn admit(&mut self, slot: Slot) {
        let link = self.peer(slot).map(|p| p.link);
        let Some(id) = self.peer(slot).and_then(|p| p.node_id()) else {
            return;
        };
        // Two connections of one id that both proved the secret: the first one stays.
        if self.is_duplicate(slot, id) {
            return self.fail(slot, ErrorCode::Duplicate, "already connected to this node");
        }
        let Some(p) = self.peer_mut(slot) else { return };
        let Some(h) = p.hello else { return };
        let path = std::mem::take(&mut p.path);
        p.admitted = true;
        match (self.cfg.role, link) {
            (Role::Origin, _) => {
                if h.role != Role::Client {
                    return self.fail(slot, ErrorCode::Protocol, "an origin cannot join a swarm");
                }
                if let Err(why) = self.check_path(&path) {
                    return self.fail(slot, ErrorCode::NotFound, &why);
                }
                let m = self.manifest.as_ref().expect("origin has a manifest");
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
                self.recall_standing(slot, h.node_id);
                self.counters.peers_connected += 1;
                self.send_bitfield(slot);
                self.offer_progress(slot);
            }
        }
    }

    /// Origin: whether a HELLO's `path` names its file (§4.1): exactly the file's name as
    /// served (`Config::serve_name`), or empty when the server serves only this file. An
    /// unsafe path is refused whatever it names.
    fn check_path(&self, path: &str) -> Result<(), String> {
        if path.is_empty() {
            return match self.cfg.served_files {
                0 | 1 => Ok(()),
                n => Err(format!(
                    "this server serves {n} files: ask for one by name \
                     (tfttp://HOST:PORT/NAME; http://HOST:PORT/ lists them)"
                )),
            };
        }
        if !wire::path_is_safe(path) {
            return Err(format!(
                "'{}' is not a valid path (a leading '/', an empty, '.' or '..' component, \
                 or a NUL)",
                path.escape_debug()
            ));
        }
        if self.cfg.serve_name.as_deref() == Some(path) {
            return Ok(());
        }
        Err(format!("no file '{}' here", path.escape_debug()))
    }

    pub(super) fn send_bitfield(&mut self, slot: Slot) {
        let bits = self.picker.as_ref().map(|p| p.have().as_bytes().to_vec());
        if let Some(bits) = bits {
            self.emit(slot, &Message::Bitfield(&bits));
            if let Some(p) = self.peer_mut(slot) {
                p.sent_bitfield = true;
            }
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
        if let Some(want) = self.cfg.expect_digest
            && want != *m.digest()
        {
            // Before the output is sized or a piece asked for.
            self.fatal(
                FailureKind::WrongFile,
                format!(
                    "the server's file has digest blake3:{}, not the expected blake3:{}",
                    to_hex(m.digest()),
                    to_hex(&want)
                ),
            );
            return self.fail(slot, ErrorCode::WrongFile, "not the file we expected");
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
                    let age = registry.register(id, &bits, self.table.round_no());
                    self.table.carry_age(slot, age);
                }
                let full = bits.is_full();
                let p = self.peer_mut(slot).expect("checked above");
                p.held = bits.count();
                p.has = bits;
                p.ready = true;
                p.registered = true;
                if full {
                    self.counters.clients_completed += 1;
                } else if let Side::Origin(registry) = &mut self.side {
                    for holder in registry.activate_dormant() {
                        self.table.promise(holder);
                        self.counters.promises_made += 1;
                    }
                }
                self.introduce(slot);
                self.send_standing(slot);
                self.queue_probe(slot);
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
                let held: Vec<u32> = match self.cfg.behaviour {
                    Behaviour::Colluder => bits.ones().collect(),
                    _ => Vec::new(),
                };
                let p = self.peer_mut(slot).expect("checked above");
                p.held = bits.count();
                p.has = bits;
                p.useful = useful;
                p.ready = true;
                self.update_interest(slot);
                self.vouch_for_holdings(slot, &held);
                self.fill_requests(slot);
            }
        }
    }

    pub(super) fn on_error(&mut self, slot: Slot, code: ErrorCode, reason: &str) {
        let from_origin = self.peer(slot).is_some_and(|p| p.is_origin_link());
        if from_origin
            && (self.manifest.is_none()
                || matches!(
                    code,
                    ErrorCode::WrongFile
                        | ErrorCode::Version
                        | ErrorCode::Unauthorized
                        | ErrorCode::NotFound
                ))
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
