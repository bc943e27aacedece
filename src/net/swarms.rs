//! The nodes a driver runs: a client's one, a single-file origin's one, or, for an origin of
//! several files, one per file in use. Each file's swarm (its `Node`, its mapped file and
//! what watches the file for changes) is made when a client's HELLO or an HTTP request first
//! names it and dropped once it has had no connection for `IDLE_DROP`, so an origin of
//! 10,000 files holds nodes and mappings only for the few being fetched (README "Many
//! files"). Its counters go to the retired totals when it is dropped, so the stats and
//! `--exit-after` count every client that ever completed.
//!
//! A connection's slot in a node is its index in that swarm's `conns`, not the driver's
//! key: a node's per-slot tables stay as long as its own connection count, however many
//! connections the driver holds for other files.

use std::time::{Duration, Instant};

use slab::Slab;

use super::catalog::Catalog;
use super::conn::Deliveries;
use super::http::Served;
use super::http::response::{File, Files};
use super::storage::{SourceStamp, Storage};
use crate::manifest::Manifest;
use crate::proto::{Config, Counters, Node, Slot};

/// A swarm with no connection for this long is dropped (its node, tables and mapping):
/// long enough that a client retrying, or the next of a batch of scripted fetches, finds
/// it still there; short enough that a crawl over thousands of files does not pile them up.
pub(super) const IDLE_DROP: Duration = Duration::from_secs(30);

/// One file's node, the file it serves and its connections.
pub(super) struct Swarm {
    pub node: Node,
    pub storage: Storage,
    /// The catalog entry served; `None` for a client's node and the refusing node.
    pub file: Option<usize>,
    /// Origin: the file's stamp when this swarm began, and once it differs, the manifest
    /// every piece is checked against before it is sent.
    pub stamp: Option<SourceStamp>,
    pub check_against: Option<Manifest>,
    /// Withdrawn pieces already reported.
    pub withdrawn_told: u32,
    /// The node's slots: slot → the driver's connection key.
    pub conns: Slab<usize>,
    /// When its last connection closed (or it was made).
    pub idle_since: Instant,
    /// What its connections delivered, for its node (`feed_delivered`).
    pub deliveries: Deliveries,
    /// Never dropped: a client's node, a single file's, the refusing node.
    keep: bool,
}

impl Swarm {
    fn new(node: Node, storage: Storage, file: Option<usize>, keep: bool, now: Instant) -> Swarm {
        Swarm {
            node,
            stamp: storage.source_stamp(),
            storage,
            file,
            check_against: None,
            withdrawn_told: 0,
            conns: Slab::new(),
            idle_since: now,
            deliveries: Deliveries::default(),
            keep,
        }
    }
}

/// Every swarm of a driver.
pub(super) struct Swarms {
    pub live: Slab<Swarm>,
    /// Origin: the served files.
    pub catalog: Option<Catalog>,
    /// Catalog index → its live swarm.
    by_file: Vec<Option<usize>>,
    /// Origin of several files: the node that answers what no file's node should (an empty
    /// or unknown path, a HELLO of another version, bytes that do not frame), as any node
    /// does: after AUTH when there is a secret, with ERROR 11, 2 or 1.
    refuser: Option<usize>,
    /// Origin of several files: each file's node is configured from this.
    template: Option<Config>,
    /// Swarms made so far; each node's HELLO nonces are keyed by it, so no two nodes of the
    /// process ever draw the same nonce (docs/PROTOCOL.md §4.7).
    made: u64,
    /// Counters of the swarms dropped.
    retired: Counters,
    /// Origin of several files: exit once this many clients completed, over all files.
    pub exit_after: Option<u32>,
}

impl Swarms {
    /// One node: a client's, or the origin's of one file (`catalog` entry 0).
    pub(super) fn one(node: Node, storage: Storage, catalog: Option<Catalog>) -> Swarms {
        let file = catalog.as_ref().map(|_| 0);
        let mut live = Slab::new();
        let now = node.started_at();
        live.insert(Swarm::new(node, storage, file, true, now));
        Swarms {
            by_file: vec![Some(0); catalog.as_ref().map_or(0, |c| c.len())],
            live,
            catalog,
            refuser: None,
            template: None,
            made: 1,
            retired: Counters::default(),
            exit_after: None,
        }
    }

    /// An origin of the files in `catalog`, each node configured from `template` (its
    /// `exit_after` counts over all files here instead). Only the refusing node is made now.
    pub(super) fn many(catalog: Catalog, mut template: Config, now: Instant) -> Swarms {
        let exit_after = template.exit_after.take();
        template.served_files = catalog.len();
        let mut refuser_cfg = template.clone();
        refuser_cfg.serve_name = None;
        let empty = Manifest::build(&[], crate::wire::MIN_PIECE_SIZE).expect("an empty file");
        let node = Node::origin(refuser_cfg, empty, now);
        let mut live = Slab::new();
        let refuser = live.insert(Swarm::new(node, Storage::Discard, None, true, now));
        Swarms {
            by_file: vec![None; catalog.len()],
            live,
            catalog: Some(catalog),
            refuser: Some(refuser),
            template: Some(template),
            made: 1,
            retired: Counters::default(),
            exit_after,
        }
    }

    /// Whether connections must be routed by their HELLO (an origin of several files).
    pub(super) fn routed(&self) -> bool {
        self.refuser.is_some()
    }

    /// The first node: a client's, a single file's origin, or the refusing node.
    pub(super) fn first(&self) -> &Node {
        &self.live.iter().next().expect("a driver has a node").1.node
    }

    /// The swarm a HELLO asking for `path` goes to, made if needed; `Err` carries a line
    /// for the log when the file's swarm could not be made (the refusing node takes it).
    pub(super) fn route(&mut self, path: Option<&str>, now: Instant) -> (usize, Option<String>) {
        let Some(refuser) = self.refuser else {
            return (0, None);
        };
        let found = path.and_then(|p| self.catalog.as_ref()?.find(p));
        match found.map(|k| self.ensure(k, now)) {
            Some(Ok(s)) => (s, None),
            Some(Err(why)) => (refuser, Some(why)),
            None => (refuser, None),
        }
    }

    /// The live swarm of catalog entry `k`, made if there is none.
    pub(super) fn ensure(&mut self, k: usize, now: Instant) -> Result<usize, String> {
        if let Some(s) = self.by_file[k] {
            return Ok(s);
        }
        let (Some(catalog), Some(template)) = (self.catalog.as_mut(), self.template.as_ref())
        else {
            return Err("no catalog".into());
        };
        let storage = catalog.open(k).map_err(|e| {
            let e2 = catalog.get(k);
            format!("cannot open {}: {e}", e2.path.display())
        })?;
        let entry = catalog.get_mut(k);
        let mut cfg = template.clone();
        cfg.serve_name = entry.name.clone();
        cfg.nonce_key =
            *blake3::keyed_hash(&template.nonce_key, &self.made.to_be_bytes()).as_bytes();
        self.made += 1;
        let node = Node::origin(cfg, entry.manifest.clone(), now);
        let mut swarm = Swarm::new(node, storage, Some(k), false, now);
        // Changed since the manifest was built: check every piece from the start.
        if swarm.stamp != Some(entry.stamp) {
            entry.changed = true;
            // `Driver::check_source` sees the difference and says so.
            swarm.stamp = Some(entry.stamp);
            swarm.check_against = Some(entry.manifest.clone());
        }
        let s = self.live.insert(swarm);
        self.by_file[k] = Some(s);
        Ok(s)
    }

    /// Drops swarms without connections for `IDLE_DROP` whose file `in_use` says no
    /// HTTP answer still reads; returns how many.
    pub(super) fn drop_idle(&mut self, now: Instant, in_use: impl Fn(usize) -> bool) -> usize {
        let idle: Vec<usize> = self
            .live
            .iter()
            .filter(|(_, s)| {
                !s.keep
                    && s.conns.is_empty()
                    && now.saturating_duration_since(s.idle_since) >= IDLE_DROP
                    && !s.file.is_some_and(&in_use)
                    // Its probe answers must find it (a swarm's index is reused).
                    && s.node.probes_in_flight() == 0
            })
            .map(|(k, _)| k)
            .collect();
        for &k in &idle {
            let s = self.live.remove(k);
            add(&mut self.retired, s.node.counters());
            if let Some(f) = s.file {
                self.by_file[f] = None;
            }
        }
        idle.len()
    }

    /// The counters of every node, live and dropped, added up.
    pub(super) fn totals(&self) -> Counters {
        let mut t = self.retired.clone();
        for (_, s) in &self.live {
            add(&mut t, s.node.counters());
        }
        t
    }

    /// Origin: whether a client of any file still downloads (or is in its handshake).
    pub(super) fn clients_downloading(&self) -> bool {
        self.live
            .iter()
            .any(|(k, s)| Some(k) != self.refuser && s.node.clients_downloading())
    }

    /// Origin: looks for a change to each served file in use (once a second, with the
    /// stats). The manifest's hashes describe the file as it was, so from the first change
    /// on every piece is checked before it is sent, and the node stops serving those that
    /// changed. Said at the default log level: clients only see pieces fail and vanish.
    /// `single_name` names a lone file as the user gave it; otherwise each file is named by
    /// its path.
    pub(super) fn check_sources(&mut self, single_name: Option<&str>) {
        for (_, sw) in self.live.iter_mut() {
            let Some(was) = sw.stamp else { continue };
            let entry = (sw.file).and_then(|k| Some(self.catalog.as_mut()?.get_mut(k)));
            let name = match (&entry, single_name) {
                (_, Some(n)) => n.to_string(),
                (Some(e), None) => e.path.display().to_string(),
                (None, None) => "the served file".to_string(),
            };
            if let Some(now) = sw.storage.source_stamp()
                && now != was
            {
                sw.stamp = Some(now);
                let what = if now.len != was.len {
                    format!("its size went from {} to {} bytes", was.len, now.len)
                } else if now.mtime != was.mtime {
                    "it was modified".to_string()
                } else {
                    "its status changed".to_string()
                };
                eprintln!(
                    "tfttp: warning: {name} changed while served ({what}): each piece is now \
                     checked before it is sent, and pieces that no longer match the manifest \
                     are not served; restart serve to publish the new contents"
                );
                if sw.check_against.is_none() {
                    sw.check_against = sw.node.manifest().cloned();
                }
                if let Some(e) = entry {
                    e.changed = true;
                }
            }
            let withdrawn = sw.node.withdrawn_pieces();
            if withdrawn > sw.withdrawn_told {
                sw.withdrawn_told = withdrawn;
                let total = sw.node.manifest().map_or(0, |m| m.piece_count());
                eprintln!(
                    "tfttp: warning: {withdrawn} of {total} pieces of {name} no longer match \
                     the manifest and are no longer served"
                );
            }
        }
    }

    /// Origin of several files: `--exit-after N` is met: N clients completed over all
    /// files, and none connected to any file is still downloading.
    pub(super) fn exit_due(&self) -> bool {
        self.exit_after
            .is_some_and(|n| self.totals().clients_completed >= n && !self.clients_downloading())
    }
}

/// Adds `k` to `into`, field by field.
fn add(into: &mut Counters, k: &Counters) {
    into.from_origin += k.from_origin;
    into.from_peers += k.from_peers;
    into.uploaded += k.uploaded;
    into.discarded += k.discarded;
    into.discarded_from_origin += k.discarded_from_origin;
    into.corrupt_pieces += k.corrupt_pieces;
    into.peers_connected += k.peers_connected;
    into.peer_dials_failed += k.peer_dials_failed;
    into.clients_completed += k.clients_completed;
    into.promises_made += k.promises_made;
    into.promises_kept += k.promises_kept;
    into.clients_unreachable += k.clients_unreachable;
}

/// A slot's connection key in its swarm (for mapping a node's output to the driver).
pub(super) fn key_of(s: &Swarm, slot: Slot) -> Option<usize> {
    s.conns.get(slot).copied()
}

/// What HTTP shows of catalog entry `e`.
fn http_file(e: &super::catalog::Entry) -> File<'_> {
    File {
        name: e.name.as_deref(),
        len: e.manifest.file_len(),
        digest: e.manifest.digest(),
        mtime: e.stamp.mtime.0,
        changed: e.changed,
    }
}

impl Files for Swarms {
    fn find(&self, name: &str) -> Option<(usize, File<'_>)> {
        let c = self.catalog.as_ref()?;
        let k = c.find(name)?;
        Some((k, http_file(c.get(k))))
    }

    fn each(&self, f: &mut dyn FnMut(&File<'_>)) {
        for e in self.catalog.iter().flat_map(|c| c.iter()) {
            f(&http_file(e));
        }
    }
}

impl Served for Swarms {
    fn storage(&mut self, k: usize) -> Option<&Storage> {
        let now = Instant::now();
        let s = self.ensure(k, now).ok()?;
        // In use by HTTP: idle from now at the earliest.
        self.live[s].idle_since = now;
        Some(&self.live[s].storage)
    }

    fn downloading(&self) -> bool {
        self.clients_downloading()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tree;
    use crate::wire::Role;

    /// An origin of files `a` (3 bytes) and `d/b` (5 bytes) in a fresh directory.
    fn two(name: &str) -> (std::path::PathBuf, Swarms) {
        let dir = std::env::temp_dir().join(format!("tfttp-swarms-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("a"), b"abc").unwrap();
        std::fs::write(dir.join("d/b"), b"bbbbb").unwrap();
        let t = tree::walk(std::slice::from_ref(&dir)).unwrap();
        let catalog = Catalog::build(t.files, None).unwrap();
        let cfg = Config::new(Role::Origin, 1);
        (dir, Swarms::many(catalog, cfg, Instant::now()))
    }

    #[test]
    fn test_route_makes_a_files_swarm_on_first_use_once() {
        let (dir, mut sw) = two("route");
        let now = Instant::now();
        assert_eq!(sw.live.len(), 1, "only the refusing node at start");
        let (b, _) = sw.route(Some("d/b"), now);
        assert_ne!(Some(b), sw.refuser);
        assert_eq!(sw.live[b].node.serve_name(), Some("d/b"));
        assert_eq!(sw.live[b].storage.bytes(), b"bbbbb");
        assert_eq!(sw.route(Some("d/b"), now).0, b, "made once");
        // The empty path, an unknown or unsafe one, and no HELLO go to the refusing node.
        for p in [Some(""), Some("nope"), Some("../a"), Some("/a"), None] {
            assert_eq!(sw.route(p, now).0, sw.refuser.unwrap(), "{p:?}");
        }
        assert_eq!(sw.live.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn test_idle_swarm_dropped_after_idle_drop_unless_http_reads_it() {
        let (dir, mut sw) = two("idle");
        let t0 = Instant::now();
        let (a, _) = sw.route(Some("a"), t0);
        let (b, _) = sw.route(Some("d/b"), t0);
        sw.live[b].conns.insert(7);
        let later = t0 + IDLE_DROP;
        assert_eq!(sw.drop_idle(later - Duration::from_millis(1), |_| false), 0);
        // File 0 (`a`) is still read by HTTP: kept.
        assert_eq!(sw.drop_idle(later, |k| k == 0), 0);
        assert_eq!(
            sw.drop_idle(later, |_| false),
            1,
            "a goes, b has a connection"
        );
        assert!(!sw.live.contains(a) && sw.live.contains(b));
        assert_eq!(sw.by_file, vec![None, Some(b)]);
        // Made again on the next use.
        assert!(sw.route(Some("a"), later).0 != sw.refuser.unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn test_each_swarm_draws_its_own_nonces() {
        let (dir, mut sw) = two("nonces");
        let now = Instant::now();
        let mut hellos = Vec::new();
        for path in ["a", "d/b"] {
            let (k, _) = sw.route(Some(path), now);
            let node = &mut sw.live[k].node;
            node.handle_open(
                0,
                crate::proto::Link::Accepted,
                "127.0.0.1:9".parse().unwrap(),
                now,
            );
            let mut out = Vec::new();
            node.take_outbox(0, &mut out);
            // The nonce: the HELLO body's bytes 25..41, after the 5-byte frame head.
            hellos.push(out[5 + 25..5 + 41].to_vec());
        }
        assert_ne!(
            hellos[0], hellos[1],
            "a nonce repeated across swarms could be replayed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
