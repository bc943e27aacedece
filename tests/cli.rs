//! End-to-end: the command line's conventions. Each exit status a script can see, the
//! progress and completion lines (on a pipe and on a pseudo-terminal), `--stats` next to
//! things it must not replace, and the help text.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tfttp::manifest::Manifest;
use tfttp::wire::{self, Hello, Message, Role};

const T: Duration = Duration::from_secs(20);

/// A fake origin on loopback: it says HELLO, sends `manifest` as its MANIFEST body, then
/// sends nothing more for `hold` and closes.
fn fake_origin(manifest: Vec<u8>, file_id: u64, hold: Duration) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let mut buf = Vec::new();
        Message::Hello(Hello {
            role: Role::Origin,
            auth: false,
            node_id: 7,
            file_id,
            listen_port: 0,
            nonce: [1; wire::NONCE_LEN],
            path: "",
        })
        .emit(&mut buf);
        Message::Manifest(&manifest).emit(&mut buf);
        let _ = s.write_all(&buf);
        // Read and drop what the client sends, so it never blocks on a full buffer.
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let until = Instant::now() + hold;
        let mut sink = [0u8; 4096];
        while Instant::now() < until {
            if let Ok(0) = s.read(&mut sink) {
                break;
            }
        }
    });
    addr
}

fn out_arg(dir: &TestDir) -> String {
    dir.path("out.bin").display().to_string()
}

#[test]
fn exit_3_when_the_host_does_not_resolve() {
    let dir = TestDir::new("resolve");
    // RFC 2606: .invalid never resolves.
    let (code, err) = run(
        &["get", "no-such-host.invalid:6880", "-o", &out_arg(&dir)],
        T,
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("resolve"), "{err}");
}

#[test]
fn exit_4_when_nothing_listens() {
    let dir = TestDir::new("refused");
    let server = format!("127.0.0.1:{}", free_port());
    let (code, err) = run(&["get", &server, "-o", &out_arg(&dir)], T);
    assert_eq!(code, Some(4), "{err}");
}

#[test]
fn exit_6_when_the_manifest_does_not_decode() {
    let dir = TestDir::new("badmanifest");
    let addr = fake_origin(vec![0xff; 3], 1, Duration::from_secs(5));
    let (code, err) = run(&["get", &addr.to_string(), "-o", &out_arg(&dir)], T);
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("bad manifest"), "{err}");
}

#[test]
fn exit_8_when_no_piece_arrives() {
    let dir = TestDir::new("stall");
    let m = Manifest::build(&[1u8; 100_000], 16 << 10).unwrap();
    let mut body = Vec::new();
    m.encode(&mut body);
    let addr = fake_origin(body, m.id(), Duration::from_secs(15));
    let (code, err) = run(
        &[
            "get",
            &addr.to_string(),
            "-o",
            &out_arg(&dir),
            "--stall-timeout",
            "1",
        ],
        T,
    );
    assert_eq!(code, Some(8), "{err}");
    assert!(!dir.path("out.bin").exists());
}

#[test]
fn exit_2_for_exit_after_0() {
    let (code, err) = run(&["serve", "x", "--exit-after", "0"], T);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--exit-after"), "{err}");
}

/// Numbers out of range are usage errors, not panics: `--linger 18446744073709551615`
/// panicked adding it to an instant (exit 101) and left a complete `.part` (issue 13).
#[test]
fn exit_2_for_numbers_out_of_range() {
    let huge = u64::MAX.to_string();
    for (opt, v) in [
        ("--linger", huge.as_str()),
        ("--stall-timeout", huge.as_str()),
        ("--stall-timeout", "0"),
        ("--progress-interval", huge.as_str()),
        ("--max-peers", huge.as_str()),
    ] {
        let (code, err) = run(&["get", "127.0.0.1:9", "-o", "/nonexistent/x", opt, v], T);
        assert_eq!(code, Some(2), "{opt} {v}: {err}");
        assert!(err.contains(opt) && err.contains("out of range"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// A download slow enough to be interrupted: 4 MiB at 200 kB/s. The client starts with
/// every stop signal at its default disposition (the test runner's may differ: a background
/// job ignores SIGINT and SIGQUIT, `nohup` ignores SIGHUP), and `ignored` ignored.
fn slow_download(dir: &TestDir, ignored: Option<i32>) -> (Node, Node) {
    use std::os::unix::process::CommandExt;
    let src = dir.source("src.bin", 4 << 20);
    let (server, addr) = serve(dir, &src, &["--up-rate", "200k"]);
    let (args, out, stats) = get_args(dir, addr, "c", &[]);
    let mut cmd = Command::new(bin());
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (signal) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for sig in tfttp::net::STOP_SIGNALS {
                let how = if Some(sig) == ignored {
                    libc::SIG_IGN
                } else {
                    libc::SIG_DFL
                };
                libc::signal(sig, how);
            }
            Ok(())
        });
    }
    let child = procs::Running(cmd.spawn().unwrap());
    (server, Node { child, stats, out })
}

fn interrupted_with(sig: i32, name: &str) -> Option<i32> {
    let dir = TestDir::new(name);
    let (_server, mut client) = slow_download(&dir, None);
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: a signal to our own child, still running (it has 20 s left).
    unsafe { libc::kill(client.child.id() as i32, sig) };
    let (status, err) = client.finish(deadline(10));
    assert!(
        tfttp::net::storage::part_path(&client.out).exists(),
        "the .part is kept for the next run to resume: {err}"
    );
    status.and_then(|s| s.code())
}

#[test]
fn exit_130_on_sigint_and_143_on_sigterm() {
    assert_eq!(interrupted_with(libc::SIGINT, "sigint"), Some(130));
    assert_eq!(interrupted_with(libc::SIGTERM, "sigterm"), Some(143));
}

/// A closed terminal (SIGHUP) and Ctrl-\ (SIGQUIT) stop a `get` as SIGTERM does: the
/// `.part` kept for resuming, the stats written, 128 + the signal (they killed it before,
/// SIGQUIT with a core dump).
#[test]
fn exit_129_on_sighup_and_131_on_sigquit() {
    assert_eq!(interrupted_with(libc::SIGHUP, "sighup"), Some(129));
    assert_eq!(interrupted_with(libc::SIGQUIT, "sigquit"), Some(131));
}

/// Under `nohup` (SIGHUP ignored when it starts) a `get` keeps running through a SIGHUP.
#[test]
fn sighup_ignored_at_start_stays_ignored() {
    let dir = TestDir::new("nohup");
    let (_server, mut client) = slow_download(&dir, Some(libc::SIGHUP));
    std::thread::sleep(Duration::from_millis(1000));
    // SAFETY: signals to our own child, still running.
    unsafe { libc::kill(client.child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        client.child.try_wait().unwrap().is_none(),
        "still running after SIGHUP"
    );
    unsafe { libc::kill(client.child.id() as i32, libc::SIGTERM) };
    let (status, err) = client.finish(deadline(10));
    assert_eq!(status.and_then(|s| s.code()), Some(143), "{err}");
}

/// Runs a `get` of 2 MiB at 1 MB/s with stderr on a pipe; returns stderr.
fn piped_get(name: &str, extra: &[&str]) -> String {
    let dir = TestDir::new(name);
    let src = dir.source("src.bin", 2 << 20);
    let (mut server, addr) = serve(&dir, &src, &["--up-rate", "1M", "--exit-after", "1"]);
    let out = dir.path("out.bin");
    let mut args = vec![
        "get".to_string(),
        addr.to_string(),
        "-o".into(),
        out.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--linger".into(),
        "0".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut child = common::procs::spawn(&bin(), &args).unwrap();
    let (status, err) = common::procs::wait(&mut child, deadline(20));
    assert_success(status, &err, "get");
    assert_same(&src, &out);
    server.expect_exit_ok(10);
    err
}

#[test]
fn progress_on_a_pipe_is_one_plain_line_per_interval_then_completion() {
    let err = piped_get("progress-pipe", &["--progress-interval", "1"]);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("% ")).collect();
    assert!(!lines.is_empty(), "no progress line: {err}");
    assert!(
        lines.iter().all(|l| l.contains("MiB") && l.contains("ETA")),
        "{err}"
    );
    assert!(
        !err.contains('\r') && !err.contains('\x1b'),
        "no redraw on a pipe: {err:?}"
    );
    assert!(
        err.contains("saved ") && err.contains("(2097152 bytes"),
        "{err}"
    );
    // The completion line names the digest that `serve` prints.
    let saved = err.lines().find(|l| l.contains("saved ")).unwrap();
    let digest = saved.split("digest blake3:").nth(1).unwrap_or("");
    assert_eq!(digest.trim().len(), 64, "{saved}");
}

#[test]
fn quiet_prints_nothing_on_success() {
    let err = piped_get("progress-quiet", &["--progress-interval", "1", "-q"]);
    assert_eq!(err, "", "-q: {err}");
}

#[test]
fn progress_on_a_terminal_is_one_line_redrawn() {
    let dir = TestDir::new("progress-tty");
    let src = dir.source("src.bin", 3 << 20);
    let (mut server, addr) = serve(&dir, &src, &["--up-rate", "1M", "--exit-after", "1"]);
    let out = dir.path("out.bin");
    let (mut ctl, tty) = openpty();
    let mut child = Command::new(bin())
        .args(["get", &addr.to_string(), "-o", &out.display().to_string()])
        .args(["--listen", "127.0.0.1:0", "--linger", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(tty)
        .spawn()
        .unwrap();
    // The controller reads until the child's side closes (EIO on Linux), in a thread so a
    // hang is caught by the deadline below.
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = ctl.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let (status, _) = common::procs::wait(&mut child, deadline(20));
    assert!(status.is_some_and(|s| s.success()), "get on a terminal");
    let text = reader.join().unwrap();
    assert_same(&src, &out);
    server.expect_exit_ok(10);
    let redraws = text.matches("\r\x1b[K").count();
    assert!(redraws >= 2, "a line redrawn in place: {text:?}");
    assert!(text.contains("% "), "{text:?}");
    assert!(text.contains("saved "), "{text:?}");
}

/// `serve` says when a client completes and prints a swarm line per interval; its `-v` lines
/// carry a timestamp and name peers by address, not as Rust debug structs.
#[test]
fn serve_reports_completions_and_the_swarm() {
    let dir = TestDir::new("serve-progress");
    let src = dir.source("src.bin", 4 << 20);
    let args = strings(&[
        "--up-rate",
        "4M",
        "--exit-after",
        "2",
        "--policy",
        "all",
        "--progress-interval",
        "1",
        "-v",
    ]);
    let (child, addr) =
        common::procs::start_origin(&bin(), &src, &dir.path("ready"), &args, T).unwrap();
    let mut server = Node {
        child,
        stats: dir.path("none.json"),
        out: dir.path("none"),
    };
    let mut fast = get(&dir, addr, "fast", &["--no-peers", "--linger", "0"]);
    // 4 MiB at 1 MB/s: the fast client completes seconds before this one.
    let mut slow = get(&dir, addr, "slow", &["--no-peers", "--down-rate", "1M"]);
    fast.expect_download(&src, 20);
    slow.expect_download(&src, 20);
    let (status, err) = server.finish(deadline(10));
    assert!(status.is_some_and(|s| s.success()), "serve: {err}");
    assert!(err.contains("a client completed (1 so far)"), "{err}");
    let swarm = err.lines().filter(|l| l.contains("connected")).count();
    assert!(swarm >= 2, "a swarm line a second: {err}");
    assert!(
        err.contains("served 8388608 bytes (2.00 copies), 2 clients completed"),
        "{err}"
    );
    let verbose: Vec<&str> = err.lines().filter(|l| l.contains("accepted")).collect();
    assert!(verbose.len() >= 2, "{err}");
    for l in verbose {
        let stamp = l.split('[').nth(1).and_then(|r| r.split(']').next());
        assert!(
            stamp.is_some_and(|t| t.trim().parse::<f64>().is_ok()),
            "-v lines are stamped: {l}"
        );
        assert!(l.contains("127.0.0.1:"), "peers by address: {l}");
    }
    assert!(
        !err.contains("node_id:") && !err.contains(" { "),
        "no debug structs: {err}"
    );
}

/// `demo` shows each phase's progress: on a pipe one line per interval, and a last line per
/// phase with every client done.
#[test]
fn demo_shows_progress_for_each_phase() {
    let dir = TestDir::new("demo-progress");
    let mut child = Command::new(bin())
        .args(["demo", "--size", "8M", "--clients", "2"])
        .args(["--server-rate", "4M", "--client-rate", "40M"])
        .args(["--progress-interval", "1", "--dir"])
        .arg(dir.path("work"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let (status, err) = common::procs::wait(&mut child, deadline(60));
    let text = reader.join().unwrap();
    assert!(status.is_some_and(|s| s.success()), "demo: {err}\n{text}");
    for phase in ["client-server", "tfttp swarm"] {
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with(phase) && l.contains("% "))
            .collect();
        // 16 MiB through a 4 MB/s server takes over 4 s client-server: lines before the end.
        if phase == "client-server" {
            assert!(lines.len() >= 3, "{phase}: a line per second:\n{text}");
        }
        let last = lines
            .last()
            .unwrap_or_else(|| panic!("{phase}: no progress:\n{text}"));
        assert!(
            last.contains("100%") && last.contains("2/2 done"),
            "{phase} ends with every client done: {last}"
        );
    }
    assert!(
        !text.contains('\r') && !text.contains('\x1b'),
        "no redraw on a pipe"
    );
}

#[test]
fn stats_refuses_a_symlink_or_a_directory_and_leaves_it() {
    let dir = TestDir::new("stats-safety");
    let target = dir.path("log");
    std::fs::write(&target, "keep").unwrap();
    let link = dir.path("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for bad in [link.clone(), dir.0.clone()] {
        let p = bad.display().to_string();
        let (code, err) = run(
            &["get", "127.0.0.1:9", "-o", &out_arg(&dir), "--stats", &p],
            T,
        );
        assert_eq!(code, Some(2), "{p}: {err}");
        assert!(err.contains("not a regular file"), "{err}");
    }
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
}

#[test]
fn help_is_an_overview_and_each_command_is_complete() {
    let help = |args: &[&str]| {
        let o = Command::new(bin()).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    let top = help(&["--help"]);
    assert!(
        top.contains("Examples:") && top.contains("tfttp get "),
        "{top}"
    );
    assert!(
        !top.contains("--piece-size"),
        "options belong to commands: {top}"
    );
    let get = help(&["get", "--help"]);
    for want in [
        "--output",
        "--linger",
        "--progress-interval",
        "Exit status",
        "130",
        "143",
    ] {
        assert!(get.contains(want), "get --help lacks {want}: {get}");
    }
    assert!(!get.contains("--behave"), "test-only option shown: {get}");
    assert!(help(&["serve", "--help"]).contains("--exit-after"));
    // Hidden, not gone: the benchmarks still pass it (and then the server is refused).
    let server = format!("127.0.0.1:{}", free_port());
    let dir = TestDir::new("behave");
    let (code, err) = run(
        &["get", &server, "-o", &out_arg(&dir), "--behave", "liar"],
        T,
    );
    assert_eq!(code, Some(4), "--behave accepted: {err}");
}

/// Ctrl-C keeps the `.part`; the next `get` to the same output keeps its verified pieces
/// and fetches only the rest.
#[test]
fn interrupted_download_resumes() {
    let dir = TestDir::new("resume");
    let src = dir.source("src.bin", 4 << 20);
    let (_server, addr) = serve(&dir, &src, &["--up-rate", "1M"]);
    let mut first = get(&dir, addr, "c", &["--no-peers"]);
    std::thread::sleep(Duration::from_millis(2000));
    // SAFETY: a signal to our own child, still running.
    unsafe { libc::kill(first.child.id() as i32, libc::SIGINT) };
    let (status, err) = first.finish(deadline(10));
    assert_eq!(status.and_then(|s| s.code()), Some(130), "{err}");
    assert!(tfttp::net::storage::part_path(&first.out).exists(), "{err}");
    let mut second = get(&dir, addr, "c", &["--no-peers"]);
    second.expect_download(&src, 30);
    let fetched = second.stat("bytes_from_origin") + second.stat("bytes_from_peers");
    assert!(
        fetched < (4 << 20) as f64 * 0.8,
        "fetched {fetched} bytes of a 4 MiB file after about 2 s of 1 MB/s"
    );
}

/// docs/tfttp.1 keeps up with the help: every option each command lists and every exit
/// status, and groff reads it without a warning (where groff is installed).
#[test]
fn manual_page_describes_every_option_and_exit_status() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = root.join("docs/tfttp.1");
    let man = std::fs::read_to_string(&page).unwrap();
    for cmd in ["serve", "get", "demo", "sim"] {
        let o = Command::new(bin()).args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8(o.stdout).unwrap();
        let options = help
            .lines()
            .filter(|l| l.trim_start().starts_with('-'))
            .flat_map(|l| l.split_whitespace())
            .filter_map(|w| w.trim_end_matches(',').strip_prefix("--"))
            .filter(|w| !w.is_empty());
        let mut n = 0;
        for opt in options {
            n += 1;
            let roff = format!("\\-\\-{}", opt.replace('-', "\\-"));
            assert!(man.contains(&roff), "{cmd}: --{opt} is not in docs/tfttp.1");
        }
        assert!(n >= 4, "{cmd}: read only {n} options from\n{help}");
        if cmd == "get" {
            for code in help
                .lines()
                .skip_while(|l| !l.starts_with("Exit status"))
                .filter_map(|l| l.split_whitespace().next()?.parse::<u32>().ok())
            {
                assert!(
                    man.contains(&format!(".B {code}\n")),
                    "exit status {code} is not in docs/tfttp.1"
                );
            }
        }
    }
    if let Ok(o) = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&page)
        .output()
    {
        let warnings = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && warnings.is_empty(), "{warnings}");
    }
}
