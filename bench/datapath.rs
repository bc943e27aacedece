//! Data-path benchmark (issue "data path at the machine's limit"): one server, one client,
//! one big file already in the page cache, on loopback. Each repetition runs, in turn:
//!
//! - `cp` of the file (the destination-write limit of this machine),
//! - tfttp to a file (`get --no-peers -o FILE`), and again with the server on `--sendfile`,
//! - nginx (sendfile) + `curl -o FILE`, the tool a user would otherwise pick,
//! - tfttp to the discard sink (`get --discard`),
//! - `iperf3` single stream for the same byte count (the loopback TCP limit),
//!
//! and the figures are medians of per-repetition ratios, so the noise of a shared machine
//! hits both sides of each ratio alike. CPU seconds and peak RSS come from `wait4` for
//! processes started per run and from /proc for the long-lived nginx.
//!
//!     cargo bench --bench datapath -- [--size 1G] [--reps 5] [--json PATH]
//!
//! Needs `nginx`, `curl` and `iperf3` on PATH (Debian packages of those names).

#[path = "support.rs"]
mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Usage, median, procs, units};

struct Sample {
    secs: f64,
    /// CPU seconds of the sending and receiving processes.
    server_cpu: f64,
    client_cpu: f64,
    server_rss_kib: u64,
    client_rss_kib: u64,
}

const SYSTEMS: [&str; 6] = [
    "cp",
    "tfttp-file",
    "tfttp-sendfile",
    "nginx-curl",
    "tfttp-discard",
    "iperf3",
];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut size: u64 = 1 << 30;
    let mut reps = 5usize;
    let mut json: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size" => size = units::parse_size(it.next().expect("--size N")).unwrap(),
            "--reps" => reps = it.next().expect("--reps N").parse().unwrap(),
            "--json" => json = Some(PathBuf::from(it.next().expect("--json PATH"))),
            other => panic!("unknown argument {other}"),
        }
    }
    for tool in ["nginx", "curl", "iperf3"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap()
                .status
                .success(),
            "{tool} is not installed (apt-get install nginx curl iperf3)"
        );
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tfttp"));
    let dir = std::env::temp_dir().join(format!("tfttp-bench-datapath-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("src.bin");
    procs::write_test_file(&src, size, 7).unwrap();
    // Into the page cache, in chunks: every system reads a cached file, and children forked
    // from a bench holding 1 GiB would report that as their own peak RSS.
    std::io::copy(
        &mut std::fs::File::open(&src).unwrap(),
        &mut std::io::sink(),
    )
    .unwrap();
    let nginx = Nginx::start(&dir);

    let mut samples: Vec<Vec<Sample>> = SYSTEMS.iter().map(|_| Vec::new()).collect();
    println!(
        "datapath: {:.0} MiB, {reps} interleaved repetitions on loopback",
        size as f64 / (1 << 20) as f64
    );
    for rep in 0..reps {
        for (k, name) in SYSTEMS.iter().enumerate() {
            let dst = dir.join("dst.bin");
            let _ = std::fs::remove_file(&dst);
            let s = match *name {
                "cp" => run_cp(&src, &dst),
                "tfttp-file" => run_tfttp(&exe, &dir, &src, Some(&dst), false),
                "tfttp-sendfile" => run_tfttp(&exe, &dir, &src, Some(&dst), true),
                "nginx-curl" => nginx.fetch(&dst),
                "tfttp-discard" => run_tfttp(&exe, &dir, &src, None, false),
                "iperf3" => run_iperf3(size),
                _ => unreachable!(),
            };
            if dst.exists() {
                assert_eq!(
                    std::fs::metadata(&dst).unwrap().len(),
                    size,
                    "{name}: short output"
                );
                if rep == 0 {
                    assert!(
                        procs::same_contents(&src, &dst).unwrap(),
                        "{name}: output differs"
                    );
                }
                let _ = std::fs::remove_file(&dst);
            }
            samples[k].push(s);
        }
        eprint!(".");
    }
    eprintln!();
    drop(nginx);

    let mb = size as f64 / 1e6;
    println!(
        "  system          median s    MB/s   server cpu s   client cpu s   server rss MiB  client rss MiB"
    );
    for (k, name) in SYSTEMS.iter().enumerate() {
        let v = &samples[k];
        let t = median(v.iter().map(|s| s.secs).collect());
        println!(
            "  {name:<14} {t:>9.3} {:>7.0} {:>14.3} {:>14.3} {:>15.1} {:>15.1}",
            mb / t,
            median(v.iter().map(|s| s.server_cpu).collect()),
            median(v.iter().map(|s| s.client_cpu).collect()),
            v.iter().map(|s| s.server_rss_kib).max().unwrap_or(0) as f64 / 1024.0,
            v.iter().map(|s| s.client_rss_kib).max().unwrap_or(0) as f64 / 1024.0,
        );
    }
    let idx = |n: &str| SYSTEMS.iter().position(|s| *s == n).unwrap();
    let ratio = |a: &str, b: &str| {
        median(
            (0..reps)
                .map(|r| samples[idx(a)][r].secs / samples[idx(b)][r].secs)
                .collect(),
        )
    };
    let file_vs_cp = ratio("tfttp-file", "cp");
    let file_vs_nginx = ratio("tfttp-file", "nginx-curl");
    let discard_vs_iperf = 1.0 / ratio("tfttp-discard", "iperf3");
    let cpu_vs_nginx = |sys: &str| {
        median(
            (0..reps)
                .map(|r| {
                    samples[idx(sys)][r].server_cpu
                        / samples[idx("nginx-curl")][r].server_cpu.max(1e-6)
                })
                .collect(),
        )
    };
    let cpu_ratio = cpu_vs_nginx("tfttp-file");
    let cpu_ratio_sf = cpu_vs_nginx("tfttp-sendfile");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "  tfttp to file / cp:            {file_vs_cp:.2}x  (target <= 1.25: {})",
        verdict(file_vs_cp <= 1.25)
    );
    println!(
        "  tfttp to file / nginx + curl:  {file_vs_nginx:.2}x  (target <= 0.80: {})",
        verdict(file_vs_nginx <= 0.8)
    );
    println!(
        "  tfttp discard / iperf3 throughput: {:.0}%  (target >= 80%: {})",
        100.0 * discard_vs_iperf,
        verdict(discard_vs_iperf >= 0.8)
    );
    println!(
        "  server CPU per GiB, tfttp / nginx: {cpu_ratio:.2}x, with --sendfile {cpu_ratio_sf:.2}x  (target <= 1.00: {})",
        verdict(cpu_ratio.min(cpu_ratio_sf) <= 1.0)
    );
    if let Some(p) = json {
        let js = format!(
            "{{\"size\":{size},\"reps\":{reps},\"file_vs_cp\":{file_vs_cp:.4},\"file_vs_nginx_curl\":{file_vs_nginx:.4},\"discard_vs_iperf3\":{discard_vs_iperf:.4},\"server_cpu_vs_nginx\":{cpu_ratio:.4},\"server_cpu_sendfile_vs_nginx\":{cpu_ratio_sf:.4}}}\n"
        );
        std::fs::write(p, js).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(300)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn timed(program: &Path, args: &[String]) -> (f64, Usage) {
    let t0 = Instant::now();
    let mut c = procs::spawn(program, args).unwrap();
    let (status, usage) = support::wait_measured(&mut c, deadline());
    let secs = t0.elapsed().as_secs_f64();
    assert!(
        status.is_some_and(|s| s.success()),
        "{} {args:?} failed",
        program.display()
    );
    (secs, usage)
}

fn run_cp(src: &Path, dst: &Path) -> Sample {
    let (secs, u) = timed(
        Path::new("cp"),
        &strings(&[&src.display().to_string(), &dst.display().to_string()]),
    );
    Sample {
        secs,
        server_cpu: 0.0,
        client_cpu: u.cpu_secs,
        server_rss_kib: 0,
        client_rss_kib: u.max_rss_kib,
    }
}

fn run_tfttp(exe: &Path, dir: &Path, src: &Path, dst: Option<&Path>, sendfile: bool) -> Sample {
    let ready = dir.join("ready");
    let mut args = strings(&["--exit-after", "1", "-q"]);
    if sendfile {
        args.extend(strings(&["--sendfile", "on"]));
    }
    let (mut server, addr) =
        procs::start_origin(exe, src, &ready, &args, Duration::from_secs(120)).unwrap();
    // CPU spent before listening is the manifest (one BLAKE3 pass): start-up, not serving.
    let startup_cpu = support::proc_cpu_secs(server.id());
    let mut get = strings(&["get", &addr.to_string(), "--no-peers", "-q"]);
    match dst {
        Some(d) => get.extend(strings(&["-o", &d.display().to_string()])),
        None => get.push("--discard".into()),
    }
    let (secs, cu) = timed(exe, &get);
    let (status, su) = support::wait_measured(&mut server, deadline());
    assert!(status.is_some_and(|s| s.success()), "tfttp server failed");
    Sample {
        secs,
        server_cpu: su.cpu_secs - startup_cpu,
        client_cpu: cu.cpu_secs,
        server_rss_kib: su.max_rss_kib,
        client_rss_kib: cu.max_rss_kib,
    }
}

fn run_iperf3(size: u64) -> Sample {
    let port = free_port().to_string();
    let mut server =
        procs::spawn(Path::new("iperf3"), &strings(&["-s", "-1", "-p", &port])).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (secs, cu) = timed(
        Path::new("iperf3"),
        &strings(&["-c", "127.0.0.1", "-p", &port, "-n", &size.to_string()]),
    );
    let (_, su) = support::wait_measured(&mut server, deadline());
    Sample {
        secs,
        server_cpu: su.cpu_secs,
        client_cpu: cu.cpu_secs,
        server_rss_kib: su.max_rss_kib,
        client_rss_kib: cu.max_rss_kib,
    }
}

/// nginx in the foreground, single process, sendfile on, serving `dir`.
struct Nginx {
    child: procs::Running,
    port: u16,
}

impl Nginx {
    fn start(dir: &Path) -> Nginx {
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/nginx.err;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; sendfile on; tcp_nopush on;\n\
               client_body_temp_path {d}/t1; proxy_temp_path {d}/t2; fastcgi_temp_path {d}/t3; uwsgi_temp_path {d}/t4; scgi_temp_path {d}/t5;\n\
               server {{ listen 127.0.0.1:{port}; root {d}; }} }}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = procs::spawn(
            Path::new("nginx"),
            &strings(&["-c", &path.display().to_string()]),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        Nginx { child, port }
    }

    fn cpu(&self) -> f64 {
        support::proc_cpu_secs(self.child.id())
    }

    fn rss_kib(&self) -> u64 {
        procs::proc_status_kib(self.child.id(), "VmHWM")
    }

    fn fetch(&self, dst: &Path) -> Sample {
        let before = self.cpu();
        let url = format!("http://127.0.0.1:{}/src.bin", self.port);
        let (secs, cu) = timed(
            Path::new("curl"),
            &strings(&["-s", "-f", "-o", &dst.display().to_string(), &url]),
        );
        Sample {
            secs,
            server_cpu: self.cpu() - before,
            client_cpu: cu.cpu_secs,
            server_rss_kib: self.rss_kib(),
            client_rss_kib: cu.max_rss_kib,
        }
    }
}
