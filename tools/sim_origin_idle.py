#!/usr/bin/env python3
"""Finds the suite scenarios whose origin idles while honest clients still lack pieces.

    python3 tools/sim_origin_idle.py SUITE_DIR [--tfttp PATH] [--top N] [--jobs J]

Runs `tfttp sim --timeline` on every scenario of a `bench/sim_suite.py` output folder and
counts, per scenario, the whole seconds of virtual time in which the origin sent less than
half of its uplink (at the 95.6% TCP goodput) while at least one honest client was present
and incomplete. A work-conserving origin has none unless every such client is held back
elsewhere (its own downlink, its TCP window opening, or seeds serving it instead): rule 22
in README.md was found this way. Prints the N scenarios with the most such seconds. Python 3.11 standard
library only.
"""

import argparse
import concurrent.futures
import csv
import io
import json
import os
import subprocess
import sys
import tempfile

GOODPUT = 0.956


def idle_seconds(tfttp, path):
    """(idle seconds, seconds with an honest client waiting) for the scenario at `path`."""
    scenario = json.load(open(path))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        timeline = subprocess.run([tfttp, "sim", path, "-q", "--timeline", "/dev/stdout",
                                   "--json", out], capture_output=True, text=True,
                                  check=True).stdout
        result = json.load(open(out))
    uploaded = {}
    for row in csv.DictReader(io.StringIO(timeline)):
        t = float(row["t_s"])
        if row["host"] == "0" and t == int(t):
            uploaded[int(t)] = int(row["uploaded"])
    capacity = scenario["origin"]["up"] * GOODPUT
    clients = result["clients"]
    idle = waiting = 0
    for t in sorted(uploaded):
        if t + 1 not in uploaded:
            continue
        # complete_s counts from the client's arrival; left_s is an absolute time.
        def lacking(c):
            if c["behave"] != "honest" or c["arrive_s"] > t:
                return False
            if c["complete_s"] is not None and c["arrive_s"] + c["complete_s"] <= t + 1:
                return False
            return c["left_s"] is None or c["left_s"] > t + 1
        if not any(lacking(c) for c in clients):
            continue
        waiting += 1
        if uploaded[t + 1] - uploaded[t] < 0.5 * capacity:
            idle += 1
    return idle, waiting


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite_dir")
    ap.add_argument("--tfttp", default="target/release/tfttp")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args(argv)
    folder = os.path.join(a.suite_dir, "scenarios")
    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.endswith(".json") and f != "index.json")
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
        counts = list(ex.map(lambda p: idle_seconds(a.tfttp, p), paths))
    rows = sorted(zip(counts, paths), key=lambda x: (-x[0][0], x[1]))
    for (idle, waiting), path in rows[:a.top]:
        print(f"{idle:5d} of {waiting:5d} s  {os.path.basename(path)[:-5]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
