#!/usr/bin/env python3
"""Start-up time and memory of `tfttp serve DIR` (README "Many files"): launch to listening
(the --ready-file appears), /proc/PID/status after start, after GET / (JSON), after fetching
N files one after another with `tfttp get --discard`, after IDLE seconds (idle swarms are
dropped after 30 s; --stats says how many are live), and after N more fetches of other files.

    python3 tools/serve_footprint.py DIR [--fetch N] [--idle SECS] [--bin target/release/tfttp]

Make the trees measured in the README with, for example:
    python3 -c 'import os
for d in range(100):
    os.makedirs(f"small/d{d:02}", exist_ok=True)
    for f in range(100): open(f"small/d{d:02}/f{f:03}.bin", "wb").write(os.urandom(4096))'
    mkdir large && for i in $(seq 0 9); do head -c 256M /dev/urandom > large/big$i.bin; done
"""
import argparse
import json
import os
import subprocess
import tempfile
import time
import urllib.request


def memory(pid):
    """VmRSS, RssAnon, RssFile and VmHWM in MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def fetch(exe, addr, names):
    for n in names:
        r = subprocess.run([exe, "get", f"tfttp://{addr}/{n}", "--discard", "-q", "--linger", "0"])
        if r.returncode != 0:
            raise SystemExit(f"get {n} failed with {r.returncode}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--fetch", type=int, default=200)
    ap.add_argument("--idle", type=float, default=35)
    ap.add_argument("--bin", default="target/release/tfttp")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tfttp-footprint-")
    ready, stats = os.path.join(tmp, "ready"), os.path.join(tmp, "stats.json")
    err = open(os.path.join(tmp, "serve.err"), "w")
    t0 = time.monotonic()
    p = subprocess.Popen([a.bin, "serve", a.dir, "--listen", "127.0.0.1:0", "--ready-file", ready,
                          "--stats", stats], stderr=err)
    try:
        while not os.path.exists(ready):
            if p.poll() is not None:
                raise SystemExit(open(err.name).read())
            time.sleep(0.005)
        print(f"start-up (launch to listening): {time.monotonic() - t0:.2f} s")
        addr = open(ready).read().strip()
        time.sleep(0.3)
        print(f"at start (MiB): {memory(p.pid)}")
        req = urllib.request.Request(f"http://{addr}/", headers={"Accept": "application/json"})
        names = [f["name"] for f in json.load(urllib.request.urlopen(req))["files"]]
        print(f"after GET / ({len(names)} files): {memory(p.pid)}")
        t1 = time.monotonic()
        fetch(a.bin, addr, names[:a.fetch])
        print(f"after fetching {len(names[:a.fetch])} in {time.monotonic() - t1:.1f} s: "
              f"{memory(p.pid)}; {open(stats).read().strip()}")
        if a.idle:
            time.sleep(a.idle)
            print(f"after {a.idle:g} s idle: {memory(p.pid)}; {open(stats).read().strip()}")
            fetch(a.bin, addr, names[a.fetch:2 * a.fetch])
            print(f"after fetching {len(names[a.fetch:2 * a.fetch])} others: {memory(p.pid)}")
    finally:
        p.terminate()
        p.wait()
    print(open(err.name).read().splitlines()[1])


if __name__ == "__main__":
    main()
