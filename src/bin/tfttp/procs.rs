//! Running tfttp nodes as child processes, for `demo`, the end-to-end tests and the
//! benchmarks: spawn, wait with a hard deadline, read back what they wrote. A module of the
//! binary that tests/common and bench/support.rs include by path; none of it is protocol.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often a wait looks at its children.
const POLL: Duration = Duration::from_millis(20);

/// A child process that is killed if it is still running when this is dropped, so no
/// early return or panic leaves nodes behind.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Starts `exe` with `args`; stdout and stdin are discarded, stderr is kept for errors.
pub fn spawn(exe: &Path, args: &[String]) -> io::Result<Running> {
    Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map(Running)
}

/// Waits for `child` until `deadline`, then kills it. Returns its status and stderr.
pub fn wait(child: &mut Child, deadline: Instant) -> (Option<ExitStatus>, String) {
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status, err)
}

/// Waits until a node's `--ready-file` names its listen address.
pub fn wait_ready(path: &Path, child: &mut Child, timeout: Duration) -> Result<SocketAddr, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(addr) = text.trim().parse()
        {
            return Ok(addr);
        }
        if let Ok(Some(s)) = child.try_wait() {
            let (_, err) = wait(child, Instant::now());
            return Err(format!("node exited early ({s}): {}", err.trim()));
        }
        if Instant::now() >= deadline {
            return Err(format!("{} did not appear in time", path.display()));
        }
        std::thread::sleep(POLL);
    }
}

/// Starts `tfttp serve FILE` on a free loopback port with the `extra` options and waits
/// (up to `timeout`) until it listens. A ready file left by an earlier run is removed first,
/// so its stale address is never taken for this server's.
pub fn start_origin(
    exe: &Path,
    file: &Path,
    ready: &Path,
    extra: &[String],
    timeout: Duration,
) -> Result<(Running, SocketAddr), String> {
    let _ = std::fs::remove_file(ready);
    let mut args: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--ready-file"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(ready.display().to_string());
    args.push(file.display().to_string());
    args.extend_from_slice(extra);
    let mut child = spawn(exe, &args).map_err(|e| format!("cannot start the server: {e}"))?;
    let addr = wait_ready(ready, &mut child, timeout)?;
    Ok((child, addr))
}

/// Writes `size` bytes of seeded pseudo-random data (incompressible, so no layer can cheat).
pub fn write_test_file(path: &Path, size: u64, seed: u64) -> io::Result<()> {
    let mut f = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()
}

/// True if the two files have identical bytes.
pub fn same_contents(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// A `kB` field of /proc/PID/status (`VmRSS`, `VmHWM`, `RssAnon`, …); 0 if absent.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.split(':').next() == Some(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The number stored under `"key"` in a flat JSON object such as a node's `--stats` file;
/// enough for the demo, the tests and the benchmarks without a JSON parser.
pub fn json_number(text: &str, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\":");
    let start = text.find(&pat)? + pat.len();
    let rest = text[start..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_json_number_reads_fields_and_null() {
        let t = r#"{"a":1,"b":2.5,"c":null,"ab":7}"#;
        assert_eq!(json_number(t, "a"), Some(1.0));
        assert_eq!(json_number(t, "b"), Some(2.5));
        assert_eq!(json_number(t, "c"), None);
        assert_eq!(json_number(t, "ab"), Some(7.0));
        assert_eq!(json_number(t, "zz"), None);
    }
}
