#!/usr/bin/env python3
"""Per-second view of one tfttp swarm run from its --timeline files.

    tools/swarm_timeline.py DIR|FILE... [--starts swarm.json]

Reads every *.timeline file in each DIR (bench/swarm.py leaves c0.timeline, c1.timeline, ...)
and every FILE named, and warns on stderr about what it cannot use: no timeline found, an
empty or unreadable file, a file that never received a byte (an origin's). Each client's rows
are shifted by its arrival time (from swarm.json beside DIR when present, for files named
cN.timeline), then summed per second of swarm time: how many clients are still downloading,
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
import sys

MBIT = 8 / 1e6


def warn(msg):
    print(f"{os.path.basename(sys.argv[0])}: {msg}", file=sys.stderr)


def load(path):
    """The rows of one --timeline file; a torn last line (the node was killed mid-write) is
    dropped."""
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                warn(f"{path}:{n}: not a timeline row, skipped")
    return rows


def timeline_files(paths):
    """(path, client index or None) for every *.timeline in the directories and every file
    in `paths`, sorted; warns when a path gives none."""
    found = []
    for p in paths:
        if os.path.isdir(p):
            files = sorted(glob.glob(os.path.join(p, "*.timeline")))
            if not files:
                warn(f"no *.timeline file in {p}")
            found += files
        elif os.path.isfile(p):
            found.append(p)
        else:
            warn(f"{p}: no such file or directory")
    out = []
    for path in found:
        m = re.search(r"(?:^|[^A-Za-z])c(\d+)\.timeline$", os.path.basename(path))
        out.append((path, int(m.group(1)) if m else None))
    return out


def client_series(paths):
    """{label: (client index or None, rows)} for the clients among `paths`: files that cannot
    be read, are empty, or never received a byte (an origin's, or a seed's from the start)
    are left out with a warning."""
    series = {}
    for path, index in timeline_files(paths):
        try:
            rows = load(path)
        except OSError as e:
            warn(f"{path}: {e.strerror}")
            continue
        if not rows:
            warn(f"{path}: empty")
            continue
        if all(r.get("from_origin", 0) + r.get("from_peers", 0) == 0 for r in rows) and \
                rows[0].get("have", 0) == rows[-1].get("have", 0):
            warn(f"{path}: received nothing (an origin's timeline?), left out")
            continue
        label = os.path.splitext(os.path.basename(path))[0]
        if label in series:
            label = path
        series[label] = (index, rows)
    if not series:
        warn("read no client timeline: nothing to show")
    return series


def starts_from(json_path, work):
    """Arrival offsets per client index from bench/swarm.py's results, else zeros."""
    if not json_path or not os.path.exists(json_path):
        return {}
    name = os.path.basename(os.path.normpath(work))
    for r in json.load(open(json_path)):
        if f"{r['scenario']}-{r['system']}" == name:
            return {c["index"]: c["start"] for c in r["clients"]}
    return {}


def summarise(paths, starts):
    rows = collections.defaultdict(collections.Counter)
    downloading = collections.defaultdict(set)
    for i, (index, series) in client_series(paths).items():
        t0 = starts.get(index, 0.0)
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
    ap.add_argument("paths", nargs="+", metavar="DIR|FILE",
                    help="directories of *.timeline files, or timeline files")
    ap.add_argument("--starts", help="bench/swarm.py results (default: DIR/../swarm.json)")
    a = ap.parse_args()
    first = a.paths[0]
    starts = starts_from(a.starts or os.path.join(first, "..", "swarm.json"), first)
    rows = summarise(a.paths, starts)
    if not rows:
        return 1
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
    sys.exit(main())
