//! What only a client keeps: its link to the origin and the peers the origin named.

use std::collections::HashSet;

use super::reach::Reach;
use super::*;

#[derive(Debug, Default)]
pub(super) struct ClientSide {
    /// Peers the origin told us about.
    pub(super) known: Vec<Known>,
    pub(super) origin: OriginLink,
    /// Peers that sent a piece failing its hash: never dialled or accepted again.
    pub(super) banned: HashSet<u64>,
    /// Whether peers reach our listen port.
    pub(super) reach: Reach,
    /// Peers the origin names as taking without giving (STANDING).
    pub(super) named: super::standing::Named,
    /// What the last scan of `known` found, while nothing it depends on has changed.
    pub(super) dial_quiet: Option<DialQuiet>,
}

/// Nobody in `known` can be dialled before `until` (never, if `None`), as long as no peer
/// is named, no connection closes and the listening verdict stays `listening`. It spares
/// `maybe_dial` a scan of every known peer at every tick: 8% of the simulator's time with
/// 10,000 clients, where most nodes have room for more peers and nobody left to dial.
#[derive(Debug, Clone, Copy)]
pub(super) struct DialQuiet {
    pub(super) until: Option<Instant>,
    pub(super) listening: bool,
}

impl DialQuiet {
    pub(super) fn holds(&self, now: Instant, listening: bool) -> bool {
        self.listening == listening && self.until.is_none_or(|t| now < t)
    }
}

/// The client's connection to its origin, across reconnections.
#[derive(Debug, Default)]
pub(super) struct OriginLink {
    /// The connection, while there is one.
    pub(super) slot: Option<Slot>,
    /// The file id the origin's HELLO named; its MANIFEST must match it.
    pub(super) file_id: u64,
    /// When the connection was lost after the manifest arrived (a reconnection is due).
    pub(super) lost_at: Option<Instant>,
    /// A reconnection was requested and not yet reported by `handle_open`.
    pub(super) dialing: bool,
    /// After a refused wildcard, the origin is not asked for one before this.
    pub(super) backoff_until: Option<Instant>,
    /// From now on the origin is asked by index, not with wildcards: it refused one while
    /// unchoking us, or answered one with a piece we held or were receiving from a peer (it
    /// had no first copy left for us, so its choices would race our peers' pieces).
    pub(super) asks_by_index: bool,
}

/// A peer the origin told us about.
#[derive(Debug, Clone)]
pub(super) struct Known {
    pub(super) node_id: u64,
    pub(super) addr: SocketAddr,
    pub(super) slot: Option<Slot>,
    /// Dials and losses, counted together against `MAX_DIAL_ATTEMPTS`.
    pub(super) attempts: u32,
    pub(super) next_attempt: Instant,
    /// Dials that closed before the peer's HELLO: its address did not answer.
    pub(super) failed_dials: u32,
}

impl ClientSide {
    /// `slot` is now the connection to the known peer `node_id`, if we know it.
    pub(super) fn connected(&mut self, node_id: u64, slot: Slot) {
        if let Some(k) = self.known.iter_mut().find(|k| k.node_id == node_id) {
            k.slot = Some(slot);
        }
    }
}
