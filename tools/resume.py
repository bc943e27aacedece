#!/usr/bin/env python3
"""Resume after SIGKILL: what a rerun of the same `get` receives against what was missing.

Issue 13's target: after SIGKILL at any point, the rerun receives at most the missing bytes
plus 10%. On loopback, with the real binary: serves a file (default 64 MiB, 64 KiB pieces)
with `--up-rate` so a download takes a few seconds, starts `tfttp get` with `--metrics`,
scrapes its `tfttp_pieces_verified` every few milliseconds and SIGKILLs it at each kill
point, then reruns the same `get` to completion and compares:

  missing   the bytes of the pieces the `.part` does not hold after the kill: a piece is
            held when its bytes equal the source's (the rerun keeps exactly those, as
            their BLAKE3 hash passes), read from the `.part` after the kill
  received  the rerun's piece payload: bytes_from_origin + bytes_from_peers +
            bytes_discarded (duplicates) + corrupt pieces, from its --stats
  sent      client-server runs: what the origin's metrics say it sent meanwhile

Scenarios: client-server kills (`--points`, percent of the pieces; `start` kills at once,
`start+40ms` just after the manifest, `last` one piece before the end, run at
`--last-rate` so the kill can land there); a client of a 3-client swarm killed after
trading (`--swarm-points`); a `.part` truncated mid-piece and with flipped bytes in 3
held pieces between the runs; another file's `.part` of the same size. Every rerun's file
is compared byte for byte with the source. Prints a table and one JSON object
(`--json PATH` writes it too); exits 1 if any rerun broke the bound or the file differs.

  python3 tools/resume.py --tfttp target/debug/tfttp --json bench/results/resume.json

Byte counts do not depend on the build; any binary will do (the debug one keeps up with
16 MB/s). Loopback only; every process it starts is killed at the end.
"""

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

UP = 'tfttp_payload_bytes_total{direction="up",source="self"}'
DOWN_PEERS = 'tfttp_payload_bytes_total{direction="down",source="peers"}'
PROCS = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def sample(page, name):
    for line in page.splitlines():
        if line.startswith(name + " "):
            return float(line[len(name) + 1:])
    return None


def scrape_until(port, ok, timeout):
    end = time.monotonic() + timeout
    while True:
        page = scrape(port)
        if ok(page):
            return page
        if time.monotonic() > end:
            raise SystemExit(f"metrics on port {port}: condition not met in {timeout} s")
        time.sleep(0.002)


def spawn(args, stderr=subprocess.DEVNULL):
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    PROCS.append(p)
    return p


class Origin:
    def __init__(self, tfttp, work, src, rate, piece):
        self.port = free_port()
        ready = os.path.join(work, f"origin-{self.port}.addr")
        self.proc = spawn([tfttp, "serve", src, "--listen", "127.0.0.1:0", "--ready-file", ready,
                           "--up-rate", rate, "--piece-size", piece, "-q",
                           "--metrics", f"127.0.0.1:{self.port}"])
        end = time.monotonic() + 60
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise SystemExit("the origin did not start")
            time.sleep(0.02)
        self.addr = open(ready).read().strip()

    def sent_when_idle(self):
        """Payload sent so far, once no connection is left (a killed client's closes)."""
        page = scrape_until(self.port, lambda p: sample(p, "tfttp_connections") == 0, 20)
        return sample(page, UP)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def get_args(tfttp, origin, out, stats, extra):
    return [tfttp, "get", origin.addr, "-o", out, "--listen", "127.0.0.1:0", "--stats", stats,
            "--stall-timeout", "30"] + extra


def start_killable(tfttp, origin, out, extra):
    port = free_port()
    args = get_args(tfttp, origin, out, out + ".first.json", extra)
    return spawn(args + ["-q", "--metrics", f"127.0.0.1:{port}"]), port


def kill_at(proc, port, pieces, ms):
    """SIGKILL once `pieces` are verified (or `ms` after the start); (pieces, from peers)."""
    seen = (0, 0.0)
    if pieces > 0:
        page = scrape_until(port, lambda p: (sample(p, "tfttp_pieces_verified") or 0) >= pieces
                            or proc.poll() is not None, 120)
        seen = (int(sample(page, "tfttp_pieces_verified") or 0), sample(page, DOWN_PEERS) or 0.0)
    else:
        time.sleep(ms / 1000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return seen


def pieces_held(part, src, piece):
    """Per piece: does the .part hold the source's bytes."""
    try:
        with open(part, "rb") as f:
            got = f.read()
    except FileNotFoundError:
        got = b""
    return [got[i:i + piece] == src[i:i + piece] for i in range(0, len(src), piece)]


def missing_bytes(held, size, piece):
    return sum(min(piece, size - i * piece) for i, h in enumerate(held) if not h)


def rerun(tfttp, origin, out, src, piece, extra, client_server):
    """Reruns the same get; the figures of one row."""
    part = out + ".part"
    held = pieces_held(part, src, piece)
    missing = missing_bytes(held, len(src), piece)
    before = origin.sent_when_idle() if client_server else None
    stats = out + ".json"
    args = get_args(tfttp, origin, out, stats, extra + ["--linger", "0"])
    t0 = time.monotonic()
    p = spawn(args, stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    secs = time.monotonic() - t0
    err = err.decode(errors="replace")
    st = json.load(open(stats))
    received = (st["bytes_from_origin"] + st["bytes_from_peers"] + st["bytes_discarded"]
                + st["corrupt_pieces"] * piece)
    with open(out, "rb") as f:
        same = p.returncode == 0 and f.read() == src
    row = {
        "pieces_held": sum(held), "pieces": len(held), "missing": missing,
        "received": received, "from_origin": st["bytes_from_origin"],
        "from_peers": st["bytes_from_peers"], "discarded": st["bytes_discarded"],
        "corrupt_pieces": st["corrupt_pieces"], "rerun_s": round(secs, 2),
        "exit": p.returncode, "same_file": same,
        "said": [l for l in err.splitlines() if "resuming" in l or "holds no piece" in l],
    }
    if client_server:
        row["origin_sent"] = origin.sent_when_idle() - before
    row["ratio"] = round(received / missing, 4) if missing else None
    row["within"] = same and received * 10 <= missing * 11 and (
        not client_server or row["origin_sent"] * 10 <= missing * 11)
    os.remove(out)
    for f in (stats, out + ".first.json"):
        if os.path.exists(f):
            os.remove(f)
    return row


def parse_point(p, n):
    """(pieces to wait for, ms after start) for a kill point."""
    if p == "start":
        return 0, 0
    if p.startswith("start+") and p.endswith("ms"):
        return 0, int(p[6:-2])
    if p == "last":
        return n - 1, 0
    return max(1, int(n * float(p) / 100)), 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tfttp", default="target/release/tfttp")
    ap.add_argument("--size", type=int, default=64 << 20, help="file bytes")
    ap.add_argument("--piece", type=int, default=64 << 10, help="piece bytes")
    ap.add_argument("--rate", default="16M", help="the origin's --up-rate, client-server")
    ap.add_argument("--last-rate", default="4M",
                    help="the origin's --up-rate for the `last` point (a piece per 16 ms)")
    ap.add_argument("--points", default="start,start+40ms,10,30,50,70,90,99,last")
    ap.add_argument("--swarm-points", default="30,60,90,99")
    ap.add_argument("--swarm-rate", default="8M", help="the origin's --up-rate in the swarm")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="also write the JSON here")
    a = ap.parse_args()
    tfttp = os.path.abspath(a.tfttp)
    piece_opt = f"{a.piece // 1024}K"
    n = -(-a.size // a.piece)
    rng = random.Random(a.seed)
    work = tempfile.mkdtemp(prefix="tfttp-resume-")
    rows = []
    try:
        src_path = os.path.join(work, "src.bin")
        src = rng.randbytes(a.size)
        open(src_path, "wb").write(src)
        out = os.path.join(work, "out.bin")

        def show(row):
            rows.append(row)
            ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "-"
            sent = row.get("origin_sent", "")
            print(f"{row['case']:<28} {row['pieces_held']:>5}/{row['pieces']:<5} "
                  f"{row['missing']:>10} {row['received']:>10} {sent!s:>10} {ratio:>6} "
                  f"{'ok' if row['within'] else 'BROKEN'}", file=sys.stderr, flush=True)

        print(f"{'case':<28} {'held':>11} {'missing':>10} {'received':>10} {'orig sent':>10} "
              f"{'ratio':>6}", file=sys.stderr)
        # Client-server kill points.
        origin = Origin(tfttp, work, src_path, a.rate, piece_opt)
        slow = None
        for p in filter(None, a.points.split(",")):
            at, ms = parse_point(p, n)
            o = origin
            if p == "last":
                slow = slow or Origin(tfttp, work, src_path, a.last_rate, piece_opt)
                o = slow
            proc, port = start_killable(tfttp, o, out, ["--no-peers"])
            seen, _ = kill_at(proc, port, at, ms)
            if os.path.exists(out):
                print(f"{p}: completed before the kill; skipped", file=sys.stderr)
                os.remove(out)
                continue
            row = rerun(tfttp, o, out, src, a.piece, ["--no-peers"], True)
            row.update(case=f"client-server kill at {p}", kill_target=at, seen=seen)
            show(row)
        if slow:
            slow.stop()

        # A .part truncated mid-piece and with 3 held pieces damaged between the runs.
        proc, port = start_killable(tfttp, origin, out, ["--no-peers"])
        kill_at(proc, port, n * 7 // 10, 0)
        part = out + ".part"
        held = [i for i, h in enumerate(pieces_held(part, src, a.piece)) if h]
        with open(part, "r+b") as f:
            for i in rng.sample(held[: len(held) * 6 // 10], 3):
                f.seek(i * a.piece + 1000)
                f.write(bytes([src[i * a.piece + 1000] ^ 0xFF]))
            f.truncate(a.size * 45 // 100 + 1234)
        row = rerun(tfttp, origin, out, src, a.piece, ["--no-peers"], True)
        row.update(case="truncated 45% + 3 corrupt")
        show(row)

        # Another file's .part, same size: nothing in it verifies.
        other_path = os.path.join(work, "other.bin")
        open(other_path, "wb").write(rng.randbytes(a.size))
        other = Origin(tfttp, work, other_path, a.rate, piece_opt)
        proc, port = start_killable(tfttp, other, out, ["--no-peers"])
        kill_at(proc, port, n // 2, 0)
        other.stop()
        row = rerun(tfttp, origin, out, src, a.piece, ["--no-peers"], True)
        row.update(case="another file's .part")
        show(row)
        origin.stop()

        # A client of a 3-client swarm, killed after trading, rerun while the others trade
        # or seed.
        for p in filter(None, a.swarm_points.split(",")):
            at, ms = parse_point(p, n)
            so = Origin(tfttp, work, src_path, a.swarm_rate, piece_opt)
            peers = []
            for name in ("a", "b"):
                o = os.path.join(work, f"{name}.bin")
                peers.append((spawn(get_args(tfttp, so, o, o + ".json",
                                             ["-q", "--up-rate", "40M", "--linger", "20"])), o))
            proc, port = start_killable(tfttp, so, out, ["--up-rate", "40M"])
            seen, from_peers = kill_at(proc, port, at, ms)
            if os.path.exists(out):
                print(f"swarm {p}: completed before the kill; skipped", file=sys.stderr)
                os.remove(out)
            else:
                row = rerun(tfttp, so, out, src, a.piece, ["--up-rate", "40M"], False)
                row.update(case=f"swarm kill at {p}", kill_target=at, seen=seen,
                           from_peers_before_kill=from_peers)
                show(row)
            for proc, o in peers:
                proc.wait(timeout=120)
                ok = proc.returncode == 0 and open(o, "rb").read() == src
                if not ok:
                    print(f"swarm {p}: peer {o} failed ({proc.returncode})", file=sys.stderr)
                    rows.append({"case": f"swarm {p} peer", "within": False})
                for f in (o, o + ".json"):
                    if os.path.exists(f):
                        os.remove(f)
            so.stop()
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    report = {
        "tool": "tools/resume.py", "commit": head, "host": platform.node(),
        "cpus": os.cpu_count(), "binary": a.tfttp, "size": a.size, "piece": a.piece,
        "rate": a.rate, "last_rate": a.last_rate, "swarm_rate": a.swarm_rate,
        "bound": "received <= 1.1 x missing", "rows": rows,
        "all_within": all(r["within"] for r in rows),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    return 0 if report["all_within"] else 1


if __name__ == "__main__":
    sys.exit(main())
