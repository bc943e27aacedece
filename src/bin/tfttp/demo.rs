//! `tfttp demo`: the flash-crowd case on loopback. A server with a slow uplink and N clients
//! with fast links download the same file twice, first client-server only (`--no-peers`),
//! then as a TFTTP swarm, and the two are timed against the Kumar–Ross minimum.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tfttp::bounds;

use crate::cli::DemoArgs;
use crate::procs::{self, json_number};
use crate::progress;

/// Seed for the demo file's contents.
const SEED: u64 = 0x7f4a_7c15_9e37_79b9;

struct Phase {
    /// Each client's time from its start to its last verified piece, seconds.
    times: Vec<f64>,
    server_bytes: f64,
    from_peers: f64,
    received: f64,
}

/// One client of a phase and the files it writes.
struct Client {
    child: procs::Running,
    out: PathBuf,
    stats: PathBuf,
    /// Its `--timeline`: a row of counters a second, which the demo's progress line sums.
    timeline: PathBuf,
}

struct Dir {
    path: PathBuf,
    keep: bool,
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub fn run(a: &DemoArgs) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let path = a
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("tfttp-demo-{}", std::process::id())));
    std::fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let dir = Dir { path, keep: a.keep };
    let source = dir.path.join("source.bin");
    let mib = a.size as f64 / (1 << 20) as f64;
    println!(
        "tfttp demo: {mib:.0} MiB file, 1 server uploading at {:.0} Mbit/s, {} clients at {:.0} Mbit/s up and down (loopback)",
        a.server_rate as f64 * 8e-6,
        a.clients,
        a.client_rate as f64 * 8e-6
    );
    procs::write_test_file(&source, a.size, SEED)
        .map_err(|e| format!("cannot write {}: {e}", source.display()))?;

    let f = a.size as f64;
    let (us, ui) = (a.server_rate as f64, a.client_rate as f64);
    let clients = vec![(ui, Some(ui)); a.clients];
    let t_cs = bounds::client_server(f, us, &clients);
    let t_min = bounds::kumar_ross(f, us, &clients);

    println!("running client-server (every client from the server only) ...");
    let cs = phase(&exe, &dir.path, &source, a, false, t_cs)?;
    println!("running tfttp swarm (clients trade pieces) ...");
    let sw = phase(&exe, &dir.path, &source, a, true, t_cs)?;

    println!();
    println!("                      mean       max   server sent   from peers");
    for (name, p) in [("client-server", &cs), ("tfttp swarm", &sw)] {
        println!(
            "  {name:<15} {:>8.2} s {:>8.2} s {:>8.2} copies {:>8.0}%",
            mean(&p.times),
            max(&p.times),
            p.server_bytes / f.max(1.0),
            100.0 * p.from_peers / p.received.max(1.0)
        );
    }
    println!();
    println!("  client-server bound  max(N*F/u_s, F/d)                  = {t_cs:8.2} s");
    println!("  Kumar-Ross minimum   max(F/u_s, F/d, N*F/(u_s+sum u_i))  = {t_min:8.2} s");
    println!(
        "  swarm last client: {:.2}x the minimum, {:.2}x faster than client-server",
        max(&sw.times) / t_min,
        max(&cs.times) / max(&sw.times).max(1e-9)
    );
    println!(
        "  all {} outputs of both runs are byte-identical to the source",
        2 * a.clients
    );
    Ok(())
}

fn phase(
    exe: &Path,
    dir: &Path,
    source: &Path,
    a: &DemoArgs,
    swarm: bool,
    t_cs: f64,
) -> Result<Phase, String> {
    let tag = if swarm { "swarm" } else { "cs" };
    let ready = dir.join(format!("{tag}-server.addr"));
    let server_stats = dir.join(format!("{tag}-server.json"));
    let s = |v: &str| v.to_string();
    let mut server_args = vec![
        s("--up-rate"),
        a.server_rate.to_string(),
        s("--exit-after"),
        a.clients.to_string(),
        s("--stats"),
        server_stats.display().to_string(),
        s("-q"),
    ];
    if let Some(p) = a.piece_size {
        server_args.extend([s("--piece-size"), p.to_string()]);
    }
    if !swarm {
        // The baseline is a plain server. The tit-for-tat origin would take `--no-peers`
        // clients, which never pass a piece on, for free riders and hold them to 2% of its
        // upload once they break their promise: a baseline slowed by the incentives.
        server_args.extend([s("--policy"), s("all")]);
    }
    let (mut server, addr) =
        procs::start_origin(exe, source, &ready, &server_args, Duration::from_secs(60))?;
    // Generous: four times the client-server bound plus start-up.
    let deadline = Instant::now() + Duration::from_secs_f64(4.0 * t_cs + 60.0);
    let mut clients: Vec<Client> = Vec::new();
    for i in 0..a.clients {
        let out = dir.join(format!("{tag}-out-{i}.bin"));
        let st = dir.join(format!("{tag}-client-{i}.json"));
        let timeline = dir.join(format!("{tag}-client-{i}.timeline"));
        let mut args = vec![
            s("get"),
            addr.to_string(),
            s("--output"),
            out.display().to_string(),
            s("--listen"),
            s("127.0.0.1:0"),
            s("--up-rate"),
            a.client_rate.to_string(),
            s("--down-rate"),
            a.client_rate.to_string(),
            s("--stats"),
            st.display().to_string(),
            s("--timeline"),
            timeline.display().to_string(),
            s("-q"),
        ];
        if !swarm {
            args.push(s("--no-peers"));
        }
        let child = procs::spawn(exe, &args).map_err(|e| format!("cannot start a client: {e}"))?;
        clients.push(Client {
            child,
            out,
            stats: st,
            timeline,
        });
    }
    let name = if swarm {
        "tfttp swarm"
    } else {
        "client-server"
    };
    watch(name, &mut clients, a, deadline);
    let mut result = Phase {
        times: Vec::new(),
        server_bytes: 0.0,
        from_peers: 0.0,
        received: 0.0,
    };
    let mut failure = None;
    for Client {
        child,
        out,
        stats: st,
        ..
    } in &mut clients
    {
        let (status, err) = procs::wait(child, deadline);
        if tfttp::net::stopped() {
            failure = Some("interrupted".to_string());
        }
        if !status.is_some_and(|s| s.success()) {
            failure.get_or_insert(format!("a client failed: {}", err.trim()));
            continue;
        }
        let stats = std::fs::read_to_string(&*st).unwrap_or_default();
        result
            .times
            .push(json_number(&stats, "complete_s").unwrap_or(f64::NAN));
        result.from_peers += json_number(&stats, "bytes_from_peers").unwrap_or(0.0);
        result.received += json_number(&stats, "bytes_from_origin").unwrap_or(0.0)
            + json_number(&stats, "bytes_from_peers").unwrap_or(0.0);
        match procs::same_contents(source, out) {
            Ok(true) => {}
            Ok(false) => {
                failure.get_or_insert(format!("{} differs from the source", out.display()));
            }
            Err(e) => {
                failure.get_or_insert(format!("cannot compare {}: {e}", out.display()));
            }
        }
        let _ = std::fs::remove_file(&*out);
    }
    let (status, err) = procs::wait(&mut server, Instant::now() + Duration::from_secs(10));
    if failure.is_none() && !status.is_some_and(|s| s.success()) {
        failure = Some(format!("the server failed: {}", err.trim()));
    }
    if let Some(f) = failure {
        return Err(f);
    }
    let stats = std::fs::read_to_string(&server_stats).unwrap_or_default();
    result.server_bytes = json_number(&stats, "bytes_uploaded").unwrap_or(f64::NAN);
    Ok(result)
}

/// Waits until every client of a phase has exited or `deadline`, showing the phase's
/// progress: on a terminal one line redrawn every second, otherwise one line per
/// `--progress-interval`; either way a last line when the phase ends. A demo that sat silent
/// through a 45 s phase looked hung (issue 15).
fn watch(name: &str, clients: &mut [Client], a: &DemoArgs, deadline: Instant) {
    // SAFETY: isatty only reads the descriptor's state.
    let tty = unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
    let start = Instant::now();
    let total = a.size as f64 * clients.len() as f64;
    let mut next_line = start + a.progress_interval;
    loop {
        let mut done = 0;
        for c in clients.iter_mut() {
            if !matches!(c.child.try_wait(), Ok(None)) {
                done += 1;
            }
        }
        let finished = done == clients.len() || Instant::now() >= deadline;
        let line = phase_line(name, clients, total, done, start.elapsed().as_secs_f64());
        let mut out = std::io::stdout().lock();
        if tty {
            let _ = write!(out, "\r\x1b[K{line}");
            if finished {
                let _ = writeln!(out);
            }
            let _ = out.flush();
        } else if finished || Instant::now() >= next_line {
            next_line = Instant::now() + a.progress_interval;
            let _ = writeln!(out, "{line}");
        }
        if finished {
            return;
        }
        drop(out);
        std::thread::sleep(WATCH_EVERY);
    }
}

/// How often the demo looks at its clients' timelines (they write a row a second).
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// `  client-server   37%  190 MiB of 512 MiB  1/2 done  12.3 s  15.4 MB/s  0% from peers`,
/// from the last row of each client's timeline.
fn phase_line(name: &str, clients: &[Client], total: f64, done: usize, secs: f64) -> String {
    let (mut got, mut from_peers) = (0.0, 0.0);
    for c in clients {
        let text = std::fs::read_to_string(&c.timeline).unwrap_or_default();
        let Some(row) = text.lines().next_back() else {
            continue;
        };
        let field = |k: &str| json_number(row, k).unwrap_or(0.0);
        got += (field("from_origin") + field("from_peers") - field("discarded")).max(0.0);
        from_peers += field("from_peers");
    }
    format!(
        "  {name:<15} {:>3.0}%  {} of {}  {done}/{} done  {secs:.1} s  {}  {:.0}% from peers",
        100.0 * got / total.max(1.0),
        progress::size(got as u64),
        progress::size(total as u64),
        clients.len(),
        progress::rate(got / secs.max(1e-3)),
        100.0 * from_peers / got.max(1.0),
    )
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}
