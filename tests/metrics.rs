//! End-to-end: `--metrics` on the real binary. An origin and two clients on loopback, the
//! origin's upload capped so the transfer lasts a few seconds; `curl` scrapes a client and
//! the origin during it, as Prometheus would.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// `curl`'s status line, headers and body for `url`, within 5 s.
fn curl(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "5", url])
        .output()
        .expect("curl is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the sample named exactly `name` (labels included) in a scrape.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Scrapes `url` until `ok` holds for the page, or `until`.
fn scrape_until(url: &str, until: Instant, ok: impl Fn(&str) -> bool) -> String {
    loop {
        let page = curl(url);
        if ok(&page) || Instant::now() >= until {
            return page;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const DOWN_ORIGIN: &str = "tfttp_payload_bytes_total{direction=\"down\",source=\"origin\"}";
const DOWN_PEERS: &str = "tfttp_payload_bytes_total{direction=\"down\",source=\"peers\"}";
const UP: &str = "tfttp_payload_bytes_total{direction=\"up\",source=\"self\"}";

#[test]
fn scraped_during_a_transfer_the_byte_counters_grow() {
    let dir = TestDir::new("metrics");
    let src = dir.source("src.bin", 12 << 20);
    let origin_port = free_port();
    let origin_metrics = format!("127.0.0.1:{origin_port}");
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
            "--metrics",
            &origin_metrics,
        ],
    );
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let mut a = get(&dir, addr, "a", &["--metrics", &metrics, "--linger", "5"]);
    let mut b = get(&dir, addr, "b", &["--linger", "5"]);
    let url = format!("http://{metrics}/metrics");
    let t0 = Instant::now();

    // A first scrape once some bytes arrived, a second one later: the counter grew.
    let got =
        |p: &str| sample(p, DOWN_ORIGIN).unwrap_or(0.0) + sample(p, DOWN_PEERS).unwrap_or(0.0);
    let first = scrape_until(&url, t0 + Duration::from_secs(15), |p| got(p) > 0.0);
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(
        first.contains("Content-Type: text/plain; version=0.0.4"),
        "{first}"
    );
    let early = got(&first);
    assert!(early > 0.0, "no payload counted:\n{first}");
    assert!(
        early < (12 << 20) as f64,
        "already complete at the first scrape:\n{first}"
    );
    let second = scrape_until(&url, t0 + Duration::from_secs(20), |p| got(p) > early);
    assert!(
        got(&second) > early,
        "counter did not grow from {early}:\n{second}"
    );

    // The origin's page counts what it sent (scraped while it still runs).
    let origin_url = format!("http://{origin_metrics}/metrics");
    let origin = scrape_until(&origin_url, t0 + Duration::from_secs(20), |p| {
        sample(p, UP).is_some_and(|v| v > 0.0)
    });
    assert!(origin.contains("tfttp_info{role=\"origin\""), "{origin}");
    assert!(sample(&origin, UP).unwrap() > 0.0, "{origin}");
    assert_eq!(sample(&origin, "tfttp_complete"), Some(1.0));

    // Every documented family is there, with the prefix and a TYPE line.
    for name in [
        "tfttp_info",
        "tfttp_uptime_seconds",
        "tfttp_payload_bytes_total",
        "tfttp_discarded_bytes_total",
        "tfttp_corrupt_pieces_total",
        "tfttp_file_bytes",
        "tfttp_pieces",
        "tfttp_pieces_verified",
        "tfttp_complete",
        "tfttp_connections",
        "tfttp_peers",
        "tfttp_peer_connections_total",
        "tfttp_choke",
        "tfttp_interesting_peers",
        "tfttp_requests_outstanding",
        "tfttp_requests_queued",
        "tfttp_pieces_receiving",
        "tfttp_oldest_request_seconds",
        "tfttp_clients_completed_total",
        "tfttp_promises_total",
        "tfttp_piece_latency_seconds",
    ] {
        assert!(
            second.contains(&format!("\n# TYPE {name} ")),
            "no {name} in\n{second}"
        );
    }
    assert_eq!(sample(&second, "tfttp_file_bytes"), Some((12 << 20) as f64));
    assert_eq!(sample(&second, "tfttp_peers{state=\"origin\"}"), Some(1.0));
    assert!(sample(&second, "tfttp_piece_latency_seconds_count").unwrap() > 0.0);
    assert!(second.contains("tfttp_info{role=\"client\""), "{second}");

    // Connections that say nothing do not lock the endpoint out, and other paths are 404.
    let idle: Vec<TcpStream> = (0..12)
        .map(|_| TcpStream::connect(&metrics).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let third = curl(&url);
    assert!(third.starts_with("HTTP/1.1 200 OK\r\n"), "{third}");
    drop(idle);
    let other = curl(&format!("http://{metrics}/"));
    assert!(other.starts_with("HTTP/1.1 404 "), "{other}");

    a.expect_download(&src, 60);
    b.expect_download(&src, 60);
    server.expect_exit_ok(30);
}

/// A plain `TcpStream` scrape, byte by byte: the request may arrive in pieces.
#[test]
fn a_request_sent_in_pieces_is_answered() {
    let dir = TestDir::new("metrics-pieces");
    let src = dir.source("src.bin", 64 << 10);
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let (mut server, _) = serve(&dir, &src, &["--metrics", &metrics]);
    let mut s = TcpStream::connect(&metrics).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" {
        s.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    let body = page.split_once("\r\n\r\n").unwrap().1;
    assert!(
        page.contains(&format!("Content-Length: {}\r\n", body.len())),
        "{page}"
    );
    assert_eq!(sample(body, "tfttp_file_bytes"), Some((64 << 10) as f64));
    let _ = server.child.kill();
    let _ = server.finish(deadline(5));
}
