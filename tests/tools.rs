//! End-to-end: the Python tools on `--timeline` files from a real run on loopback
//! (`tools/swarm_timeline.py`, `tools/timeline_svg.py`; python3, standard library only).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// `python3 tools/NAME args` from the repository root: (exit code, stdout, stderr).
fn tool(name: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("timeout")
        .args(["30", "python3"])
        .arg(root.join("tools").join(name))
        .args(args)
        .output()
        .expect("python3 is installed");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn timelines_of_a_real_run_become_a_table_and_a_picture() {
    let dir = TestDir::new("tools");
    let src = dir.source("src.bin", 4 << 20);
    let tl = dir.path("tl");
    std::fs::create_dir_all(&tl).unwrap();
    let at = |n: &str| tl.join(n).display().to_string();
    let (mut server, addr) = serve(
        &dir,
        &src,
        &[
            "--up-rate",
            "2M",
            "--exit-after",
            "2",
            "--timeline",
            &at("origin.timeline"),
        ],
    );
    // Not named c*.timeline: the tools read whatever the user called them.
    let mut a = get(&dir, addr, "a", &["--timeline", &at("alice.timeline")]);
    let mut b = get(&dir, addr, "b", &["--timeline", &at("bob.timeline")]);
    a.expect_download(&src, 40);
    b.expect_download(&src, 40);
    server.expect_exit_ok(20);

    let dir_arg = tl.display().to_string();
    let (code, out, err) = tool("swarm_timeline.py", &[&dir_arg]);
    assert_eq!(code, Some(0), "{err}");
    // Both clients' 4 MiB are counted; the origin's file is left out, and said so.
    assert!(out.contains("total useful 8 MiB"), "{out}\n{err}");
    assert!(err.contains("origin.timeline: received nothing"), "{err}");

    let svg = dir.path("run.svg");
    let svg_arg = svg.display().to_string();
    let (code, _, err) = tool("timeline_svg.py", &[&dir_arg, "-o", &svg_arg]);
    assert_eq!(code, Some(0), "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{text}"
    );
    assert!(text.trim_end().ends_with("</svg>"), "{text}");
    for who in ["alice", "bob"] {
        assert!(
            text.contains(&format!("<title>{who}</title>")),
            "{who}: {text}"
        );
    }
    assert!(
        text.contains("from the origin") && text.contains("from peers"),
        "{text}"
    );
    // One file named directly works as well.
    let (code, _, err) = tool(
        "timeline_svg.py",
        &[
            &at("alice.timeline"),
            "-o",
            &dir.path("one.svg").display().to_string(),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn the_tools_warn_and_fail_when_they_read_nothing() {
    let dir = TestDir::new("tools-empty");
    let empty = dir.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("c0.json"), "{}").unwrap();
    let arg = empty.display().to_string();
    let svg = dir.path("x.svg").display().to_string();
    let runs = [
        ("swarm_timeline.py", vec![arg.as_str()]),
        ("timeline_svg.py", vec![arg.as_str(), "-o", svg.as_str()]),
    ];
    for (name, args) in runs {
        let (code, out, err) = tool(name, &args);
        assert_eq!(code, Some(1), "{name}: {out}{err}");
        assert!(err.contains("no *.timeline file in"), "{name}: {err}");
        assert!(err.contains("read no client timeline"), "{name}: {err}");
    }
    assert!(!dir.path("x.svg").exists());
}
