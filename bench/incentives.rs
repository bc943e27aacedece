//! Incentive benchmark (issue "tit-for-tat with promises"): one origin whose upload is the
//! bottleneck, cooperative clients with mixed upload caps, one free rider and one liar, all
//! real `tfttp` processes on loopback. Runs each policy in turn on the same set-up and prints
//! the figures side by side.
//!
//!     cargo bench --bench incentives -- [--size 32M] [--policies tft,bittorrent] [--json PATH]
//!
//! Figures per policy: completion times; when the free rider and the liar finish relative to
//! the cooperative clients; Jain's fairness index of `D_i / (u_i + u_s/N)` over the
//! cooperative clients (D_i = F / T_i); the slowest uploader's time against its
//! upload-proportional prediction `F / (u_i + u_s * u_i / sum u)`; and the last cooperative
//! client against the Kumar–Ross minimum for the cooperative set.

#[path = "support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::procs::{self, json_number};
use support::{median, units};

/// Origin upload, bytes/s: the bottleneck.
const SERVER_UP: u64 = 8_000_000;
/// Cooperative clients' upload caps (half slow, half fast: the crowd scenario's 20/50 ratio
/// scaled to loopback), bytes/s.
const COOP_UP: [u64; 8] = [
    2_000_000, 2_000_000, 2_000_000, 2_000_000, 5_000_000, 5_000_000, 5_000_000, 5_000_000,
];
/// Every client's download cap, bytes/s.
const DOWN: u64 = 20_000_000;
/// Cheaters' upload caps (they never upload; the cap only matters if they did).
const CHEAT_UP: u64 = 5_000_000;

struct Client {
    name: String,
    up: u64,
    behaviour: &'static str,
    time: f64,
    from_origin: f64,
}

struct Run {
    policy: String,
    clients: Vec<Client>,
    server_copies: f64,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut size: u64 = 32 << 20;
    let mut policies = vec!["tft".to_string(), "bittorrent".to_string()];
    let mut json: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size" => size = units::parse_size(it.next().expect("--size N")).unwrap(),
            "--policies" => {
                policies = it
                    .next()
                    .expect("--policies a,b")
                    .split(',')
                    .map(String::from)
                    .collect()
            }
            "--json" => json = Some(PathBuf::from(it.next().expect("--json PATH"))),
            other => panic!("unknown argument {other}"),
        }
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tfttp"));
    let dir = std::env::temp_dir().join(format!("tfttp-bench-incentives-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("src.bin");
    procs::write_test_file(&src, size, 42).unwrap();

    let (f, us) = (size as f64, SERVER_UP as f64);
    let coop: Vec<(f64, Option<f64>)> = COOP_UP
        .iter()
        .map(|&u| (u as f64, Some(DOWN as f64)))
        .collect();
    let t_min = tfttp::bounds::kumar_ross(f, us, &coop);
    println!(
        "incentives: {:.0} MiB, origin {:.0} MB/s up, {} cooperative clients ({:?} MB/s up), 1 free rider, 1 liar, {} MB/s down",
        f / (1 << 20) as f64,
        us / 1e6,
        COOP_UP.len(),
        COOP_UP.iter().map(|u| u / 1_000_000).collect::<Vec<_>>(),
        DOWN / 1_000_000
    );
    println!("Kumar-Ross minimum for the cooperative set: {t_min:.2} s");

    let runs: Vec<Run> = policies
        .iter()
        .enumerate()
        .map(|(i, p)| run_policy(&exe, &dir.join(format!("run{i}")), &src, size, p, t_min))
        .collect();
    let mut out = String::from("{\"t_min\":");
    out += &format!("{t_min:.4},\"runs\":[");
    for (i, r) in runs.iter().enumerate() {
        let (text, js) = report(r, f, us, t_min);
        println!("{text}");
        if i > 0 {
            out.push(',');
        }
        out += &js;
    }
    out += "]}\n";
    if let Some(p) = json {
        std::fs::write(&p, out).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn run_policy(exe: &Path, dir: &Path, src: &Path, size: u64, policy: &str, t_min: f64) -> Run {
    std::fs::create_dir_all(dir).unwrap();
    let s = |v: &str| v.to_string();
    let ready = dir.join(format!("{policy}-server.addr"));
    let stats = dir.join(format!("{policy}-server.json"));
    let total = COOP_UP.len() + 2;
    let server_args = [
        s("--stats"),
        stats.display().to_string(),
        s("--up-rate"),
        SERVER_UP.to_string(),
        s("--piece-size"),
        s("64K"),
        s("--policy"),
        s(policy),
        s("--exit-after"),
        total.to_string(),
        s("-q"),
    ];
    let (mut server, addr) =
        procs::start_origin(exe, src, &ready, &server_args, Duration::from_secs(30)).unwrap();
    let mut specs: Vec<(String, u64, &'static str)> = COOP_UP
        .iter()
        .enumerate()
        .map(|(i, &u)| (format!("coop{i}"), u, "honest"))
        .collect();
    specs.push(("free-rider".into(), CHEAT_UP, "free-rider"));
    specs.push(("liar".into(), CHEAT_UP, "liar"));
    let mut children = Vec::new();
    for (name, up, behaviour) in &specs {
        let out = dir.join(format!("{policy}-{name}.out"));
        let st = dir.join(format!("{policy}-{name}.json"));
        let child = procs::spawn(
            exe,
            &[
                s("get"),
                addr.to_string(),
                s("--output"),
                out.display().to_string(),
                s("--listen"),
                s("127.0.0.1:0"),
                s("--stats"),
                st.display().to_string(),
                s("--up-rate"),
                up.to_string(),
                s("--down-rate"),
                DOWN.to_string(),
                s("--policy"),
                s(policy),
                s("--behave"),
                s(behaviour),
                // Cooperative clients stay to seed, as the policy expects; the origin's
                // SWARM_DONE releases them when the cheaters are done too.
                s("--linger"),
                s("600"),
                s("-q"),
            ],
        )
        .unwrap();
        children.push((child, out, st));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(20.0 * t_min + 60.0);
    let mut clients = Vec::new();
    for ((child, out, st), (name, up, behaviour)) in children.iter_mut().zip(&specs) {
        let (status, err) = procs::wait(child, deadline);
        assert!(
            status.is_some_and(|s| s.success()),
            "{policy}/{name} failed: {err}"
        );
        assert!(
            procs::same_contents(src, out).unwrap(),
            "{name}: output differs"
        );
        let text = std::fs::read_to_string(&*st).unwrap();
        clients.push(Client {
            name: name.clone(),
            up: *up,
            behaviour,
            time: json_number(&text, "complete_s").unwrap(),
            from_origin: json_number(&text, "bytes_from_origin").unwrap(),
        });
        let _ = std::fs::remove_file(&*out);
    }
    let _ = procs::wait(&mut server, Instant::now() + Duration::from_secs(20));
    let text = std::fs::read_to_string(&stats).unwrap();
    Run {
        policy: policy.to_string(),
        clients,
        server_copies: json_number(&text, "bytes_uploaded").unwrap() / size as f64,
    }
}

fn jain(x: &[f64]) -> f64 {
    let s: f64 = x.iter().sum();
    let q: f64 = x.iter().map(|v| v * v).sum();
    s * s / (x.len() as f64 * q)
}

/// The human-readable report and the JSON object for one run.
fn report(r: &Run, f: f64, us: f64, t_min: f64) -> (String, String) {
    let coop: Vec<&Client> = r
        .clients
        .iter()
        .filter(|c| c.behaviour == "honest")
        .collect();
    let n = coop.len() as f64;
    let sum_u: f64 = coop.iter().map(|c| c.up as f64).sum();
    let med = median(coop.iter().map(|c| c.time).collect());
    let last = coop.iter().map(|c| c.time).fold(0.0, f64::max);
    let fairness = jain(
        &coop
            .iter()
            .map(|c| (f / c.time) / (c.up as f64 + us / n))
            .collect::<Vec<_>>(),
    );
    let slow = coop.iter().min_by_key(|c| c.up).unwrap();
    let slow_pred = f / (slow.up as f64 + us * slow.up as f64 / sum_u);
    let mut text = format!("\n== policy {}\n", r.policy);
    text += "  client        up MB/s   time s   from origin MiB\n";
    for c in &r.clients {
        text += &format!(
            "  {:<12} {:>8.1} {:>8.2} {:>12.1}\n",
            c.name,
            c.up as f64 / 1e6,
            c.time,
            c.from_origin / (1 << 20) as f64
        );
    }
    let mut js = format!(
        "{{\"policy\":\"{}\",\"server_copies\":{:.3},\"coop_median_s\":{med:.3},\"coop_last_s\":{last:.3},\"jain\":{fairness:.4},\"slowest_s\":{:.3},\"slowest_pred_s\":{slow_pred:.3}",
        r.policy, r.server_copies, slow.time
    );
    text += &format!(
        "  cooperative: median {med:.2} s, last {last:.2} s = {:.2}x the minimum (target <= 1.25)\n",
        last / t_min
    );
    text += &format!("  Jain fairness of D_i/(u_i + u_s/N): {fairness:.3} (target >= 0.9)\n");
    text += &format!(
        "  slowest uploader ({:.0} MB/s): {:.2} s vs upload-proportional prediction {slow_pred:.2} s\n",
        slow.up as f64 / 1e6,
        slow.time
    );
    for cheat in r.clients.iter().filter(|c| c.behaviour != "honest") {
        let before = coop.iter().filter(|c| c.time <= cheat.time).count() as f64 / n;
        text += &format!(
            "  {}: {:.2} s = {:.2}x the cooperative median, after {:.0}% of cooperative clients (targets >= 1.5x, >= 90%)\n",
            cheat.name,
            cheat.time,
            cheat.time / med,
            100.0 * before
        );
        js += &format!(
            ",\"{}_s\":{:.3},\"{}_after_frac\":{before:.3}",
            cheat.behaviour, cheat.time, cheat.behaviour
        );
    }
    text += &format!("  origin sent {:.2} copies\n", r.server_copies);
    js.push('}');
    (text, js)
}
