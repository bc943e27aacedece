//! End-to-end: bad input gets a clear error, never a panic, a hang, or a file that looks
//! complete but is not.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::peer::read_frame;
use common::*;
use tfttp::wire::{self, Hello, Message, Role};

const T: Duration = Duration::from_secs(20);

/// Reads frames until one of type `ty` (or the connection ends).
fn find_frame(s: &mut TcpStream, ty: u8) -> Option<Vec<u8>> {
    while let Some((t, body)) = read_frame(s) {
        if t == ty {
            return Some(body);
        }
    }
    None
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn error_code(body: &[u8]) -> u16 {
    u16::from_be_bytes([body[0], body[1]])
}

/// Sends a client HELLO with these fields on a new connection; the ERROR it gets (code and
/// reason).
fn hello_error(
    addr: std::net::SocketAddr,
    node_id: u64,
    file_id: u64,
    path: &str,
) -> (u16, String) {
    let mut buf = Vec::new();
    Message::Hello(Hello {
        role: Role::Client,
        auth: false,
        node_id,
        file_id,
        listen_port: 0,
        nonce: [3; wire::NONCE_LEN],
        path,
    })
    .emit(&mut buf);
    raw_error(addr, &buf)
}

/// Sends `bytes` on a new connection; the ERROR it gets (code and reason).
fn raw_error(addr: std::net::SocketAddr, bytes: &[u8]) -> (u16, String) {
    let mut s = connect(addr);
    s.write_all(bytes).unwrap();
    let body = find_frame(&mut s, wire::ty::ERROR).expect("ERROR frame");
    (
        error_code(&body),
        String::from_utf8_lossy(&body[2..]).into(),
    )
}

#[test]
fn server_answers_garbage_with_error_and_keeps_serving() {
    let dir = TestDir::new("garbage");
    let src = dir.source("src.bin", 300_000);
    let (mut server, addr) = serve(&dir, &src, &["--exit-after", "1"]);

    // A length prefix far beyond the limit.
    let mut s = connect(addr);
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    let body = find_frame(&mut s, wire::ty::ERROR).expect("ERROR frame");
    assert_eq!(error_code(&body), 1);
    assert!(
        read_frame(&mut s).is_none(),
        "connection closed after the error"
    );

    // An HTTP request: the port answers HTTP too (docs/PROTOCOL.md §9.1), in HTTP.
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(
        reply.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    // A version 1 node's HELLO (§7): ERROR 2, naming both versions.
    let mut v1 = vec![0, 0, 0, 25, wire::ty::HELLO];
    v1.extend_from_slice(b"TFTT");
    v1.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let (code, why) = raw_error(addr, &v1);
    assert_eq!(code, 2, "version error code: {why}");
    assert!(
        why.contains("version 1") && why.contains("version 2"),
        "{why}"
    );
    // A later version with a long HELLO: still ERROR 2, not "malformed".
    let mut v9 = vec![0, 0, 0, 201, wire::ty::HELLO];
    v9.extend_from_slice(b"TFTT");
    v9.push(9);
    v9.extend_from_slice(&[0xee; 195]);
    assert_eq!(raw_error(addr, &v9).0, 2);

    // Node id 0 is malformed.
    assert_eq!(hello_error(addr, 0, 0, "").0, 1, "node id 0");

    // A client for another file.
    assert_eq!(
        hello_error(addr, 8, 0xdead_beef, "").0,
        3,
        "wrong-file error code"
    );

    // A file this server does not serve, or a path that climbs out: ERROR 11.
    assert_eq!(hello_error(addr, 9, 0, "other.bin").0, 11);
    assert_eq!(hello_error(addr, 10, 0, "../src.bin").0, 11);

    // A peer that vanishes mid-frame.
    let mut s = connect(addr);
    s.write_all(&[0, 0, 0, 50, wire::ty::HELLO, b'T']).unwrap();
    drop(s);

    // The server is still fine for a real client.
    let mut c = get(&dir, addr, "c", &["--no-peers"]);
    c.expect_download(&src, 30);
    server.expect_exit_ok(10);
}

/// §4.1 on the real binary: a HELLO of another version gets ERROR 2 however long its body
/// (a long one got ERROR 1), and node id 0 is refused with ERROR 1 and its reason.
#[test]
fn long_hello_of_another_version_gets_version_error_and_node_id_0_is_refused() {
    let dir = TestDir::new("hello");
    let src = dir.source("src.bin", 100_000);
    let (_server, addr) = serve(&dir, &src, &[]);
    let mut body = b"TFTT".to_vec();
    body.push(wire::VERSION + 1);
    body.resize(wire::MAX_HELLO_LEN, 0xff);
    let mut frame = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    frame.push(wire::ty::HELLO);
    frame.extend_from_slice(&body);
    let mut s = connect(addr);
    s.write_all(&frame).unwrap();
    let err = find_frame(&mut s, wire::ty::ERROR).expect("ERROR frame");
    assert_eq!(
        error_code(&err),
        2,
        "{}",
        String::from_utf8_lossy(&err[2..])
    );

    let mut s = connect(addr);
    let mut buf = Vec::new();
    Message::Hello(Hello {
        role: Role::Client,
        auth: false,
        node_id: 0,
        file_id: 0,
        listen_port: 0,
        nonce: [0; wire::NONCE_LEN],
        path: "",
    })
    .emit(&mut buf);
    s.write_all(&buf).unwrap();
    let err = find_frame(&mut s, wire::ty::ERROR).expect("ERROR frame");
    let reason = String::from_utf8_lossy(&err[2..]).to_string();
    assert_eq!(error_code(&err), 1, "{reason}");
    assert!(reason.contains("node id 0"), "{reason}");
}

#[test]
fn existing_output_is_refused_and_untouched() {
    let dir = TestDir::new("exists");
    let out = dir.path("out.bin");
    std::fs::write(&out, b"precious").unwrap();
    let (code, err) = run(
        &["get", "127.0.0.1:9", "--output", &out.display().to_string()],
        T,
    );
    assert_eq!(code, Some(7), "local I/O: {err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
}

#[test]
fn unreachable_server_fails_fast_with_reason() {
    let dir = TestDir::new("unreach");
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = dir.path("out.bin");
    let started = std::time::Instant::now();
    let (code, err) = run(
        &[
            "get",
            &format!("127.0.0.1:{port}"),
            "-o",
            &out.display().to_string(),
        ],
        T,
    );
    assert_eq!(code, Some(4), "cannot connect: {err}");
    assert!(err.contains("refused"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!out.exists());
    assert!(
        !tfttp::net::storage::part_path(&out).exists(),
        "no .part left behind"
    );
}

#[test]
fn server_that_is_not_tfttp_is_reported() {
    let dir = TestDir::new("nottfttp");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let out = dir.path("out.bin");
    let (code, err) = run(
        &["get", &addr.to_string(), "-o", &out.display().to_string()],
        T,
    );
    assert_eq!(code, Some(5), "protocol: {err}");
    // An HTTP answer is named as such (issue 14), not as a broken protocol.
    assert!(err.contains("answered in HTTP"), "{err}");
    assert!(!out.exists());
    t.join().unwrap();
}

#[test]
fn unwritable_output_directory_is_an_error() {
    let (code, err) = run(&["get", "127.0.0.1:9", "-o", "/nonexistent-dir/out.bin"], T);
    assert_eq!(code, Some(7), "local I/O: {err}");
    assert!(err.contains("cannot create"), "{err}");
}

#[test]
fn serving_a_missing_file_is_an_error() {
    let (code, err) = run(
        &["serve", "/nonexistent-file", "--listen", "127.0.0.1:0"],
        T,
    );
    assert_eq!(code, Some(7), "local I/O: {err}");
    assert!(err.contains("cannot open"), "{err}");
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for args in [
        vec!["get", "127.0.0.1:1"],
        vec!["frobnicate"],
        vec!["serve", "x", "--up-rate", "lots"],
        vec![],
    ] {
        let (code, err) = run(&args, T);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    let (code, _) = run(&["--help"], T);
    assert_eq!(code, Some(0));
}

/// A served file rewritten in place while a client downloads: the origin says so at the
/// default log level (its -q does not hide it) and stops serving the pieces that changed;
/// the client never receives one, stalls on them and keeps a `.part` of original bytes.
#[test]
fn served_file_changed_in_place_is_reported_and_changed_pieces_are_withheld() {
    use std::os::unix::fs::FileExt;
    const SIZE: usize = 1 << 20;
    const TAIL: usize = 64 << 10;
    let dir = TestDir::new("changed");
    let src = dir.source("src.bin", SIZE as u64);
    let original = std::fs::read(&src).unwrap();
    let (mut server, addr) = serve(&dir, &src, &["--up-rate", "200k", "--piece-size", "16K"]);
    let (mut args, out, stats) = get_args(&dir, addr, "c", &["--no-peers"]);
    let k = args.iter().position(|a| a == "--stall-timeout").unwrap();
    args[k + 1] = "3".into();
    let mut client = Node {
        child: procs::spawn(&bin(), &args).unwrap(),
        stats,
        out,
    };
    std::thread::sleep(Duration::from_millis(1000));
    // The last 4 pieces: the origin sends fresh pieces in index order, so these are still
    // to go at 200 kB/s.
    let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
    f.write_all_at(&vec![0xab; TAIL], (SIZE - TAIL) as u64)
        .unwrap();
    let (status, err) = client.finish(deadline(25));
    assert_eq!(status.and_then(|s| s.code()), Some(8), "stalled: {err}");
    assert!(!client.out.exists());
    let part = std::fs::read(tfttp::net::storage::part_path(&client.out)).unwrap();
    assert_eq!(
        part[..SIZE - TAIL],
        original[..SIZE - TAIL],
        "original bytes only"
    );
    assert!(
        part[SIZE - TAIL..].iter().all(|&b| b == 0),
        "no changed piece arrived"
    );
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let (_, log) = server.finish(deadline(10));
    let changed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("changed while served"))
        .collect();
    assert_eq!(changed.len(), 1, "{log}");
    assert!(
        changed[0].contains("src.bin") && changed[0].contains("modified"),
        "{log}"
    );
    assert!(log.contains("4 of 64 pieces"), "{log}");
}

/// An origin out of descriptors leaves new connections in the listener's backlog; they are
/// accepted once descriptors free up, without waiting for yet another connection to wake
/// the listener (edge-triggered readiness says nothing more about a backlog it reported).
#[test]
fn test_backlog_is_accepted_once_descriptors_free_up() {
    let dir = TestDir::new("emfile");
    let src = dir.source("src.bin", 1 << 20);
    let (origin, addr) = serve(&dir, &src, &[]);
    let pid = origin.child.0.id() as libc::pid_t;
    // Leave the origin room for a handful of descriptors, then take them all.
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    let limit = libc::rlimit {
        rlim_cur: open_fds + 4,
        rlim_max: open_fds + 4,
    };
    // SAFETY: prlimit on our own child with a valid rlimit; no old value requested.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let hogs: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    // This client's connection waits in the backlog: the origin has no descriptor for it.
    let mut client = get(&dir, addr, "c", &["--no-peers"]);
    std::thread::sleep(Duration::from_millis(1000));
    drop(hogs);
    client.expect_download(&src, 8);
    drop(origin.child);
}
