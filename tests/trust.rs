//! End-to-end, protocol version 2 (issues 13 and 14): a piece forged to keep its CRC-32 is
//! refused by its BLAKE3 hash and its sender banned; a swarm with a secret admits only
//! nodes that hold it; a wrong expected digest or a file name the server does not serve
//! stops `get` with exit 5 before it downloads anything.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::peer::{self, client_hello, read_frame};
use common::*;
use tfttp::manifest::{self, Manifest};
use tfttp::wire;

const T: Duration = Duration::from_secs(30);

/// The digest `serve` prints for `src` with its default piece size.
fn digest_of(src: &Path) -> String {
    let data = std::fs::read(src).unwrap();
    let m = Manifest::build(&data, manifest::auto_piece_size(data.len() as u64)).unwrap();
    manifest::to_hex(m.digest())
}

/// A secret file of `bytes`.
fn secret(dir: &TestDir, name: &str, bytes: &[u8]) -> String {
    let p = dir.path(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

/// `get` from `addr` (plus `/NAME` when given) into `name.out`; (exit code, stderr).
fn get_exit(dir: &TestDir, server: &str, name: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = dir.path(&format!("{name}.out")).display().to_string();
    let mut args = vec!["get", server, "-o", &out, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    run(&args, T)
}

#[track_caller]
fn assert_nothing_written(dir: &TestDir, name: &str) {
    let out = dir.path(&format!("{name}.out"));
    assert!(!out.exists(), "{} exists", out.display());
    let part = dir.path(&format!("{name}.out.part"));
    assert!(!part.exists(), "{} exists", part.display());
}

/// Issue 13, case 1: a peer that claims every piece and sends each one changed but with
/// its CRC-32 kept. Version 1 accepted such pieces and spread them; now every one fails its
/// BLAKE3 hash, the forger is banned at the first, and both files are byte-identical.
#[test]
fn forged_piece_with_right_crc_is_refused_and_sender_banned() {
    let dir = TestDir::new("forged");
    let src = dir.source("src.bin", 2 << 20);
    // The forger counts as a third complete client.
    let (mut server, addr) = serve_slow(&dir, &src, "1M", 3);
    let served = peer::spawn_forger(addr, std::fs::read(&src).unwrap());
    let mut a = get(&dir, addr, "a", &["--linger", "0"]);
    let mut b = get(&dir, addr, "b", &["--linger", "0"]);
    a.expect_download(&src, 40);
    b.expect_download(&src, 40);
    let forged = served.load(Ordering::Relaxed);
    assert!(forged >= 1, "the forger was never asked for a piece");
    let corrupt = [a.stat("corrupt_pieces"), b.stat("corrupt_pieces")];
    assert!(
        corrupt.iter().sum::<f64>() >= 1.0,
        "{forged} forged pieces sent, none refused: {corrupt:?}"
    );
    // Banned after the first: a client never verifies (or refuses) a second one.
    assert!(corrupt.iter().all(|&c| c <= 1.0), "{corrupt:?}");
    server.expect_exit_ok(15);
}

/// Reads frames until the connection ends: their types.
fn frames_until_close(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut types = Vec::new();
    while let Some((ty, _)) = read_frame(s) {
        types.push(ty);
    }
    types
}

/// Issue 13, case 5: with `--secret-file` on both sides a swarm of one origin and two
/// clients completes (one of them naming the file and its digest); a client without the
/// secret or with another one exits 5 and learns nothing; a raw connection gets its HELLO
/// and ERROR 10, never a MANIFEST; and a lurker that never proves itself does not delay the
/// origin's exit.
#[test]
fn secret_swarm_admits_only_holders_of_the_secret() {
    let dir = TestDir::new("secret");
    let src = dir.source("src.bin", 2 << 20);
    let good = secret(&dir, "good.key", b"correct horse battery staple");
    let bad = secret(&dir, "bad.key", b"incorrect horse battery staple");
    let digest = digest_of(&src);
    let (mut server, addr) = serve(
        &dir,
        &src,
        &[
            "--up-rate",
            "2M",
            "--exit-after",
            "2",
            "--secret-file",
            &good,
        ],
    );

    // A raw client from the spec, without the secret: HELLO, then ERROR 10, nothing else.
    let mut s = peer::connect(addr);
    s.write_all(&client_hello(77, 0, 0, false, "")).unwrap();
    let types = frames_until_close(&mut s);
    assert_eq!(types, vec![wire::ty::HELLO, wire::ty::ERROR]);
    // A lurker that announces AUTH and never sends it: never registered.
    let mut lurker = peer::connect(addr);
    lurker.write_all(&client_hello(78, 0, 0, true, "")).unwrap();

    let (code, err) = get_exit(&dir, &addr.to_string(), "none", &[]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("--secret-file"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_nothing_written(&dir, "none");

    let (code, err) = get_exit(&dir, &addr.to_string(), "wrong", &["--secret-file", &bad]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("secret"), "{err}");
    assert_nothing_written(&dir, "wrong");

    let named = format!("{addr}/src.bin");
    let expect = format!("blake3:{digest}");
    let mut a = get(&dir, addr, "a", &["--secret-file", &good, "--linger", "0"]);
    let out_b = dir.path("b.out");
    let mut b = Node {
        child: common::procs::spawn(
            &bin(),
            &[
                "get",
                &named,
                "-o",
                &out_b.display().to_string(),
                "--listen",
                "127.0.0.1:0",
                "--stats",
                &dir.path("b.json").display().to_string(),
                "-q",
                "--secret-file",
                &good,
                "--expect-digest",
                &expect,
                "--linger",
                "0",
            ]
            .map(String::from),
        )
        .unwrap(),
        stats: dir.path("b.json"),
        out: out_b,
    };
    a.expect_download(&src, 40);
    b.expect_download(&src, 40);
    // The two traded with each other: peer AUTH works too.
    let from_peers = a.stat("bytes_from_peers") + b.stat("bytes_from_peers");
    assert!(from_peers > 0.0, "no piece went between the clients");
    let t0 = Instant::now();
    server.expect_exit_ok(15);
    assert!(t0.elapsed() < Duration::from_secs(15));
    drop(lurker);
}

/// Issue 14: `--expect-digest` that does not match the server's stops the download before
/// a byte is written, with exit 5 and the server's digest in the message.
#[test]
fn wrong_expected_digest_fails_with_exit_5_before_downloading() {
    let dir = TestDir::new("digest");
    let src = dir.source("src.bin", 1 << 20);
    let digest = digest_of(&src);
    let (mut server, addr) = serve(&dir, &src, &["--exit-after", "1"]);
    let wrong = "0".repeat(64);
    let (code, err) = get_exit(&dir, &addr.to_string(), "x", &["--expect-digest", &wrong]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains(&digest) && err.contains(&wrong), "{err}");
    assert_nothing_written(&dir, "x");
    // The right one, without its prefix, downloads.
    let mut c = get(
        &dir,
        addr,
        "c",
        &["--expect-digest", &digest, "--linger", "0"],
    );
    c.expect_download(&src, 30);
    server.expect_exit_ok(10);
}

/// Issue 14: a name that is not the served file's gets ERROR 11 and exit 5; the file's own
/// name downloads.
#[test]
fn other_file_name_fails_with_exit_5() {
    let dir = TestDir::new("path");
    let src = dir.source("src.bin", 1 << 20);
    let (mut server, addr): (Node, SocketAddr) = serve(&dir, &src, &["--exit-after", "1"]);
    let (code, err) = get_exit(&dir, &format!("{addr}/other.bin"), "x", &[]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("other.bin"), "{err}");
    assert!(
        !err.contains("src.bin"),
        "the refusal names no served file: {err}"
    );
    assert_nothing_written(&dir, "x");
    let (code, err) = get_exit(
        &dir,
        &format!("{addr}/src.bin"),
        "y",
        &["-q", "--linger", "0"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_same(&src, &dir.path("y.out"));
    server.expect_exit_ok(10);
}

/// `--secret-file` shorter than 16 bytes or unreadable: exit 2, nothing started.
#[test]
fn short_or_missing_secret_file_is_a_usage_error() {
    let dir = TestDir::new("shortsecret");
    let short = secret(&dir, "short.key", b"too short");
    let src = dir.source("src.bin", 1000);
    let src = src.display().to_string();
    for args in [
        vec!["serve", src.as_str(), "--secret-file", short.as_str()],
        vec![
            "get",
            "127.0.0.1:1",
            "-o",
            "x",
            "--secret-file",
            short.as_str(),
        ],
        vec!["serve", src.as_str(), "--secret-file", "/nonexistent/key"],
    ] {
        let (code, err) = run(&args, T);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("--secret-file"), "{err}");
    }
}
