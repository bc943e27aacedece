//! The origin's port speaks HTTP/1.1 besides TFTTP (docs/PROTOCOL.md §9.1). Each accepted
//! connection waits here until its first byte arrives, which is peeked, not read: a TFTTP
//! frame starts with its length's high byte, 0x00 or 0x01 (`MAX_FRAME_LEN` < 2^25), an
//! HTTP request with its method's first letter, so one byte decides. A TFTTP connection is
//! handed back to the driver with that byte still in the socket; an HTTP one stays here:
//! keep-alive, pipelined requests answered in order, bodies sent from the served file's
//! mapping (`sendfile`, or a write from the map, as pieces go in `conn.rs`), within the
//! upload share of `share.rs`. Which files there are, and their mappings, come from the
//! driver (`Served`): an origin of several files maps one only once a request needs it.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::request::head_end;
use super::response::{self, Answer, Files, Listings};
use super::share::Share;
use super::{Fill, read_some};
use crate::net::conn::{TURN_QUANTUM, gather, send_file, send_more};
use crate::net::driver::SendfileMode;
use crate::net::ratelimit::TokenBucket;
use crate::net::storage::Storage;

/// Tokens from here up to the metrics endpoint's belong to this server: entry k is
/// `FIRST_TOKEN + k`. Above every protocol connection's token (`MAX_CONNS_ORIGIN`).
pub(in crate::net) const FIRST_TOKEN: usize = usize::MAX / 4;
/// HTTP connections served at once; one more is answered 503 and closed. Each holds a
/// request buffer of up to `MAX_HEAD` and a few queued answers, so 64 cost under 1 MiB.
const MAX_HTTP: usize = 64;
/// A request head longer than this is answered 431 (curl's and wget's are under 300
/// bytes; nginx's default `large_client_header_buffers` is 8 KiB too).
const MAX_HEAD: usize = 8 * 1024;
/// Pipelined answers queued per connection; reading stops until they drain.
const MAX_QUEUED: usize = 16;
/// A keep-alive connection with nothing to do, or a reader that takes nothing, is closed
/// after this long: between Apache's 5 s and nginx's 75 s keep-alive timeouts.
const IDLE: Duration = Duration::from_secs(15);
/// A connection that sends nothing is closed after this long, as a TFTTP peer whose HELLO
/// has not arrived is (§8, handshake).
const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the deadlines are scanned.
const EXPIRE_EVERY: Duration = Duration::from_millis(250);
/// How often `serve` asks the node whether TFTTP clients still download (it walks them).
const BUSY_EVERY: Duration = Duration::from_millis(100);
/// Granularity of unmapping sent pages, as in `conn.rs`.
const PAGE: u64 = 4096;

enum Entry {
    /// Accepted, first byte not yet seen.
    Sniff {
        stream: TcpStream,
        remote: SocketAddr,
        deadline: Instant,
    },
    Http(Box<HttpConn>),
}

struct HttpConn {
    stream: TcpStream,
    /// Request bytes not yet answered (at most `MAX_HEAD`).
    inbuf: Vec<u8>,
    answers: VecDeque<Answer>,
    /// Of the front answer: bytes written (its `bytes`, then its file range), and file
    /// bytes whose pages were unmapped.
    sent: u64,
    released: u64,
    /// Edge-triggered readiness not yet used up.
    readable: bool,
    writable: bool,
    read_closed: bool,
    deadline: Instant,
    sendfile: bool,
}

/// What the HTTP side needs of the origin: its files, their mappings and whether TFTTP
/// clients are downloading.
pub(in crate::net) trait Served: Files {
    /// File `k`'s bytes, mapped now if they are not yet; `None` if it cannot be opened.
    fn storage(&mut self, k: usize) -> Option<&Storage>;
    /// Whether a TFTTP client still downloads (HTTP then gets only its share).
    fn downloading(&self) -> bool;
}

/// The HTTP side of the origin's listener.
pub(in crate::net) struct HttpServer {
    entries: Slab<Entry>,
    sniffing: usize,
    serving: usize,
    listings: Listings,
    share: Share,
    sendfile: SendfileMode,
    next_expire: Instant,
    /// Whether TFTTP clients download, and when to ask again.
    busy: bool,
    next_busy: Instant,
    /// Rotates which connection goes first in a round, so a shared budget is shared.
    round: usize,
}

/// What one connection's turn did.
struct Pumped {
    moved: usize,
    keep: bool,
}

impl HttpServer {
    /// An HTTP server sharing the upload bucket whose rate is `payload_rate`, if capped.
    pub(in crate::net) fn new(
        payload_rate: Option<u64>,
        sendfile: SendfileMode,
        now: Instant,
    ) -> HttpServer {
        HttpServer {
            entries: Slab::new(),
            sniffing: 0,
            serving: 0,
            listings: Listings::default(),
            share: Share::new(payload_rate, now),
            sendfile,
            next_expire: now,
            busy: false,
            next_busy: now,
            round: 0,
        }
    }

    /// Whether the server owns `token`.
    pub(in crate::net) fn owns(token: Token) -> bool {
        (FIRST_TOKEN..crate::net::metrics::FIRST_TOKEN).contains(&token.0)
    }

    /// Connections still waiting for their first byte.
    pub(in crate::net) fn sniffing(&self) -> usize {
        self.sniffing
    }

    /// A connection just accepted on the origin's port: it waits for its first byte.
    pub(in crate::net) fn admit(
        &mut self,
        registry: &Registry,
        mut stream: TcpStream,
        remote: SocketAddr,
        now: Instant,
    ) {
        let entry = self.entries.vacant_entry();
        let token = Token(FIRST_TOKEN + entry.key());
        if registry
            .register(&mut stream, token, Interest::READABLE)
            .is_ok()
        {
            entry.insert(Entry::Sniff {
                stream,
                remote,
                deadline: now + SNIFF_TIMEOUT,
            });
            self.sniffing += 1;
        }
    }

    /// Readiness on one of the server's tokens. Returns a connection whose first byte says
    /// TFTTP, still registered, for the driver to take over.
    pub(in crate::net) fn handle(
        &mut self,
        registry: &Registry,
        ev: &Event,
        now: Instant,
    ) -> Option<(TcpStream, SocketAddr)> {
        let k = ev.token().0 - FIRST_TOKEN;
        match self.entries.get_mut(k)? {
            Entry::Sniff { stream, .. } => match first_byte(stream) {
                Ok(None) => None,
                Ok(Some(b)) if b.is_ascii_uppercase() => {
                    self.start_http(registry, k, now);
                    None
                }
                Ok(Some(_)) => {
                    let Entry::Sniff { stream, remote, .. } = self.entries.remove(k) else {
                        unreachable!("matched above");
                    };
                    self.sniffing -= 1;
                    Some((stream, remote))
                }
                Err(()) => {
                    self.close(registry, k);
                    None
                }
            },
            Entry::Http(c) => {
                c.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                c.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
                None
            }
        }
    }

    /// Entry `k` spoke HTTP: serve it, or answer 503 if `MAX_HTTP` are being served.
    fn start_http(&mut self, registry: &Registry, k: usize, now: Instant) {
        let Entry::Sniff { stream, remote, .. } = self.entries.remove(k) else {
            return;
        };
        self.sniffing -= 1;
        let mut stream = stream;
        let token = Token(FIRST_TOKEN + k);
        if self.serving >= MAX_HTTP
            || registry
                .reregister(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
        {
            // One nonblocking try: the answer is small enough for an empty send buffer. The
            // request is read first, as closing with it unread would reset the connection.
            let _ = read_some(&mut stream, &mut Vec::new(), MAX_HEAD);
            let _ = stream.write(&response::busy().bytes);
            let _ = stream.shutdown(Shutdown::Write);
            let _ = registry.deregister(&mut stream);
            return;
        }
        let conn = HttpConn {
            stream,
            inbuf: Vec::new(),
            answers: VecDeque::new(),
            sent: 0,
            released: 0,
            readable: true,
            writable: true,
            read_closed: false,
            deadline: now + IDLE,
            sendfile: self.sendfile.use_for(remote),
        };
        let slot = self.entries.insert(Entry::Http(Box::new(conn)));
        debug_assert_eq!(slot, k, "a freed slab key is reused first");
        self.serving += 1;
    }

    /// Whether an answer queued or being written reads file `k` (its mapping must stay).
    pub(in crate::net) fn reads(&self, k: usize) -> bool {
        self.entries.iter().any(|(_, e)| match e {
            Entry::Http(c) => c.answers.iter().any(|a| a.file.is_some_and(|f| f.0 == k)),
            Entry::Sniff { .. } => false,
        })
    }

    /// One round: every HTTP connection reads its requests and writes answers, the bytes
    /// within the node's upload bucket `up` and HTTP's share.
    pub(in crate::net) fn serve(
        &mut self,
        registry: &Registry,
        served: &mut dyn Served,
        up: &mut TokenBucket,
        now: Instant,
    ) {
        if self.serving == 0 {
            return;
        }
        if now >= self.next_busy {
            self.busy = served.downloading();
            self.next_busy = now + BUSY_EVERY;
        }
        let mut budget = self.share.budget(self.busy, now);
        let mut keys: Vec<usize> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Http(c) if c.has_work()))
            .map(|(k, _)| k)
            .collect();
        if keys.is_empty() {
            return;
        }
        let unix_now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.round = self.round.wrapping_add(1);
        let turn = self.round % keys.len();
        keys.rotate_left(turn);
        keys.retain(|&k| {
            let Some(Entry::Http(c)) = self.entries.get_mut(k) else {
                return false;
            };
            let limit = budget.min(TURN_QUANTUM);
            let p = c.pump(served, &mut self.listings, unix_now, up, limit, now);
            budget = budget.saturating_sub(p.moved);
            self.share.consume(p.moved, self.busy);
            !p.keep
        });
        for k in keys {
            self.close(registry, k);
        }
    }

    /// When `serve` has work again: at once for requests to read, when the share allows
    /// for answers to write (the driver also waits for its own bucket); `None` if idle.
    pub(in crate::net) fn next_round(&self, now: Instant) -> Option<Instant> {
        if self.serving == 0 {
            return None;
        }
        let mut at = None;
        for (_, e) in &self.entries {
            let Entry::Http(c) = e else { continue };
            if c.can_read() {
                return Some(now);
            }
            if c.can_write() {
                at = Some(if self.busy {
                    self.share.ready_at(now)
                } else {
                    now
                });
            }
        }
        at
    }

    /// Closes connections past their deadline (sniffing, idle, or not reading); an answer
    /// waiting only for HTTP's share is never timed out.
    pub(in crate::net) fn expire(&mut self, registry: &Registry, now: Instant) {
        if self.entries.is_empty() || now < self.next_expire {
            return;
        }
        self.next_expire = now + EXPIRE_EVERY;
        let late: Vec<usize> = self
            .entries
            .iter()
            .filter(|(_, e)| match e {
                Entry::Sniff { deadline, .. } => now >= *deadline,
                Entry::Http(c) => now >= c.deadline && !c.can_write(),
            })
            .map(|(k, _)| k)
            .collect();
        for k in late {
            self.close(registry, k);
        }
    }

    fn close(&mut self, registry: &Registry, k: usize) {
        match self.entries.try_remove(k) {
            Some(Entry::Sniff { mut stream, .. }) => {
                self.sniffing -= 1;
                let _ = registry.deregister(&mut stream);
            }
            Some(Entry::Http(mut c)) => {
                self.serving -= 1;
                let _ = registry.deregister(&mut c.stream);
            }
            None => {}
        }
    }
}

impl HttpConn {
    fn can_read(&self) -> bool {
        self.readable && !self.read_closed && self.answers.len() < MAX_QUEUED && !self.ending()
    }

    fn can_write(&self) -> bool {
        self.writable && !self.answers.is_empty()
    }

    fn has_work(&self) -> bool {
        self.can_read() || self.can_write() || (self.read_closed && self.answers.is_empty())
    }

    /// The last answer queued closes the connection: nothing after it is read.
    fn ending(&self) -> bool {
        self.answers.back().is_some_and(|a| a.close)
    }

    /// Reads and answers requests, then writes up to `limit` bytes of answers.
    fn pump(
        &mut self,
        served: &mut dyn Served,
        listings: &mut Listings,
        unix_now: i64,
        up: &mut TokenBucket,
        limit: usize,
        now: Instant,
    ) -> Pumped {
        let gone = Pumped {
            moved: 0,
            keep: false,
        };
        if self.take_requests(served, listings, unix_now, now).is_err() {
            return gone;
        }
        let p = self.write_answers(served, up, limit, now);
        if p.moved > 0 {
            self.deadline = now + IDLE;
        }
        if self.read_closed && self.answers.is_empty() {
            return Pumped { keep: false, ..p };
        }
        p
    }

    /// Reads what has arrived and queues an answer per whole request head.
    fn take_requests(
        &mut self,
        files: &dyn Files,
        listings: &mut Listings,
        unix_now: i64,
        now: Instant,
    ) -> io::Result<()> {
        loop {
            while self.answers.len() < MAX_QUEUED && !self.ending() {
                if let Some(end) = head_end(&self.inbuf) {
                    let a = response::answer(&self.inbuf[..end], files, listings, unix_now);
                    self.inbuf.drain(..end);
                    self.answers.push_back(a);
                } else if self.inbuf.len() >= MAX_HEAD {
                    self.inbuf.clear();
                    self.answers.push_back(response::too_large());
                } else {
                    break;
                }
            }
            if !self.can_read() {
                return Ok(());
            }
            let had = self.inbuf.len();
            match read_some(&mut self.stream, &mut self.inbuf, MAX_HEAD)? {
                Fill::Blocked => self.readable = false,
                Fill::Eof => self.read_closed = true,
                Fill::Full => {}
            }
            if self.inbuf.len() > had {
                self.deadline = now + IDLE;
            }
        }
    }

    /// Writes the queued answers in order, up to `limit` bytes and what `up` grants.
    fn write_answers(
        &mut self,
        served: &mut dyn Served,
        up: &mut TokenBucket,
        limit: usize,
        now: Instant,
    ) -> Pumped {
        let mut moved = 0;
        let gone = |moved| Pumped { moved, keep: false };
        let no_file = Storage::Discard;
        while self.writable {
            let Some(a) = self.answers.front() else { break };
            let allow = (limit - moved).min(up.available(now));
            if allow == 0 {
                break;
            }
            let (head_len, close) = (a.prefix_len(), a.close);
            let (k, offset, len) = a.file.unwrap_or((usize::MAX, 0, 0));
            let storage = match a.file {
                Some(_) => match served.storage(k) {
                    Some(s) => s,
                    // The file cannot be opened any more: the answer cannot be completed.
                    None => return gone(moved),
                },
                None => &no_file,
            };
            let done = self.sent.saturating_sub(head_len);
            let start = (offset + done) as usize;
            let res = {
                let sent = self.sent.min(head_len) as usize;
                let own = &a.bytes[sent.min(a.bytes.len())..];
                let shared = a.shared.as_deref().unwrap_or(&[]);
                let shared = &shared[sent.saturating_sub(a.bytes.len()).min(shared.len())..];
                let head_left = own.len() + shared.len();
                let body = &storage.bytes()[start..start + (len - done) as usize];
                let sock = self.stream.as_raw_fd();
                match storage.fd().filter(|_| self.sendfile) {
                    // Only file bytes left: from the page cache, no copy.
                    Some(fd) if head_left == 0 => {
                        send_file(sock, fd, start as u64, body.len().min(allow))
                    }
                    // The head, held back (MSG_MORE) to leave with the first file bytes.
                    Some(_) if !body.is_empty() => {
                        send_more(sock, &[IoSlice::new(&own[..own.len().min(allow)])])
                    }
                    _ => {
                        let mut iov = [IoSlice::new(&[]); 3];
                        let n = gather([own, shared, body], allow, &mut iov);
                        self.stream.write_vectored(&iov[..n])
                    }
                }
            };
            let n = match res {
                Ok(0) => return gone(moved),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    self.release(storage);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return gone(moved),
            };
            up.consume(n);
            moved += n;
            self.sent += n as u64;
            if self.sent == head_len + len {
                self.release(storage);
                self.answers.pop_front();
                self.sent = 0;
                self.released = 0;
                if close {
                    let _ = self.stream.shutdown(Shutdown::Write);
                    return Pumped { moved, keep: false };
                }
            }
        }
        Pumped { moved, keep: true }
    }

    /// Unmaps the front answer's file pages already written from the map, so a large
    /// download does not count the whole file in the origin's RSS (as `conn.rs` does).
    fn release(&mut self, storage: &Storage) {
        let Some(a) = self.answers.front() else {
            return;
        };
        let Some((_, offset, len)) = a.file.filter(|_| !self.sendfile) else {
            return;
        };
        let done = self.sent.saturating_sub(a.prefix_len()).min(len);
        let upto = if done == len { len } else { done / PAGE * PAGE };
        if upto > self.released {
            let from = offset + self.released;
            storage.release_range(from as usize, (upto - self.released) as usize);
            self.released = upto;
        }
    }
}

/// Peeks at the first byte without taking it. `Ok(None)` if none has arrived yet, `Err`
/// if the connection closed or failed first.
fn first_byte(stream: &TcpStream) -> Result<Option<u8>, ()> {
    let mut b = 0u8;
    // SAFETY: a valid socket and a one-byte buffer that outlives the call.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK,
        )
    };
    match n {
        1 => Ok(Some(b)),
        0 => Err(()),
        _ => match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(()),
        },
    }
}
