//! Server footprint benchmark (issue "data path at the machine's limit"): one origin and
//! 1,000 concurrent slow clients on loopback. The clients are a load generator in this file
//! that speaks just enough of the protocol (docs/PROTOCOL.md §5.1): HELLO, an empty
//! BITFIELD, INTERESTED and two WILDCARD requests, then it reads each connection slowly and
//! keeps asking. It reports the origin's memory (VmRSS, and its anonymous part: mapped file
//! pages are page cache the kernel can drop at will) and its CPU per GiB served.
//!
//!     cargo bench --bench footprint -- [--clients 1000] [--secs 10] [--rate 16K] [--sendfile]

#[path = "support.rs"]
mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use support::{procs, units};
use tfttp::wire::{self, Hello, Message, Role, WILDCARD};

const PIECE: u32 = 256 * 1024;
const FILE: u64 = 256 << 20;
/// Each client reads this often, up to its per-tick allowance.
const TICK: Duration = Duration::from_millis(100);

struct Client {
    stream: TcpStream,
    /// Where the client is in the frame stream: completed pieces are re-requested.
    frames: Skipper,
    out: Vec<u8>,
    received: u64,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut clients = 1000usize;
    let mut secs = 10u64;
    let mut rate: u64 = 16 * 1024;
    let mut sendfile = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--clients" => clients = it.next().unwrap().parse().unwrap(),
            "--secs" => secs = it.next().unwrap().parse().unwrap(),
            "--rate" => rate = units::parse_size(it.next().unwrap()).unwrap(),
            "--sendfile" => sendfile = true,
            other => panic!("unknown argument {other}"),
        }
    }
    raise_fd_limit(clients as u64 * 2 + 100);
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tfttp"));
    let dir = std::env::temp_dir().join(format!("tfttp-bench-footprint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("src.bin");
    procs::write_test_file(&src, FILE, 3).unwrap();
    let ready = dir.join("ready");
    let mut args = vec!["-q".to_string()];
    if sendfile {
        args.extend(["--sendfile".to_string(), "on".to_string()]);
    }
    let (mut server, addr) =
        procs::start_origin(&exe, &src, &ready, &args, Duration::from_secs(60)).unwrap();
    let pid = server.id();
    let idle = status_kib(pid);
    println!(
        "footprint: {clients} clients reading {:.0} KiB/s each from one origin ({} MiB file), {secs} s{}",
        rate as f64 / 1024.0,
        FILE >> 20,
        if sendfile {
            ", origin with --sendfile on"
        } else {
            ""
        }
    );
    println!(
        "  origin before clients: VmRSS {:.1} MiB (anonymous {:.1} MiB)",
        idle.0 as f64 / 1024.0,
        idle.1 as f64 / 1024.0
    );

    let mut poll = Poll::new().unwrap();
    let mut conns: HashMap<usize, Client> = HashMap::new();
    for k in 0..clients {
        let mut stream = TcpStream::connect(addr).unwrap();
        poll.registry()
            .register(
                &mut stream,
                Token(k),
                Interest::READABLE | Interest::WRITABLE,
            )
            .unwrap();
        conns.insert(
            k,
            Client {
                stream,
                frames: Skipper::default(),
                out: handshake(k as u64 + 1),
                received: 0,
            },
        );
    }
    let per_tick = (rate as f64 * TICK.as_secs_f64()) as usize;
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; per_tick.max(1)];
    let t0 = Instant::now();
    let cpu0 = support::proc_cpu_secs(pid);
    let mut peak = (0u64, 0u64);
    let mut next_tick = t0;
    while t0.elapsed() < Duration::from_secs(secs) {
        poll.poll(&mut events, Some(TICK / 4)).unwrap();
        for ev in events.iter() {
            if ev.is_writable()
                && let Some(c) = conns.get_mut(&ev.token().0)
            {
                flush(c);
            }
        }
        if Instant::now() >= next_tick {
            next_tick += TICK;
            // Slow clients: each reads at most its allowance per tick.
            for c in conns.values_mut() {
                if let Ok(n) = c.stream.read(&mut buf) {
                    c.received += n as u64;
                    let pieces = c.frames.feed(&buf[..n]);
                    for _ in 0..pieces {
                        Message::Request(WILDCARD).emit(&mut c.out);
                    }
                }
                flush(c);
            }
            let st = status_kib(pid);
            peak = (peak.0.max(st.0), peak.1.max(st.1));
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = support::proc_cpu_secs(pid) - cpu0;
    let received: u64 = conns.values().map(|c| c.received).sum();
    let connected = conns.values().filter(|c| c.received > 0).count();
    drop(conns);
    let _ = server.kill();
    let _ = procs::wait(&mut server, Instant::now() + Duration::from_secs(5));
    let gib = received as f64 / (1u64 << 30) as f64;
    println!(
        "  clients served: {connected} of {clients}; {:.1} MiB in {elapsed:.1} s",
        received as f64 / (1 << 20) as f64
    );
    println!(
        "  origin peak: VmRSS {:.1} MiB, anonymous {:.1} MiB (target <= 32 MiB: {})",
        peak.0 as f64 / 1024.0,
        peak.1 as f64 / 1024.0,
        if peak.0 <= 32 * 1024 {
            "met"
        } else if peak.1 <= 32 * 1024 {
            "met for anonymous memory only"
        } else {
            "MISSED"
        }
    );
    println!(
        "  origin CPU: {cpu:.2} s over the run, {:.2} s per GiB served",
        cpu / gib.max(1e-9)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// HELLO, an empty BITFIELD, INTERESTED and two wildcard requests: everything a client
/// needs to say before the origin starts sending.
fn handshake(node_id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    Message::Hello(Hello {
        role: Role::Client,
        auth: false,
        node_id,
        file_id: 0,
        listen_port: 0,
        nonce: (node_id as u128).to_be_bytes(),
        path: "",
    })
    .emit(&mut out);
    let pieces = FILE.div_ceil(PIECE as u64) as usize;
    Message::Bitfield(&vec![0u8; pieces.div_ceil(8)]).emit(&mut out);
    Message::Interested(true).emit(&mut out);
    Message::Request(WILDCARD).emit(&mut out);
    Message::Request(WILDCARD).emit(&mut out);
    out
}

fn flush(c: &mut Client) {
    while !c.out.is_empty() {
        match c.stream.write(&c.out) {
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(_) => return,
        }
    }
}

/// Follows the frame stream without keeping it: counts completed PIECE frames.
#[derive(Default)]
struct Skipper {
    head: [u8; wire::HEAD_SIZE],
    have: usize,
    skip: usize,
    in_piece: bool,
}

impl Skipper {
    fn feed(&mut self, mut data: &[u8]) -> usize {
        let mut pieces = 0;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                if self.skip == 0 && self.in_piece {
                    pieces += 1;
                }
                continue;
            }
            let n = (wire::HEAD_SIZE - self.have).min(data.len());
            self.head[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == wire::HEAD_SIZE {
                self.have = 0;
                self.skip = wire::be_u32(&self.head) as usize - 1;
                self.in_piece = self.head[4] == wire::ty::PIECE;
            }
        }
        pieces
    }
}

/// (VmRSS, RssAnon) of `pid` in KiB.
fn status_kib(pid: u32) -> (u64, u64) {
    (
        procs::proc_status_kib(pid, "VmRSS"),
        procs::proc_status_kib(pid, "RssAnon"),
    )
}

fn raise_fd_limit(want: u64) {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        if r.rlim_cur < want {
            r.rlim_cur = want.min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
