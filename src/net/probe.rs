//! The origin's connect-back probes (`Event::Probe`, docs/PROTOCOL.md §4.8): a nonblocking
//! connect to a client's advertised listen address, judged by its first readiness (writable
//! and connected: reachable; an error or a hang-up: refused) or by `PROBE_TIMEOUT`, then
//! closed at once. Nothing is sent on it: the close is a reset (`SO_LINGER` 0), so a probe
//! leaves no `TIME_WAIT` socket on the origin and the client's node sees an accepted
//! connection end before its HELLO, which it takes as proof of reachability, nothing more.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::socket::{self, SocketOptions};
use crate::proto::ProbeId;

/// Tokens from here up to the router's belong to the probes: entry k is `FIRST_TOKEN + k`.
/// Above every protocol connection's token (`MAX_CONNS_ORIGIN`).
pub(super) const FIRST_TOKEN: usize = usize::MAX / 16;
/// How long a probe waits for the connection. A SYN lost once is resent after 1 s (RFC
/// 6298's initial RTO), so 3 s covers one loss on any path a swarm can trade over; a
/// firewall that drops SYNs silently (the common NAT case) costs the full wait.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Most probe sockets open at once over all swarms. Each node holds its own to 64
/// (`proto`'s `MAX_PROBES`); an origin of several files could multiply that, so the driver
/// queues beyond it.
const MAX_OPEN: usize = 64;

/// Which node asked, and what to tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Answer {
    /// The swarm whose node asked.
    pub(super) swarm: usize,
    /// The node's probe.
    pub(super) id: ProbeId,
    /// A connection opened within the timeout.
    pub(super) reachable: bool,
}

struct Pending {
    stream: TcpStream,
    swarm: usize,
    id: ProbeId,
    deadline: Instant,
}

/// Probes under way, and those waiting for a socket.
#[derive(Default)]
pub(super) struct Prober {
    open: Slab<Pending>,
    waiting: VecDeque<(usize, ProbeId, SocketAddr)>,
}

impl Prober {
    /// Whether the prober owns `token`.
    pub(super) fn owns(token: Token) -> bool {
        (FIRST_TOKEN..super::router::FIRST_TOKEN).contains(&token.0)
    }

    /// Swarm `swarm`'s node asks for probe `id` of `addr`. Answers that are known at once
    /// (the connect failed outright) go to `out`.
    pub(super) fn start(
        &mut self,
        registry: &Registry,
        (swarm, id, addr): (usize, ProbeId, SocketAddr),
        now: Instant,
        out: &mut Vec<Answer>,
    ) {
        if self.open.len() >= MAX_OPEN {
            self.waiting.push_back((swarm, id, addr));
            return;
        }
        let entry = self.open.vacant_entry();
        let token = Token(FIRST_TOKEN + entry.key());
        let res = socket::connect(addr, SocketOptions::default()).and_then(|mut s| {
            registry.register(&mut s, token, Interest::WRITABLE)?;
            Ok(s)
        });
        match res {
            Ok(stream) => {
                entry.insert(Pending {
                    stream,
                    swarm,
                    id,
                    deadline: now + PROBE_TIMEOUT,
                });
            }
            Err(_) => out.push(Answer {
                swarm,
                id,
                reachable: false,
            }),
        }
    }

    /// Readiness on one of the prober's tokens: the answer once the connect is decided.
    pub(super) fn handle(
        &mut self,
        registry: &Registry,
        ev: &mio::event::Event,
        out: &mut Vec<Answer>,
    ) {
        let k = ev.token().0 - FIRST_TOKEN;
        let Some(p) = self.open.get(k) else { return };
        let reachable = match p.stream.take_error() {
            Ok(Some(_)) | Err(_) => false,
            Ok(None) => match p.stream.peer_addr() {
                Ok(_) => true,
                // Still connecting (a spurious wake-up), unless the event says it failed.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    if !(ev.is_error() || ev.is_write_closed()) {
                        return;
                    }
                    false
                }
                Err(_) => false,
            },
        };
        self.finish(registry, k, reachable, out);
    }

    /// Probes past their deadline are answered unreachable.
    pub(super) fn expire(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Answer>) {
        let due: Vec<usize> = (self.open.iter())
            .filter(|(_, p)| now >= p.deadline)
            .map(|(k, _)| k)
            .collect();
        for k in due {
            self.finish(registry, k, false, out);
        }
    }

    /// The earliest deadline, for the poll timeout.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.open.iter().map(|(_, p)| p.deadline).min()
    }

    /// Closes probe `k` with a reset, answers it, and starts the next waiting one.
    fn finish(&mut self, registry: &Registry, k: usize, reachable: bool, out: &mut Vec<Answer>) {
        let mut p = self.open.remove(k);
        let _ = registry.deregister(&mut p.stream);
        // A reset rather than a FIN: nothing was sent, and no TIME_WAIT stays behind.
        let _ = socket2::SockRef::from(&p.stream).set_linger(Some(Duration::ZERO));
        drop(p.stream);
        out.push(Answer {
            swarm: p.swarm,
            id: p.id,
            reachable,
        });
        if let Some(next) = self.waiting.pop_front() {
            self.start(registry, next, Instant::now(), out);
        }
    }
}
