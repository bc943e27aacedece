//! `serve` and `get`: turn parsed arguments into a node, its storage and its event loop, run
//! it, and report the result as an exit code and one line.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tfttp::net::socket::{self, SocketOptions};
use tfttp::net::storage::Storage;
use tfttp::net::{Driver, MAX_CONNS_ORIGIN, Options, RunError, StorageErrorKind, max_conns_client};
use tfttp::proto::{Config, Link, Node, UpRate};
use tfttp::wire::Role;

use crate::cli::{Common, GetArgs, Output, ServeArgs, SimArgs};
use crate::exit::{Exit, Fail};
use crate::progress::{self, Progress};
use crate::{ifaddrs, url};

/// `N` random bytes from the kernel; `None` if /dev/urandom is unreadable.
fn urandom<const N: usize>() -> Option<[u8; N]> {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .ok()
        .map(|()| b)
}

/// A random node id: from the kernel, or from time and pid if /dev/urandom is unreadable.
pub fn random_id() -> u64 {
    if let Some(b) = urandom::<8>() {
        return u64::from_ne_bytes(b) | 1;
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ ((std::process::id() as u64) << 32)) | 1
}

/// A node's configuration with a random id and unpredictable HELLO nonces.
fn new_config(role: Role) -> Config {
    let mut cfg = Config::new(role, random_id());
    if let Some(key) = urandom::<32>() {
        cfg.nonce_key = key;
    }
    cfg
}

fn driver_options(c: &Common, up: UpRate, down: Option<u64>, max_conns: usize) -> Options {
    Options {
        up_rate: up,
        down_rate: down,
        sock: SocketOptions {
            buffer: c.sock_buf,
            notsent_lowat: (up == UpRate::Auto).then_some(socket::PACED_NOTSENT_LOWAT),
        },
        sendfile: c.sendfile,
        stats_path: c.stats.clone(),
        timeline_path: c.timeline.clone(),
        max_conns,
        verbose: c.verbose,
        source_name: None,
    }
}

/// Starts the `--metrics` endpoint on the driver's loop, if asked for.
fn start_metrics(driver: &mut Driver, c: &Common) -> Result<(), Fail> {
    let Some(addr) = c.metrics else {
        return Ok(());
    };
    let what = format!("cannot listen on {addr} for --metrics");
    let listener = socket::listen(addr, SocketOptions::default()).map_err(local(what.clone()))?;
    let bound = listener.local_addr().map_err(local(what.clone()))?;
    driver.serve_metrics(listener).map_err(local(what))?;
    if !c.quiet {
        eprintln!("tfttp: metrics at http://{bound}/metrics");
    }
    Ok(())
}

fn write_ready_file(c: &Common, addr: SocketAddr) -> Result<(), Fail> {
    if let Some(p) = &c.ready_file {
        tfttp::stats::write_atomic(p, &format!("{addr}\n"))
            .map_err(|e| Fail::new(Exit::LocalIo, format!("cannot write {}: {e}", p.display())))?;
    }
    Ok(())
}

/// A local file or socket failed: `what` and the OS's reason.
fn local(what: String) -> impl FnOnce(std::io::Error) -> Fail {
    move |e| Fail::new(Exit::LocalIo, format!("{what}: {e}"))
}

/// The server's address; a name that does not resolve has its own exit status.
fn resolve(server: &str) -> Result<SocketAddr, Fail> {
    use std::net::ToSocketAddrs;
    server
        .to_socket_addrs()
        .map_err(|e| Fail::new(Exit::Resolve, format!("cannot resolve '{server}': {e}")))?
        .next()
        .ok_or_else(|| Fail::new(Exit::Resolve, format!("'{server}' resolves to no address")))
}

/// URLs `serve` prints for an origin of several files: enough to copy a few from, and the
/// listing for the rest. 10,000 lines would bury the start-up messages and say nothing the
/// listing (`GET /`, with every digest) does not.
const MAX_URLS_SHOWN: usize = 20;
/// Lines about skipped paths shown; a tree of many FIFOs or foreign symlinks gets a count.
const MAX_SKIPPED_SHOWN: usize = 20;

pub fn serve(a: &ServeArgs) -> Result<(), Fail> {
    use tfttp::net::catalog::{Catalog, CatalogError};
    use tfttp::net::tree::{self, TreeError};
    let tree = tree::walk(&a.paths).map_err(|e| match e {
        TreeError::Unreadable(..) | TreeError::NotServable(_) => {
            Fail::new(Exit::LocalIo, e.to_string())
        }
        _ => Fail::new(Exit::Usage, e.to_string()),
    })?;
    let many = tree.files.len() > 1;
    if many && (a.common.metrics.is_some() || a.common.timeline.is_some()) {
        return Err(Fail::new(
            Exit::Usage,
            "--metrics and --timeline describe one node: serve one file with them (--stats \
             counts over all files)",
        ));
    }
    if many && let Some(f) = tree.files.iter().find(|f| f.name.is_none()) {
        return Err(Fail::new(
            Exit::Usage,
            format!(
                "cannot serve {} with other files: no client can ask for its name (not UTF-8, \
                 or over 200 bytes); rename it",
                f.path.display()
            ),
        ));
    }
    if !a.common.quiet {
        for line in tree.skipped.iter().take(MAX_SKIPPED_SHOWN) {
            eprintln!("tfttp: skipping {line}");
        }
        if tree.skipped.len() > MAX_SKIPPED_SHOWN {
            let more = tree.skipped.len() - MAX_SKIPPED_SHOWN;
            eprintln!("tfttp: skipping {more} more paths (not regular files inside the tree)");
        }
        if many {
            eprintln!(
                "tfttp: hashing {} files (each file's manifest, read once)",
                tree.files.len()
            );
        }
    }
    let started = Instant::now();
    let catalog = Catalog::build(tree.files, a.piece_size).map_err(|e| match e {
        CatalogError::Open(..) => Fail::new(Exit::LocalIo, e.to_string()),
        CatalogError::Manifest(..) => Fail::new(Exit::Usage, e.to_string()),
    })?;
    let hashed_in = started.elapsed();
    let listener = socket::listen(
        a.listen,
        SocketOptions {
            buffer: a.common.sock_buf,
            ..SocketOptions::default()
        },
    )
    .map_err(local(format!("cannot listen on {}", a.listen)))?;
    let bound = listener
        .local_addr()
        .map_err(local("cannot read the bound address".into()))?;
    let mut cfg = new_config(Role::Origin);
    cfg.listen_port = bound.port();
    cfg.secret = a.secret.clone();
    cfg.exit_after = a.exit_after;
    cfg.policy = a.common.policy;
    // The policy is told only a told rate: the pacer's measure is the driver's.
    cfg.set_up_rate(a.up_rate);
    let total = catalog.total_len();
    let count = catalog.len();
    // What serve prints: one file as before; several, a bounded list (`MAX_URLS_SHOWN`).
    let mut lines = Vec::new();
    // How the lone file is named in messages: as given, or found in a directory given.
    let single_name = match (&a.paths[..], many) {
        ([p], false) if p.is_file() => Some(p.display().to_string()),
        (_, false) => Some(catalog.get(0).path.display().to_string()),
        _ => None,
    };
    let secret = if a.secret.is_some() {
        ", swarm secret required"
    } else {
        ""
    };
    if many {
        lines.push(format!(
            "tfttp: serving {count} files ({total} bytes, hashed in {:.2} s) on {bound}{secret}",
            hashed_in.as_secs_f64()
        ));
        for e in catalog.iter().take(MAX_URLS_SHOWN) {
            let urls = serve_urls(bound, e.name.as_deref(), e.manifest.digest());
            lines.push(urls[0].clone());
        }
        let first = catalog.get(0);
        let others = serve_urls(bound, first.name.as_deref(), first.manifest.digest());
        if count > MAX_URLS_SHOWN {
            lines.push(format!(
                "tfttp: … and {} more files; {} lists every file with its digest (JSON with \
                 Accept: application/json)",
                count - MAX_URLS_SHOWN,
                listing_url(&others[0])
            ));
        }
        if others.len() > 1 {
            let hosts: Vec<String> = others[1..].iter().map(|u| listing_url(u)).collect();
            lines.push(format!(
                "tfttp: the same files are at {} (the host's other addresses)",
                hosts.join(", ")
            ));
        }
    } else {
        let e = catalog.get(0);
        let m = &e.manifest;
        let (len, pieces) = (m.file_len(), m.piece_count());
        let digest = tfttp::manifest::to_hex(m.digest());
        lines.push(format!(
            "tfttp: serving {} ({len} bytes, {pieces} pieces) on {bound}, digest blake3:{digest}{secret}",
            single_name.as_deref().unwrap_or_default()
        ));
        lines.extend(serve_urls(bound, e.name.as_deref(), m.digest()));
    }
    let single_len = (!many).then(|| catalog.get(0).manifest.file_len());
    let mut opts = driver_options(&a.common, a.up_rate, None, MAX_CONNS_ORIGIN);
    opts.source_name = single_name;
    opts.sock
        .notsent_lowat
        .get_or_insert(socket::ORIGIN_NOTSENT_LOWAT);
    let mut driver = Driver::origin(catalog, cfg, listener, opts)
        .map_err(|e| Fail::new(Exit::Other, format!("cannot start the event loop: {e}")))?;
    start_metrics(&mut driver, &a.common)?;
    write_ready_file(&a.common, bound)?;
    if !a.common.quiet {
        for l in &lines {
            eprintln!("{l}");
        }
        watch(
            &mut driver,
            &a.common,
            progress::Role::Origin { single_len },
        );
    }
    match driver.run() {
        // Ctrl-C is how a server is normally stopped.
        Ok(()) | Err(_) if tfttp::net::stopped() => {}
        Ok(()) => {}
        Err(e) => return Err(e.into()),
    }
    if !a.common.quiet {
        let k = driver.totals();
        let copies = match single_len {
            Some(len) => format!(" ({:.2} copies)", crate::progress::copies(k.uploaded, len)),
            None => String::new(),
        };
        eprintln!(
            "tfttp: served {} bytes{copies}, {} clients completed",
            k.uploaded, k.clients_completed
        );
    }
    Ok(())
}

/// `http://HOST:PORT/` for the tfttp URL `url` (`tfttp://HOST:PORT/NAME#…`): the listing.
fn listing_url(url: &str) -> String {
    let rest = url.strip_prefix("tfttp://").unwrap_or(url);
    let host = rest.split('/').next().unwrap_or(rest);
    format!("http://{host}/")
}

/// The URLs `serve` prints, one per address a user can hand out: the host's own addresses
/// when listening on every address (IPv4 ones only for 0.0.0.0; Linux's [::] takes both),
/// the host's name if it has none, else the bound address.
fn serve_urls(
    bound: SocketAddr,
    name: Option<&str>,
    digest: &tfttp::manifest::Hash,
) -> Vec<String> {
    let port = bound.port();
    if !bound.ip().is_unspecified() {
        return vec![url::format(bound, name, digest)];
    }
    let mut urls: Vec<String> = ifaddrs::host_addresses()
        .into_iter()
        .filter(|ip| bound.is_ipv6() || ip.is_ipv4())
        .map(|ip| url::format(SocketAddr::new(ip, port), name, digest))
        .collect();
    if urls.is_empty() {
        urls.push(match ifaddrs::host_name() {
            Some(host) => url::format_host(&host, port, name, digest),
            None => url::format(bound, name, digest),
        });
    }
    urls
}

pub fn get(a: &GetArgs) -> Result<(), Fail> {
    // As curl does: binary bytes on a terminal garble it and help nobody.
    // SAFETY: isatty only reads the descriptor's state.
    if a.output == Output::Stdout && unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1 {
        return Err(Fail::new(
            Exit::Usage,
            "stdout is a terminal; redirect it (-o - | ...) or give -o FILE",
        ));
    }
    let server = resolve(&a.server)?;
    let discard = a.output == Output::Discard;
    let storage = match &a.output {
        Output::Discard => Storage::Discard,
        Output::Stdout => Storage::create_temp(&std::env::temp_dir())?,
        Output::File(path) => Storage::create_part(path)?,
    };
    // A discarding client keeps nothing it could upload, so it does not join the swarm.
    let use_peers = a.use_peers && !discard;
    // --no-listen: peers are still dialled; HELLO says listen = 0 (docs/PROTOCOL.md §9).
    let listener = if use_peers && !a.no_listen {
        let addr = a.listen.unwrap_or_else(|| {
            let any: std::net::IpAddr = if server.is_ipv4() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            };
            SocketAddr::new(any, 0)
        });
        match socket::listen(
            addr,
            SocketOptions {
                buffer: a.common.sock_buf,
                ..SocketOptions::default()
            },
        ) {
            Ok(l) => Some(l),
            Err(e) => {
                storage.abandon();
                return Err(local(format!("cannot listen on {addr}"))(e));
            }
        }
    } else {
        None
    };
    let bound = listener.as_ref().and_then(|l| l.local_addr().ok());
    let mut cfg = new_config(Role::Client);
    cfg.listen_port = bound.map_or(0, |b| b.port());
    cfg.secret = a.secret.clone();
    cfg.path = a.path.clone();
    cfg.expect_digest = a.expect_digest;
    cfg.server = Some(server);
    cfg.use_peers = use_peers;
    cfg.max_peers = a.max_peers;
    cfg.linger = a.linger;
    cfg.stall_timeout = a.stall_timeout;
    cfg.policy = a.common.policy;
    cfg.set_up_rate(a.up_rate);
    cfg.behaviour = a.behaviour;
    cfg.node_id = a.behaviour.node_id(cfg.node_id);
    let node = Node::client(cfg, Instant::now());
    let opts = driver_options(
        &a.common,
        a.up_rate,
        a.down_rate,
        max_conns_client(a.max_peers),
    );
    let mut driver = match Driver::new(node, storage, listener, opts) {
        Ok(d) => d,
        Err(e) => {
            return Err(Fail::new(
                Exit::Other,
                format!("cannot start the event loop: {e}"),
            ));
        }
    };
    if let Err(e) = start_metrics(&mut driver, &a.common) {
        driver.into_storage().abandon();
        return Err(e);
    }
    if a.output == Output::Stdout
        && let Err(e) = driver.stream_output(libc::STDOUT_FILENO)
    {
        driver.into_storage().abandon();
        return Err(local("cannot write to stdout".into())(e));
    }
    if let Some(b) = bound {
        write_ready_file(&a.common, b)?;
    }
    if !a.common.quiet {
        let role = progress::Role::Client {
            output: a.output.clone(),
            server,
            linger: if use_peers { a.linger } else { Duration::ZERO },
            listen_port: bound.map(|b| b.port()),
        };
        watch(&mut driver, &a.common, role);
    }
    driver.dial(server, Link::ToOrigin);
    let result = driver.run();
    // With --output -, the download is done once stdout has every byte.
    let node_done = driver.node().is_complete() && driver.output_done();
    let summary = summary_line(driver.node());
    let storage = driver.into_storage();
    match result {
        Ok(()) if node_done && matches!(storage, Storage::Done(..) | Storage::Discard) => {
            if !a.common.quiet {
                say_summary(&a.output, &summary);
            }
            Ok(())
        }
        Ok(()) => {
            storage.abandon();
            Err(Fail::new(
                Exit::Other,
                "stopped before the download completed",
            ))
        }
        Err(e) if node_done && matches!(storage, Storage::Done(..) | Storage::Discard) => {
            // Failing while lingering loses nothing: the file is complete and renamed.
            if !a.common.quiet {
                say_summary(&a.output, &summary);
                eprintln!("tfttp: after completing: {e}");
            }
            Ok(())
        }
        Err(e) => {
            // When `PATH` appeared meanwhile, the message already names the complete `.part`.
            let appeared =
                matches!(&e, RunError::Storage(s) if s.kind == StorageErrorKind::OutputExists);
            let part = storage
                .part_name()
                .filter(|_| !appeared)
                .map(Path::to_path_buf);
            storage.abandon();
            Err(with_resume_hint(e.into(), part.as_deref()))
        }
    }
}

/// A failed `get` whose `PATH.part` holds bytes says that it is kept and how to resume it.
fn with_resume_hint(mut f: Fail, part: Option<&Path>) -> Fail {
    if let Some(p) = part
        && std::fs::metadata(p).is_ok_and(|md| md.len() > 0)
    {
        f.message.push_str(&format!(
            "; {} is kept: the same get resumes it",
            p.display()
        ));
    }
    f
}

/// The one-line summary goes to stdout, unless stdout carries the file.
fn say_summary(output: &Output, summary: &str) {
    if *output == Output::Stdout {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
}

/// Progress lines on stderr while the driver runs.
fn watch(driver: &mut Driver, c: &Common, role: progress::Role) {
    let p = Progress::new(role, c.progress_interval, c.verbose);
    driver.set_reporter(progress::TICK, Box::new(p));
}

fn summary_line(node: &Node) -> String {
    let k = node.counters();
    let secs = node
        .completed_at()
        .map_or(0.0, |t| t.duration_since(node.started_at()).as_secs_f64());
    let got = k.from_origin + k.from_peers;
    let rate = if secs > 0.0 {
        got as f64 / secs / 1e6
    } else {
        0.0
    };
    let peers = if got == 0 {
        0.0
    } else {
        100.0 * k.from_peers as f64 / got as f64
    };
    let digest = node
        .manifest()
        .map(|m| tfttp::manifest::to_hex(m.digest()))
        .unwrap_or_default();
    format!(
        "tfttp: received {got} bytes in {secs:.2} s ({rate:.1} MB/s), {peers:.0}% from peers, \
         uploaded {} bytes, digest blake3:{digest}",
        k.uploaded
    )
}

/// `tfttp sim`: a bad scenario file is a usage error (the run never started), a failure to
/// write the result a local one.
pub fn sim(a: &SimArgs) -> Result<(), Fail> {
    use tfttp::sim::{Report, Scenario, Sim};
    let path = a.scenario.display();
    let usage = |e: String| Fail::new(Exit::Usage, format!("{path}: {e}"));
    let text = std::fs::read_to_string(&a.scenario)
        .map_err(|e| Fail::new(Exit::Usage, format!("cannot read {path}: {e}")))?;
    let mut scenario = Scenario::from_json(&text).map_err(|e| usage(e.to_string()))?;
    if let Some(seed) = a.seed {
        scenario.seed = seed;
    }
    let started = Instant::now();
    let mut sim = Sim::new(&scenario).map_err(|e| usage(e.to_string()))?;
    if a.timeline.is_some() {
        sim = sim.sample(1.0);
    }
    let outcome = sim.run();
    let report = Report {
        scenario: &scenario,
        outcome: &outcome,
        wall_s: started.elapsed().as_secs_f64(),
        peak_rss_bytes: crate::procs::proc_status_kib(std::process::id(), "VmHWM") * 1024,
    };
    if let Some(out) = &a.json {
        let mut text = serde_json::to_string_pretty(&report.to_json()).expect("JSON values print");
        text.push('\n');
        std::fs::write(out, text).map_err(local(format!("cannot write {}", out.display())))?;
    }
    if let Some(out) = &a.timeline {
        write_timeline(out, &outcome.timeline)?;
    }
    if !a.quiet {
        print!("{}", report.table());
    }
    Ok(())
}

/// The simulator's timeline as CSV, one line per host per sample, written as it goes: at
/// 10,000 hosts a long run's text would be hundreds of megabytes.
fn write_timeline(out: &std::path::Path, samples: &[tfttp::sim::Sample]) -> Result<(), Fail> {
    use std::io::Write as _;
    let write = || -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
        writeln!(w, "t_s,host,uploaded,received,queued,asked,unchoked")?;
        for s in samples {
            for h in 0..s.uploaded.len() {
                let (up, got, load) = (s.uploaded[h], s.received[h], s.load[h]);
                writeln!(
                    w,
                    "{},{h},{up},{got},{},{},{}",
                    s.t, load.queued, load.asked, load.unchoked
                )?;
            }
        }
        w.flush()
    };
    write().map_err(local(format!("cannot write {}", out.display())))
}
