#!/usr/bin/env python3
"""Large-file tail check for the simulator: where the suite's 16 MiB files hardly exercise
the end of a download, 1 GiB with 1 MiB pieces does. Runs `tools/sim_scale.py N` (four
upload classes of 5/10/25/100 Mbit/s, 150 down, arrivals over 10 s, origin 1 Gbit/s) for
each N and seed, for one or more tfttp binaries, and compares them run by run.

    python3 bench/sim_tail.py --tfttp BASE=path/to/tfttp --tfttp NEW=other/tfttp \
        [--clients 300,150] [--seeds 1,2,3] [--size BYTES] [--jobs 2] [--out results.json]

Each run's figures: last honest completion over the Kumar-Ross minimum with the real
arrivals, mean completion, 90th percentile, the 5 Mbit/s class's mean, origin copies.
The first binary is the base; the others get geometric means of their ratios to it.
"""
import argparse
import concurrent.futures as cf
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import sim_scale  # noqa: E402

SLOW_UP = 5 * 125_000
KEYS = ("last", "mean", "p90", "slow_mean", "copies")


def figures(out):
    honest = [c for c in out["clients"] if c["behave"] == "honest"]
    done = sorted(c["arrive_s"] + c["complete_s"] for c in honest if c["complete_s"] is not None)
    if len(done) < len(honest):
        raise SystemExit(f"{len(honest) - len(done)} honest clients never completed")
    slow = [c["complete_s"] for c in honest if c["up"] == SLOW_UP]
    return {
        "last": done[-1] / out["t_min_s"]["honest_arrivals_goodput"],
        "mean": sum(c["complete_s"] for c in honest) / len(honest),
        "p90": done[int(0.9 * (len(done) - 1))],
        "slow_mean": sum(slow) / len(slow),
        "copies": out["origin"]["uploaded"] / out["file_size"],
        "events": out["events"],
        "wall_s": out["wall_s"],
    }


def run_one(binary, scenario, seed, tmp):
    out = os.path.join(tmp, f"{os.getpid()}-{abs(hash((binary, scenario, seed)))}.json")
    subprocess.run([binary, "sim", scenario, "--seed", str(seed), "--json", out],
                   check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return figures(json.load(f))


def geo(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tfttp", action="append", required=True, help="NAME=PATH, repeatable")
    ap.add_argument("--clients", default="300,150")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--size", type=int, default=1 << 30, help="file size, bytes")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", help="write every run's figures here (JSON)")
    a = ap.parse_args()
    binaries = [tuple(t.split("=", 1)) for t in a.tfttp]
    runs = [(int(n), int(s)) for n in a.clients.split(",") for s in a.seeds.split(",")]
    results = {name: {} for name, _ in binaries}
    with tempfile.TemporaryDirectory() as tmp, cf.ThreadPoolExecutor(a.jobs) as pool:
        scenarios = {}
        for n, _ in runs:
            path = os.path.join(tmp, f"scale{n}.json")
            with open(path, "w") as f:
                json.dump(sim_scale.scenario(n, a.size), f)
            scenarios[n] = path
        jobs = {pool.submit(run_one, path, scenarios[n], s, tmp): (name, n, s)
                for name, path in binaries for n, s in runs}
        for job in cf.as_completed(jobs):
            name, n, s = jobs[job]
            results[name][f"n{n}-s{s}"] = job.result()
    keys = [f"n{n}-s{s}" for n, s in runs]
    print("runs:", " ".join(keys))
    base = binaries[0][0]
    for name, _ in binaries:
        r = results[name]
        print(f"{name:>10} last/min " + " ".join(f"{r[k]['last']:.2f}" for k in keys)
              + " | mean s " + " ".join(f"{r[k]['mean']:.0f}" for k in keys))
        if name != base:
            print(" " * 11 + f"geometric mean of ratios to {base}: " + ", ".join(
                f"{m} {geo([r[k][m] / results[base][k][m] for k in keys]):.3f}" for m in KEYS))
    if a.out:
        commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                                capture_output=True, text=True).stdout.strip()
        meta = {"commit": commit, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "kernel": platform.release(), "cores": os.cpu_count(),
                "binaries": dict(binaries), "clients": a.clients, "seeds": a.seeds,
                "size": a.size}
        with open(a.out, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
