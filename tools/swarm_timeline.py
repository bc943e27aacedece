#!/usr/bin/env python3
"""Per-second view of one tfttp swarm run from its --timeline files.

    tools/swarm_timeline.py DIR [--starts swarm.json]

DIR holds the clients' c*.timeline files, as bench/swarm.py leaves them. Each client's rows are shifted by its arrival time (from swarm.json beside DIR when
present), then summed per second of swarm time: how many clients are still downloading,
useful bytes received (from the origin and from peers), bytes thrown away as duplicates, and
how much the clients still downloading and those already complete uploaded. A second where
useful < capacity shows where a run loses time against the Kumar-Ross minimum.
"""

import argparse
import collections
import glob
import json
import os
import re

MBIT = 8 / 1e6


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def starts_from(json_path, work):
    """Arrival offsets per client index from bench/swarm.py's results, else zeros."""
    if not json_path or not os.path.exists(json_path):
        return {}
    name = os.path.basename(os.path.normpath(work))
    for r in json.load(open(json_path)):
        if f"{r['scenario']}-{r['system']}" == name:
            return {c["index"]: c["start"] for c in r["clients"]}
    return {}


def summarise(work, starts):
    rows = collections.defaultdict(collections.Counter)
    downloading = collections.defaultdict(set)
    for path in glob.glob(os.path.join(work, "c*.timeline")):
        i = int(re.search(r"c(\d+)\.timeline$", path).group(1))
        t0 = starts.get(i, 0.0)
        series = load(path)
        full = series[-1]["have"] if series else 0
        prev = None
        for r in series:
            if prev is not None:
                sec = max(1, round(t0 + r["t"]))  # rows come every second: bucket s ends at s
                b = rows[sec]
                b["origin"] += r["from_origin"] - prev["from_origin"]
                b["peers"] += r["from_peers"] - prev["from_peers"]
                b["dup"] += r["discarded"] - prev["discarded"]
                b["dup_origin"] += r.get("discarded_from_origin", 0) - prev.get(
                    "discarded_from_origin", 0)
                seeding = prev["have"] == full
                b["up_seed" if seeding else "up_leech"] += r["uploaded"] - prev["uploaded"]
                if not seeding:
                    downloading[sec].add(i)
            prev = r
    for sec, who in downloading.items():
        rows[sec]["downloading"] = len(who)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--starts", help="bench/swarm.py results (default: DIR/../swarm.json)")
    a = ap.parse_args()
    starts = starts_from(a.starts or os.path.join(a.dir, "..", "swarm.json"), a.dir)
    rows = summarise(a.dir, starts)
    print(" sec  dl  useful  origin   peers     dup  dup<-O  up:leech  up:seed   (Mbit/s)")
    total = collections.Counter()
    for sec in sorted(rows):
        b = rows[sec]
        total.update(b)
        print(f"{sec:4d} {b['downloading']:3d} {(b['origin'] + b['peers']) * MBIT:7.0f} "
              f"{b['origin'] * MBIT:7.0f} {b['peers'] * MBIT:7.0f} {b['dup'] * MBIT:7.0f} "
              f"{b['dup_origin'] * MBIT:7.0f} {b['up_leech'] * MBIT:9.0f} {b['up_seed'] * MBIT:8.0f}")
    print(f"total useful {(total['origin'] + total['peers']) / 2**20:.0f} MiB, duplicates "
          f"{total['dup'] / 2**20:.0f} MiB ({total['dup_origin'] / 2**20:.0f} MiB of them "
          f"from the origin)")


if __name__ == "__main__":
    main()
