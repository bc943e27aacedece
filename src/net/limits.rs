//! How many connections a node holds, one definition for `tfttp serve`/`get` and the
//! simulator, which must turn peers away exactly where a real node would.

/// Most connections an origin holds: a large crowd dials it at once.
pub const MAX_CONNS_ORIGIN: usize = 16_384;

/// Connections a client accepts or keeps: its peers plus a few being turned away, so a
/// crowd's dials do not exhaust it.
pub fn max_conns_client(max_peers: usize) -> usize {
    max_peers + 8
}
