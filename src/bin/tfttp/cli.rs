//! Command line: the one place that defines options, prints usage and parses values (sizes
//! and rates in `units`).
//! Bad arguments exit 2 with a one-line reason; runtime failures exit 1.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use getopts::{Matches, Options};

use tfttp::net::SendfileMode;
use tfttp::proto::{Behaviour, DEFAULT_LINGER, Policy};

use crate::units::{parse_rate, parse_size};

pub const USAGE_HEAD: &str = "\
tfttp: the Tit-for-Tat Transfer Protocol. One origin spreads a large file over a crowd of
clients that trade pieces among themselves.

Usage:
  tfttp serve FILE [--listen ADDR:PORT] [options]   serve FILE as the origin
  tfttp get SERVER:PORT --output PATH [options]     download from SERVER and its peers
  tfttp demo [options]                              server + clients on loopback, timed
  tfttp sim SCENARIO.json [--json OUT] [--seed N]   simulate a swarm (docs/SIMULATOR.md)
  tfttp --help | --version

RATE is bytes per second: 40M = 40,000,000 B/s (k, M, G are powers of 1000; Ki, Mi, Gi
of 1024); append 'bit' for bits per second: 40Mbit = 5,000,000 B/s.
SIZE is bytes: 256M = 256 MiB (K, M, G are powers of 1024).";

/// Exit code for bad usage, as BSD sysexits' EX_USAGE is too rare to be recognised.
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_FAILURE: i32 = 1;

#[derive(Debug, Clone)]
pub struct ServeArgs {
    pub file: PathBuf,
    pub listen: SocketAddr,
    /// `None`: chosen from the file size (`manifest::auto_piece_size`).
    pub piece_size: Option<u32>,
    pub up_rate: Option<u64>,
    pub exit_after: Option<u32>,
    pub common: Common,
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
        _ => Err(format!(
            "unknown behaviour '{s}' (honest, free-rider, liar)"
        )),
    }
}

#[derive(Debug, Clone)]
pub struct GetArgs {
    pub server: SocketAddr,
    pub output: PathBuf,
    pub listen: Option<SocketAddr>,
    pub up_rate: Option<u64>,
    pub down_rate: Option<u64>,
    pub use_peers: bool,
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
}

#[derive(Debug, Clone)]
pub struct SimArgs {
    pub scenario: PathBuf,
    /// Write the full result here.
    pub json: Option<PathBuf>,
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
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
    o.optflag("q", "quiet", "print nothing on success");
    o.optflag("v", "verbose", "log connections to stderr");
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
    o.optopt("", "up-rate", "cap the server's upload", "RATE");
    o.optopt(
        "",
        "exit-after",
        "exit once N clients completed and none is still downloading",
        "N",
    );
    common_opts(&mut o);
    o
}

fn get_opts() -> Options {
    let mut o = Options::new();
    o.optopt(
        "o",
        "output",
        "where to write the file (required; PATH.part until verified; - verifies and discards)",
        "PATH",
    );
    o.optopt(
        "l",
        "listen",
        "address to accept peers on (default 0.0.0.0:0, any port)",
        "ADDR:PORT",
    );
    o.optopt("", "up-rate", "cap this client's upload", "RATE");
    o.optopt("", "down-rate", "cap this client's download", "RATE");
    o.optflag(
        "",
        "no-peers",
        "plain client-server download: no trading with peers",
    );
    o.optopt("", "max-peers", "most peer connections (default 64)", "N");
    o.optopt(
        "",
        "behave",
        "TEST ONLY: honest (default), free-rider (never uploads), liar (free rider that claims uploads)",
        "HOW",
    );
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
    o.optflag("h", "help", "print this help");
    o
}

fn sim_opts() -> Options {
    let mut o = Options::new();
    o.optopt("", "json", "write the result as JSON to PATH", "PATH");
    o.optopt("", "seed", "use this seed instead of the scenario's", "N");
    o.optflag("q", "quiet", "print nothing but errors");
    o.optflag("h", "help", "print this help");
    o
}

fn usage(cmd: &str, o: &Options) -> String {
    o.usage(&format!("{USAGE_HEAD}\n\nOptions of '{cmd}':"))
}

/// Parses `args` (without the program name).
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some(cmd) = args.first() else {
        return Err("missing command; try 'tfttp --help'".into());
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "-h" | "--help" | "help" => Ok(Command::Help(usage("serve", &serve_opts()))),
        "-V" | "--version" => Ok(Command::Version),
        "serve" => {
            let o = serve_opts();
            let m = o.parse(rest).map_err(|e| e.to_string())?;
            if m.opt_present("help") {
                return Ok(Command::Help(usage("serve", &o)));
            }
            let [file] = &m.free[..] else {
                return Err("serve takes exactly one FILE".into());
            };
            Ok(Command::Serve(ServeArgs {
                file: PathBuf::from(file),
                listen: addr_opt(&m, "listen")?.unwrap_or_else(|| "0.0.0.0:6880".parse().unwrap()),
                piece_size: opt(&m, "piece-size", parse_size)?
                    .map(|v| u32::try_from(v).map_err(|_| "--piece-size too large".to_string()))
                    .transpose()?,
                up_rate: opt(&m, "up-rate", parse_rate)?,
                exit_after: opt(&m, "exit-after", parse_num)?.map(|n| n as u32),
                common: common(&m)?,
            }))
        }
        "get" => {
            let o = get_opts();
            let m = o.parse(rest).map_err(|e| e.to_string())?;
            if m.opt_present("help") {
                return Ok(Command::Help(usage("get", &o)));
            }
            let [server] = &m.free[..] else {
                return Err("get takes exactly one SERVER:PORT".into());
            };
            let output = m.opt_str("output").ok_or("get needs --output PATH")?;
            Ok(Command::Get(GetArgs {
                server: resolve(server)?,
                output: PathBuf::from(output),
                listen: addr_opt(&m, "listen")?,
                up_rate: opt(&m, "up-rate", parse_rate)?,
                down_rate: opt(&m, "down-rate", parse_rate)?,
                use_peers: !m.opt_present("no-peers"),
                max_peers: opt(&m, "max-peers", parse_num)?.map_or(64, |n| n as usize),
                linger: opt(&m, "linger", parse_num)?.map_or(DEFAULT_LINGER, Duration::from_secs),
                stall_timeout: Duration::from_secs(
                    opt(&m, "stall-timeout", parse_num)?.unwrap_or(60).max(1),
                ),
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
            let clients = opt(&m, "clients", parse_num)?.unwrap_or(4) as usize;
            if !(1..=64).contains(&clients) {
                return Err("--clients must be 1..=64".into());
            }
            Ok(Command::Demo(DemoArgs {
                size: opt(&m, "size", parse_size)?.unwrap_or(256 << 20),
                clients,
                server_rate: opt(&m, "server-rate", parse_rate)?.unwrap_or(25_000_000),
                client_rate: opt(&m, "client-rate", parse_rate)?.unwrap_or(125_000_000),
                piece_size: opt(&m, "piece-size", parse_size)?
                    .map(|v| v.min(u32::MAX as u64) as u32),
                dir: m.opt_str("dir").map(PathBuf::from),
                keep: m.opt_present("keep"),
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
                quiet: m.opt_present("quiet"),
            }))
        }
        other => Err(format!("unknown command '{other}'; try 'tfttp --help'")),
    }
}

fn common(m: &Matches) -> Result<Common, String> {
    Ok(Common {
        stats: m.opt_str("stats").map(PathBuf::from),
        timeline: m.opt_str("timeline").map(PathBuf::from),
        ready_file: m.opt_str("ready-file").map(PathBuf::from),
        sock_buf: opt(m, "sock-buf", parse_size)?.map(|v| v as usize),
        policy: opt(m, "policy", parse_policy)?.unwrap_or(Policy::Tft),
        sendfile: opt(m, "sendfile", parse_sendfile)?.unwrap_or(SendfileMode::Auto),
        quiet: m.opt_present("quiet"),
        verbose: m.opt_present("verbose"),
    })
}

fn opt<T>(m: &Matches, name: &str, f: fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
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
        assert_eq!(g.up_rate, Some(10_000_000));
        assert!(!g.use_peers);
        assert_eq!(g.linger, Duration::ZERO);
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
}
