//! tfttp: the Tit-for-Tat Transfer Protocol. An origin server spreads a large file over a
//! crowd of clients that trade pieces among themselves (docs/PROTOCOL.md).
//!
//! Layers, each free of the ones after it: `wire` (frame codec), `manifest` and `bitfield`
//! (data types), `proto` (the sans-IO node), `net` (the mio driver, and `stats` and
//! `metrics`, the file it writes and the page it serves). `sim` runs `proto` nodes in virtual
//! time; `bounds` holds the lower bounds runs are measured against. The command line, `serve`/`get`/`sim`/`demo` and the process helpers
//! belong to the `tfttp` binary (src/bin/tfttp/), not to the library.

#![warn(unreachable_pub, missing_docs)]

pub mod bitfield;
pub mod bounds;
pub mod manifest;
pub mod metrics;
pub mod net;
pub mod proto;
pub mod sim;
pub mod stats;
pub mod wire;
