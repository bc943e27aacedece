//! End-to-end: `get --output -` writes the verified file to stdout in order, and `--discard`
//! is the verification-only sink that `-o -` used to be.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// `sha256sum`'s digest of `path`.
fn sha256_file(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Runs `sh -c script` with a hard deadline (`timeout`); returns its stdout, stderr and
/// exit code.
fn shell(script: &str, secs: u64) -> (String, String, Option<i32>) {
    let out = Command::new("timeout")
        .args([&secs.to_string(), "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn get_to_stdout_piped_to_sha256sum_matches_the_served_file() {
    let dir = TestDir::new("stdout-sha");
    let src = dir.source("src.bin", 6 << 20);
    // Two clients trading, the origin slow enough that pieces arrive out of order from both.
    let (mut server, addr) = serve(
        &dir,
        &src,
        &[
            "--up-rate",
            "4M",
            "--piece-size",
            "64K",
            "--exit-after",
            "2",
        ],
    );
    let mut other = get(&dir, addr, "other", &["--linger", "3"]);
    // POSIX sh has no pipefail: the get's status is written aside.
    let script = format!(
        "{{ '{}' get {addr} -o - --listen 127.0.0.1:0 --linger 3 --progress-interval 1; \
         echo $? > '{}'; }} | sha256sum",
        bin().display(),
        dir.path("status").display()
    );
    let (out, err, code) = shell(&script, 60);
    assert_eq!(code, Some(0), "{err}");
    let status = std::fs::read_to_string(dir.path("status")).unwrap();
    assert_eq!(status.trim(), "0", "{err}");
    let digest = out.split_whitespace().next().unwrap_or("");
    assert_eq!(digest, sha256_file(&src), "stdout: {out}\nstderr: {err}");
    // The summary went to stderr, not into the data.
    assert!(err.contains("tfttp: received 6291456 bytes"), "{err}");
    other.expect_download(&src, 30);
    server.expect_exit_ok(20);
    // The temporary file was unlinked from the start: nothing of ours is left in $TMPDIR.
    let pid_files = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("tfttp-stdout-"))
        .count();
    assert_eq!(pid_files, 0);
}

#[test]
fn a_slow_reader_gets_every_byte_in_order() {
    let dir = TestDir::new("stdout-slow");
    let src = dir.source("src.bin", 3 << 20);
    let (mut server, addr) = serve(&dir, &src, &["--exit-after", "1"]);
    let mut child = Command::new(bin())
        .args(["get", &addr.to_string(), "-o", "-", "--no-peers", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // The download is over long before the reader starts: the pipe stays full meanwhile.
    std::thread::sleep(Duration::from_millis(1500));
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        stdout.read_to_end(&mut got).unwrap();
        got
    });
    let (status, err) = common::procs::wait(&mut child, deadline(30));
    assert_success(status, &err, "get -o -");
    let got = reader.join().unwrap();
    assert!(
        got == std::fs::read(&src).unwrap(),
        "{} bytes differ",
        got.len()
    );
    server.expect_exit_ok(20);
}

#[test]
fn a_reader_that_goes_away_fails_the_get_with_exit_7() {
    let dir = TestDir::new("stdout-epipe");
    let src = dir.source("src.bin", 2 << 20);
    let (_server, addr) = serve(&dir, &src, &[]);
    let script = format!(
        "{{ '{}' get {addr} -o - --no-peers -q; echo $? > '{}'; }} | head -c 1000 > /dev/null",
        bin().display(),
        dir.path("status").display()
    );
    let (_, err, code) = shell(&script, 30);
    assert_eq!(code, Some(0), "{err}");
    let status = std::fs::read_to_string(dir.path("status")).unwrap();
    assert_eq!(status.trim(), "7", "{err}");
    assert!(err.contains("cannot write to stdout"), "{err}");
}

#[test]
fn stdout_on_a_terminal_is_refused_with_exit_2() {
    let (_ctl, tty) = openpty();
    let out = Command::new(bin())
        .args(["get", "127.0.0.1:9", "-o", "-"])
        .stdin(Stdio::null())
        .stdout(tty)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("terminal"), "{err}");
}

#[test]
fn discard_verifies_and_writes_nothing() {
    let dir = TestDir::new("discard");
    let src = dir.source("src.bin", 1 << 20);
    let (mut server, addr) = serve(&dir, &src, &["--exit-after", "1"]);
    let script = format!("'{}' get {addr} --discard", bin().display());
    let (out, err, code) = shell(&script, 30);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("tfttp: received 1048576 bytes"), "{out}");
    assert!(err.contains("verified 1048576 bytes"), "{err}");
    server.expect_exit_ok(20);
}
