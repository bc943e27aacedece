//! Command line: the one place that defines options, prints usage and parses values (sizes
//! and rates in `units`).
//! Bad arguments exit 2 with a one-line reason; runtime failures exit 1.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use getopts::{Matches, Options};

use tfttp::manifest::{self, Hash};
use tfttp::net::{MAX_CONNS_ORIGIN, SendfileMode};
use tfttp::proto::{Behaviour, DEFAULT_LINGER, MIN_SECRET_LEN, Policy, SwarmKey, UpRate};
use tfttp::wire::{MAX_PIECE_SIZE, MIN_PIECE_SIZE};

use crate::exit::Exit;
use crate::units::{parse_rate, parse_size};

/// `tfttp --help`: what each command is for, with examples; each command's own `--help` has
/// its options.
pub const OVERVIEW: &str = "\
tfttp: the Tit-for-Tat Transfer Protocol. One origin spreads a large file over a crowd of
clients that trade pieces among themselves.

Usage:
  tfttp serve PATH... [options]                serve files (directories: every file in
                                               them, by relative path) as the origin
  tfttp get URL -o PATH [options]              download from HOST and its peers (- : stdout);
                                               URL is tfttp://HOST[:PORT]/NAME[#blake3=HEX]
                                               (serve prints it) or HOST:PORT[/NAME]
  tfttp demo [options]                         server + clients on loopback, timed
  tfttp sim SCENARIO.json [options]            simulate a swarm (docs/SIMULATOR.md)
  tfttp COMMAND --help                         every option of COMMAND, exit statuses
  tfttp --version

Examples:
  tfttp serve big.iso --listen 0.0.0.0:6880 --up-rate 100Mbit
  tfttp get server.example:6880 -o big.iso            # seeds to peers for a while after
  tfttp get server.example:6880 -o big.iso --linger 0 # returns as soon as the file is in place
  tfttp get server.example:6880 -o - --linger 0 | tar x  # the file on stdout, in order
  tfttp get server.example:6880/big.iso -o big.iso --expect-digest blake3:HEX
                                                      # only the file serve printed HEX for
  tfttp get 'tfttp://server.example/big.iso#blake3=HEX' -o big.iso   # the same, as a URL
  tfttp serve /srv/releases big.iso                   # many files: releases/… by path
  tfttp get tfttp://server.example/v2/app.tar -o app.tar  # /srv/releases/v2/app.tar
  tfttp demo --clients 8 --size 128M";

/// Units, shown under the options of the commands that take them.
const UNITS: &str = "\
RATE is bytes per second: 40M = 40,000,000 B/s (k, M, G are powers of 1000; Ki, Mi, Gi
of 1024); append 'bit' for bits per second: 40Mbit = 5,000,000 B/s.
SIZE is bytes: 256M = 256 MiB (K, M, G are powers of 1024).";

/// Default `--progress-interval` when stderr is not a terminal: a log line every 10 s keeps a
/// log of a long transfer readable (a terminal gets a line redrawn every second instead).
const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Longest duration any option takes: a year. Longer is a typo, and every deadline the
/// node computes from it stays far inside `Instant`'s range (`--linger 18446744073709551615`
/// panicked adding it to an instant, issue 13).
const MAX_SECS: u64 = 365 * 24 * 3600;
/// Most peers a client keeps: as many connections as an origin holds.
const MAX_PEERS: u64 = MAX_CONNS_ORIGIN as u64;
/// Largest RATE: 1 TB/s (8 Tbit/s), above any link; keeps token-bucket sums finite.
const MAX_RATE: u64 = 1_000_000_000_000;
/// `--sock-buf` bounds: Linux rounds smaller buffers up to about 4.6 KiB, and takes the
/// size as a C int that it doubles.
const MIN_SOCK_BUF: u64 = 4 << 10;
const MAX_SOCK_BUF: u64 = 1 << 30;
/// Largest `demo --size`: the demo writes the file once per client too.
const MAX_DEMO_SIZE: u64 = 1 << 40;

#[derive(Debug, Clone)]
pub struct ServeArgs {
    /// Files and directories, as given.
    pub paths: Vec<PathBuf>,
    pub listen: SocketAddr,
    /// `None`: chosen from the file size (`manifest::auto_piece_size`).
    pub piece_size: Option<u32>,
    pub up_rate: UpRate,
    pub exit_after: Option<u32>,
    pub secret: Option<SwarmKey>,
    pub common: Common,
}

fn parse_up_rate(s: &str) -> Result<UpRate, String> {
    match s {
        "auto" => Ok(UpRate::Auto),
        "off" => Ok(UpRate::Off),
        _ => rate(s)
            .map(UpRate::Fixed)
            .map_err(|e| format!("{e}; or auto, or off")),
    }
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    Policy::parse(s).ok_or_else(|| format!("unknown policy '{s}' (tft, bittorrent, all)"))
}

fn parse_sendfile(s: &str) -> Result<SendfileMode, String> {
    match s {
        "auto" => Ok(SendfileMode::Auto),
        "on" => Ok(SendfileMode::On),
        "off" => Ok(SendfileMode::Off),
        _ => Err(format!("'{s}' is not auto, on or off")),
    }
}

fn parse_behaviour(s: &str) -> Result<Behaviour, String> {
    match s {
        "honest" => Ok(Behaviour::Honest),
        "free-rider" => Ok(Behaviour::FreeRider),
        "liar" => Ok(Behaviour::Liar),
        "colluder" => Ok(Behaviour::Colluder),
        _ => Err(format!(
            "unknown behaviour '{s}' (honest, free-rider, liar, colluder)"
        )),
    }
}

/// Where `get` puts the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `--output PATH`: `PATH.part`, renamed to PATH once verified.
    File(PathBuf),
    /// `--output -`: stdout, in order, through an unnamed temporary file.
    Stdout,
    /// `--discard`: verified and dropped (the protocol's own speed, no disk, no peers).
    Discard,
}

#[derive(Debug, Clone)]
pub struct GetArgs {
    /// `HOST:PORT` as given; resolved when the command runs, so a name that does not
    /// resolve is told apart from a bad argument.
    pub server: String,
    /// The NAME after `HOST:PORT/`, sent in HELLO; empty for the server's only file.
    pub path: String,
    /// `--secret-file`: the swarm key derived from the file's bytes.
    pub secret: Option<SwarmKey>,
    /// `--expect-digest`: the root digest the server's manifest must have.
    pub expect_digest: Option<Hash>,
    pub output: Output,
    pub listen: Option<SocketAddr>,
    pub up_rate: UpRate,
    pub down_rate: Option<u64>,
    pub use_peers: bool,
    /// `--no-listen`: trade with peers by dialling them only (HELLO listen = 0), for a
    /// client whose port peers cannot reach (NAT, a firewall).
    pub no_listen: bool,
    pub max_peers: usize,
    pub linger: Duration,
    pub stall_timeout: Duration,
    pub behaviour: Behaviour,
    pub common: Common,
}

#[derive(Debug, Clone)]
pub struct DemoArgs {
    pub size: u64,
    pub clients: usize,
    pub server_rate: u64,
    pub client_rate: u64,
    pub piece_size: Option<u32>,
    pub dir: Option<PathBuf>,
    pub keep: bool,
    pub progress_interval: Duration,
}

/// Options every node takes.
#[derive(Debug, Clone)]
pub struct Common {
    pub stats: Option<PathBuf>,
    pub timeline: Option<PathBuf>,
    pub ready_file: Option<PathBuf>,
    pub sock_buf: Option<usize>,
    pub policy: Policy,
    pub sendfile: SendfileMode,
    pub quiet: bool,
    pub verbose: bool,
    /// How often a progress line is printed when stderr is not a terminal.
    pub progress_interval: Duration,
    /// Serve Prometheus metrics over HTTP here (`--metrics`).
    pub metrics: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct SimArgs {
    pub scenario: PathBuf,
    /// Write the full result here.
    pub json: Option<PathBuf>,
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Write every host's byte counts and load each second of virtual time here (CSV).
    pub timeline: Option<PathBuf>,
    pub quiet: bool,
}

#[derive(Debug)]
pub enum Command {
    Serve(ServeArgs),
    Get(GetArgs),
    Demo(DemoArgs),
    Sim(SimArgs),
    Help(String),
    Version,
}

fn common_opts(o: &mut Options) {
    o.optopt(
        "",
        "stats",
        "write counters as JSON to PATH (every second and at exit)",
        "PATH",
    );
    o.optopt(
        "",
        "timeline",
        "append one JSON line of counters and load per second to PATH",
        "PATH",
    );
    o.optopt(
        "",
        "ready-file",
        "write the bound listen address to PATH once listening",
        "PATH",
    );
    o.optopt(
        "",
        "metrics",
        "serve Prometheus metrics at http://ADDR:PORT/metrics (README \"Metrics\")",
        "ADDR:PORT",
    );
    o.optopt(
        "",
        "sock-buf",
        "socket send/receive buffer size (default: kernel autotuning)",
        "SIZE",
    );
    o.optopt(
        "",
        "policy",
        "upload policy: tft (tit-for-tat with promises, default), bittorrent (top-4 + optimistic), all (no incentives)",
        "NAME",
    );
    o.optopt(
        "",
        "sendfile",
        "send pieces with sendfile(2): auto (default: to non-loopback peers), on, off",
        "WHEN",
    );
    o.optopt(
        "",
        "progress-interval",
        "when stderr is not a terminal, one progress line per SECS (default 10; a terminal gets one line redrawn every second)",
        "SECS",
    );
    o.optflag(
        "q",
        "quiet",
        "print nothing on success (no progress, no summary)",
    );
    o.optflag(
        "v",
        "verbose",
        "log connections to stderr, with seconds since start",
    );
    o.optflag("h", "help", "print this help");
}

fn serve_opts() -> Options {
    let mut o = Options::new();
    o.optopt(
        "l",
        "listen",
        "address to accept clients on (default 0.0.0.0:6880)",
        "ADDR:PORT",
    );
    o.optopt(
        "",
        "piece-size",
        "piece size (default: about 1024 pieces, a power of two)",
        "SIZE",
    );
    up_rate_opt(&mut o);
    o.optopt(
        "",
        "exit-after",
        "exit once N clients completed (over all files) and none is still downloading",
        "N",
    );
    secret_opt(&mut o);
    common_opts(&mut o);
    o
}

/// `--up-rate`, on serve and get alike.
fn up_rate_opt(o: &mut Options) {
    o.optopt(
        "",
        "up-rate",
        "pace the upload: RATE (the uplink's rate: payload at 95.6% of it), auto (measure \
         the uplink and pace just below it) or off (default: the link's queue sets the pace)",
        "RATE|auto|off",
    );
}

/// `--secret-file`, on serve and get alike.
fn secret_opt(o: &mut Options) {
    o.optopt(
        "",
        "secret-file",
        "admit only nodes that hold the same secret: the file's bytes, at least 16 (e.g. \
         head -c 32 /dev/urandom > FILE); traffic is still not encrypted",
        "FILE",
    );
}

/// `get`'s options; `hidden` adds the test-only ones, which the parser accepts (the
/// benchmarks use them) and the help does not show.
fn get_opts(hidden: bool) -> Options {
    let mut o = Options::new();
    o.optopt(
        "o",
        "output",
        "where to write the file (PATH.part until verified); - writes it to stdout in order",
        "PATH",
    );
    o.optflag(
        "",
        "discard",
        "verify every piece and drop it instead of --output (no disk, no peers)",
    );
    o.optopt(
        "l",
        "listen",
        "address to accept peers on (default 0.0.0.0:0, any port)",
        "ADDR:PORT",
    );
    up_rate_opt(&mut o);
    o.optopt("", "down-rate", "cap this client's download", "RATE");
    o.optflag(
        "",
        "no-peers",
        "plain client-server download: no trading with peers",
    );
    o.optflag(
        "",
        "no-listen",
        "accept no peers, only dial them (behind NAT or a firewall that peers cannot reach through)",
    );
    o.optopt("", "max-peers", "most peer connections (default 64)", "N");
    if hidden {
        o.optopt(
            "",
            "behave",
            "honest (default), free-rider (never uploads, sends no receipts), liar (uploads nothing, claims uploads in receipts), colluder (free rider that vouches for other colluders)",
            "HOW",
        );
    }
    o.optopt(
        "",
        "linger",
        "at most SECS seconds of serving peers after completing; ends sooner once the swarm is done or no peer has wanted a piece for 10 s (default 600)",
        "SECS",
    );
    o.optopt(
        "",
        "stall-timeout",
        "give up after SECS without piece data (default 60)",
        "SECS",
    );
    o.optopt(
        "",
        "expect-digest",
        "refuse the download unless the server's digest (serve prints it) is HEX",
        "[blake3:]HEX",
    );
    secret_opt(&mut o);
    common_opts(&mut o);
    o
}

fn demo_opts() -> Options {
    let mut o = Options::new();
    o.optopt("", "size", "test file size (default 256M)", "SIZE");
    o.optopt("", "clients", "number of clients (default 4)", "N");
    o.optopt(
        "",
        "server-rate",
        "the server's upload cap (default 25M)",
        "RATE",
    );
    o.optopt(
        "",
        "client-rate",
        "each client's upload and download cap (default 125M)",
        "RATE",
    );
    o.optopt(
        "",
        "piece-size",
        "piece size (default: about 1024 pieces, a power of two)",
        "SIZE",
    );
    o.optopt(
        "",
        "dir",
        "work directory (default: a new one under the temp dir)",
        "DIR",
    );
    o.optflag("", "keep", "keep the work directory");
    o.optopt(
        "",
        "progress-interval",
        "when stdout is not a terminal, one progress line per SECS in each phase (default 10; a terminal gets one line redrawn every second)",
        "SECS",
    );
    o.optflag("h", "help", "print this help");
    o
}

fn sim_opts() -> Options {
    let mut o = Options::new();
    o.optopt("", "json", "write the result as JSON to PATH", "PATH");
    o.optopt("", "seed", "use this seed instead of the scenario's", "N");
    o.optopt(
        "",
        "timeline",
        "write each host's uploaded and received bytes every second of virtual time \
         to PATH (CSV: t_s,host,uploaded,received,queued,asked,unchoked; host 0 is the origin)",
        "PATH",
    );
    o.optflag("q", "quiet", "print nothing but errors");
    o.optflag("h", "help", "print this help");
    o
}

/// One command's help: its synopsis, every option, the units and, for the commands that
/// transfer, the exit statuses.
fn usage(cmd: &str, o: &Options) -> String {
    let (synopsis, what) = match cmd {
        "serve" => (
            "tfttp serve PATH... [options]",
            "Serve files as the origin of a swarm each. A file PATH is served under its last\n\
             component (serve /srv/big.iso: tfttp://HOST/big.iso); a directory PATH serves\n\
             every regular file under it by its path relative to PATH (serve /srv/pub:\n\
             tfttp://HOST/iso/a.iso for /srv/pub/iso/a.iso). Symlinks inside a directory are\n\
             followed only to regular files inside it; others are skipped with a line saying\n\
             why. Two PATHs giving one name are refused. Every file is hashed at start-up;\n\
             a file's node and mapping are made when a client first asks for it.\n\
             With one file, tfttp://HOST:PORT (no name) gets it; with several, a client must\n\
             name one, and http://HOST:PORT/ lists them all.",
        ),
        "get" => (
            "tfttp get URL (--output PATH | --output - | --discard) [options]",
            "Download from the origin at URL and trade pieces with its other clients.\n\
             URL is tfttp://HOST[:PORT]/NAME[#blake3=HEX] (port 6880 by default, an IPv6\n\
             address in [], NAME percent-decoded, #blake3= the same as --expect-digest),\n\
             as serve prints it, or HOST:PORT[/NAME].\n\
             NAME names one of the served files (the server refuses others); without it,\n\
             the server's only file (a server of several files refuses that).\n\
             Writes PATH.part and renames it to PATH once every piece is verified, then keeps\n\
             serving peers for up to --linger seconds (--linger 0: exit at once).\n\
             --output - writes the file to stdout in order as its pieces verify (they wait in\n\
             an unlinked file in $TMPDIR, default /tmp); stdout ends when the whole file is out.",
        ),
        "demo" => (
            "tfttp demo [options]",
            "Time a server and clients on loopback, client-server then swarm.",
        ),
        _ => (
            "tfttp sim SCENARIO.json [options]",
            "Simulate a swarm in virtual time (docs/SIMULATOR.md).",
        ),
    };
    let mut text = o.usage(&format!("Usage: {synopsis}\n{what}"));
    if cmd != "sim" {
        text.push_str(&format!("\n{UNITS}\n"));
    }
    if cmd == "serve" || cmd == "get" {
        text.push_str(&format!("\n{}", Exit::help_table()));
    }
    text.trim_end().to_string()
}

/// Parses `args` (without the program name).
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some(cmd) = args.first() else {
        return Err("missing command; try 'tfttp --help'".into());
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "-h" | "--help" | "help" => Ok(Command::Help(OVERVIEW.to_string())),
        "-V" | "--version" => Ok(Command::Version),
        "serve" => {
            let o = serve_opts();
            let m = o.parse(rest).map_err(|e| e.to_string())?;
            if m.opt_present("help") {
                return Ok(Command::Help(usage("serve", &o)));
            }
            if m.free.is_empty() {
                return Err("serve needs a FILE or DIRECTORY to serve".into());
            }
            Ok(Command::Serve(ServeArgs {
                paths: m.free.iter().map(PathBuf::from).collect(),
                listen: addr_opt(&m, "listen")?.unwrap_or_else(|| "0.0.0.0:6880".parse().unwrap()),
                piece_size: opt(&m, "piece-size", piece_size)?,
                up_rate: opt(&m, "up-rate", parse_up_rate)?.unwrap_or(UpRate::DEFAULT),
                exit_after: opt(&m, "exit-after", parse_count)?,
                secret: opt(&m, "secret-file", read_secret)?,
                common: common(&m)?,
            }))
        }
        "get" => {
            let m = get_opts(true).parse(rest).map_err(|e| e.to_string())?;
            if m.opt_present("help") {
                return Ok(Command::Help(usage("get", &get_opts(false))));
            }
            let [server] = &m.free[..] else {
                return Err(
                    "get takes exactly one tfttp://HOST[:PORT]/NAME or HOST:PORT[/NAME]".into(),
                );
            };
            let output = match (m.opt_str("output"), m.opt_present("discard")) {
                (Some(_), true) => return Err("give --output or --discard, not both".into()),
                (None, true) => Output::Discard,
                (Some(o), false) if o == "-" => Output::Stdout,
                (Some(o), false) => Output::File(PathBuf::from(o)),
                (None, false) => return Err("get needs --output PATH (or -, or --discard)".into()),
            };
            let target = crate::url::parse(server)?;
            let no_listen = m.opt_present("no-listen");
            if no_listen && m.opt_present("listen") {
                return Err("give --listen or --no-listen, not both".into());
            }
            let option = opt(&m, "expect-digest", parse_digest)?;
            let expect_digest = match (option, target.digest) {
                (Some(a), Some(b)) if a != b => {
                    return Err(
                        "--expect-digest and the URL's #blake3= name different digests; give one"
                            .into(),
                    );
                }
                (a, b) => a.or(b),
            };
            Ok(Command::Get(GetArgs {
                server: target.server,
                path: target.path,
                secret: opt(&m, "secret-file", read_secret)?,
                expect_digest,
                output,
                listen: addr_opt(&m, "listen")?,
                up_rate: opt(&m, "up-rate", parse_up_rate)?.unwrap_or(UpRate::DEFAULT),
                down_rate: opt(&m, "down-rate", rate)?,
                use_peers: !m.opt_present("no-peers"),
                no_listen,
                max_peers: opt(&m, "max-peers", |s| parse_in(s, 0, MAX_PEERS))?
                    .map_or(64, |n| n as usize),
                linger: opt(&m, "linger", |s| parse_secs(s, 0))?.unwrap_or(DEFAULT_LINGER),
                stall_timeout: opt(&m, "stall-timeout", |s| parse_secs(s, 1))?
                    .unwrap_or(Duration::from_secs(60)),
                behaviour: opt(&m, "behave", parse_behaviour)?.unwrap_or(Behaviour::Honest),
                common: common(&m)?,
            }))
        }
        "demo" => {
            let o = demo_opts();
            let m = o.parse(rest).map_err(|e| e.to_string())?;
            if m.opt_present("help") {
                return Ok(Command::Help(usage("demo", &o)));
            }
            if !m.free.is_empty() {
                return Err(format!("demo takes no arguments, got '{}'", m.free[0]));
            }
            let clients = opt(&m, "clients", |s| parse_in(s, 1, 64))?.unwrap_or(4) as usize;
            Ok(Command::Demo(DemoArgs {
                size: opt(&m, "size", |s| size_in(s, 1, MAX_DEMO_SIZE))?.unwrap_or(256 << 20),
                clients,
                server_rate: opt(&m, "server-rate", rate)?.unwrap_or(25_000_000),
                client_rate: opt(&m, "client-rate", rate)?.unwrap_or(125_000_000),
                piece_size: opt(&m, "piece-size", piece_size)?,
                dir: m.opt_str("dir").map(PathBuf::from),
                keep: m.opt_present("keep"),
                progress_interval: opt(&m, "progress-interval", |s| parse_secs(s, 1))?
                    .unwrap_or(DEFAULT_PROGRESS_INTERVAL),
            }))
        }
        "sim" => {
            let o = sim_opts();
            let m = o.parse(rest).map_err(|e| e.to_string())?;
            if m.opt_present("help") {
                return Ok(Command::Help(usage("sim", &o)));
            }
            let [scenario] = &m.free[..] else {
                return Err("sim takes exactly one SCENARIO.json".into());
            };
            Ok(Command::Sim(SimArgs {
                scenario: PathBuf::from(scenario),
                json: m.opt_str("json").map(PathBuf::from),
                seed: opt(&m, "seed", parse_num)?,
                timeline: m.opt_str("timeline").map(PathBuf::from),
                quiet: m.opt_present("quiet"),
            }))
        }
        other => Err(format!("unknown command '{other}'; try 'tfttp --help'")),
    }
}

fn common(m: &Matches) -> Result<Common, String> {
    Ok(Common {
        stats: opt(m, "stats", replaceable_path)?,
        timeline: m.opt_str("timeline").map(PathBuf::from),
        ready_file: opt(m, "ready-file", replaceable_path)?,
        sock_buf: opt(m, "sock-buf", |s| size_in(s, MIN_SOCK_BUF, MAX_SOCK_BUF))?
            .map(|v| v as usize),
        policy: opt(m, "policy", parse_policy)?.unwrap_or(Policy::Tft),
        sendfile: opt(m, "sendfile", parse_sendfile)?.unwrap_or(SendfileMode::Auto),
        quiet: m.opt_present("quiet"),
        verbose: m.opt_present("verbose"),
        progress_interval: opt(m, "progress-interval", |s| parse_secs(s, 1))?
            .unwrap_or(DEFAULT_PROGRESS_INTERVAL),
        metrics: addr_opt(m, "metrics")?,
    })
}

/// A path a node rewrites by renaming a new file over it (`--stats`, `--ready-file`): it
/// must be absent or a regular file. A rename would replace a symlink (`/dev/stdout`) or a
/// device with a regular file, and a directory cannot take it at all.
fn replaceable_path(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    match std::fs::symlink_metadata(&p) {
        Ok(md) if !md.file_type().is_file() => Err(format!(
            "'{s}' exists and is not a regular file (a symlink, device or directory would be \
             replaced); give a new or regular file"
        )),
        _ => Ok(p),
    }
}

/// `--secret-file`: the swarm key from the file's bytes, which must be at least
/// `MIN_SECRET_LEN` (128 bits, what the tag's security rests on).
fn read_secret(path: &str) -> Result<SwarmKey, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read '{path}': {e}"))?;
    if bytes.len() < MIN_SECRET_LEN {
        return Err(format!(
            "'{path}' holds {} bytes; a secret needs at least {MIN_SECRET_LEN} (e.g. head -c 32 \
             /dev/urandom > {path})",
            bytes.len()
        ));
    }
    Ok(SwarmKey::derive(&bytes))
}

/// `--expect-digest`: 64 hex digits, with or without `blake3:`.
fn parse_digest(s: &str) -> Result<Hash, String> {
    manifest::parse_digest(s).ok_or_else(|| {
        format!("'{s}' is not a digest (64 hex digits, as serve prints after 'blake3:')")
    })
}

/// A count of at least 1.
fn parse_count(s: &str) -> Result<u32, String> {
    parse_in(s, 1, u32::MAX as u64).map(|n| n as u32)
}

fn opt<T>(
    m: &Matches,
    name: &str,
    f: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    m.opt_str(name)
        .map(|v| f(&v).map_err(|e| format!("--{name}: {e}")))
        .transpose()
}

fn addr_opt(m: &Matches, name: &str) -> Result<Option<SocketAddr>, String> {
    opt(m, name, resolve)
}

/// Resolves `HOST:PORT` (a name or a literal address) to its first address.
pub fn resolve(s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("'{s}' is not a usable HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("'{s}' resolves to no address"))
}

fn parse_num(s: &str) -> Result<u64, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not a whole number"))
}

/// A whole number in `min..=max`.
fn parse_in(s: &str, min: u64, max: u64) -> Result<u64, String> {
    let n = parse_num(s)?;
    if n < min || n > max {
        return Err(format!("{n} is out of range ({min} to {max})"));
    }
    Ok(n)
}

/// Whole seconds from `min` to `MAX_SECS`.
fn parse_secs(s: &str, min: u64) -> Result<Duration, String> {
    parse_in(s, min, MAX_SECS).map(Duration::from_secs)
}

/// A SIZE in `min..=max` bytes.
fn size_in(s: &str, min: u64, max: u64) -> Result<u64, String> {
    let n = parse_size(s)?;
    if n < min || n > max {
        return Err(format!("'{s}' is out of range ({min} to {max} bytes)"));
    }
    Ok(n)
}

/// A piece size the manifest can carry (docs/PROTOCOL.md §3).
fn piece_size(s: &str) -> Result<u32, String> {
    size_in(s, MIN_PIECE_SIZE as u64, MAX_PIECE_SIZE as u64).map(|n| n as u32)
}

/// A RATE no link comes near, so that no bucket arithmetic overflows.
fn rate(s: &str) -> Result<u64, String> {
    let r = parse_rate(s)?;
    if r > MAX_RATE {
        return Err(format!("'{s}' is above the largest rate, {MAX_RATE} B/s"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn test_get_requires_output() {
        let e = parse(&args("get 127.0.0.1:1")).unwrap_err();
        assert!(e.contains("--output"), "{e}");
    }

    #[test]
    fn test_get_parses_flags() {
        let c = parse(&args(
            "get 127.0.0.1:9 -o /tmp/x --up-rate 10M --no-peers --linger 0",
        ))
        .unwrap();
        let Command::Get(g) = c else { panic!() };
        assert_eq!(g.up_rate, UpRate::Fixed(10_000_000));
        assert!(!g.use_peers);
        assert_eq!(g.linger, Duration::ZERO);
    }

    #[test]
    fn test_up_rate_takes_a_rate_auto_or_off_and_defaults_to_off() {
        let up = |s: &str| match parse(&args(s)) {
            Ok(Command::Get(g)) => Ok(g.up_rate),
            Ok(Command::Serve(a)) => Ok(a.up_rate),
            Ok(_) => panic!("not get or serve"),
            Err(e) => Err(e),
        };
        assert_eq!(up("get h:1 -o x"), Ok(UpRate::Off));
        assert_eq!(up("serve f"), Ok(UpRate::Off));
        assert_eq!(up("get h:1 -o x --up-rate auto"), Ok(UpRate::Auto));
        assert_eq!(up("serve f --up-rate off"), Ok(UpRate::Off));
        assert_eq!(up("serve f --up-rate 40Mbit"), Ok(UpRate::Fixed(5_000_000)));
        assert_eq!(UpRate::Fixed(7).told(), Some(7));
        assert_eq!(UpRate::Auto.told(), None);
        assert_eq!(UpRate::Off.told(), None);
        for bad in ["Auto", "on", "0", "fast"] {
            let e = up(&format!("get h:1 -o x --up-rate {bad}")).unwrap_err();
            assert!(
                e.starts_with("--up-rate") && e.contains("auto"),
                "{bad}: {e}"
            );
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn test_get_output_dash_is_stdout_and_discard_is_its_own_flag() {
        let out = |s: &str| match parse(&args(s)) {
            Ok(Command::Get(g)) => Ok(g.output),
            Ok(_) => panic!("not get"),
            Err(e) => Err(e),
        };
        assert_eq!(out("get h:1 -o -"), Ok(Output::Stdout));
        assert_eq!(out("get h:1 --discard"), Ok(Output::Discard));
        assert_eq!(out("get h:1 -o f"), Ok(Output::File("f".into())));
        assert!(
            out("get h:1 -o f --discard")
                .unwrap_err()
                .contains("not both")
        );
    }

    #[test]
    fn test_unknown_command_and_bad_values() {
        assert!(parse(&args("fly")).is_err());
        assert!(parse(&args("serve")).is_err());
        assert!(
            parse(&args("serve f --up-rate x"))
                .unwrap_err()
                .contains("--up-rate")
        );
        assert!(parse(&args("demo --clients 0")).is_err());
        assert!(parse(&args("get nohost -o x")).is_err());
    }

    /// Every number on the command line is range-checked: out of range is a one-line usage
    /// error naming the option, never a panic or a silent clamp later (issue 13).
    #[test]
    fn test_every_number_is_range_checked() {
        let huge = u64::MAX.to_string();
        for (cmd, opt, bad) in [
            ("get h:1 -o x", "--linger", huge.as_str()),
            ("get h:1 -o x", "--linger", "31536001"),
            ("get h:1 -o x", "--stall-timeout", huge.as_str()),
            ("get h:1 -o x", "--stall-timeout", "0"),
            ("get h:1 -o x", "--progress-interval", huge.as_str()),
            ("get h:1 -o x", "--progress-interval", "0"),
            ("get h:1 -o x", "--max-peers", huge.as_str()),
            ("get h:1 -o x", "--max-peers", "16385"),
            ("get h:1 -o x", "--up-rate", "99999999999999999999"),
            ("get h:1 -o x", "--down-rate", "2T"),
            ("get h:1 -o x", "--sock-buf", "16G"),
            ("get h:1 -o x", "--sock-buf", "0"),
            ("serve f", "--exit-after", "0"),
            ("serve f", "--exit-after", "4294967296"),
            ("serve f", "--piece-size", "1K"),
            ("serve f", "--piece-size", "32M"),
            ("serve f", "--piece-size", "99999999999999999999"),
            ("serve f", "--progress-interval", huge.as_str()),
            ("demo", "--clients", "0"),
            ("demo", "--clients", "65"),
            ("demo", "--size", "0"),
            ("demo", "--size", "2T"),
            ("demo", "--piece-size", "8G"),
            ("demo", "--server-rate", "0"),
            ("sim s.json", "--seed", "-1"),
        ] {
            let line = format!("{cmd} {opt} {bad}");
            let e = parse(&args(&line)).expect_err(&line);
            assert!(e.starts_with(opt), "{line}: {e}");
            assert_eq!(e.lines().count(), 1, "{line}: {e}");
        }
        let ok = parse(&args(
            "get h:1 -o x --linger 31536000 --stall-timeout 1 --max-peers 0 --sock-buf 4K",
        ))
        .unwrap();
        let Command::Get(g) = ok else { panic!() };
        assert_eq!(g.linger, Duration::from_secs(31_536_000));
        assert_eq!(g.stall_timeout, Duration::from_secs(1));
    }

    #[test]
    fn test_get_server_with_a_name() {
        let Command::Get(g) = parse(&args("get 127.0.0.1:9/big.iso -o x")).unwrap() else {
            panic!()
        };
        assert_eq!(
            (g.server.as_str(), g.path.as_str()),
            ("127.0.0.1:9", "big.iso")
        );
        let Command::Get(g) = parse(&args("get [::1]:9 -o x")).unwrap() else {
            panic!()
        };
        assert_eq!((g.server.as_str(), g.path.as_str()), ("[::1]:9", ""));
        for bad in ["127.0.0.1:9/../x", "127.0.0.1:9/a//b", "127.0.0.1:9//x"] {
            assert!(parse(&args(&format!("get {bad} -o x"))).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_expect_digest_with_or_without_prefix() {
        let hex = "ab".repeat(32);
        for d in [hex.clone(), format!("blake3:{hex}")] {
            let Command::Get(g) =
                parse(&args(&format!("get h:1 -o x --expect-digest {d}"))).unwrap()
            else {
                panic!()
            };
            assert_eq!(g.expect_digest, Some([0xab; 32]));
        }
        let e = parse(&args("get h:1 -o x --expect-digest 12ab")).unwrap_err();
        assert!(e.contains("--expect-digest"), "{e}");
    }

    #[test]
    fn test_secret_file_must_be_readable_and_long_enough() {
        let dir = std::env::temp_dir().join(format!("tfttp-cli-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, b"15 bytes only!!").unwrap();
        let good = dir.join("good");
        std::fs::write(&good, b"sixteen bytes ok").unwrap();
        let e = parse(&args(&format!("serve f --secret-file {}", short.display()))).unwrap_err();
        assert!(e.contains("--secret-file") && e.contains("16"), "{e}");
        let e = parse(&args("serve f --secret-file /nonexistent/secret")).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
        let Command::Serve(s) =
            parse(&args(&format!("serve f --secret-file {}", good.display()))).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.secret, Some(SwarmKey::derive(b"sixteen bytes ok")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
