#!/usr/bin/env python3
"""Hostile load on one origin: memory and a legitimate client's time under attack.

Serves a file on loopback, times a plain `get` (client-server, --no-peers) a few times,
then holds CONNECTIONS hostile connections open against the origin, reopening any the
origin closes, and times the same `get` again while they last. The hostile connections
are an even mix of the kinds the trust issue lists (docs/PROTOCOL.md version 2 frames):

  idle       connects and sends nothing (the handshake timer closes it after 10 s)
  trickle    sends a HELLO one byte per second (slowloris)
  big-head   sends a 5-byte frame head announcing a 16 MiB MANIFEST, then nothing
  flood      HELLO, an all-zero BITFIELD (the manifest's length), INTERESTED, then
             REQUESTs forever, never reading
  receipts   HELLO, an all-zero BITFIELD, then RECEIPTs about made-up node ids
  no-bits    HELLO and INTERESTED, never a BITFIELD, then wildcard REQUESTs

The origin's resident set is sampled every 0.2 s: VmRSS, and RssAnon, its own memory
without the pages of the served file's map (which count in VmRSS once read, up to the file's
size, and are the page cache's, not the attack's); VmHWM is the peak VmRSS. Prints one
JSON object; the issue's targets are peak RSS <= 64 MiB and the attacked time <= 1.2x the
unattacked one. Loopback only; every process and socket it opens is closed at the end.

  python3 tools/hostile.py --tfttp target/release/tfttp --connections 1000
"""

import argparse
import json
import os
import platform
import random
import resource
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

KINDS = ["idle", "trickle", "big-head", "flood", "receipts", "no-bits"]
HELLO, BITFIELD, INTERESTED, REQUEST, MANIFEST, RECEIPT = 0x01, 0x03, 0x05, 0x08, 0x02, 0x80
WILDCARD = 0xFFFFFFFF
# What one hostile connection may send per second: enough to fill any per-peer queue within
# the run, not so much that the attacker's Python takes the CPU from the origin.
SEND_PER_SEC = 64 * 1024


def frame(ty, body=b""):
    return struct.pack(">IB", len(body) + 1, ty) + body


def hello(rng):
    body = b"TFTT" + bytes([2, 1, 0])
    body += struct.pack(">QQH", rng.getrandbits(63) | 1, 0, 0)
    body += rng.randbytes(16) + struct.pack(">H", 0)
    return frame(HELLO, body)


def opening(kind, rng, pieces):
    """Bytes sent at once, and the bytes repeated afterwards at SEND_PER_SEC. A BITFIELD
    has the manifest's length, ceil(pieces / 8) bytes: an empty one is refused at once
    ("BITFIELD of the wrong length"), which would test the reconnect, not the queues."""
    bits = frame(BITFIELD, bytes(-(-pieces // 8)))
    if kind == "idle":
        return b"", b""
    if kind == "trickle":
        return b"", hello(rng)
    if kind == "big-head":
        return struct.pack(">IB", 16 * 1024 * 1024 + 1, MANIFEST), b""
    if kind == "flood":
        start = hello(rng) + bits + frame(INTERESTED, b"\x01")
        return start, b"".join(frame(REQUEST, struct.pack(">I", i % pieces)) for i in range(512))
    if kind == "receipts":
        entries = b"".join(
            struct.pack(">QQQ", rng.getrandbits(64) | 1, 1 << 40, 1 << 40) for _ in range(256)
        )
        return hello(rng) + bits, frame(RECEIPT, struct.pack(">H", 256) + entries)
    if kind == "no-bits":
        start = hello(rng) + frame(INTERESTED, b"\x01")
        return start, b"".join(frame(REQUEST, struct.pack(">I", WILDCARD)) for _ in range(64))
    raise ValueError(kind)


class Attack:
    """CONNECTIONS hostile connections held open, each reopened when the origin closes it.

    Interest is kept exact (epoll is level-triggered): a socket asks to write only while it
    has bytes and budget this second, and floods never ask to read."""

    def __init__(self, addr, count, rng, pieces, kinds=KINDS):
        self.addr, self.rng, self.pieces = addr, rng, pieces
        self.sel = selectors.DefaultSelector()
        self.conns = {}  # socket -> state, registered or not
        self.opened = {k: 0 for k in kinds}
        self.closed_by_origin = {k: 0 for k in kinds}
        self.next_tick = time.monotonic() + 1.0
        for i in range(count):
            self.open(kinds[i % len(kinds)])

    def open(self, kind):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        try:
            s.connect(self.addr)
        except BlockingIOError:
            pass
        start, repeat = opening(kind, self.rng, self.pieces)
        self.conns[s] = {"kind": kind, "out": bytearray(start), "repeat": repeat, "pos": 0,
                         "budget": SEND_PER_SEC, "events": 0}
        self.opened[kind] += 1
        self.interest(s)

    def interest(self, s):
        st = self.conns[s]
        want = 0 if st["kind"] == "flood" else selectors.EVENT_READ
        if st["out"] and st["budget"] > 0:
            want |= selectors.EVENT_WRITE
        if want == st["events"]:
            return
        if st["events"] == 0:
            self.sel.register(s, want)
        elif want == 0:
            self.sel.unregister(s)
        else:
            self.sel.modify(s, want)
        st["events"] = want

    def tick(self):
        """Once a second: new budgets, the trickle's next byte, the floods' next batch."""
        for s, st in list(self.conns.items()):
            st["budget"] = SEND_PER_SEC
            if st["kind"] == "trickle":
                if st["pos"] < len(st["repeat"]):
                    st["out"] += st["repeat"][st["pos"]:st["pos"] + 1]
                    st["pos"] += 1
            elif st["repeat"] and len(st["out"]) < SEND_PER_SEC:
                st["out"] += st["repeat"]
            self.interest(s)

    def step(self, timeout):
        now = time.monotonic()
        if now >= self.next_tick:
            self.next_tick = now + 1.0
            self.tick()
        for key, events in self.sel.select(timeout):
            s = key.fileobj
            if s not in self.conns:
                continue
            st = self.conns[s]
            if events & selectors.EVENT_READ:
                try:
                    if not s.recv(65536):
                        self.reopen(s)
                        continue
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    self.reopen(s)
                    continue
            if events & selectors.EVENT_WRITE:
                try:
                    n = s.send(bytes(st["out"][: st["budget"]]))
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    self.reopen(s)
                    continue
                del st["out"][:n]
                st["budget"] -= n
                self.interest(s)

    def reopen(self, s):
        st = self.conns.pop(s)
        if st["events"]:
            self.sel.unregister(s)
        s.close()
        self.closed_by_origin[st["kind"]] += 1
        self.open(st["kind"])

    def close(self):
        for s in self.conns:
            s.close()
        self.conns.clear()
        self.sel.close()


def rss(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def timed_get(tfttp, addr, out, attack=None, limit=120.0):
    """Seconds a client-server `get` took (None: killed after `limit`); `attack` is stepped
    meanwhile."""
    if os.path.exists(out):
        os.remove(out)
    t0 = time.monotonic()
    p = subprocess.Popen([tfttp, "get", f"{addr[0]}:{addr[1]}", "-o", out, "--no-peers",
                          "--linger", "0", "-q"])
    while p.poll() is None:
        if time.monotonic() - t0 > limit:
            p.kill()
            p.wait()
            print(f"hostile: a get took over {limit} s; killed", file=sys.stderr)
            return None
        if attack:
            attack.step(0.01)
        else:
            time.sleep(0.01)
    if p.returncode != 0:
        raise SystemExit(f"get exited {p.returncode}")
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tfttp", default="target/release/tfttp")
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64 * 1024 * 1024, help="file bytes")
    ap.add_argument("--up-rate", default="200M", help="the origin's --up-rate")
    ap.add_argument("--piece-size", type=int, default=64 * 1024,
                    help="the origin's --piece-size in bytes (sizes the hostile BITFIELDs)")
    ap.add_argument("--runs", type=int, default=3, help="timed gets before and under attack")
    ap.add_argument("--hold", type=float, default=15.0,
                    help="seconds of attack before the first timed get")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--get-limit", type=float, default=120.0,
                    help="seconds after which a timed get is killed and counted as null")
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated, of: " + " ".join(KINDS))
    a = ap.parse_args()
    limit = raise_fd_limit(a.connections + 256)
    if limit < a.connections + 64:
        sys.exit(f"descriptor limit {limit} is below {a.connections} connections")
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory(prefix="tfttp-hostile-") as d:
        src, ready, out, stats = (os.path.join(d, n)
                                  for n in ("src.bin", "ready", "out.bin", "stats.json"))
        with open(src, "wb") as f:
            f.write(rng.randbytes(a.size))
        serve = subprocess.Popen([a.tfttp, "serve", src, "--listen", "127.0.0.1:0",
                                  "--ready-file", ready, "--up-rate", a.up_rate, "-q",
                                  "--piece-size", str(a.piece_size),
                                  "--stats", stats],
                                 preexec_fn=lambda: raise_fd_limit(a.connections + 256))
        try:
            t0 = time.monotonic()
            while not os.path.exists(ready):
                if time.monotonic() - t0 > 30 or serve.poll() is not None:
                    sys.exit("serve did not start")
                time.sleep(0.05)
            host, port = open(ready).read().split()[0].rsplit(":", 1)
            addr = (host, int(port))
            before = [timed_get(a.tfttp, addr, out, limit=a.get_limit) for _ in range(a.runs)]
            rss_before = rss(serve.pid)["VmRSS"]
            pieces = max(1, -(-a.size // a.piece_size))
            attack = Attack(addr, a.connections, rng, pieces, a.kinds.split(","))
            peak = {"VmRSS": 0, "RssAnon": 0}

            def sample():
                now = rss(serve.pid)
                for k in peak:
                    peak[k] = max(peak[k], now[k])

            t0 = time.monotonic()
            next_sample = t0
            while time.monotonic() - t0 < a.hold:
                attack.step(0.05)
                if time.monotonic() >= next_sample:
                    next_sample += 0.2
                    sample()
            during = []
            for _ in range(a.runs):
                during.append(timed_get(a.tfttp, addr, out, attack, a.get_limit))
                sample()
            hwm = rss(serve.pid)["VmHWM"]
            time.sleep(1.2)  # the stats file is rewritten every second
            with open(stats) as f:
                origin_stats = json.load(f)
            alive = serve.poll() is None
            attack.close()
        finally:
            serve.kill()
            serve.wait()
    # A get that was killed counts as the limit: the slowdown is then a lower bound.
    b = statistics.median(x if x is not None else a.get_limit for x in before)
    u = statistics.median(x if x is not None else a.get_limit for x in during)
    print(json.dumps({
        "run": {"commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                         text=True).stdout.strip(),
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "kernel": platform.release(), "nproc": os.cpu_count()},
        "connections": a.connections, "file_bytes": a.size, "origin_up_rate": a.up_rate,
        "opened": attack.opened, "closed_by_origin": attack.closed_by_origin,
        "get_s_before": [x and round(x, 3) for x in before],
        "get_s_under_attack": [x and round(x, 3) for x in during],
        "get_limit_s": a.get_limit,
        "slowdown": round(u / b, 3),
        "origin_rss_before": rss_before, "origin_rss_peak_sampled": peak["VmRSS"],
        "origin_anon_peak_sampled": peak["RssAnon"],
        "origin_vmhwm": hwm, "origin_alive": alive, "origin_stats": origin_stats,
    }, indent=1))


if __name__ == "__main__":
    main()
