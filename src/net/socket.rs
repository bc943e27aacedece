//! Socket set-up with socket2: what std and mio do not expose (listen backlog, buffer sizes,
//! a nonblocking connect whose options are set before the handshake).

use std::io;
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Listen backlog: a flash crowd arrives at once, and the loop accepts in bursts.
const BACKLOG: i32 = 1024;

/// `TCP_NOTSENT_LOWAT` of a node that paces itself (`--up-rate auto`): a quarter of a
/// 64 KiB piece may wait unsent in a socket, so a STAMP waits behind little more than the
/// uplink's own queue, and a drain of the pace drains the link within a sample or two.
pub const PACED_NOTSENT_LOWAT: u32 = 16 * 1024;

/// `TCP_NOTSENT_LOWAT` of an origin's sockets otherwise: a piece counts as sent
/// (`Node::handle_piece_sent`) once at most this much of it waits unsent, so the pieces
/// sharing the uplink are the few the origin's send slots chose (docs/PROTOCOL.md §5.2), not
/// every piece that fits in hundreds of socket buffers.
pub const ORIGIN_NOTSENT_LOWAT: u32 = 256 * 1024;

/// Socket options. A buffer size of `None` leaves Linux's autotuning on, which grows
/// buffers up to `tcp_wmem`/`tcp_rmem` max (4–32 MiB by default) as the path needs; setting
/// a size turns autotuning off for that socket, so it is only worth it with a measured
/// reason.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketOptions {
    /// Send and receive buffer size in bytes, the same for both.
    pub buffer: Option<usize>,
    /// `TCP_NOTSENT_LOWAT`: the socket takes no more writes while this many bytes wait
    /// unsent in it. Bounds what waits behind the node's pacing and ahead of a STAMP
    /// (`--up-rate auto`, docs/PROTOCOL.md §4.10).
    pub notsent_lowat: Option<u32>,
}

impl SocketOptions {
    fn apply(&self, s: &Socket) -> io::Result<()> {
        if let Some(n) = self.buffer {
            s.set_send_buffer_size(n)?;
            s.set_recv_buffer_size(n)?;
        }
        if let Some(n) = self.notsent_lowat {
            s.set_tcp_notsent_lowat(n)?;
        }
        Ok(())
    }
}

/// A nonblocking listener on `addr` with a backlog sized for a flash crowd.
pub fn listen(addr: SocketAddr, opts: SocketOptions) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    // Accepted sockets inherit buffer sizes set on the listener.
    opts.apply(&s)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(TcpListener::from_std(s.into()))
}

/// Starts a nonblocking connect; completion is the first writable event.
pub fn connect(addr: SocketAddr, opts: SocketOptions) -> io::Result<TcpStream> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_nonblocking(true)?;
    // Requests and HAVEs are small and latency-bound; pieces are large writes anyway.
    s.set_tcp_nodelay(true)?;
    opts.apply(&s)?;
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(s.into()))
}

/// Options for an accepted stream (the buffer sizes it inherited from the listener).
pub fn tune_accepted(stream: &TcpStream, opts: SocketOptions) -> io::Result<()> {
    stream.set_nodelay(true)?;
    if let Some(n) = opts.notsent_lowat {
        SockRef::from(stream).set_tcp_notsent_lowat(n)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_paced_sockets_hold_little_unsent_both_dialled_and_accepted() {
        let opts = SocketOptions {
            notsent_lowat: Some(PACED_NOTSENT_LOWAT),
            ..SocketOptions::default()
        };
        let listener = listen("127.0.0.1:0".parse().unwrap(), SocketOptions::default()).unwrap();
        let dialled = connect(listener.local_addr().unwrap(), opts).unwrap();
        let lowat = |s: &TcpStream| SockRef::from(s).tcp_notsent_lowat().unwrap();
        assert_eq!(lowat(&dialled), PACED_NOTSENT_LOWAT);
        // The connect completes in the background; the backlog holds it meanwhile.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let accepted = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "no connection");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        };
        tune_accepted(&accepted, opts).unwrap();
        assert_eq!(lowat(&accepted), PACED_NOTSENT_LOWAT);
        // Unpaced sockets keep the kernel's default (no limit).
        let plain = connect(listener.local_addr().unwrap(), SocketOptions::default()).unwrap();
        assert_ne!(lowat(&plain), PACED_NOTSENT_LOWAT);
    }
}
