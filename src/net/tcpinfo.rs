//! Linux `TCP_INFO` of one socket: the bytes its peer acknowledged, what the uplink pacer
//! (`proto::Pacer`, through `pacing.rs`) and an origin's send slots
//! (`Node::handle_delivered`) measure the link by, and its round-trip times, which the
//! node's request pipelines cover (`Node::handle_rtt`). See tcp(7) and `struct tcp_info`
//! in linux/tcp.h.

use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::RawFd;
use std::time::Duration;

/// Bytes of `tcp_info` up to and including `tcpi_min_rtt`, the last field read here
/// (Linux 4.10). A kernel returns only the prefix it knows; one that returns less lacks a
/// field this needs, and zeros there would read as "nothing delivered, no RTT".
const NEEDED: usize = offset_of!(libc::tcp_info, tcpi_min_rtt) + size_of::<u32>();

/// The kernel's `tcpi_min_rtt` before the first RTT sample (its min filter starts at ~0U).
const NO_RTT_SAMPLE: u32 = u32::MAX;

/// What the driver reads of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TcpInfo {
    /// Bytes the peer has acknowledged since the connection opened (RFC 4898's
    /// tcpEStatsAppHCThruOctetsAcked): the payload, and on a dialled connection one more
    /// for its SYN (an accepted one does not count its SYN-ACK), so only differences count.
    pub bytes_acked: u64,
    /// The smoothed RTT (RFC 6298's SRTT).
    pub rtt: Duration,
    /// The smallest RTT seen over the kernel's window (about 5 minutes); `None` before the
    /// first RTT sample (then `rtt` is 0 and says nothing either), which is what `srtt`
    /// reads it for.
    pub min_rtt: Option<Duration>,
}

impl TcpInfo {
    /// The smoothed RTT, `None` before the first RTT sample.
    pub(super) fn srtt(&self) -> Option<Duration> {
        self.min_rtt.map(|_| self.rtt)
    }
}

/// Adds a connection's reading `info` to `delivered`; `last_acked` is what it had
/// acknowledged at its previous reading, and becomes this one's. A first reading is only
/// the baseline.
pub(super) fn add_delivered(delivered: &mut u64, last_acked: &mut Option<u64>, info: &TcpInfo) {
    let Some(last) = *last_acked else {
        *last_acked = Some(info.bytes_acked);
        return;
    };
    *delivered += info.bytes_acked.saturating_sub(last);
    *last_acked = Some(last.max(info.bytes_acked));
}

/// Reads `TCP_INFO` of the TCP socket `fd`. Fails if `fd` is not a TCP socket, or if the
/// kernel is too old to return every field used (`ErrorKind::Unsupported`).
pub(super) fn read(fd: RawFd) -> io::Result<TcpInfo> {
    // SAFETY: tcp_info is plain integers, for which all zeros is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes, and the kernel writes at most `len` and
    // says how many in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < NEEDED {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("TCP_INFO returned {len} bytes; tcpi_min_rtt needs {NEEDED} (Linux 4.10)"),
        ));
    }
    let rtt = Duration::from_micros(info.tcpi_rtt.into());
    let min_rtt = match info.tcpi_min_rtt {
        _ if info.tcpi_rtt == 0 => None,
        NO_RTT_SAMPLE => None,
        us => Some(Duration::from_micros(us.into())),
    };
    Ok(TcpInfo {
        bytes_acked: info.tcpi_bytes_acked,
        rtt,
        min_rtt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    /// A connected loopback pair: (the dialled end, the accepted end).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn test_bytes_acked_reaches_what_the_peer_read() {
        const N: usize = 1 << 20;
        let (mut tx, mut rx) = pair();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            let mut got = 0;
            rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            while got < N {
                match rx.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            got
        });
        let before = read(tx.as_raw_fd()).unwrap();
        assert!(before.bytes_acked <= 1, "the SYN at most: {before:?}");
        let n = before.bytes_acked + N as u64;
        tx.write_all(&vec![7u8; N]).unwrap();
        assert_eq!(reader.join().unwrap(), N);
        // The last ACK may still be on its way: wait for it, boundedly.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut info = read(tx.as_raw_fd()).unwrap();
        while info.bytes_acked < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            info = read(tx.as_raw_fd()).unwrap();
        }
        assert_eq!(info.bytes_acked, n, "{info:?}");
        assert!(info.rtt > Duration::ZERO, "{info:?}");
        let min = info.min_rtt.expect("an RTT sample after 1 MiB");
        assert!(min <= info.rtt, "{info:?}");
        assert!(info.rtt - min < Duration::from_secs(1), "{info:?}");
    }

    #[test]
    fn test_srtt_is_known_only_after_an_rtt_sample() {
        let mut info = TcpInfo {
            bytes_acked: 0,
            rtt: Duration::ZERO,
            min_rtt: None,
        };
        assert_eq!(info.srtt(), None);
        info.rtt = Duration::from_millis(30);
        info.min_rtt = Some(Duration::from_millis(20));
        assert_eq!(info.srtt(), Some(Duration::from_millis(30)));
    }

    #[test]
    fn test_a_fresh_connection_has_acknowledged_only_its_handshake() {
        let (tx, rx) = pair();
        for s in [&tx, &rx] {
            let info = read(s.as_raw_fd()).unwrap();
            assert!(info.bytes_acked <= 1, "the SYN at most: {info:?}");
            assert!(info.min_rtt.is_none_or(|m| m <= info.rtt), "{info:?}");
        }
    }

    #[test]
    fn test_a_file_is_not_a_socket() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = read(f.as_raw_fd()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTSOCK), "{e}");
    }

    fn reading(bytes_acked: u64) -> TcpInfo {
        TcpInfo {
            bytes_acked,
            rtt: Duration::from_millis(30),
            min_rtt: Some(Duration::from_millis(10)),
        }
    }

    #[test]
    fn test_a_new_connection_counts_from_its_first_reading() {
        let (mut total, mut last) = (0, None);
        // Whatever it acknowledged before (a handshake byte, or more) is its baseline.
        add_delivered(&mut total, &mut last, &reading(1));
        assert_eq!((total, last), (0, Some(1)));
        add_delivered(&mut total, &mut last, &reading(5_001));
        assert_eq!((total, last), (5_000, Some(5_001)));
    }

    #[test]
    fn test_each_byte_counts_once() {
        let (mut total, mut last) = (0, Some(0));
        for acked in [1_000, 1_000, 5_000, 4_000, 9_000] {
            add_delivered(&mut total, &mut last, &reading(acked));
        }
        // A reading that went backwards (it cannot, but) is no delivery and no refund.
        assert_eq!(total, 9_000);
        assert_eq!(last, Some(9_000));
    }
}
