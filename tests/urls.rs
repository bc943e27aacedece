//! End-to-end, issue 14's URLs and NAT parts: `get tfttp://HOST:PORT/NAME#blake3=HEX`, the
//! URLs `serve` prints, a `--no-listen` client in a swarm, and `get` pointed at HTTP.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use tfttp::manifest::{self, Manifest};

const T: Duration = Duration::from_secs(30);

/// The digest `serve` prints for `src` with its default piece size.
fn digest_of(src: &Path) -> String {
    let data = std::fs::read(src).unwrap();
    let m = Manifest::build(&data, manifest::auto_piece_size(data.len() as u64)).unwrap();
    manifest::to_hex(m.digest())
}

/// `get URL -o DIR/name.out` with `extra`; (exit code, stderr).
fn get_url(dir: &TestDir, url: &str, name: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = dir.path(&format!("{name}.out")).display().to_string();
    let mut args = vec!["get", url, "-o", &out, "--linger", "0"];
    args.extend_from_slice(extra);
    run(&args, T)
}

#[test]
fn url_with_digest_fragment_downloads_byte_identical() {
    let dir = TestDir::new("url-ok");
    let src = dir.source("src.bin", 1 << 20);
    let (mut server, addr) = serve(&dir, &src, &["--exit-after", "1"]);
    let url = format!(
        "tfttp://127.0.0.1:{}/src.bin#blake3={}",
        addr.port(),
        digest_of(&src)
    );
    let (code, err) = get_url(&dir, &url, "c", &["-q"]);
    assert_eq!(code, Some(0), "{err}");
    assert_same(&src, &dir.path("c.out"));
    server.expect_exit_ok(10);
}

#[test]
fn url_with_wrong_fragment_digest_fails_with_exit_5() {
    let dir = TestDir::new("url-wrong");
    let src = dir.source("src.bin", 1 << 20);
    let (_server, addr) = serve(&dir, &src, &[]);
    let wrong = "0".repeat(64);
    let url = format!("tfttp://127.0.0.1:{}/src.bin#blake3={wrong}", addr.port());
    let (code, err) = get_url(&dir, &url, "c", &[]);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains(&wrong) && err.contains(&digest_of(&src)),
        "{err}"
    );
    assert!(!dir.path("c.out").exists());
    // Both the fragment and a different --expect-digest: a usage error before anything.
    let (code, err) = get_url(&dir, &url, "d", &["--expect-digest", &digest_of(&src)]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn http_url_is_a_usage_error_pointing_at_curl() {
    let dir = TestDir::new("url-http");
    let (code, err) = get_url(&dir, "http://127.0.0.1:1/f", "c", &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("curl") && err.lines().count() == 1, "{err}");
}

/// A server that answers every connection `HTTP/1.1 200 OK` at once and keeps it open
/// until the client closes, as a web server does; its port.
fn http_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    });
    port
}

#[test]
fn get_against_an_http_server_fails_at_once_with_exit_5() {
    let dir = TestDir::new("url-http-server");
    let port = http_server();
    for target in [
        format!("127.0.0.1:{port}"),
        format!("tfttp://127.0.0.1:{port}/f"),
    ] {
        let started = Instant::now();
        let (code, err) = get_url(&dir, &target, "c", &[]);
        let took = started.elapsed();
        assert_eq!(code, Some(5), "{err}");
        assert!(took < Duration::from_secs(2), "took {took:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains("answered in HTTP") && err.contains("curl"),
            "{err}"
        );
    }
}

/// Starts `serve` with stderr to read; returns the child and the URL lines it printed
/// (those after the `serving` line), read within 10 s.
fn serve_printing(dir: &TestDir, src: &Path, listen: &str) -> (procs::Running, Vec<String>) {
    let ready = dir.path("ready");
    let args: Vec<String> = [
        "serve",
        &src.display().to_string(),
        "--listen",
        listen,
        "--ready-file",
        &ready.display().to_string(),
        "--exit-after",
        "1",
        "--progress-interval",
        "3600",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut child = procs::spawn(&bin(), &args).unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
        let _ = tx.send(first);
        for l in lines.map_while(|l| l.ok()) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("serve printed nothing");
    assert!(
        first.contains("serving") && first.contains("digest blake3:"),
        "{first}"
    );
    let mut urls = Vec::new();
    // The URL lines follow the first at once.
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
        if l.starts_with("tfttp://") {
            urls.push(l);
        }
    }
    (child, urls)
}

#[test]
fn serve_prints_a_url_that_get_takes_back() {
    let dir = TestDir::new("url-serve");
    let src = dir.source("src.bin", 1 << 20);
    let (mut server, urls) = serve_printing(&dir, &src, "127.0.0.1:0");
    let [url] = &urls[..] else {
        panic!("one URL for one address: {urls:?}")
    };
    assert!(url.starts_with("tfttp://127.0.0.1:"), "{url}");
    assert!(
        url.ends_with(&format!("/src.bin#blake3={}", digest_of(&src))),
        "{url}"
    );
    let (code, err) = get_url(&dir, url, "c", &["-q", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(0), "{err}");
    assert_same(&src, &dir.path("c.out"));
    let (status, err) = procs::wait(&mut server, deadline(10));
    assert_success(status, &err, "serve");
}

#[test]
fn serve_on_every_address_prints_addresses_to_give_out() {
    let dir = TestDir::new("url-serve-any");
    let src = dir.source("src.bin", 64 << 10);
    let (_server, urls) = serve_printing(&dir, &src, "0.0.0.0:0");
    assert!(!urls.is_empty(), "no URL line");
    for u in &urls {
        assert!(!u.contains("0.0.0.0") && !u.contains("//127."), "{u}");
        assert!(u.contains("/src.bin#blake3="), "{u}");
    }
}

#[test]
fn no_listen_client_completes_in_a_swarm() {
    let dir = TestDir::new("no-listen");
    let src = dir.source("src.bin", 4 << 20);
    let (mut server, addr) = serve_slow(&dir, &src, "2M", 3);
    let mut a = get(&dir, addr, "a", &["--up-rate", "20M", "--linger", "5"]);
    let mut b = get(&dir, addr, "b", &["--up-rate", "20M", "--linger", "5"]);
    let (mut args, out, stats) = get_args(&dir, addr, "n", &["--up-rate", "20M", "--linger", "5"]);
    // get_args listens on loopback; this client listens nowhere.
    let at = args.iter().position(|a| a == "--listen").unwrap();
    args.splice(at..at + 2, ["--no-listen".to_string()]);
    let mut n = Node {
        child: procs::spawn(&bin(), &args).unwrap(),
        stats,
        out,
    };
    n.expect_download(&src, 60);
    assert!(
        n.stat("peers_connected") >= 1.0,
        "it dials the peers that listen"
    );
    a.expect_download(&src, 60);
    b.expect_download(&src, 60);
    server.expect_exit_ok(15);
}

#[test]
fn no_listen_and_listen_together_is_a_usage_error() {
    let dir = TestDir::new("no-listen-usage");
    let (code, err) = get_url(
        &dir,
        "127.0.0.1:1",
        "c",
        &["--no-listen", "--listen", "127.0.0.1:0"],
    );
    assert_eq!(code, Some(2), "{err}");
}

/// Starts `get` from `server` listening on `listen`, not quiet, with stderr read line by line
/// as it comes; returns the child, its stats path and the lines with the time each arrived.
fn get_watched(
    dir: &TestDir,
    server: std::net::SocketAddr,
    name: &str,
    listen: &str,
) -> (
    procs::Running,
    std::path::PathBuf,
    mpsc::Receiver<(Instant, String)>,
) {
    let (mut args, _, stats) = get_args(dir, server, name, &["--linger", "0"]);
    args.retain(|a| a != "-q");
    let at = args.iter().position(|a| a == "--listen").unwrap();
    args[at + 1] = listen.to_string();
    let mut child = procs::spawn(&bin(), &args).unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if tx.send((Instant::now(), l)).is_err() {
                break;
            }
        }
    });
    (child, stats, rx)
}

/// Every line `rx` delivers until the child exits (bounded by `secs`), with its arrival.
fn lines_until_exit(
    child: &mut procs::Running,
    rx: &mpsc::Receiver<(Instant, String)>,
    secs: u64,
) -> (Option<std::process::ExitStatus>, Vec<(Instant, String)>) {
    let (status, _) = procs::wait(child, deadline(secs));
    // The reader thread ends at EOF, once the child is gone.
    let lines = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(2)).ok()).collect();
    (status, lines)
}

/// The `--stats` file's `listen_reachable`: true, false, or null.
fn listen_reachable(stats: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(stats).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    v["listen_reachable"].clone()
}

/// Issue 14, NAT: a client whose advertised port nobody can reach is told so by the origin's
/// connect-back probe within a few seconds, even as the swarm's only client (the client's
/// own inference needs a newcomer and 10 s). On loopback, a client listening on 127.0.0.2
/// connects from 127.0.0.1, so the origin probes 127.0.0.1:PORT, where nothing listens.
#[test]
fn origin_tells_a_client_with_an_unreachable_port_and_it_warns_once() {
    let dir = TestDir::new("reach-no");
    // About 3 s at 1 MB/s: time for the warning while it runs.
    let src = dir.source("src.bin", 3 << 20);
    let (mut server, addr) = serve_slow(&dir, &src, "1M", 1);
    let started = Instant::now();
    let (mut c, stats, rx) = get_watched(&dir, addr, "c", "127.0.0.2:0");
    let (status, lines) = lines_until_exit(&mut c, &rx, 30);
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert!(status.is_some_and(|s| s.success()), "{text:#?}");
    assert_same(&src, &dir.path("c.out"));
    let warnings: Vec<&(Instant, String)> = lines
        .iter()
        .filter(|(_, l)| l.contains("warning:"))
        .collect();
    let [(at, line)] = warnings[..] else {
        panic!("one warning line: {text:#?}")
    };
    assert!(
        line.contains("the server could not connect back to this client's listen port")
            && line.contains("--no-listen"),
        "{line}"
    );
    let took = at.duration_since(started);
    assert!(took < Duration::from_secs(5), "warned after {took:?}");
    assert_eq!(listen_reachable(&stats), serde_json::Value::Bool(false));
    server.expect_exit_ok(15);
    assert_eq!(server.stat("clients_unreachable"), 1.0);
}

/// The other half: a client the origin can reach is told so, prints no warning, and the
/// probe's connection (closed before any HELLO) leaves no line in its log.
#[test]
fn origin_tells_a_reachable_client_so_and_it_prints_nothing_about_it() {
    let dir = TestDir::new("reach-yes");
    let src = dir.source("src.bin", 3 << 20);
    let (mut server, addr) = serve_slow(&dir, &src, "1M", 1);
    let (mut c, stats, rx) = get_watched(&dir, addr, "c", "127.0.0.1:0");
    let (status, lines) = lines_until_exit(&mut c, &rx, 30);
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert!(status.is_some_and(|s| s.success()), "{text:#?}");
    assert_same(&src, &dir.path("c.out"));
    for l in &text {
        assert!(
            !l.contains("warning") && !l.contains("error") && !l.contains("refused"),
            "{text:#?}"
        );
    }
    assert_eq!(listen_reachable(&stats), serde_json::Value::Bool(true));
    server.expect_exit_ok(15);
    assert_eq!(server.stat("clients_unreachable"), 0.0);
}

/// With `-q` the warning is not printed, and a `--no-listen` client is never probed.
#[test]
fn quiet_or_no_listen_client_prints_no_reachability_warning() {
    let dir = TestDir::new("reach-quiet");
    let src = dir.source("src.bin", 2 << 20);
    let (mut server, addr) = serve_slow(&dir, &src, "2M", 2);
    let (mut args, out, stats) = get_args(&dir, addr, "q", &["--linger", "0"]);
    let at = args.iter().position(|a| a == "--listen").unwrap();
    args[at + 1] = "127.0.0.2:0".to_string();
    let mut q = Node {
        child: procs::spawn(&bin(), &args).unwrap(),
        stats,
        out,
    };
    let (mut args, out, stats) = get_args(&dir, addr, "n", &["--linger", "0"]);
    let at = args.iter().position(|a| a == "--listen").unwrap();
    args.splice(at..at + 2, ["--no-listen".to_string()]);
    args.retain(|a| a != "-q");
    let mut n = Node {
        child: procs::spawn(&bin(), &args).unwrap(),
        stats,
        out,
    };
    let (status, err) = q.finish(deadline(30));
    assert!(status.is_some_and(|s| s.success()), "{err}");
    assert!(err.is_empty(), "-q prints nothing: {err}");
    assert_eq!(listen_reachable(&q.stats), serde_json::Value::Bool(false));
    let (status, err) = n.finish(deadline(30));
    assert!(status.is_some_and(|s| s.success()), "{err}");
    assert!(!err.contains("warning"), "{err}");
    assert_eq!(listen_reachable(&n.stats), serde_json::Value::Null);
    server.expect_exit_ok(15);
    assert_eq!(
        server.stat("clients_unreachable"),
        1.0,
        "only the listening one"
    );
}
