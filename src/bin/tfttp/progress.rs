//! Progress on stderr while a node runs, in the style of curl and aria2c: on a terminal one
//! line redrawn every second; otherwise one plain line per `--progress-interval`, so a log of
//! a long transfer stays readable. Lines that matter later (the file is in place, a client
//! completed) are printed whole either way.

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tfttp::manifest::Manifest;
use tfttp::net::storage::Leftover;
use tfttp::net::{Driver, Reporter};

use crate::cli::Output;

/// How often the driver asks: a terminal line is redrawn this often.
pub const TICK: Duration = Duration::from_secs(1);
/// Rates are averaged over this long, so a terminal line does not flicker between bursts
/// (a plain line averages over its whole interval).
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// What a line is cut to when the terminal's width is unknown.
const DEFAULT_WIDTH: usize = 80;

/// Whose progress is shown.
pub enum Role {
    /// A client downloading to `output` from `server`.
    Client {
        output: crate::cli::Output,
        server: SocketAddr,
        /// How long it serves peers after completing, at most (zero: it exits at once).
        linger: Duration,
        /// The port it accepts peers on, if it listens.
        listen_port: Option<u16>,
    },
    /// The origin; `single_len` is its file's length when it serves one (its line then
    /// counts copies of the file sent).
    Origin {
        /// See above.
        single_len: Option<u64>,
    },
}

/// A `Reporter` that prints progress lines.
pub struct Progress {
    role: Role,
    /// Redraw one line (stderr is a terminal) or print plain lines.
    tty: bool,
    /// Plain lines: at most one per this.
    interval: Duration,
    next_line: Instant,
    /// (when, bytes received, bytes uploaded), oldest first.
    samples: VecDeque<(Instant, u64, u64)>,
    /// A redrawn line is on screen and must be cleared before a whole line.
    drawn: bool,
    /// Origin: completed clients already announced.
    completed: u32,
    completed_at: Option<Instant>,
    /// Client: the unreachable-port warning was printed (it is printed once).
    warned_unreachable: bool,
}

impl Progress {
    /// `plain` forces plain lines on a terminal too (the `-v` log would tear a redrawn line).
    pub fn new(role: Role, interval: Duration, plain: bool) -> Progress {
        // SAFETY: isatty only reads the descriptor's state.
        let tty = !plain && unsafe { libc::isatty(libc::STDERR_FILENO) } == 1;
        let now = Instant::now();
        Progress {
            role,
            tty,
            interval,
            next_line: now + interval,
            // Nothing moved before the start: the first line has a rate.
            samples: VecDeque::from([(now, 0, 0)]),
            drawn: false,
            completed: 0,
            completed_at: None,
            warned_unreachable: false,
        }
    }

    /// Receive and upload rates in bytes per second over the recent window.
    fn rates(&mut self, now: Instant, got: u64, up: u64) -> (f64, f64) {
        self.samples.push_back((now, got, up));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= RATE_WINDOW {
            self.samples.pop_front();
        }
        let (t0, g0, u0) = self.samples[0];
        let dt = now.duration_since(t0).as_secs_f64();
        if dt <= 0.0 {
            return (0.0, 0.0);
        }
        (
            got.saturating_sub(g0) as f64 / dt,
            up.saturating_sub(u0) as f64 / dt,
        )
    }

    fn client_line(&mut self, d: &Driver, now: Instant) -> String {
        let Role::Client { server, linger, .. } = self.role else {
            unreachable!("a client's line")
        };
        let node = d.node();
        let k = node.counters();
        let got = k.from_origin + k.from_peers;
        let (down, up) = self.rates(now, got, k.uploaded);
        let peers = d.remotes().filter(|r| *r != server).count();
        let Some(m) = node.manifest() else {
            return format!("connecting to {server}");
        };
        if let Some(done) = self.completed_at {
            let left = linger.saturating_sub(now.duration_since(done));
            return format!(
                "complete, seeding: up {}, {peers} peers, {} uploaded, leaves within {} s",
                rate(up),
                size(k.uploaded),
                left.as_secs()
            );
        }
        let len = m.file_len();
        let pct = if len == 0 {
            100.0
        } else {
            100.0 * got.min(len) as f64 / len as f64
        };
        let share = if got == 0 {
            0.0
        } else {
            100.0 * k.from_peers as f64 / got as f64
        };
        let eta = if down > 0.0 {
            duration(len.saturating_sub(got) as f64 / down)
        } else {
            "--".into()
        };
        format!(
            "{pct:5.1}% {}/{}  down {}  up {}  {share:.0}% from {peers} peers  ETA {eta}",
            size(got),
            size(len),
            rate(down),
            rate(up)
        )
    }

    fn origin_line(&mut self, d: &Driver, now: Instant) -> String {
        let Role::Origin { single_len } = self.role else {
            unreachable!("an origin's line")
        };
        let k = d.totals();
        let (_, up) = self.rates(now, 0, k.uploaded);
        let sent = match single_len {
            Some(len) => format!("{:.2} copies sent", copies(k.uploaded, len)),
            None => format!("{} sent", size(k.uploaded)),
        };
        format!(
            "clients: {} connected, {} completed; {sent}, up {}",
            d.connections(),
            k.clients_completed,
            rate(up)
        )
    }

    /// A line that stays (replacing a redrawn one on a terminal).
    fn say(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.drawn {
            let _ = err.write_all(b"\r\x1b[K");
            self.drawn = false;
        }
        let _ = writeln!(err, "tfttp: {line}");
    }

    /// The line redrawn in place, cut to the terminal's width so it never wraps.
    fn draw(&mut self, line: &str) {
        let width = terminal_width().saturating_sub(1);
        let line: String = line.chars().take(width).collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
        self.drawn = true;
    }
}

impl Progress {
    /// Client: says once that its listen port looks unreachable, when it does.
    fn warn_unreachable(&mut self, d: &Driver) {
        if let Role::Client {
            listen_port: Some(port),
            ..
        } = self.role
            && !self.warned_unreachable
            && let Some(u) = d.node().listen_unreachable()
        {
            self.warned_unreachable = true;
            self.say(&unreachable_warning(port, u));
        }
    }
}

impl Reporter for Progress {
    fn tick(&mut self, d: &Driver, now: Instant) {
        if let Role::Origin { .. } = self.role {
            let n = d.totals().clients_completed;
            if n > self.completed {
                self.completed = n;
                self.say(&format!("a client completed ({n} so far)"));
            }
        }
        self.warn_unreachable(d);
        let line = match self.role {
            Role::Client { .. } => self.client_line(d, now),
            Role::Origin { .. } => self.origin_line(d, now),
        };
        if self.tty {
            self.draw(&line);
        } else if now >= self.next_line {
            self.next_line = now + self.interval;
            self.say(&line);
        }
    }

    fn complete(&mut self, d: &Driver, now: Instant) {
        let Role::Client { output, linger, .. } = &self.role else {
            return;
        };
        let (output, linger) = (output.clone(), *linger);
        self.completed_at = Some(now);
        let node = d.node();
        let len = node.manifest().map_or(0, |m| m.file_len());
        // The digest the user can compare with what `serve` printed.
        let digest = node
            .manifest()
            .map(|m| tfttp::manifest::to_hex(m.digest()))
            .unwrap_or_default();
        let secs = now.duration_since(node.started_at()).as_secs_f64();
        let keeps = match output {
            Output::Discard => {
                self.say(&format!(
                    "verified {len} bytes ({}) in {secs:.1} s, digest blake3:{digest}",
                    size(len)
                ));
                return;
            }
            Output::Stdout => {
                self.say(&format!(
                    "verified {len} bytes ({}) in {secs:.1} s, digest blake3:{digest}; stdout ends once it has them all",
                    size(len)
                ));
                "Ctrl-C before stdout has them all fails (exit 130)"
            }
            Output::File(path) => {
                self.say(&format!(
                    "saved {} ({len} bytes, {}) in {secs:.1} s, digest blake3:{digest}",
                    path.display(),
                    size(len)
                ));
                "Ctrl-C keeps the file"
            }
        };
        if !linger.is_zero() {
            self.say(&format!(
                "the file is complete; serving peers for at most {} s more (less once the \
                 swarm is done or no peer wants a piece for 10 s); {keeps}",
                linger.as_secs()
            ));
        }
    }

    fn resumed(&mut self, d: &Driver, part: &Path, left: &Leftover) {
        if let Some(m) = d.node().manifest() {
            self.say(&resume_line(part, left, m));
        }
    }

    fn finish(&mut self, d: &Driver, _: Instant) {
        if self.drawn {
            let _ = std::io::stderr().write_all(b"\r\x1b[K");
            self.drawn = false;
        }
        // A run shorter than a tick still hears it.
        self.warn_unreachable(d);
    }
}

/// What `get` found in an earlier run's `PATH.part`: how much it keeps and fetches, or that
/// nothing in it belongs to this file (another file's `.part`, a damaged one, or a run
/// stopped before its first piece), so a restart from zero is never silent.
pub fn resume_line(part: &Path, left: &Leftover, m: &Manifest) -> String {
    let (n, len) = (m.piece_count(), m.file_len());
    let k = left.verified.len() as u32;
    let kept: u64 = left.verified.iter().map(|&i| m.piece_len(i) as u64).sum();
    let was = if left.bytes == len {
        String::new()
    } else {
        format!("; it held {} bytes, the file has {len}", left.bytes)
    };
    if k == 0 {
        format!(
            "{} holds no piece of this file (none of its {} bytes verify against the \
             manifest: another file's, damaged, or stopped before a piece arrived); \
             downloading all {n} pieces ({}){was}",
            part.display(),
            left.bytes,
            size(len)
        )
    } else {
        format!(
            "resuming {}: {k} of {n} pieces ({}) verified and kept, fetching the other {} \
             ({}){was}",
            part.display(),
            size(kept),
            n - k,
            size(len - kept)
        )
    }
}

/// Columns of the terminal on stderr.
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills the winsize we pass and nothing else.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        ws.ws_col as usize
    } else {
        DEFAULT_WIDTH
    }
}

/// Bytes in binary units, as SIZE is written on the command line.
pub fn size(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Bytes per second in decimal units, as RATE is written on the command line.
pub fn rate(bps: f64) -> String {
    if bps >= 1e9 {
        format!("{:.2} GB/s", bps / 1e9)
    } else if bps >= 1e6 {
        format!("{:.1} MB/s", bps / 1e6)
    } else {
        format!("{:.0} kB/s", bps / 1e3)
    }
}

/// Seconds as "42 s", "3m07s" or "2h05m".
fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Copies of a `len`-byte file in `uploaded` bytes (0 for an empty file).
pub fn copies(uploaded: u64, len: u64) -> f64 {
    if len == 0 {
        0.0
    } else {
        uploaded as f64 / len as f64
    }
}

/// The one line a client prints when its listen port looks unreachable
/// (`Node::listen_unreachable`): who found it, what it costs, what to do.
fn unreachable_warning(port: u16, u: tfttp::proto::Unreachable) -> String {
    use tfttp::proto::Unreachable;
    let found = match u {
        Unreachable::Origin => format!(
            "the server could not connect back to this client's listen port {port} \
             (NAT or a firewall?), so peers cannot dial it either"
        ),
        Unreachable::Inferred { expected, waited } => format!(
            "no peer reached this client's listen port {port} in {} s though {expected} \
             should have dialled it (NAT or a firewall?)",
            waited.as_secs()
        ),
    };
    format!(
        "warning: {found}; it trades only with the peers it dials, so it gets less from \
         peers and gives less. Forward TCP port {port} to this host (and keep it with \
         --listen 0.0.0.0:{port}), or use --no-listen"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_unreachable_warning_is_one_line_naming_who_found_it() {
        use tfttp::proto::Unreachable;
        let origin = unreachable_warning(43407, Unreachable::Origin);
        assert!(
            origin.starts_with(
                "warning: the server could not connect back to this client's \
                 listen port 43407"
            ) && origin.contains("--listen 0.0.0.0:43407"),
            "{origin}"
        );
        let inferred = Unreachable::Inferred {
            expected: 1,
            waited: Duration::from_secs(10),
        };
        let inferred = unreachable_warning(43407, inferred);
        assert!(
            inferred.starts_with(
                "warning: no peer reached this client's listen port 43407 in \
                 10 s though 1 should have dialled it"
            ),
            "{inferred}"
        );
        assert!(!origin.contains('\n') && !inferred.contains('\n'));
    }

    #[test]
    fn test_units_read_like_the_options() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(200 << 20), "200.0 MiB");
        assert_eq!(rate(12_300_000.0), "12.3 MB/s");
        assert_eq!(rate(4_000.0), "4 kB/s");
        assert_eq!(duration(9.4), "9 s");
        assert_eq!(duration(187.0), "3m07s");
        assert_eq!(duration(7500.0), "2h05m");
    }

    #[test]
    fn test_resume_line_says_what_is_kept_or_that_nothing_is() {
        let m = Manifest::build(&[7u8; 4 * 16384], 16384).unwrap();
        let part = Path::new("out.bin.part");
        let kept = Leftover {
            bytes: 3 * 16384,
            verified: vec![0, 2],
        };
        assert_eq!(
            resume_line(part, &kept, &m),
            "resuming out.bin.part: 2 of 4 pieces (32.0 KiB) verified and kept, fetching the \
             other 2 (32.0 KiB); it held 49152 bytes, the file has 65536"
        );
        let none = Leftover {
            bytes: 4 * 16384,
            verified: vec![],
        };
        let line = resume_line(part, &none, &m);
        assert!(
            line.starts_with("out.bin.part holds no piece of this file")
                && line.contains("another file's")
                && line.contains("downloading all 4 pieces (64.0 KiB)")
                && !line.contains("it held"),
            "{line}"
        );
    }
}
