//! End-to-end: an origin and clients as real processes on loopback, with rate caps that put
//! the bottleneck at the server's uplink, as in a flash crowd.

mod common;

use common::*;

#[test]
fn four_clients_trade_and_server_sends_under_two_copies() {
    let dir = TestDir::new("four");
    let size = 8 << 20;
    let src = dir.source("src.bin", size);
    let (mut server, addr) = serve_slow(&dir, &src, "4M", 4);
    let mut clients: Vec<Node> = (0..4)
        .map(|i| {
            get(
                &dir,
                addr,
                &format!("c{i}"),
                &["--up-rate", "40M", "--linger", "5"],
            )
        })
        .collect();
    for c in &mut clients {
        c.expect_download(&src, 60);
        let (peers, origin) = (c.stat("bytes_from_peers"), c.stat("bytes_from_origin"));
        assert_eq!(peers + origin, size as f64);
        assert!(
            peers > origin,
            "most bytes should come from peers: {peers} vs {origin}"
        );
        assert_eq!(c.stat("corrupt_pieces"), 0.0);
    }
    server.expect_exit_ok(20);
    let copies = server.stat("bytes_uploaded") / size as f64;
    assert!(copies < 2.0, "server sent {copies:.2} copies");
    assert_eq!(server.stat("clients_completed"), 4.0);
}

#[test]
fn odd_sizes_complete_byte_identical() {
    // Empty, one byte, one whole piece, and a short last piece, each through a swarm of two.
    for (name, size) in [
        ("empty", 0u64),
        ("one", 1),
        ("piece", 16384),
        ("ragged", 100_001),
    ] {
        let dir = TestDir::new(name);
        let src = dir.source("src.bin", size);
        let (mut server, addr) = serve(&dir, &src, &["--piece-size", "16K", "--exit-after", "2"]);
        let mut a = get(&dir, addr, "a", &["--linger", "2"]);
        let mut b = get(&dir, addr, "b", &["--linger", "2"]);
        for c in [&mut a, &mut b] {
            c.expect_download(&src, 30);
            assert!(!tfttp::net::storage::part_path(&c.out).exists());
        }
        server.expect_exit_ok(10);
    }
}

#[test]
fn late_joiner_completes() {
    let dir = TestDir::new("late");
    let src = dir.source("src.bin", 4 << 20);
    let (mut server, addr) = serve_slow(&dir, &src, "2M", 3);
    let mut early: Vec<Node> = (0..2)
        .map(|i| {
            get(
                &dir,
                addr,
                &format!("e{i}"),
                &["--up-rate", "20M", "--linger", "10"],
            )
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let mut late = get(&dir, addr, "late", &["--up-rate", "20M", "--linger", "1"]);
    late.expect_download(&src, 60);
    for c in &mut early {
        c.expect_download(&src, 30);
    }
    server.expect_exit_ok(10);
}

#[test]
fn killed_client_does_not_stop_the_others() {
    let dir = TestDir::new("kill");
    let src = dir.source("src.bin", 6 << 20);
    let (mut server, addr) = serve_slow(&dir, &src, "2M", 2);
    let mut a = get(&dir, addr, "a", &["--up-rate", "20M", "--linger", "5"]);
    let mut victim = get(&dir, addr, "victim", &["--up-rate", "20M"]);
    let mut b = get(&dir, addr, "b", &["--up-rate", "20M", "--linger", "5"]);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    victim.child.kill().unwrap();
    let _ = victim.child.wait();
    for c in [&mut a, &mut b] {
        c.expect_download(&src, 60);
    }
    assert!(
        !victim.out.exists(),
        "a killed client must not leave a complete-looking file"
    );
    server.expect_exit_ok(10);
}

#[test]
fn no_peers_mode_downloads_from_server_only() {
    let dir = TestDir::new("nopeers");
    let src = dir.source("src.bin", 1 << 20);
    let (mut server, addr) = serve(&dir, &src, &["--exit-after", "2"]);
    let mut a = get(&dir, addr, "a", &["--no-peers"]);
    let mut b = get(&dir, addr, "b", &["--no-peers"]);
    for c in [&mut a, &mut b] {
        c.expect_download(&src, 30);
        assert_eq!(c.stat("bytes_from_peers"), 0.0);
        assert_eq!(c.stat("peers_connected"), 0.0);
    }
    server.expect_exit_ok(10);
    assert_eq!(server.stat("bytes_uploaded"), 2.0 * (1 << 20) as f64);
}

#[test]
fn download_rate_cap_is_respected() {
    // A lower bound only: the cap must hold however fast or slow the machine is.
    let dir = TestDir::new("rate");
    let size = 3 << 20;
    let src = dir.source("src.bin", size);
    let (mut server, addr) = serve(&dir, &src, &["--exit-after", "1"]);
    let mut c = get(&dir, addr, "c", &["--down-rate", "1M", "--no-peers"]);
    c.expect_download(&src, 60);
    let secs = c.stat("complete_s");
    // 3 MiB at 1 MB/s is 3.1 s; the bucket's initial burst is 16 KiB.
    assert!(secs >= 2.9, "3 MiB at 1 MB/s took only {secs:.2} s");
    let _ = server.finish(deadline(10));
}

/// `--up-rate auto` on real sockets: the origin stamps each piece (STAMP), the client
/// answers each stamp (QUEUE_DELAY), and the origin's pacer reads its queue from the
/// answers; the download is intact and the origin's stats show the delay it read.
#[test]
fn auto_paced_origin_reads_its_queue_from_the_clients_answers() {
    let dir = TestDir::new("auto-pace");
    let size = 4 << 20;
    let src = dir.source("src.bin", size);
    let (mut server, addr) = serve(&dir, &src, &["--up-rate", "auto", "--exit-after", "1"]);
    // 4 MiB at 2 MB/s: the origin sends for 2 s, twenty of its pacer's samples.
    let mut c = get(&dir, addr, "c", &["--up-rate", "auto", "--down-rate", "2M"]);
    c.expect_download(&src, 60);
    server.expect_exit_ok(20);
    // `stat` fails on `null`: a number means the answers reached the origin's pacer.
    let delay = server.stat("pace_queue_delay_ms");
    assert!((0.0..2_000.0).contains(&delay), "{delay} ms");
}
