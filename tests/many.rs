//! End-to-end, issue 14's "many files per server": `serve PATH...` with files and
//! directories, each file its own swarm fetched by `tfttp://HOST:PORT/NAME`, path escapes
//! refused, the empty path refused when there are several files, and HTTP serving and
//! listing every file (README "Many files", docs/PROTOCOL.md §4.1).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::peer::{client_hello, connect, read_frame};
use common::*;
use tfttp::wire::ty;

const T: Duration = Duration::from_secs(60);

/// `get tfttp://ADDR/NAME -o DIR/out` (a listening peer, quiet), started now.
fn get_name(dir: &TestDir, addr: std::net::SocketAddr, name: &str, out: &str) -> Node {
    let url = format!("tfttp://{addr}/{name}");
    let out = dir.path(out);
    let stats = dir.path(&format!("{}.json", out.display()));
    let args: Vec<String> = [
        "get",
        &url,
        "-o",
        &out.display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--linger",
        "0",
        "--stall-timeout",
        "20",
        "-q",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Node {
        child: procs::spawn(&bin(), &args).unwrap(),
        stats,
        out,
    }
}

/// What the origin answers a raw HELLO asking for `path`: (ERROR code, reason).
fn refusal(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = connect(addr);
    use std::io::Write;
    s.write_all(&client_hello(0x55, 0, 0, false, path)).unwrap();
    while let Some((t, body)) = read_frame(&mut s) {
        assert_ne!(t, ty::MANIFEST, "{path:?} was served");
        if t == ty::ERROR {
            let code = u16::from_be_bytes([body[0], body[1]]);
            return (code, String::from_utf8_lossy(&body[2..]).into_owned());
        }
    }
    panic!("no ERROR for {path:?}");
}

#[test]
fn two_files_served_at_once_fetched_concurrently_by_url_byte_identical() {
    let dir = TestDir::new("many-two");
    let a = dir.source("a.bin", 3 << 20);
    let b = dir.source("b.iso", 2 << 20);
    // Two clients per file, all at once; --exit-after counts over both files.
    let (mut server, addr) = serve_paths(
        &dir,
        &[&a, &b],
        &[
            "--piece-size",
            "64K",
            "--up-rate",
            "40M",
            "--exit-after",
            "4",
        ],
    );
    let mut gets = [
        get_name(&dir, addr, "a.bin", "a1"),
        get_name(&dir, addr, "b.iso", "b1"),
        get_name(&dir, addr, "a.bin", "a2"),
        get_name(&dir, addr, "b.iso", "b2"),
    ];
    for (g, src) in gets.iter_mut().zip([&a, &b, &a, &b]) {
        g.expect_download(src, 60);
    }
    server.expect_exit_ok(20);
    assert_eq!(server.stat("clients_completed"), 4.0);
    assert_eq!(server.stat("files"), 2.0);
}

#[test]
fn directory_served_recursively_nested_name_escapes_and_empty_path_refused() {
    let dir = TestDir::new("many-tree");
    std::fs::create_dir_all(dir.path("pub/deep/er")).unwrap();
    let top = dir.source("pub/top.bin", 300_000);
    let nested = dir.source("pub/deep/er/nested.bin", 1 << 20);
    let secret = dir.source("secret", 1000);
    std::os::unix::fs::symlink(&secret, dir.path("pub/leak")).unwrap();
    std::os::unix::fs::symlink(&top, dir.path("pub/alias")).unwrap();
    let (_server, addr) = serve_paths(&dir, &[&dir.path("pub")], &[]);

    get_name(&dir, addr, "deep/er/nested.bin", "n").expect_download(&nested, 30);
    // A symlink inside the tree to a file inside it is served under its own name.
    get_name(&dir, addr, "alias", "al").expect_download(&top, 30);

    // Escapes: up the tree, absolute, a symlink out of it, and the path of the served
    // directory itself: ERROR 11, whatever exists on the server's disk.
    for path in [
        "../secret",
        "/etc/passwd",
        "leak",
        "pub/top.bin",
        "deep/../top.bin",
    ] {
        let (code, why) = refusal(addr, path);
        assert_eq!(code, 11, "{path}: {why}");
    }
    // The empty path names no file when there are three.
    let (code, why) = refusal(addr, "");
    assert_eq!(code, 11);
    assert!(why.contains("serves 3 files: ask for one by name"), "{why}");
    // `get` says so in one line, exit 5.
    let out = dir.path("none.out").display().to_string();
    let url = format!("tfttp://{addr}");
    let (code, err) = run(&["get", &url, "-o", &out, "--linger", "0"], T);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains("the server refused: this server serves 3 files"),
        "{err}"
    );
    // A version 1 HELLO gets the version error from the refusing node, as from any node.
    let mut s = connect(addr);
    use std::io::Write;
    let mut v1 = vec![0, 0, 0, 25, ty::HELLO];
    v1.extend_from_slice(b"TFTT\x01\x01\0\0\0\0\0\0\0\x09\0\0\0\0\0\0\0\0\x1a\xe1");
    s.write_all(&v1).unwrap();
    let frames: Vec<_> = std::iter::from_fn(|| read_frame(&mut s)).collect();
    let err = frames.iter().find(|f| f.0 == ty::ERROR).expect("an ERROR");
    assert_eq!(u16::from_be_bytes([err.1[0], err.1[1]]), 2);
}

#[test]
fn serve_refuses_two_paths_with_one_name_and_a_tree_without_files() {
    let dir = TestDir::new("many-refuse");
    std::fs::create_dir_all(dir.path("x")).unwrap();
    std::fs::create_dir_all(dir.path("empty")).unwrap();
    let one = dir.source("x/same.bin", 10);
    let two = dir.source("same.bin", 10);
    let (p1, p2) = (one.display().to_string(), two.display().to_string());
    let (code, err) = run(&["serve", &p1, &p2, "--listen", "127.0.0.1:0"], T);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("two files would be served as 'same.bin'"),
        "{err}"
    );
    let empty = dir.path("empty").display().to_string();
    let (code, err) = run(&["serve", &empty, "--listen", "127.0.0.1:0"], T);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no regular file to serve"), "{err}");
}

/// `curl -s --max-time 20 ARGS...`: its stdout.
fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed");
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    out.stdout
}

#[test]
fn curl_fetches_each_of_two_files_and_the_json_listing_names_both() {
    let dir = TestDir::new("many-http");
    std::fs::create_dir_all(dir.path("pub/sub")).unwrap();
    let a = dir.source("pub/a.bin", 1 << 20);
    let b = dir.source("pub/sub/b c.bin", 700_000);
    let (_server, addr) = serve_paths(&dir, &[&dir.path("pub")], &[]);
    for (src, path) in [(&a, "/a.bin"), (&b, "/sub/b%20c.bin")] {
        let got = dir.path("got");
        curl(&["-o", got.to_str().unwrap(), &format!("http://{addr}{path}")]);
        assert_same(src, &got);
        std::fs::remove_file(&got).unwrap();
    }
    let json = curl(&["-H", "Accept: application/json", &format!("http://{addr}/")]);
    let v: serde_json::Value = serde_json::from_slice(&json).expect("JSON listing");
    let names: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.bin", "sub/b c.bin"]);
    assert_eq!(v["files"][1]["size"], 700_000);
    let digest = |p: &Path| {
        let data = std::fs::read(p).unwrap();
        let size = tfttp::manifest::auto_piece_size(data.len() as u64);
        let m = tfttp::manifest::Manifest::build(&data, size).unwrap();
        format!("blake3:{}", tfttp::manifest::to_hex(m.digest()))
    };
    assert_eq!(v["files"][0]["digest"], digest(&a));
    assert_eq!(v["files"][1]["digest"], digest(&b));
    let html = String::from_utf8(curl(&[&format!("http://{addr}/")])).unwrap();
    assert!(html.contains("href=\"/sub/b%20c.bin\""), "{html}");
}

#[test]
fn secret_swarms_of_many_files_admit_holders_and_hide_names_from_others() {
    let dir = TestDir::new("many-secret");
    let a = dir.source("a.bin", 1 << 20);
    let b = dir.source("b.bin", 600_000);
    let key = dir.path("swarm.key");
    std::fs::write(&key, b"a secret of more than sixteen bytes").unwrap();
    let key = key.display().to_string();
    let (_server, addr) = serve_paths(&dir, &[&a, &b], &["--secret-file", &key]);
    // With the secret, each file by its name (each file's node proves the secret itself).
    get_name_with(&dir, addr, "b.bin", "b", &["--secret-file", &key]).expect_download(&b, 30);
    get_name_with(&dir, addr, "a.bin", "a", &["--secret-file", &key]).expect_download(&a, 30);
    // Without it, a name that exists and one that does not get the same answer: ERROR 10,
    // before any path is looked at.
    for path in ["a.bin", "nothing-here", ""] {
        let (code, why) = refusal(addr, path);
        assert_eq!(code, 10, "{path:?}: {why}");
    }
}

/// `get_name` with more options.
fn get_name_with(
    dir: &TestDir,
    addr: std::net::SocketAddr,
    name: &str,
    out: &str,
    extra: &[&str],
) -> Node {
    let url = format!("tfttp://{addr}/{name}");
    let out = dir.path(out);
    let mut args: Vec<String> = ["get", &url, "-o", &out.display().to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(
        ["--linger", "0", "--no-peers", "-q"]
            .iter()
            .map(|s| s.to_string()),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    Node {
        child: procs::spawn(&bin(), &args).unwrap(),
        stats: PathBuf::new(),
        out,
    }
}
