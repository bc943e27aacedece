//! The node's tests, no sockets and no sleeps. `swarm`: real nodes stepped in virtual time
//! over in-memory links (after quinn-proto's `tests/util.rs`); each node may upload a fixed
//! number of pieces per step, which stands in for link rates. `one`: one node, frames
//! scripted by the test.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::origin::MAX_ADVERTISED;
use super::requests::{ENDGAME_PIPELINE, REJECT_BACKOFF};
use super::*;
use crate::wire::{FrameHead, HEAD_SIZE};

const PIECE: u32 = 16 * 1024;

mod auth;
mod fuzz;
mod one;
mod progress;
mod swarm;

fn addr_of(node: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1000 + node as u16)
}

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn frames(buf: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut v = Vec::new();
    let mut rest = buf;
    while let Ok(Some(h)) = FrameHead::parse(rest) {
        v.push((h.ty, rest[HEAD_SIZE..h.frame_len()].to_vec()));
        rest = &rest[h.frame_len()..];
    }
    v
}
