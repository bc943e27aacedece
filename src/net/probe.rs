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
    /// A connection opened within the timeout (`Some(true)`) or not (`Some(false)`);
    /// `None` when the origin could not even try (out of descriptors, say): that is no
    /// verdict on the client's port.
    pub(super) reachable: Option<bool>,
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

    /// Swarm `swarm`'s node asks for probe `id` of `addr`. It starts now if fewer than
    /// `MAX_OPEN` are open, else when one ends. Answers known at once (the connect failed
    /// outright) go to `out`.
    pub(super) fn start(
        &mut self,
        registry: &Registry,
        probe: (usize, ProbeId, SocketAddr),
        now: Instant,
        out: &mut Vec<Answer>,
    ) {
        self.waiting.push_back(probe);
        self.pump(registry, now, out);
    }

    /// Opens waiting probes while there is room.
    fn pump(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Answer>) {
        while self.open.len() < MAX_OPEN {
            let Some((swarm, id, addr)) = self.waiting.pop_front() else {
                return;
            };
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
                Err(e) => out.push(Answer {
                    swarm,
                    id,
                    reachable: refused_outright(&e),
                }),
            }
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
        self.finish(registry, k, Some(reachable), out);
    }

    /// Probes past their deadline are answered unreachable.
    pub(super) fn expire(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Answer>) {
        let due: Vec<usize> = (self.open.iter())
            .filter(|(_, p)| now >= p.deadline)
            .map(|(k, _)| k)
            .collect();
        for k in due {
            self.finish(registry, k, Some(false), out);
        }
    }

    /// The earliest deadline, for the poll timeout.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.open.iter().map(|(_, p)| p.deadline).min()
    }

    /// Closes probe `k` with a reset, answers it, and starts the next waiting one.
    fn finish(
        &mut self,
        registry: &Registry,
        k: usize,
        reachable: Option<bool>,
        out: &mut Vec<Answer>,
    ) {
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
        self.pump(registry, Instant::now(), out);
    }
}

/// What a connect that failed at once says about the address: refused or unreachable is a
/// verdict (`Some(false)`); a failure of the origin's own (no descriptors, no buffers) is
/// none.
fn refused_outright(e: &io::Error) -> Option<bool> {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused | ConnectionReset | HostUnreachable | NetworkUnreachable | TimedOut => {
            Some(false)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    /// Polls until `n` more answers came (at most 5 s).
    fn answers(poll: &mut Poll, p: &mut Prober, n: usize) -> Vec<Answer> {
        let mut out = Vec::new();
        let mut events = Events::with_capacity(16);
        let until = Instant::now() + Duration::from_secs(5);
        while out.len() < n && Instant::now() < until {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            for ev in events.iter() {
                assert!(Prober::owns(ev.token()), "{ev:?}");
                p.handle(poll.registry(), ev, &mut out);
            }
        }
        out
    }

    #[test]
    fn test_listening_port_is_reachable_and_closed_port_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        // Bound and dropped: nothing listens there now.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut poll = Poll::new().unwrap();
        let mut p = Prober::default();
        let mut out = Vec::new();
        let now = Instant::now();
        p.start(poll.registry(), (0, 1, open), now, &mut out);
        p.start(poll.registry(), (2, 7, closed), now, &mut out);
        let n = 2 - out.len();
        out.extend(answers(&mut poll, &mut p, n));
        out.sort_by_key(|a| a.id);
        let yes = Answer {
            swarm: 0,
            id: 1,
            reachable: Some(true),
        };
        let no = Answer {
            swarm: 2,
            id: 7,
            reachable: Some(false),
        };
        assert_eq!(out, vec![yes, no]);
        assert_eq!(p.next_deadline(), None, "both sockets closed");
        // The probe reached the listener and was reset without a byte.
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 16];
        let got = std::io::Read::read(&mut s, &mut buf);
        assert!(matches!(got, Ok(0) | Err(_)), "{got:?}");
    }

    #[test]
    fn test_probes_past_the_open_limit_wait_and_the_overdue_are_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut poll = Poll::new().unwrap();
        let mut p = Prober::default();
        let mut out = Vec::new();
        let now = Instant::now();
        for id in 0..=MAX_OPEN as u64 {
            p.start(poll.registry(), (0, id, addr), now, &mut out);
        }
        assert!(out.is_empty());
        assert_eq!((p.open.len(), p.waiting.len()), (MAX_OPEN, 1));
        assert_eq!(p.next_deadline(), Some(now + PROBE_TIMEOUT));
        // Unanswered at the deadline (never polled): unreachable, and the waiting one opens.
        p.expire(poll.registry(), now + PROBE_TIMEOUT, &mut out);
        assert_eq!(out.len(), MAX_OPEN);
        assert!(
            out.iter()
                .all(|a| a.reachable == Some(false) && a.id < MAX_OPEN as u64)
        );
        assert_eq!((p.open.len(), p.waiting.len()), (1, 0));
        let last = answers(&mut poll, &mut p, 1);
        assert_eq!(
            last,
            vec![Answer {
                swarm: 0,
                id: MAX_OPEN as u64,
                reachable: Some(true)
            }]
        );
    }
}
