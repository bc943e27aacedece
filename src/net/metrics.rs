//! The `--metrics` endpoint's HTTP/1.1, inside the node's own event loop: one request per
//! connection (`GET /metrics`), one response, then close, which is all a Prometheus scrape
//! or `curl` needs. Sockets are nonblocking, a request is read into a bounded buffer, the
//! number of scrapes at once is bounded and each has a deadline, so a client that opens
//! connections and says nothing costs a few KiB and is gone within seconds. The page is
//! `crate::metrics`; heads are parsed and answers built by `net::http`, as the origin's
//! file is served over HTTP.

use std::io::{self, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::http::request::{Request, head_end};
use super::http::response::reply;
use super::http::{Fill, read_some};
use crate::metrics::CONTENT_TYPE;

/// Tokens from here on belong to the endpoint: the listener, then scrape k at
/// `FIRST_TOKEN + 1 + k`. Far above any connection slot the driver hands out (the slab of
/// protocol connections is bounded by `MAX_CONNS_ORIGIN`), and below `usize::MAX`, which
/// mio keeps for itself.
pub(super) const FIRST_TOKEN: usize = usize::MAX / 2;
/// Scrapes served at once; a connection beyond it closes the oldest, so connections that
/// say nothing cannot lock the endpoint. Prometheus scrapes a target with one connection at
/// a time; a few more leave room for a person with `curl`.
const MAX_SCRAPES: usize = 8;
/// A request head longer than this is answered 431: `GET /metrics` with curl's or
/// Prometheus's headers is under 300 bytes.
const MAX_REQUEST: usize = 4096;
/// A scrape still open this long after its accept is closed, answered or not (Prometheus's
/// default scrape timeout is 10 s; the page is rendered at once, so 5 s is generous).
const DEADLINE: Duration = Duration::from_secs(5);

/// One scrape connection.
struct Scrape {
    stream: TcpStream,
    /// The request head read so far (at most `MAX_REQUEST` bytes).
    request: Vec<u8>,
    /// The response, once the head is complete, and how much of it was written.
    response: Option<Vec<u8>>,
    sent: usize,
    deadline: Instant,
}

/// The listener and its scrapes.
pub(super) struct MetricsServer {
    listener: TcpListener,
    scrapes: Slab<Scrape>,
}

/// What the page is made of: called once per request that asks for it.
pub(super) type Render<'a> = &'a mut dyn FnMut() -> String;

impl MetricsServer {
    /// Serves scrapes on `listener`, registered with `registry`.
    pub(super) fn new(mut listener: TcpListener, registry: &Registry) -> io::Result<Self> {
        registry.register(&mut listener, Token(FIRST_TOKEN), Interest::READABLE)?;
        Ok(MetricsServer {
            listener,
            scrapes: Slab::with_capacity(MAX_SCRAPES),
        })
    }

    /// Whether the endpoint owns `token`.
    pub(super) fn owns(token: Token) -> bool {
        token.0 >= FIRST_TOKEN
    }

    /// Readiness on one of the endpoint's tokens.
    pub(super) fn handle(&mut self, registry: &Registry, token: Token, now: Instant, page: Render) {
        if token.0 == FIRST_TOKEN {
            self.accept_all(registry, now);
        } else {
            self.advance(registry, token.0 - FIRST_TOKEN - 1, page);
        }
    }

    /// Closes scrapes past their deadline.
    pub(super) fn expire(&mut self, registry: &Registry, now: Instant) {
        if self.scrapes.is_empty() {
            return;
        }
        let late: Vec<usize> = self
            .scrapes
            .iter()
            .filter(|(_, s)| now >= s.deadline)
            .map(|(k, _)| k)
            .collect();
        for k in late {
            self.close(registry, k);
        }
    }

    fn accept_all(&mut self, registry: &Registry, now: Instant) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of descriptors: the protocol's connections matter more. What stays in
                // the backlog is accepted with the next scrape's event.
                Err(_) => return,
            };
            if self.scrapes.len() >= MAX_SCRAPES
                && let Some(oldest) = self.scrapes.iter().min_by_key(|(_, s)| s.deadline)
            {
                let k = oldest.0;
                self.close(registry, k);
            }
            let entry = self.scrapes.vacant_entry();
            let token = Token(FIRST_TOKEN + 1 + entry.key());
            if registry
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            entry.insert(Scrape {
                stream,
                request: Vec::new(),
                response: None,
                sent: 0,
                deadline: now + DEADLINE,
            });
        }
    }

    /// Reads the request head, then writes the response; closes when it is all out or the
    /// connection failed.
    fn advance(&mut self, registry: &Registry, k: usize, page: Render) {
        let Some(s) = self.scrapes.get_mut(k) else {
            return;
        };
        if pump(s, page).unwrap_or(true) {
            self.close(registry, k);
        }
    }

    fn close(&mut self, registry: &Registry, k: usize) {
        if let Some(mut s) = self.scrapes.try_remove(k) {
            let _ = registry.deregister(&mut s.stream);
        }
    }
}

/// Moves one scrape along as far as its socket allows. `Ok(true)` once the response is all
/// written (followed by a FIN, as `Connection: close` promises), `Err` if the connection
/// failed.
fn pump(s: &mut Scrape, page: Render) -> Result<bool, ()> {
    if s.response.is_none() {
        if !read_head(s)? {
            return Ok(false);
        }
        s.response = Some(respond(&s.request, page));
    }
    let out = s.response.as_deref().unwrap_or_default();
    while s.sent < out.len() {
        match s.stream.write(&out[s.sent..]) {
            Ok(0) => return Err(()),
            Ok(n) => s.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
    let _ = s.stream.shutdown(Shutdown::Write);
    Ok(true)
}

/// Reads what has arrived of the request head. `Ok(true)` once it can be answered: the
/// blank line arrived, the peer stopped sending, or the head outgrew `MAX_REQUEST`.
/// `Err` when the connection failed.
fn read_head(s: &mut Scrape) -> Result<bool, ()> {
    if head_end(&s.request).is_some() {
        return Ok(true);
    }
    match read_some(&mut s.stream, &mut s.request, MAX_REQUEST).map_err(|_| ())? {
        // The peer stopped sending: answer what it sent, if anything.
        Fill::Eof if s.request.is_empty() => Err(()),
        Fill::Blocked => Ok(head_end(&s.request).is_some()),
        Fill::Full | Fill::Eof => Ok(true),
    }
}

/// The whole response to `request`: the page for `GET /metrics` (its head alone for
/// `HEAD`), 404 for any other path, 405 for another method, 400 or 431 for a head that is
/// not one.
fn respond(request: &[u8], page: Render) -> Vec<u8> {
    let Some(end) = head_end(request) else {
        return if request.len() >= MAX_REQUEST {
            reply(431, "", "", true, true)
        } else {
            reply(400, "", "", true, true)
        };
    };
    let Ok(req) = Request::parse(&request[..end]) else {
        return reply(400, "", "", true, true);
    };
    let body = req.method != "HEAD";
    if req.method != "GET" && req.method != "HEAD" {
        return reply(405, "Allow: GET, HEAD\r\n", "", body, true);
    }
    if req.path != "/metrics" {
        let why = "not found; the metrics are at /metrics\n";
        return reply(404, "", why, body, true);
    }
    let text = page();
    let extra = format!("Content-Type: {CONTENT_TYPE}\r\n");
    reply(200, &extra, &text, body, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(req: &str) -> String {
        let mut renders = 0;
        let mut page = || {
            renders += 1;
            "tfttp_up 1\n".to_string()
        };
        let out = String::from_utf8(respond(req.as_bytes(), &mut page)).unwrap();
        assert!(renders <= 1);
        out
    }

    #[test]
    fn test_get_metrics_is_answered_with_the_page_and_its_length() {
        let r = answer("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("Content-Length: 11\r\n"), "{r}");
        assert!(r.contains("Connection: close\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\ntfttp_up 1\n"), "{r}");
        // A query string (Prometheus may add one) is ignored.
        assert!(answer("GET /metrics?x=1 HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn test_head_metrics_has_no_body() {
        let r = answer("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.ends_with("Content-Length: 11\r\nConnection: close\r\n\r\n"),
            "{r}"
        );
    }

    #[test]
    fn test_other_paths_methods_and_garbage_are_refused() {
        assert!(answer("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(answer("GET /metricsx HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        let post = answer("POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD"));
        assert!(answer("hello\r\n\r\n").starts_with("HTTP/1.1 400 "));
        assert!(answer("GET /metrics SPDY/3\r\n\r\n").starts_with("HTTP/1.1 400 "));
        // The peer stopped sending before the blank line.
        assert!(answer("GET /metrics HTTP/1.1\r\n").starts_with("HTTP/1.1 400 "));
        let long = format!("GET /metrics HTTP/1.1\r\nX: {}", "a".repeat(MAX_REQUEST));
        assert!(answer(&long[..MAX_REQUEST]).starts_with("HTTP/1.1 431 "));
    }
}
