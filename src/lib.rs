//! tfttp: the Tit-for-Tat Transfer Protocol. An origin server spreads a large file over a
//! crowd of clients that trade pieces among themselves (docs/PROTOCOL.md).
//!
//! Layers, each free of the ones below it: `wire` (frame codec), `manifest` and `bitfield`
//! (data types), `proto` (the sans-IO node), `net` (the mio driver), `cli` and `demo`.

pub mod app;
pub mod bitfield;
pub mod bounds;
pub mod cli;
pub mod demo;
pub mod manifest;
pub mod net;
pub mod procs;
pub mod proto;
pub mod sim;
pub mod stats;
pub mod wire;
