#!/usr/bin/env python3
"""Swarm emulation bench: tfttp and plain HTTP on an emulated multi-host network.

Each scenario builds hosts in network namespaces (tools/netem.py: a bridge, tbf caps on
every host's upload and download), runs each system on the same network in turn, and
reports per-client completion times, the server's transmitted bytes per file copy (read from
its link counters, so every system is measured alike), the Kumar-Ross minimum and the
client-server bound. Every output is compared byte for byte with the source.

    sudo bench/swarm.py [--scenarios pair,crowd] [--systems tfttp,http] [--out DIR] [--check]

Needs root, iproute2 (ip, tc), nginx and curl, python3-libtorrent and opentracker, and a
release build of tfttp (`cargo build --release`). `--systems libtorrent` runs libtorrent in
both of its configurations (libtorrent-lan: its local-network exemption, no choking;
libtorrent-global: every peer in the global peer class, choker active) and marks the one
with the lower mean as the baseline. Results go to DIR/swarm.json and DIR/swarm-SCENARIO.svg
(completion-time CDFs, tools/cdf_svg.py).
"""

import argparse
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from netem import Net  # noqa: E402
import cdf_svg  # noqa: E402
import benchlib  # noqa: E402

TFTTP = os.path.join(HERE, "..", "target", "release", "tfttp")
# Extra arguments for every tfttp node (--tfttp-args), e.g. "--policy all --sendfile off".
TFTTP_EXTRA = []
# Extra arguments for the tfttp origin only (--serve-args), e.g. "--piece-size 64K".
SERVE_EXTRA = []
# Extra arguments for every libtorrent node (--lt-args), e.g. "--set unchoke_slots_limit=16".
LT_EXTRA = []
# The BitTorrent tracker (--lt-tracker): opentracker, as the independent checks use, or
# tools/tracker.py.
LT_TRACKER = "opentracker"
# Where and on what each result was measured (every row of swarm.json carries it).
RUN_INFO = {}
PORT = 6880


def crowd(extra=None):
    c = [dict(up=20, down=200)] * 8 + [dict(up=50, down=200)] * 8
    return c + (extra or [])


def spread20(told=None):
    """24 clients, six each at 5, 10, 25 and 100 Mbit/s up (a 20x spread), 150 down; `told`
    is the fraction of its link each is told with --up-rate (None: not told)."""
    extra = {} if told is None else dict(up_rate=told)
    return [dict(up=u, down=150, **extra) for u in (5, 10, 25, 100) for _ in range(6)]


def free_rider_first(behave="free-rider"):
    """The crowd with its first arrival (20 Mbit/s) and a 50 Mbit/s client in mid-order free
    riding (arrivals follow list order), or misbehaving as `behave` says."""
    c = [dict(up=20 if i % 2 == 0 else 50, down=200) for i in range(16)]
    for i in (0, 7):
        c[i] = dict(c[i], behave=behave)
    return c


# Rates in Mbit/s. `start` is the client's arrival (s after the first), `linger` how long it
# stays after completing (tfttp), `behave` a test-only tfttp behaviour, `up_rate` the
# fraction of its uplink a tfttp client is told with --up-rate.
SCENARIOS = {
    "pair": dict(size_mib=128, server=dict(up=40, down=1000),
                 clients=[dict(up=400, down=400)] * 2),
    "crowd": dict(size_mib=64, server=dict(up=100, down=1000), clients=crowd(), spread=0.5),
    "freeriders": dict(size_mib=64, server=dict(up=100, down=1000), spread=0.5,
                       clients=crowd([dict(up=50, down=200, behave="free-rider")] * 2)),
    "churn": dict(size_mib=64, server=dict(up=100, down=1000), spread=0.5,
                  clients=[dict(c, linger=0) if i % 4 == 0 else
                           dict(c, start=3.0) if i % 4 == 1 else c
                           for i, c in enumerate(crowd())]),
    "frfirst": dict(size_mib=64, server=dict(up=100, down=1000), clients=free_rider_first(),
                    spread=0.5),
    # The same places taken by a colluding pair (docs/PROTOCOL.md 5.6): compare the origin
    # bytes and completion times with frfirst's free riders.
    "colluders": dict(size_mib=64, server=dict(up=100, down=1000),
                      clients=free_rider_first("colluder"), spread=0.5),
    # The crowd with every client told its uplink: its 20 and 50 Mbit/s uploads starve its
    # downloads' ACKs as the 20x spread's slow clients do (README, "Uploads starve downloads").
    "crowd-uprate": dict(size_mib=64, server=dict(up=100, down=1000), spread=0.5,
                         clients=[dict(c, up_rate=1.0) for c in crowd()]),
    "spread20": dict(size_mib=64, server=dict(up=80, down=1000), clients=spread20()),
    "spread20-uprate": dict(size_mib=64, server=dict(up=80, down=1000), clients=spread20(1.0)),
    "spread20-uprate08": dict(size_mib=64, server=dict(up=80, down=1000),
                              clients=spread20(0.8)),
    # Told 90%: room on the uplink for the ACKs of the client's own downloads, which a
    # saturated uplink starves (tools/queue_probe.py; README, "Uploads starve downloads").
    "spread20-uprate09": dict(size_mib=64, server=dict(up=80, down=1000),
                              clients=spread20(0.9)),
    # A home server on an ADSL-like uplink, its clients arriving one by one while it is busy:
    # at 2 Mbit/s its tbf queue holds about 1.2 s, which every newcomer's handshake and
    # first piece wait behind (README, "Stalls"). Try it with --serve-args "--up-rate 2Mbit".
    "slow-origin": dict(size_mib=8, server=dict(up=2, down=1000), spread=20.0,
                        clients=[dict(up=1, down=10)] * 8),
    # The same with every client told its uplink (--up-rate): slow nodes' round-robin turns.
    "slow-origin-uprate": dict(size_mib=8, server=dict(up=2, down=1000), spread=20.0,
                               clients=[dict(up=1, down=10, up_rate=1.0)] * 8),
    # A few seconds end to end: CI runs it (--check) where it can create namespaces.
    "smoke": dict(size_mib=8, server=dict(up=100, down=1000), spread=0.2,
                  clients=[dict(up=100, down=200)] * 4),
}
# TCP payload per byte on the wire with the tbf-counted frame: 1448 bytes of payload (MSS
# with timestamps) in a 1514-byte Ethernet frame. No schedule can beat the Kumar-Ross
# minimum divided by this on this network; the bench reports it beside the nominal one.
WIRE_EFFICIENCY = 1448 / 1514


def bounds(sc):
    """Kumar-Ross minimum and client-server bound in seconds for the cooperating clients."""
    coop = [c for c in sc["clients"] if "behave" not in c]
    return benchlib.bounds(sc["size_mib"] * 1024 * 1024 * 8,  # bits
                           sc["server"]["up"] * 1e6,
                           [c["up"] * 1e6 for c in coop], [c["down"] * 1e6 for c in coop])


def write_source(path, size):
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(chunk)
            chunk = chunk[1:] + chunk[:1]


def start_times(sc):
    spread = sc.get("spread", 0.0)
    n = len(sc["clients"])
    return [c.get("start", spread * i / max(n - 1, 1)) for i, c in enumerate(sc["clients"])]


def run_clients(net, hosts, sc, launch, starts=None):
    """Starts client i at its arrival time via `launch(i, host)`; waits for all. Returns
    {i: (exit code or None, pid, arrival)}; fills `starts` with {i: launch time} on the
    monotonic clock when given."""
    procs = []
    t0 = time.monotonic()
    for i, (h, at) in sorted(enumerate(zip(hosts, start_times(sc))), key=lambda x: x[1][1]):
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        p = launch(i, h[0])
        procs.append((i, p, at))
        if starts is not None:
            starts[i] = p.started
    t_cs = bounds(sc)[1]
    done = net.wait([p for _, p, _ in procs], timeout=4 * t_cs + 120)
    return {i: (done[p][0], p.pid, at) for i, p, at in procs}


def tfttp_system(net, server, hosts, sc, work, src):
    ready = os.path.join(work, "ready")
    if os.path.exists(ready):
        os.remove(ready)
    coop = len(sc["clients"])
    sp = net.start(server, [TFTTP, "serve", src, "--listen", f"{server.ip}:{PORT}",
                            "--ready-file", ready, "--exit-after", str(coop),
                            "--stats", os.path.join(work, "server.json"), "-v"]
                   + TFTTP_EXTRA + SERVE_EXTRA,
                   stderr=os.path.join(work, "server.err"))
    for _ in range(600):
        if os.path.exists(ready):
            break
        time.sleep(0.05)

    def launch(i, h):
        c = sc["clients"][i]
        argv = [TFTTP, "get", f"{server.ip}:{PORT}", "-o", os.path.join(work, f"out{i}"),
                "--listen", "0.0.0.0:0", "--stats", os.path.join(work, f"c{i}.json"),
                "--linger", str(c.get("linger", 30)), "-v",
                "--timeline", os.path.join(work, f"c{i}.timeline")]
        if "behave" in c:
            argv += ["--behave", c["behave"]]
        if "up_rate" in c:
            argv += ["--up-rate", f"{c['up'] * c['up_rate']:g}Mbit"]
        argv += TFTTP_EXTRA
        return net.start(h, argv, stderr=os.path.join(work, f"c{i}.err"))

    res = run_clients(net, hosts, sc, launch)
    net.wait([sp], timeout=30)
    times = {}
    for i, (rc, _, at) in res.items():
        path = os.path.join(work, f"c{i}.json")
        # A failed get writes its stats too: a misbehaving client's origin bytes count.
        st = json.load(open(path)) if os.path.exists(path) else {}
        times[i] = (rc, st.get("complete_s") if rc == 0 else None, at,
                    dict(from_origin=st.get("bytes_from_origin")))
    return times


def http_system(net, server, hosts, sc, work, src):
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"daemon off; master_process off; worker_processes 1; pid {work}/nginx.pid;\n"
                f"error_log {work}/nginx.err; events {{ worker_connections 1024; }}\n"
                f"http {{ access_log off; sendfile on; tcp_nopush on;\n"
                f"  client_body_temp_path {work}/t1; proxy_temp_path {work}/t2;\n"
                f"  fastcgi_temp_path {work}/t3; uwsgi_temp_path {work}/t4; scgi_temp_path {work}/t5;\n"
                f"  server {{ listen {server.ip}:{PORT}; root {os.path.dirname(src)}; }} }}\n")
    nginx = net.start(server, ["nginx", "-c", conf])
    time.sleep(0.5)
    url = f"http://{server.ip}:{PORT}/{os.path.basename(src)}"

    def launch(i, h):
        return net.start(h, ["curl", "-s", "-f", "-o", os.path.join(work, f"out{i}"),
                             "-w", "%{time_total}", url],
                         stdout=os.path.join(work, f"c{i}.time"))

    res = run_clients(net, hosts, sc, launch)
    net.kill(nginx)
    times = {}
    for i, (rc, _, at) in res.items():
        t = float(open(os.path.join(work, f"c{i}.time")).read() or "nan") if rc == 0 else None
        times[i] = (rc, t, at)
    return times


def libtorrent_system(net, server, hosts, sc, work, src, mode="lan"):
    """libtorrent-rasterbar seeding from the server host, a tracker beside it (opentracker,
    or tools/tracker.py with --lt-tracker python), every client a libtorrent leecher
    (tools/lt_node.py) in `mode`: "lan" (libtorrent's local-network exemption: no choking)
    or "global" (every peer in the global peer class: its choker active)."""
    py = "/usr/bin/python3"
    tools = os.path.join(HERE, "..", "tools")
    torrent = os.path.join(work, "src.torrent")
    url = f"http://{server.ip}:6969/announce"
    ih = os.path.join(work, "src.infohash")
    net.wait([net.start(server, [py, os.path.join(tools, "lt_node.py"), "make", src, url, torrent],
                        stdout=ih, stderr=os.path.join(work, "make.err"))], timeout=300)
    done = os.path.join(work, "done")
    os.makedirs(done, exist_ok=True)
    for f in os.listdir(done):
        os.remove(os.path.join(done, f))
    coop = sum(1 for c in sc["clients"] if "behave" not in c)
    limit = str(4 * bounds(sc)[1] + 120)
    node = [py, os.path.join(tools, "lt_node.py")]
    opts = ["--mode", mode] + LT_EXTRA
    if LT_TRACKER == "opentracker":
        # Debian's opentracker serves only whitelisted info hashes (-w, read inside the
        # directory it chroots to, -d) and will not run as root.
        tracker = net.start(server, ["opentracker", "-i", server.ip, "-p", "6969", "-P", "6969",
                                     "-d", work, "-u", "nobody", "-w", os.path.basename(ih)],
                            stderr=os.path.join(work, "tracker.err"))
    else:
        tracker = net.start(server, [py, os.path.join(tools, "tracker.py"), server.ip, "6969"],
                            stderr=os.path.join(work, "tracker.err"))
    seed = net.start(server, node + ["seed", torrent, os.path.dirname(src), server.ip, done,
                                     str(coop), limit] + opts,
                     stderr=os.path.join(work, "seed.err"))
    time.sleep(1.0)

    def launch(i, h):
        d = os.path.join(work, f"lt{i}")
        os.makedirs(d, exist_ok=True)
        c = sc["clients"][i]
        return net.start(h, node + ["leech", torrent, d, h.ip, done, str(coop), limit,
                                    str(c.get("linger", 30))] + opts,
                         stderr=os.path.join(work, f"c{i}.err"))

    starts = {}
    res = run_clients(net, hosts, sc, launch, starts)
    net.wait([seed], timeout=30)
    net.kill(tracker)
    # Each leecher wrote "COMPLETE_S T0" to DONE/<pid>: seconds from its session's start,
    # and that start on the monotonic clock; `ip netns exec` execs the program, so that pid
    # is the one we started.
    by_pid = {int(f): [float(x) for x in open(os.path.join(done, f)).read().split()]
              for f in os.listdir(done)}
    times = {}
    for i, (rc, pid, at) in res.items():
        out = os.path.join(work, f"lt{i}", os.path.basename(src))
        if os.path.exists(out):
            os.replace(out, os.path.join(work, f"out{i}"))
        t = by_pid.get(pid) if rc == 0 else None
        # Startup: from the bench launching the process to libtorrent's session starting
        # (interpreter, import); not counted in the completion time, as tfttp's isn't.
        times[i] = (rc, t[0] if t else None, at, dict(startup=t[1] - starts[i]) if t else {})
    return times


def lt_system(mode):
    def system(net, server, hosts, sc, work, src):
        return libtorrent_system(net, server, hosts, sc, work, src, mode)
    return system


SYSTEMS = {"tfttp": tfttp_system, "http": http_system,
           "libtorrent-lan": lt_system("lan"), "libtorrent-global": lt_system("global")}
# libtorrent in both configurations; the one with the lower mean is reported as the baseline.
LT_MODES = ["libtorrent-lan", "libtorrent-global"]


def run(scenario, system, out_dir):
    sc = SCENARIOS[scenario]
    if system != "tfttp" and any("behave" in c or "up_rate" in c for c in sc["clients"]):
        return None
    work = os.path.join(out_dir, f"{scenario}-{system}")
    os.makedirs(work, exist_ok=True)
    src = os.path.join(work, "src.bin")
    write_source(src, sc["size_mib"] << 20)
    with Net("tftb") as net:
        server = net.add_host("srv", sc["server"]["up"], sc["server"]["down"])
        hosts = [(net.add_host(f"c{i}", c["up"], c["down"]), c) for i, c in enumerate(sc["clients"])]
        tx0 = server.tx_bytes()
        times = SYSTEMS[system](net, server, hosts, sc, work, src)
        tx = server.tx_bytes() - tx0
    ok = True
    for i in times:
        out = os.path.join(work, f"out{i}")
        same = os.path.exists(out) and filecmp.cmp(src, out, shallow=False)
        ok &= same
        if os.path.exists(out):
            os.remove(out)
    os.remove(src)
    t_min, t_cs = bounds(sc)
    clients = []
    for i, (rc, t, at, *extra) in sorted(times.items()):
        c = sc["clients"][i]
        clients.append(dict(index=i, up=c["up"], behave=c.get("behave", "honest"), start=at,
                            exit=rc, time=t, finish=(at + t) if t is not None else None,
                            **(extra[0] if extra else {})))
    coop = [c["time"] for c in clients if c["behave"] == "honest" and c["time"] is not None]
    finish = [c["finish"] for c in clients if c["behave"] == "honest" and c["finish"] is not None]
    failed = sum(1 for c in clients if c["exit"] != 0 and c["behave"] == "honest")
    r = dict(scenario=scenario, system=system, run=RUN_INFO, t_min=t_min, t_cs=t_cs,
             t_min_wire=t_min / WIRE_EFFICIENCY,
             size=sc["size_mib"] << 20, server_copies=tx / (sc["size_mib"] << 20),
             all_identical=ok, failed=failed, clients=clients)
    if coop:
        r.update(mean=statistics.mean(coop), median=statistics.median(coop), max=max(coop),
                 last_finish=max(finish), last_vs_min=max(finish) / t_min)
    return r


def run_info():
    def out(*argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, cwd=HERE).stdout.strip()
        except OSError:
            return ""
    dirty = out("git", "status", "--porcelain", "--untracked-files=no")
    return dict(commit=out("git", "rev-parse", "HEAD") + ("+dirty" if dirty else ""),
                date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                kernel=os.uname().release, nproc=os.cpu_count())


def main():
    global TFTTP, LT_TRACKER
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default="pair,crowd,freeriders,churn")
    ap.add_argument("--systems", default="tfttp,http,libtorrent")
    ap.add_argument("--out", default="/tmp/tfttp-swarm")
    ap.add_argument("--tfttp-args", default="", help="extra arguments for every tfttp node")
    ap.add_argument("--serve-args", default="", help="extra arguments for the tfttp origin")
    ap.add_argument("--tfttp", default=TFTTP, help="the tfttp binary (default: release build)")
    ap.add_argument("--lt-args", default="", help="extra arguments for every libtorrent node "
                    "(tools/lt_node.py options, e.g. \"--set unchoke_slots_limit=16\")")
    ap.add_argument("--lt-tracker", default=LT_TRACKER, choices=["opentracker", "python"],
                    help="the BitTorrent tracker: opentracker or tools/tracker.py")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless every client of every run got a byte-identical file")
    a = ap.parse_args()
    TFTTP = os.path.abspath(a.tfttp)
    TFTTP_EXTRA.extend(a.tfttp_args.split())
    SERVE_EXTRA.extend(a.serve_args.split())
    LT_EXTRA.extend(a.lt_args.split())
    LT_TRACKER = a.lt_tracker
    RUN_INFO.update(run_info())
    if os.geteuid() != 0:
        sys.exit("swarm.py needs root (network namespaces)")
    if not os.path.exists(TFTTP):
        sys.exit(f"{TFTTP} missing: run cargo build --release")
    if (any(s.startswith("libtorrent") for s in a.systems.split(","))
            and LT_TRACKER == "opentracker" and not shutil.which("opentracker")):
        sys.exit("opentracker missing: apt-get install opentracker (or --lt-tracker python)")
    os.makedirs(a.out, exist_ok=True)
    systems = []
    for system in a.systems.split(","):
        systems += LT_MODES if system == "libtorrent" else [system]
    results = []
    for scenario in a.scenarios.split(","):
        for system in systems:
            r = run(scenario, system, a.out)
            if r is None:
                continue
            results.append(r)
            print(f"{scenario:<11} {system:<17} mean {r.get('mean', float('nan')):7.2f} s  "
                  f"median {r.get('median', float('nan')):7.2f} s  "
                  f"last {r.get('last_finish', float('nan')):7.2f} s = "
                  f"{r.get('last_vs_min', float('nan')):5.2f}x min ({r['t_min']:.2f} s; "
                  f"{r['t_min_wire']:.2f} s at TCP goodput)  "
                  f"CS bound {r['t_cs']:.2f} s  server {r['server_copies']:.2f} copies  "
                  f"identical {r['all_identical']}  failed {r['failed']}", flush=True)
        runs = [r for r in results if r["scenario"] == scenario]
        lts = [r for r in runs if r["system"] in LT_MODES and "mean" in r]
        for r in lts:
            r["baseline"] = r is min(lts, key=lambda r: r["mean"])
        if lts:
            best = min(lts, key=lambda r: r["mean"])
            print(f"{scenario:<11} libtorrent baseline: {best['system']} (lower mean)", flush=True)
        if runs:
            cdf_svg.write(os.path.join(a.out, f"swarm-{scenario}.svg"), scenario, runs)
    with open(os.path.join(a.out, "swarm.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"results: {a.out}/swarm.json, {a.out}/swarm-*.svg")
    bad = [f"{r['scenario']}/{r['system']}" for r in results
           if r["failed"] or not r["all_identical"]]
    if a.check and bad:
        sys.exit(f"swarm check failed: {', '.join(bad)}")


if __name__ == "__main__":
    main()
