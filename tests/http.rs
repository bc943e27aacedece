//! End-to-end: HTTP/1.1 on the origin's TFTTP port (README "HTTP", docs/PROTOCOL.md §9.1),
//! with the real binary, `curl` and `wget` on loopback. Every command has a time limit.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

/// Runs `prog` with `args` (each call gives the tool its own time limit).
fn run_tool(prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog} is installed: {e}"))
}

/// `curl -s` with a 20 s limit; returns its output and stdout as text.
fn curl(args: &[&str]) -> (Output, String) {
    let mut all = vec!["-s", "--max-time", "20"];
    all.extend_from_slice(args);
    let out = run_tool("curl", &all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// The bytes `start..=end` of `path`.
fn slice(path: &Path, start: usize, end: usize) -> Vec<u8> {
    std::fs::read(path).unwrap()[start..=end].to_vec()
}

/// The file's digest in hex, as the JSON listing gives it.
fn digest_of(addr: SocketAddr) -> String {
    let (_, json) = curl(&["-H", "Accept: application/json", &url(addr, "/")]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON listing");
    v["files"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("blake3:")
        .to_string()
}

#[test]
fn curl_and_wget_fetch_the_file_ranges_and_heads() {
    let dir = TestDir::new("http-fetch");
    let src = dir.source("data.bin", 3 << 20);
    let (_server, addr) = serve(&dir, &src, &[]);
    let file_url = url(addr, "/data.bin");

    // The whole file, byte-identical.
    let whole = dir.path("whole.out");
    let (out, code) = curl(&[
        "-o",
        whole.to_str().unwrap(),
        "-w",
        "%{http_code}",
        &file_url,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(code, "200");
    assert_same(&src, &whole);

    // `-r 100-199`: exactly those 100 bytes, 206.
    let part = dir.path("part.out");
    let (out, code) = curl(&[
        "-r",
        "100-199",
        "-o",
        part.to_str().unwrap(),
        "-w",
        "%{http_code}",
        &file_url,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(code, "206");
    assert_eq!(std::fs::read(&part).unwrap(), slice(&src, 100, 199));

    // HEAD: the length and the ETag from the root digest.
    let (_, head) = curl(&["-I", &file_url]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", 3 << 20)),
        "{head}"
    );
    let digest = digest_of(addr);
    assert_eq!(digest.len(), 64);
    assert!(head.contains(&format!("ETag: \"{digest}\"\r\n")), "{head}");
    assert!(head.contains("Accept-Ranges: bytes\r\n"), "{head}");
    assert!(head.contains("Last-Modified: "), "{head}");

    // The ETag back in If-None-Match: 304.
    let inm = format!("If-None-Match: \"{digest}\"");
    let (_, code) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &inm,
        &file_url,
    ]);
    assert_eq!(code, "304");

    // wget, byte-identical.
    let w = dir.path("wget.out");
    let out = run_tool(
        "wget",
        &[
            "-q",
            "--timeout",
            "20",
            "--tries",
            "1",
            "-O",
            w.to_str().unwrap(),
            &file_url,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_same(&src, &w);
}

#[test]
fn listing_errors_and_keep_alive() {
    let dir = TestDir::new("http-misc");
    let src = dir.source("my file.bin", 200_000);
    let (_server, addr) = serve(&dir, &src, &[]);

    // `GET /` as HTML links the file (its name percent-encoded), and as JSON lists it.
    let (_, html) = curl(&["-i", &url(addr, "/")]);
    assert!(html.contains("Content-Type: text/html"), "{html}");
    assert!(html.contains("href=\"/my%20file.bin\""), "{html}");
    let (_, json) = curl(&["-H", "Accept: application/json", &url(addr, "/")]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["files"][0]["name"], "my file.bin");
    assert_eq!(v["files"][0]["size"], 200_000);
    assert!(
        v["files"][0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("blake3:")
    );

    // A range past the end, another path, another method.
    let file_url = url(addr, "/my%20file.bin");
    let status = |args: &[&str]| {
        let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        all.extend_from_slice(args);
        curl(&all).1
    };
    assert_eq!(status(&["-r", "300000-", &file_url]), "416");
    assert_eq!(status(&[&url(addr, "/other.bin")]), "404");
    assert_eq!(status(&["-X", "POST", &file_url]), "405");

    // Two URLs on one curl: both answered on one connection.
    let a = dir.path("a.out");
    let b = dir.path("b.out");
    let out = run_tool(
        "curl",
        &[
            "-sv",
            "--max-time",
            "20",
            "-o",
            a.to_str().unwrap(),
            "-o",
            b.to_str().unwrap(),
            &file_url,
            &file_url,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("Re-using existing connection"), "{log}");
    assert_same(&src, &a);
    assert_same(&src, &b);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let dir = TestDir::new("http-pipeline");
    let src = dir.source("p.bin", 1000);
    let (_server, addr) = serve(&dir, &src, &[]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Three requests in one write; the last closes the connection.
    s.write_all(
        b"GET /p.bin HTTP/1.1\r\nRange: bytes=0-9\r\n\r\n\
          HEAD /nope HTTP/1.1\r\n\r\n\
          GET /p.bin HTTP/1.1\r\nRange: bytes=-5\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got);
    let first = text.find("HTTP/1.1 206").unwrap();
    let second = text.find("HTTP/1.1 404").unwrap();
    let third = text.rfind("HTTP/1.1 206").unwrap();
    assert!(first < second && second < third, "{text}");
    assert!(text.contains("Content-Range: bytes 0-9/1000"), "{text}");
    assert!(text.contains("Content-Range: bytes 995-999/1000"), "{text}");
    let data = std::fs::read(&src).unwrap();
    assert!(got.ends_with(&data[995..]), "{text}");

    // A head over 8 KiB: 431, and the connection closes.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let long = format!("GET /p.bin HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    s.write_all(long.as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        got.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn a_tfttp_get_completes_while_curl_downloads() {
    let dir = TestDir::new("http-share");
    let src = dir.source("s.bin", 6 << 20);
    // At 4 MB/s the TFTTP client alone would take about 1.6 s. While it downloads, HTTP
    // gets a fifth of the upload (0.8 MB/s), so the client finishes first although curl
    // started first; sharing per TCP flow instead, curl would finish first.
    let (_server, addr) = serve(&dir, &src, &["--up-rate", "4M", "--piece-size", "64K"]);
    let curl_out = dir.path("curl.out");
    let mut curl_child = procs::Running(
        Command::new("curl")
            .args(["-s", "--max-time", "40", "-o", curl_out.to_str().unwrap()])
            .arg(url(addr, "/s.bin"))
            .spawn()
            .expect("curl is installed"),
    );
    std::thread::sleep(Duration::from_millis(200));
    let mut client = get(&dir, addr, "c", &["--linger", "0"]);
    client.expect_download(&src, 30);
    let curl_had = std::fs::metadata(&curl_out).map_or(0, |m| m.len());
    assert!(
        curl_had < 6 << 20,
        "curl finished before the TFTTP client: HTTP took more than its share"
    );
    let status = curl_child.wait().unwrap();
    assert!(status.success(), "curl failed: {status:?}");
    assert_same(&src, &curl_out);
}

#[test]
fn beyond_64_http_connections_the_next_gets_503() {
    let dir = TestDir::new("http-busy");
    let src = dir.source("b.bin", 1000);
    let (_server, addr) = serve(&dir, &src, &[]);
    let ask = |s: &mut TcpStream| -> String {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"HEAD /b.bin HTTP/1.1\r\n\r\n").unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // 64 kept-alive connections, each answered.
    let mut open = Vec::new();
    for _ in 0..64 {
        let mut s = TcpStream::connect(addr).unwrap();
        let answer = ask(&mut s);
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        open.push(s);
    }
    let mut s = TcpStream::connect(addr).unwrap();
    let answer = ask(&mut s);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    // One closed, and a new connection is served again.
    drop(open.pop());
    std::thread::sleep(Duration::from_millis(300));
    let mut s = TcpStream::connect(addr).unwrap();
    let answer = ask(&mut s);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}
