//! End-to-end, issue 13's resume target: after SIGKILL at any point, rerunning the same
//! `get` receives at most the missing bytes plus 10%. Real processes on loopback: a `get`
//! is killed when its `--metrics` page shows a given share of the pieces verified, its
//! `.part` is measured against the source (a piece counts as there when its bytes equal the
//! source's, which is when its BLAKE3 hash passes the rerun's check), and the rerun's
//! received payload is read from its `--stats` and from what the origin sent. Also: a killed
//! client of a swarm, a `.part` truncated and corrupted between runs, another file's `.part`,
//! and the state just before the rename. `tools/resume.py` measures the same at 64 MiB.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use tfttp::net::storage::part_path;

/// Pieces of 64 KiB: 256 of them in the 16 MiB file, so a kill point lands within about a
/// piece of its target.
const PIECE: usize = 64 << 10;
const SIZE: usize = 16 << 20;
const UP: &str = "tfttp_payload_bytes_total{direction=\"up\",source=\"self\"}";
const DOWN_PEERS: &str = "tfttp_payload_bytes_total{direction=\"down\",source=\"peers\"}";

/// One scrape of a node's `--metrics` page on `port` (empty if it is not answering).
fn scrape(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut page = String::new();
    let _ = s.read_to_string(&mut page);
    page
}

/// The sample named exactly `name` (labels included) in a scrape.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Scrapes `port` until `ok` holds for the page (`None` at `until`).
fn scrape_until(port: u16, until: Instant, ok: impl Fn(&str) -> bool) -> Option<String> {
    loop {
        let page = scrape(port);
        if ok(&page) {
            return Some(page);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Which pieces of `part` hold the source's bytes; a missing or short `.part` holds none
/// past its end.
fn held(part: &Path, src: &[u8]) -> Vec<bool> {
    let part = std::fs::read(part).unwrap_or_default();
    src.chunks(PIECE)
        .enumerate()
        .map(|(i, want)| part.get(i * PIECE..i * PIECE + want.len()) == Some(want))
        .collect()
}

/// Bytes of the pieces `part` lacks: what a rerun must fetch.
fn missing(part: &Path, src: &[u8]) -> u64 {
    src.chunks(PIECE)
        .zip(held(part, src))
        .filter(|(_, h)| !h)
        .map(|(p, _)| p.len() as u64)
        .sum()
}

/// An origin with its upload capped at `rate` and its metrics on a port of its own.
fn origin(dir: &TestDir, src: &Path, rate: &str) -> (Node, SocketAddr, u16) {
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let (node, addr) = serve(
        dir,
        src,
        &[
            "--up-rate",
            rate,
            "--piece-size",
            "64K",
            "--metrics",
            &metrics,
        ],
    );
    (node, addr, port)
}

/// The origin's payload sent so far, once it has no connection left (a killed client's is
/// closed by its kernel; the origin may still have been writing into it).
#[track_caller]
fn origin_sent_when_idle(port: u16) -> f64 {
    let page = scrape_until(port, deadline(10), |p| {
        sample(p, "tfttp_connections") == Some(0.0)
    })
    .expect("the origin's connections close");
    sample(&page, UP).unwrap()
}

/// A `get` into `name.out`, not quiet (its stderr says what it resumed), with its metrics
/// on a port of its own.
fn start_get(dir: &TestDir, addr: SocketAddr, name: &str, extra: &[&str]) -> (Node, u16) {
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let mut more = vec!["--metrics", metrics.as_str()];
    more.extend_from_slice(extra);
    let (mut args, out, stats) = get_args(dir, addr, name, &more);
    args.retain(|a| a != "-q");
    let child = procs::spawn(&bin(), &args).unwrap();
    (Node { child, stats, out }, port)
}

/// SIGKILLs `node` once its metrics show `pieces` verified (at once for 0). Returns the
/// pieces it had verified at the last scrape and what it had from peers.
#[track_caller]
fn kill_at(node: &mut Node, port: u16, pieces: u32) -> (u32, f64) {
    let mut seen = (0, 0.0);
    if pieces > 0 {
        let page = scrape_until(port, deadline(20), |p| {
            sample(p, "tfttp_pieces_verified").is_some_and(|v| v >= pieces as f64)
        })
        .expect("the download reaches its kill point");
        seen = (
            sample(&page, "tfttp_pieces_verified").unwrap() as u32,
            sample(&page, DOWN_PEERS).unwrap_or(0.0),
        );
    }
    node.child.kill().unwrap();
    let (status, _) = node.finish(deadline(5));
    assert!(status.is_some_and(|s| s.code().is_none()), "{status:?}");
    assert!(!node.out.exists(), "killed after the rename");
    seen
}

/// Everything the rerun received as piece payload: verified, dropped duplicates, and
/// pieces that failed their hash.
fn received(node: &Node) -> f64 {
    node.stat("bytes_from_origin")
        + node.stat("bytes_from_peers")
        + node.stat("bytes_discarded")
        + node.stat("corrupt_pieces") * PIECE as f64
}

/// Reruns the same `get` to completion: it must produce the source, and receive at most
/// the missing bytes plus 10%. Returns (missing, received, stderr).
#[track_caller]
fn rerun(dir: &TestDir, addr: SocketAddr, name: &str, src: &Path, extra: &[&str]) -> Rerun {
    let data = std::fs::read(src).unwrap();
    let part = part_path(&dir.path(&format!("{name}.out")));
    let missing = missing(&part, &data);
    let kept = held(&part, &data).iter().filter(|&&h| h).count();
    let mut more = vec!["--linger", "0"];
    more.extend_from_slice(extra);
    let (mut node, _) = start_get(dir, addr, name, &more);
    let (status, err) = node.finish(deadline(30));
    assert_success(status, &err, name);
    assert_same(src, &node.out);
    assert!(!part.exists(), "{err}");
    let got = received(&node);
    assert!(
        got * 10.0 <= missing as f64 * 11.0,
        "{name}: the rerun received {got} bytes, {missing} were missing: {err}"
    );
    if kept > 0 {
        let n = data.len().div_ceil(PIECE);
        assert!(
            err.contains(&format!(
                "resuming {}: {kept} of {n} pieces",
                part.display()
            )),
            "the rerun keeps the {kept} pieces the .part holds: {err}"
        );
    }
    Rerun {
        missing,
        got,
        err,
        out: node.out,
    }
}

struct Rerun {
    missing: u64,
    got: f64,
    err: String,
    out: PathBuf,
}

/// One client-server download killed as it starts (before and just after its manifest),
/// at 10, 30, 50, 70 and 90% of its pieces and 3 pieces before its last (99%), each rerun
/// to completion: every rerun receives at most the missing bytes plus 10%, by its own count
/// and by the origin's. A kill lands up to a piece or two past its mark: the `.part` is
/// measured after it.
#[test]
fn sigkill_at_any_point_then_rerun_receives_at_most_missing_plus_10_percent() {
    let dir = TestDir::new("resume-points");
    let src = dir.source("src.bin", SIZE as u64);
    let (_origin, addr, oport) = origin(&dir, &src, "16M");
    let n = (SIZE / PIECE) as u32;
    // (pieces to wait for, or milliseconds after the start when 0 pieces)
    let points = [
        (0, 0),
        (0, 40),
        (n / 10, 0),
        (n * 3 / 10, 0),
        (n / 2, 0),
        (n * 7 / 10, 0),
        (n * 9 / 10, 0),
        (n - 3, 0),
    ];
    for (k, &(at, ms)) in points.iter().enumerate() {
        let name = format!("p{k}");
        let (mut first, port) = start_get(&dir, addr, &name, &["--no-peers"]);
        std::thread::sleep(Duration::from_millis(ms));
        kill_at(&mut first, port, at);
        let before = origin_sent_when_idle(oport);
        let r = rerun(&dir, addr, &name, &src, &["--no-peers"]);
        let sent = origin_sent_when_idle(oport) - before;
        assert!(
            sent * 10.0 <= r.missing as f64 * 11.0,
            "{name}: the origin sent the rerun {sent} bytes, {} were missing",
            r.missing
        );
        eprintln!(
            "killed at {at}/{n} pieces (+{ms} ms): missing {}, rerun received {} (origin sent \
             {sent})",
            r.missing, r.got
        );
        let _ = std::fs::remove_file(r.out);
    }
}

/// A swarm of three where one client, killed halfway after it got pieces from peers, is
/// rerun while the others still trade or seed: it receives at most the missing bytes plus
/// 10% (duplicates from the endgame included), and everyone ends with the file.
#[test]
fn swarm_client_killed_after_trading_resumes_within_the_bound() {
    let dir = TestDir::new("resume-swarm");
    let src = dir.source("src.bin", SIZE as u64);
    let (mut server, addr, _) = origin(&dir, &src, "8M");
    let peers = ["--up-rate", "40M", "--linger", "10"];
    let mut a = get(&dir, addr, "a", &peers);
    let mut b = get(&dir, addr, "b", &peers);
    let (mut c, port) = start_get(&dir, addr, "c", &["--up-rate", "40M"]);
    let (_, from_peers) = kill_at(&mut c, port, (SIZE / PIECE / 2) as u32);
    assert!(from_peers > 0.0, "c got nothing from peers before the kill");
    let r = rerun(&dir, addr, "c", &src, &["--up-rate", "40M"]);
    eprintln!(
        "swarm: missing {}, rerun received {}: {}",
        r.missing, r.got, r.err
    );
    a.expect_download(&src, 30);
    b.expect_download(&src, 30);
    let _ = server.child.kill();
}

/// Between runs the `.part` is cut mid-piece and three of its verified pieces get a flipped
/// byte: the rerun keeps only the pieces that still verify, fetches the rest (within the
/// bound), and no damaged byte reaches the file.
#[test]
fn truncated_and_corrupted_part_refetches_the_bad_pieces_only() {
    let dir = TestDir::new("resume-damaged");
    let src = dir.source("src.bin", SIZE as u64);
    let data = std::fs::read(&src).unwrap();
    let (_origin, addr, _) = origin(&dir, &src, "16M");
    let (mut first, port) = start_get(&dir, addr, "d", &["--no-peers"]);
    kill_at(&mut first, port, (SIZE / PIECE * 7 / 10) as u32);
    let part = part_path(&first.out);
    let good: Vec<usize> = held(&part, &data)
        .iter()
        .enumerate()
        .filter(|(_, h)| **h)
        .map(|(i, _)| i)
        .collect();
    assert!(good.len() > 20, "{} pieces held", good.len());
    let f = std::fs::OpenOptions::new().write(true).open(&part).unwrap();
    use std::os::unix::fs::FileExt;
    for &i in &good[..3] {
        let at = (i * PIECE + 1000) as u64;
        f.write_all_at(&[data[i * PIECE + 1000] ^ 0xff], at)
            .unwrap();
    }
    f.set_len((SIZE * 45 / 100) as u64).unwrap();
    drop(f);
    let held_now = held(&part, &data).iter().filter(|&&h| h).count();
    assert!(held_now > 0 && held_now < good.len() - 3, "{held_now}");
    let r = rerun(&dir, addr, "d", &src, &["--no-peers"]);
    assert!(r.err.contains("it held"), "{}", r.err);
    eprintln!("damaged: missing {}, rerun received {}", r.missing, r.got);
}

/// A `.part` left by a download of another file of the same size (another file id, so
/// nothing in it verifies): the rerun says so in one line, downloads the whole file and
/// ends with this file's bytes, none of the other's.
#[test]
fn part_of_another_file_is_restarted_with_a_clear_message() {
    let dir = TestDir::new("resume-other");
    let other = dir.source("other.bin", SIZE as u64 / 4);
    let src = dir.path("src.bin");
    procs::write_test_file(&src, SIZE as u64 / 4, 99).unwrap();
    let (mut first_origin, addr, _) = origin(&dir, &other, "16M");
    let (mut first, port) = start_get(&dir, addr, "o", &["--no-peers"]);
    kill_at(&mut first, port, (SIZE / PIECE / 8) as u32);
    let _ = first_origin.child.kill();
    let (_origin, addr, _) = origin(&dir, &src, "16M");
    let r = rerun(&dir, addr, "o", &src, &["--no-peers"]);
    assert_eq!(r.missing, SIZE as u64 / 4);
    let said: Vec<&str> = r
        .err
        .lines()
        .filter(|l| l.contains("holds no piece of this file"))
        .collect();
    assert_eq!(said.len(), 1, "{}", r.err);
    assert!(said[0].contains("another file's"), "{}", r.err);
}

/// The state just before the rename, reached by a real run: a file created at the output
/// while the download runs makes `get` keep the complete `.part` (exit 7). Once the user
/// removes it, the rerun verifies every piece, receives nothing, and renames.
#[test]
fn complete_part_left_before_the_rename_is_renamed_without_a_byte_received() {
    let dir = TestDir::new("resume-complete");
    let src = dir.source("src.bin", SIZE as u64 / 4);
    let (_origin, addr, _) = origin(&dir, &src, "16M");
    let (mut first, port) = start_get(&dir, addr, "r", &["--no-peers", "--linger", "0"]);
    scrape_until(port, deadline(20), |p| {
        sample(p, "tfttp_pieces_verified").is_some_and(|v| v >= 1.0)
    })
    .expect("the download starts");
    std::fs::write(&first.out, b"the user's own").unwrap();
    let (status, err) = first.finish(deadline(20));
    assert_eq!(status.and_then(|s| s.code()), Some(7), "{err}");
    assert!(err.contains("appeared during the download"), "{err}");
    assert_eq!(std::fs::read(&first.out).unwrap(), b"the user's own");
    std::fs::remove_file(&first.out).unwrap();
    let r = rerun(&dir, addr, "r", &src, &["--no-peers"]);
    assert_eq!((r.missing, r.got), (0, 0.0));
}

/// A `get` whose output has no room for the file (its size limit, RLIMIT_FSIZE, below the
/// file's size: the same failure to reserve the space as a full disk, EFBIG for ENOSPC;
/// a full tmpfs was checked by hand, README "Faults and attacks").
fn get_without_room(
    dir: &TestDir,
    addr: SocketAddr,
    name: &str,
    room: u64,
) -> (Option<i32>, String) {
    use std::os::unix::process::CommandExt;
    let (mut args, _, _) = get_args(dir, addr, name, &["--no-peers"]);
    args.retain(|a| a != "-q");
    let mut cmd = std::process::Command::new(bin());
    cmd.args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: only async-signal-safe calls (setrlimit, signal) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: room,
                rlim_max: room,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = procs::Running(cmd.spawn().unwrap());
    let (status, err) = procs::wait(&mut child, deadline(20));
    (status.and_then(|s| s.code()), err)
}

/// No room for the file: a fresh `get` fails with exit 7 and leaves no `.part`; one with
/// an earlier run's leftover (here a `.part` cut to a quarter) fails the same way but keeps
/// the leftover as it was and says so, and once there is room the rerun keeps its pieces.
#[test]
fn no_room_for_the_file_keeps_the_leftover_for_a_later_resume() {
    let dir = TestDir::new("resume-noroom");
    let src = dir.source("src.bin", SIZE as u64 / 4);
    let data = std::fs::read(&src).unwrap();
    let (_origin, addr, _) = origin(&dir, &src, "16M");
    let room = SIZE as u64 / 8;
    let (code, err) = get_without_room(&dir, addr, "fresh", room);
    assert_eq!(code, Some(7), "{err}");
    assert!(err.contains("cannot reserve"), "{err}");
    assert!(!part_path(&dir.path("fresh.out")).exists(), "{err}");

    let part = part_path(&dir.path("left.out"));
    let quarter = &data[..data.len() / 4];
    std::fs::write(&part, quarter).unwrap();
    let (code, err) = get_without_room(&dir, addr, "left", room);
    assert_eq!(code, Some(7), "{err}");
    assert!(
        err.contains(&format!(
            "{} is kept: the same get resumes it",
            part.display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&part).unwrap(),
        quarter,
        "the leftover is as it was"
    );
    let r = rerun(&dir, addr, "left", &src, &["--no-peers"]);
    assert_eq!(r.missing, (data.len() - quarter.len()) as u64);
}

/// The origin goes away mid-download: the client stalls (exit 8), keeps its `.part` and
/// says the same `get` resumes it; against the origin restarted on another port, the rerun
/// receives only what is missing.
#[test]
fn origin_gone_keeps_the_part_and_the_restarted_origin_resumes_it() {
    let dir = TestDir::new("resume-gone");
    let src = dir.source("src.bin", SIZE as u64 / 2);
    let (mut gone, addr, _) = origin(&dir, &src, "8M");
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let (mut args, out, stats) = get_args(&dir, addr, "g", &["--no-peers", "--metrics", &metrics]);
    let k = args.iter().position(|a| a == "--stall-timeout").unwrap();
    args[k + 1] = "2".into();
    let mut c = Node {
        child: procs::spawn(&bin(), &args).unwrap(),
        stats,
        out,
    };
    let n = (SIZE / 2 / PIECE) as f64;
    scrape_until(port, deadline(20), |p| {
        sample(p, "tfttp_pieces_verified").is_some_and(|v| v >= n * 0.3)
    })
    .expect("the download gets going");
    gone.child.kill().unwrap();
    let (status, err) = c.finish(deadline(20));
    assert_eq!(status.and_then(|s| s.code()), Some(8), "{err}");
    let part = part_path(&c.out);
    assert!(
        err.contains(&format!(
            "{} is kept: the same get resumes it",
            part.display()
        )),
        "{err}"
    );
    let held = held(&part, &std::fs::read(&src).unwrap());
    assert!(held.iter().filter(|&&h| h).count() as f64 >= n * 0.3);
    let (_origin, addr, _) = origin(&dir, &src, "16M");
    rerun(&dir, addr, "g", &src, &["--no-peers"]);
}

/// A rerun that fails before the manifest arrives (here nothing listens: exit 4) leaves an
/// earlier run's `.part` as it was; it removed it, and every verified piece with it.
#[test]
fn rerun_that_cannot_reach_the_origin_keeps_the_earlier_part() {
    let dir = TestDir::new("resume-unreachable");
    let src = dir.source("src.bin", SIZE as u64 / 4);
    let data = std::fs::read(&src).unwrap();
    let out = dir.path("u.out");
    let part = part_path(&out);
    std::fs::write(&part, &data[..data.len() / 2]).unwrap();
    let nobody = format!("127.0.0.1:{}", free_port());
    let (code, err) = run(
        &["get", &nobody, "-o", &out.display().to_string()],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains(&format!(
            "{} is kept: the same get resumes it",
            part.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read(&part).unwrap(), &data[..data.len() / 2]);
    let (_origin, addr, _) = origin(&dir, &src, "16M");
    let r = rerun(&dir, addr, "u", &src, &["--no-peers"]);
    assert_eq!(r.missing, (data.len() / 2) as u64);
}
