//! Shared by the benchmarks, each of which uses part of it: the binary's process helpers and
//! SIZE parser (included by path, as tests/common does), what a finished or running process
//! cost, and the median of repeated measurements.

#![allow(dead_code)]

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

// Cargo builds benches with cfg(test) but, with `harness = false`, no test harness, so the
// unit tests' imports in these files look unused here.
#[allow(unused_imports)]
#[path = "../src/bin/tfttp/procs.rs"]
pub mod procs;
#[allow(unused_imports)]
#[path = "../src/bin/tfttp/units.rs"]
pub mod units;

/// CPU time and peak memory of a finished child, from `wait4`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_secs: f64,
    pub max_rss_kib: u64,
}

/// Like [`procs::wait`], but also returns the child's resource usage (zero if it was killed).
pub fn wait_measured(child: &mut Child, deadline: Instant) -> (Option<ExitStatus>, Usage) {
    let pid = child.id() as libc::pid_t;
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child's pid with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            use std::os::unix::process::ExitStatusExt;
            let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
            let usage = Usage {
                cpu_secs: tv(ru.ru_utime) + tv(ru.ru_stime),
                max_rss_kib: ru.ru_maxrss as u64,
            };
            return (Some(ExitStatus::from_raw(status)), usage);
        }
        if r < 0 || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (None, Usage::default());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// CPU seconds (user + system) process `pid` has used so far, from /proc (0 if it is gone).
pub fn proc_cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no memory-safety preconditions.
    (ticks(11) + ticks(12)) / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// The median; NaN for no values.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
