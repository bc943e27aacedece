//! The sans-IO protocol core (after quinn-proto): handshake, piece picker, striping,
//! choking table and timers. It owns no sockets and reads no clock: every input carries
//! `now`, outputs are polled. The mio driver in `net` and the tests both drive it.
//!
//! Call order for a driver, per connection slot (the driver's slab key):
//! `handle_open` → (`handle_frame` | `begin_piece` … `end_piece`)* → `handle_closed`;
//! after any input: drain `poll_event`, then for each slot from `poll_dirty` flush
//! `take_outbox` and, while the socket takes data, `poll_piece` / `handle_piece_sent`.
//! `handle_tick` runs at `poll_timeout`. An origin's `Event::Probe` is answered, once, with
//! `handle_probe_result`.

mod auth;
mod choke;
mod ledger;
mod node;
mod oneway;
mod pacer;
mod peer;
mod picker;
mod rng;
mod send_slots;
mod striper;

pub use auth::{MIN_SECRET_LEN, SwarmKey};
pub use choke::Policy;
pub use node::{
    Behaviour, Config, Counters, DEFAULT_LINGER, Event, Failure, FailureKind, Link, Load, Node,
    PeerStates, ProbeId, Sink, Slot, Unreachable, UpRate,
};
pub use pacer::Pacer;
#[cfg(test)]
pub(crate) use rng::Rng;
