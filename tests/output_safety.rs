//! End-to-end, issue 13 case 3: `get` never writes where it should not. A second `get` to
//! an output being downloaded is refused at once and does not touch the first one's
//! `.part`; a symlink planted at `PATH.part` is not followed; a directory that cannot be
//! written is one line and exit 7. (A file appearing at `PATH` meanwhile: tests/resume.rs,
//! `complete_part_left_before_the_rename_is_renamed_without_a_byte_received`.)

mod common;

use std::time::Duration;

use common::*;
use tfttp::net::storage::part_path;

const T: Duration = Duration::from_secs(20);

#[test]
fn second_get_to_the_same_output_is_refused_while_the_first_runs() {
    let dir = TestDir::new("double");
    let src = dir.source("src.bin", 4 << 20);
    let (_server, addr) = serve(&dir, &src, &["--up-rate", "2M", "--piece-size", "64K"]);
    let mut first = get(&dir, addr, "c", &["--no-peers", "--linger", "0"]);
    // The first has its `.part` (and its lock) once the manifest arrived.
    let part = part_path(&first.out);
    let until = deadline(10);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) == 0 {
        assert!(std::time::Instant::now() < until, "no .part");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = first.out.display().to_string();
    let (code, err) = run(&["get", &addr.to_string(), "-o", &out, "--no-peers"], T);
    assert_eq!(code, Some(7), "{err}");
    assert!(err.contains("another tfttp is downloading to"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    first.expect_download(&src, 20);
}

#[test]
fn planted_part_symlink_is_not_followed_and_its_target_is_untouched() {
    let dir = TestDir::new("planted");
    let src = dir.source("src.bin", 1 << 20);
    let (_server, addr) = serve(&dir, &src, &[]);
    let victim = dir.path("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let out = dir.path("c.out");
    std::os::unix::fs::symlink(&victim, part_path(&out)).unwrap();
    let out = out.display().to_string();
    let (code, err) = run(&["get", &addr.to_string(), "-o", &out, "--no-peers"], T);
    assert_eq!(code, Some(7), "{err}");
    assert!(err.contains("is a symbolic link"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!dir.path("c.out").exists());
}

/// `/sys` cannot be written, by root either (a chmod 0555 directory can be, by root).
#[test]
fn output_in_a_directory_that_cannot_be_written_is_exit_7() {
    let (code, err) = run(&["get", "127.0.0.1:9", "-o", "/sys/tfttp-test.bin"], T);
    assert_eq!(code, Some(7), "{err}");
    assert!(
        err.contains("cannot create /sys/tfttp-test.bin.part"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
