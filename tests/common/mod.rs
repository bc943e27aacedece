//! Helpers for end-to-end tests: real `tfttp` processes on loopback, each bounded in time.

#![allow(dead_code)]

/// A TFTTP peer written from the spec, and the CRC-keeping forgery.
pub mod peer;
/// The binary's process helpers, shared with `tfttp demo` and the benchmarks.
#[path = "../../src/bin/tfttp/procs.rs"]
pub mod procs;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use procs::json_number;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tfttp"))
}

/// A scratch directory removed when the test ends.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let p = std::env::temp_dir().join(format!("tfttp-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TestDir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A source file of `size` seeded bytes.
    pub fn source(&self, name: &str, size: u64) -> PathBuf {
        let p = self.path(name);
        procs::write_test_file(&p, size, size ^ 0x1234_5678).unwrap();
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // A failed test keeps its files (stats, outputs) for the post-mortem.
        if std::thread::panicking() {
            eprintln!("kept {} (the test failed)", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub struct Node {
    pub child: procs::Running,
    pub stats: PathBuf,
    pub out: PathBuf,
}

impl Node {
    /// Waits for exit (killing at `deadline`); returns the status and stderr.
    pub fn finish(&mut self, deadline: Instant) -> (Option<ExitStatus>, String) {
        procs::wait(&mut self.child, deadline)
    }

    /// Waits for a successful exit and checks the output equals `src`.
    #[track_caller]
    pub fn expect_download(&mut self, src: &Path, secs: u64) {
        let (status, err) = self.finish(deadline(secs));
        assert_success(status, &err, &self.out.display().to_string());
        assert_same(src, &self.out);
    }

    /// Waits for a successful exit.
    #[track_caller]
    pub fn expect_exit_ok(&mut self, secs: u64) {
        let (status, err) = self.finish(deadline(secs));
        assert_success(status, &err, "node");
    }

    pub fn stat(&self, key: &str) -> f64 {
        let text = std::fs::read_to_string(&self.stats).unwrap_or_default();
        json_number(&text, key).unwrap_or_else(|| panic!("no {key} in {text}"))
    }
}

pub fn serve(dir: &TestDir, file: &Path, extra: &[&str]) -> (Node, SocketAddr) {
    let ready = dir.path("server.addr");
    let stats = dir.path("server.json");
    let mut args = strings(&["--stats", &stats.display().to_string(), "-q"]);
    args.extend(strings(extra));
    let (child, addr) =
        procs::start_origin(&bin(), file, &ready, &args, Duration::from_secs(20)).unwrap();
    (
        Node {
            child,
            stats,
            out: PathBuf::new(),
        },
        addr,
    )
}

/// An origin of every path in `paths` (files and directories, `serve PATH...`).
pub fn serve_paths(dir: &TestDir, paths: &[&Path], extra: &[&str]) -> (Node, SocketAddr) {
    let mut rest: Vec<String> = paths[1..].iter().map(|p| p.display().to_string()).collect();
    rest.extend(strings(extra));
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    serve(dir, paths[0], &rest)
}

/// An origin whose upload is the bottleneck: `up_rate`, 64 KiB pieces (enough of them to
/// trade in a small file), exiting once `clients` clients completed.
pub fn serve_slow(dir: &TestDir, file: &Path, up_rate: &str, clients: u32) -> (Node, SocketAddr) {
    let n = clients.to_string();
    serve(
        dir,
        file,
        &[
            "--up-rate",
            up_rate,
            "--piece-size",
            "64K",
            "--exit-after",
            &n,
        ],
    )
}

pub fn get(dir: &TestDir, server: SocketAddr, name: &str, extra: &[&str]) -> Node {
    let (args, out, stats) = get_args(dir, server, name, extra);
    Node {
        child: procs::spawn(&bin(), &args).unwrap(),
        stats,
        out,
    }
}

/// The arguments `get` runs with, and its output and stats paths.
pub fn get_args(
    dir: &TestDir,
    server: SocketAddr,
    name: &str,
    extra: &[&str],
) -> (Vec<String>, PathBuf, PathBuf) {
    let out = dir.path(&format!("{name}.out"));
    let stats = dir.path(&format!("{name}.json"));
    let mut args = strings(&[
        "get",
        &server.to_string(),
        "--output",
        &out.display().to_string(),
    ]);
    args.extend(strings(&[
        "--listen",
        "127.0.0.1:0",
        "--stats",
        &stats.display().to_string(),
    ]));
    args.extend(strings(&["-q", "--stall-timeout", "20"]));
    args.extend(strings(extra));
    (args, out, stats)
}

/// Runs the binary to completion with a deadline; returns (exit code, stderr).
pub fn run(args: &[&str], timeout: Duration) -> (Option<i32>, String) {
    let mut child = procs::spawn(&bin(), &strings(args)).unwrap();
    let (status, err) = procs::wait(&mut child, Instant::now() + timeout);
    (status.and_then(|s| s.code()), err)
}

#[track_caller]
pub fn assert_same(a: &Path, b: &Path) {
    assert!(
        procs::same_contents(a, b).unwrap_or(false),
        "{} differs from {}",
        b.display(),
        a.display()
    );
}

#[track_caller]
pub fn assert_success(status: Option<ExitStatus>, err: &str, what: &str) {
    assert!(
        status.is_some_and(|s| s.success()),
        "{what} failed ({status:?}): {err}"
    );
}

pub fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// A loopback port nobody listens on right now (another process may take it before use).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A pseudo-terminal: (controller, the child's side).
pub fn openpty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut ctl, mut tty) = (-1, -1);
    // SAFETY: openpty fills two descriptors we then own.
    let rc = unsafe {
        libc::openpty(
            &mut ctl,
            &mut tty,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    unsafe {
        (
            std::fs::File::from_raw_fd(ctl),
            std::fs::File::from_raw_fd(tty),
        )
    }
}
