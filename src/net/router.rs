//! Which swarm an accepted TFTTP connection belongs to, on an origin serving several files
//! (docs/PROTOCOL.md §4.1, §9.1). The client's HELLO names the file, and the origin's own
//! HELLO carries that file's id, so the origin cannot speak before it has read the
//! client's: each connection waits here until its first frame is complete, which is peeked
//! (`MSG_PEEK`), never consumed. The connection is then handed to the chosen swarm's node
//! with every byte still in the socket, and the node reads the HELLO as on any connection.
//! Deciding on a peeked frame keeps the protocol core unchanged: it never learns that a
//! router chose it.

use std::io;
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::wire::{FrameHead, HEAD_SIZE, Limits, MAX_EARLY_LEN, Message, ty};

/// Tokens from here up to the HTTP server's belong to the router: entry k is
/// `FIRST_TOKEN + k`. Above every protocol connection's token (`MAX_CONNS_ORIGIN`).
pub(super) const FIRST_TOKEN: usize = usize::MAX / 8;
/// A connection whose first frame is not complete after this long is closed, as a peer
/// whose HELLO has not arrived is (§8, handshake).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the deadlines are scanned.
const EXPIRE_EVERY: Duration = Duration::from_millis(250);

/// Where a connection goes, from its first frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    /// A version 2 HELLO asking for this path (empty: the server's only file).
    Path(String),
    /// Anything else (another version's HELLO, a frame that is not HELLO, bytes that do not
    /// frame): the origin's refusing node answers it as any node would (ERROR 1 or 2).
    Refuse,
}

/// What the first `bytes` of a connection say about its route; `None` until the whole
/// first frame is there.
pub(super) fn route(bytes: &[u8]) -> Option<Route> {
    let head = match FrameHead::parse_within(bytes, &Limits::EARLY) {
        Ok(Some(h)) => h,
        Ok(None) => return None,
        Err(_) => return Some(Route::Refuse),
    };
    let len = head.frame_len();
    if bytes.len() < len {
        return None;
    }
    match Message::parse(head.ty, &bytes[HEAD_SIZE..len]) {
        Ok(Message::Hello(h)) if head.ty == ty::HELLO => Some(Route::Path(h.path.to_string())),
        _ => Some(Route::Refuse),
    }
}

struct Pending {
    stream: TcpStream,
    remote: SocketAddr,
    deadline: Instant,
}

/// Accepted TFTTP connections waiting for their first frame.
pub(super) struct Router {
    entries: Slab<Pending>,
    next_expire: Instant,
}

impl Router {
    pub(super) fn new(now: Instant) -> Router {
        Router {
            entries: Slab::new(),
            next_expire: now,
        }
    }

    /// Whether the router owns `token`.
    pub(super) fn owns(token: Token) -> bool {
        (FIRST_TOKEN..super::http::FIRST_TOKEN).contains(&token.0)
    }

    /// Connections waiting.
    pub(super) fn waiting(&self) -> usize {
        self.entries.len()
    }

    /// Takes `stream` (registered elsewhere, its first byte already seen) until its first
    /// frame is complete. Returns it at once if that frame is already there.
    pub(super) fn admit(
        &mut self,
        registry: &Registry,
        mut stream: TcpStream,
        remote: SocketAddr,
        now: Instant,
    ) -> Option<(TcpStream, SocketAddr, Route)> {
        match peek_route(&stream) {
            Ok(Some(r)) => return Some((stream, remote, r)),
            Ok(None) => {}
            Err(()) => {
                let _ = registry.deregister(&mut stream);
                return None;
            }
        }
        let entry = self.entries.vacant_entry();
        let token = Token(FIRST_TOKEN + entry.key());
        if registry
            .reregister(&mut stream, token, Interest::READABLE)
            .is_ok()
        {
            entry.insert(Pending {
                stream,
                remote,
                deadline: now + HELLO_TIMEOUT,
            });
        } else {
            let _ = registry.deregister(&mut stream);
        }
        None
    }

    /// Readiness on one of the router's tokens: the connection once its first frame is
    /// complete, still registered (under the router's token), for the driver to take over.
    pub(super) fn handle(
        &mut self,
        registry: &Registry,
        token: Token,
    ) -> Option<(TcpStream, SocketAddr, Route)> {
        let k = token.0 - FIRST_TOKEN;
        let p = self.entries.get(k)?;
        match peek_route(&p.stream) {
            Ok(None) => None,
            Ok(Some(r)) => {
                let p = self.entries.remove(k);
                Some((p.stream, p.remote, r))
            }
            Err(()) => {
                let mut p = self.entries.remove(k);
                let _ = registry.deregister(&mut p.stream);
                None
            }
        }
    }

    /// Closes connections whose first frame did not arrive in time.
    pub(super) fn expire(&mut self, registry: &Registry, now: Instant) {
        if self.entries.is_empty() || now < self.next_expire {
            return;
        }
        self.next_expire = now + EXPIRE_EVERY;
        let late: Vec<usize> = self
            .entries
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(k, _)| k)
            .collect();
        for k in late {
            let mut p = self.entries.remove(k);
            let _ = registry.deregister(&mut p.stream);
        }
    }
}

/// Peeks at what has arrived: `Ok(None)` until the first frame is whole, `Err` if the
/// connection closed or failed first.
fn peek_route(stream: &TcpStream) -> Result<Option<Route>, ()> {
    let mut buf = [0u8; HEAD_SIZE + MAX_EARLY_LEN];
    // SAFETY: a valid socket and a buffer that outlives the call.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK,
        )
    };
    match n {
        0 => Err(()),
        n if n > 0 => Ok(route(&buf[..n as usize])),
        _ => match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Hello, Role};

    fn hello_frame(path: &str) -> Vec<u8> {
        let mut out = Vec::new();
        Message::Hello(Hello {
            role: Role::Client,
            auth: false,
            node_id: 7,
            file_id: 0,
            listen_port: 0,
            nonce: [1; 16],
            path,
        })
        .emit(&mut out);
        out
    }

    #[test]
    fn test_route_waits_for_the_whole_hello_then_names_its_path() {
        let f = hello_frame("dir/b.bin");
        for cut in 0..f.len() {
            assert_eq!(route(&f[..cut]), None, "cut at {cut}");
        }
        assert_eq!(route(&f), Some(Route::Path("dir/b.bin".into())));
        // Bytes after the HELLO (an AUTH, say) change nothing.
        let mut more = f.clone();
        more.extend_from_slice(&[0, 0, 0, 1, 0]);
        assert_eq!(route(&more), Some(Route::Path("dir/b.bin".into())));
        assert_eq!(route(&hello_frame("")), Some(Route::Path(String::new())));
    }

    #[test]
    fn test_route_refuses_what_is_not_a_version_2_hello() {
        // A version 1 HELLO: the refusing node answers ERROR 2.
        let mut v1 = vec![0, 0, 0, 25, ty::HELLO];
        v1.extend_from_slice(b"TFTT");
        v1.push(1);
        v1.extend_from_slice(&[0; 19]);
        assert_eq!(route(&v1), Some(Route::Refuse));
        // A first frame that is not HELLO, and a length no frame has.
        assert_eq!(route(&[0, 0, 0, 1, ty::KEEPALIVE]), Some(Route::Refuse));
        assert_eq!(route(&[0x7f, 0, 0, 0, 0]), Some(Route::Refuse));
        // A HELLO head announcing more than any HELLO may be: refused before its body.
        assert_eq!(route(&[0, 0, 2, 0, ty::HELLO]), Some(Route::Refuse));
    }
}
