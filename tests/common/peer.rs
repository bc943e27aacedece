//! A minimal TFTTP version 2 peer for end-to-end tests, written from docs/PROTOCOL.md
//! (blocking sockets, one thread per connection), and the forgery that version 1's CRC-32
//! manifest could not catch (issue 13).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tfttp::manifest::Manifest;
use tfttp::wire::{self, FrameHead, HEAD_SIZE, Hello, Message, NONCE_LEN, Role};

/// Reads one whole frame: (type, body); `None` at the end of the stream or on a timeout.
pub fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; HEAD_SIZE];
    s.read_exact(&mut head).ok()?;
    let h = FrameHead::parse(&head).ok()??;
    let mut body = vec![0u8; h.body_len()];
    s.read_exact(&mut body).ok()?;
    Some((h.ty, body))
}

/// Writes one frame.
pub fn send(s: &mut TcpStream, msg: &Message) -> std::io::Result<()> {
    let mut buf = Vec::new();
    msg.emit(&mut buf);
    s.write_all(&buf)
}

/// A version 2 client HELLO frame (§4.1).
pub fn client_hello(node_id: u64, file_id: u64, listen: u16, auth: bool, path: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    Message::Hello(Hello {
        role: Role::Client,
        auth,
        node_id,
        file_id,
        listen_port: listen,
        nonce: [(node_id % 251) as u8; NONCE_LEN],
        path,
    })
    .emit(&mut buf);
    buf
}

/// Connects with a read timeout, so a test never hangs on a silent server.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Changes the first byte of `data`, then its last 4 bytes so that its CRC-32 stays what it
/// was. CRC-32 is affine: `crc(x ^ d) = crc(x) ^ lin(d)` for a linear `lin`, and `lin` of a
/// difference in the last 4 bytes is a bijection of those 32 bits, so the right 4 bytes are
/// found by solving 32 linear equations over GF(2).
pub fn forge_keeping_crc(data: &mut [u8]) {
    assert!(data.len() >= 8);
    let want = crc32fast::hash(data);
    data[0] ^= 0xff;
    let target = crc32fast::hash(data) ^ want;
    // lin4(t): the CRC change that a difference of t in the last 4 bytes makes.
    let lin4 = |t: u32| crc32fast::hash(&t.to_le_bytes()) ^ crc32fast::hash(&[0; 4]);
    // Row-reduce the 32 columns lin4(1 << k), remembering which bits of t make each row.
    let mut basis = [(0u32, 0u32); 32];
    for k in 0..32 {
        let (mut v, mut c) = (lin4(1 << k), 1u32 << k);
        for b in (0..32).rev() {
            if v >> b & 1 == 0 {
                continue;
            }
            if basis[b].0 == 0 {
                basis[b] = (v, c);
                break;
            }
            v ^= basis[b].0;
            c ^= basis[b].1;
        }
    }
    let (mut v, mut t) = (target, 0u32);
    for b in (0..32).rev() {
        if v >> b & 1 == 1 {
            v ^= basis[b].0;
            t ^= basis[b].1;
        }
    }
    assert_eq!(v, 0, "lin4 is a bijection");
    let n = data.len();
    for (d, x) in data[n - 4..].iter_mut().zip(t.to_le_bytes()) {
        *d ^= x;
    }
    assert_eq!(crc32fast::hash(data), want, "forged piece keeps its CRC-32");
}

/// A peer that joins the swarm of the origin at `origin` as a complete client (node id
/// `u64::MAX`, so every client dials it, §5.1) and answers every REQUEST with the real piece
/// from `source`, forged so that its CRC-32 is right and its BLAKE3 is not. Returns the
/// count of forged pieces it sent.
pub fn spawn_forger(origin: SocketAddr, source: Vec<u8>) -> Arc<AtomicUsize> {
    let served = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let id = u64::MAX;
    let mut o = connect(origin);
    o.write_all(&client_hello(id, 0, port, false, "")).unwrap();
    let mut manifest = None;
    while manifest.is_none() {
        let (ty, body) = read_frame(&mut o).expect("origin's HELLO and MANIFEST");
        if ty == wire::ty::MANIFEST {
            manifest = Some(Manifest::decode(&body).unwrap());
        }
    }
    let m = Arc::new(manifest.unwrap());
    let all = tfttp::bitfield::Bitfield::full(m.piece_count());
    send(&mut o, &Message::Bitfield(all.as_bytes())).unwrap();
    // Keep the origin link open (and read) so the origin keeps introducing us.
    std::thread::spawn(move || {
        o.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        while read_frame(&mut o).is_some() {}
    });
    let source = Arc::new(source);
    let count = served.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(s) = conn else { return };
            let (m, source, count) = (m.clone(), source.clone(), count.clone());
            std::thread::spawn(move || serve_forged(s, id, &m, &source, &count));
        }
    });
    served
}

/// One client's connection to the forger: HELLO, everything, unchoked, forged pieces.
fn serve_forged(mut s: TcpStream, id: u64, m: &Manifest, source: &[u8], count: &AtomicUsize) {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let Some((wire::ty::HELLO, _)) = read_frame(&mut s) else {
        return;
    };
    let mut out = client_hello(id, m.id(), 0, false, "");
    let all = tfttp::bitfield::Bitfield::full(m.piece_count());
    Message::Bitfield(all.as_bytes()).emit(&mut out);
    Message::Unchoke.emit(&mut out);
    if s.write_all(&out).is_err() {
        return;
    }
    while let Some((ty, body)) = read_frame(&mut s) {
        if ty != wire::ty::REQUEST {
            continue;
        }
        let piece = u32::from_be_bytes(body[..4].try_into().unwrap());
        let start = m.piece_offset(piece) as usize;
        let mut data = source[start..start + m.piece_len(piece) as usize].to_vec();
        forge_keeping_crc(&mut data);
        if send(&mut s, &Message::Piece { piece, data: &data }).is_err() {
            return;
        }
        count.fetch_add(1, Ordering::Relaxed);
    }
}
