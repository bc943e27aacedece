//! HTTP/1.1 in the node's event loop: the origin answers `GET`/`HEAD` for its files on the
//! TFTTP port (`server`, docs/PROTOCOL.md §9.1), and the `--metrics` endpoint
//! (`net::metrics`) reads and answers its scrapes with the same parser and reply builder.
//! `request` and `response` are sans-IO; `share` is the upload policy for HTTP.

pub(super) mod request;
pub(super) mod response;
mod server;
mod share;

use std::io::{self, Read};

pub(super) use server::{FIRST_TOKEN, HttpServer, Served};

/// How a `read_some` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fill {
    /// The socket has nothing more for now.
    Blocked,
    /// The buffer reached its cap; more may be waiting.
    Full,
    /// The peer stopped sending.
    Eof,
}

/// Reads what has arrived into `buf` without letting it grow past `cap` bytes: request
/// heads are bounded, so a client that never ends its head costs at most `cap`.
pub(super) fn read_some(stream: &mut impl Read, buf: &mut Vec<u8>, cap: usize) -> io::Result<Fill> {
    let mut chunk = [0u8; 1024];
    loop {
        if buf.len() >= cap {
            return Ok(Fill::Full);
        }
        let room = (cap - buf.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return Ok(Fill::Eof),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Fill::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
