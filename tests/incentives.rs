//! End-to-end: with the tit-for-tat policy a free rider finishes after every cooperative
//! client. An ordering check, not a performance figure (those come from
//! `cargo bench --bench incentives`).

mod common;

use common::*;

#[test]
fn free_rider_finishes_last_under_tft() {
    let dir = TestDir::new("freeride");
    let size = 16 << 20;
    let src = dir.source("src.bin", size);
    let (mut server, addr) = serve_slow(&dir, &src, "4M", 5);
    let ups = ["2M", "2M", "5M", "5M"];
    let mut coop: Vec<Node> = ups
        .iter()
        .enumerate()
        .map(|(i, up)| {
            get(
                &dir,
                addr,
                &format!("coop{i}"),
                &["--up-rate", up, "--down-rate", "20M", "--linger", "120"],
            )
        })
        .collect();
    let mut rider = get(
        &dir,
        addr,
        "rider",
        &[
            "--up-rate",
            "5M",
            "--down-rate",
            "20M",
            "--behave",
            "free-rider",
        ],
    );
    let mut times = Vec::new();
    for c in &mut coop {
        c.expect_download(&src, 120);
        times.push(c.stat("complete_s"));
    }
    rider.expect_download(&src, 120);
    let rider_time = rider.stat("complete_s");
    assert_eq!(rider.stat("bytes_uploaded"), 0.0);
    let last = times.iter().copied().fold(0.0, f64::max);
    assert!(
        rider_time > last,
        "free rider {rider_time:.2} s finished before a cooperative client ({times:?})"
    );
    server.expect_exit_ok(20);
}
