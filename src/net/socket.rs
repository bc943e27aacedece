//! Socket set-up with socket2: what std and mio do not expose (listen backlog, buffer sizes,
//! a nonblocking connect whose options are set before the handshake).

use std::io;
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, Socket, Type};

/// Listen backlog: a flash crowd arrives at once, and the loop accepts in bursts.
const BACKLOG: i32 = 1024;

/// Socket buffer sizes. `None` leaves Linux's autotuning on, which grows buffers up to
/// `tcp_wmem`/`tcp_rmem` max (4–32 MiB by default) as the path needs; setting a size turns
/// autotuning off for that socket, so it is only worth it with a measured reason.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketOptions {
    /// Send and receive buffer size in bytes, the same for both.
    pub buffer: Option<usize>,
}

impl SocketOptions {
    fn apply(&self, s: &Socket) -> io::Result<()> {
        if let Some(n) = self.buffer {
            s.set_send_buffer_size(n)?;
            s.set_recv_buffer_size(n)?;
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

/// Options for an accepted stream.
pub fn tune_accepted(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)
}
