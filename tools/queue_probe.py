#!/usr/bin/env python3
"""Measures the queue that bulk TCP flows keep standing in a tbf-capped uplink, as the
emulated network builds it (tools/netem.py), for the simulator's queue model.

    sudo python3 tools/queue_probe.py [--rates 1,2,5,20] [--flows 1,2,4,8] [--secs 8] > out.json

For each rate and flow count, host `a` (upload capped at the rate) sends that many bulk TCP
flows to host `b`, while a probe connection from `a` to `b` sends one byte every 50 ms that
`b` echoes at once: the probe's round trip less the idle one is what a small control frame
(a REQUEST, a HAVE) waits behind those flows in `a`'s uplink. The kernel's congestion
control is the machine's (`net.ipv4.tcp_congestion_control`). Prints JSON: per
(rate, flows) the idle round trip and the loaded round trip's median and 90th percentile,
with the tbf limit's delay beside them; and what a download into `a` (one bulk flow from a
third host (--down-flows of them), `a`'s downlink capped at --down Mbit/s) gets alone and while `a`'s uplink is
loaded, whose ACKs wait in that queue. Needs root.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netem  # noqa: E402

SINK = """
import socket, threading
def sink(c):
    while c.recv(1 << 20):
        pass
def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (d := c.recv(64)):
        c.sendall(d)
def serve(port, job):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    while True:
        threading.Thread(target=job, args=(s.accept()[0],), daemon=True).start()
threading.Thread(target=serve, args=(5001, sink), daemon=True).start()
serve(5002, echo)
"""

SOURCE = """
import socket, sys, threading
ip, n, pace = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = bytes(1 << 16)
def send():
    s = socket.create_connection((ip, 5001))  # the sink listens: the idle probe got through
    if pace:
        s.setsockopt(socket.SOL_SOCKET, 47, pace)  # SO_MAX_PACING_RATE, bytes/s
    while True:
        s.sendall(block)
for _ in range(n):
    threading.Thread(target=send, daemon=True).start()
threading.Event().wait()
"""

PROBE = """
import json, socket, sys, time
ip, secs, warm = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
for _ in range(100):  # the echo server may still be starting
    try:
        s = socket.create_connection((ip, 5002))
        break
    except ConnectionRefusedError:
        time.sleep(0.05)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.settimeout(10)
out, start = [], time.monotonic()
while time.monotonic() - start < warm + secs:
    t = time.monotonic()
    s.sendall(b"x")
    s.recv(64)
    if t - start >= warm:
        out.append(time.monotonic() - t)
    time.sleep(0.05)
print(json.dumps(out))
"""


def probe(net, a, b, secs, warm, out_path):
    p = net.start(a, [sys.executable, "-c", PROBE, b.ip, str(secs), str(warm)], stdout=out_path)
    rc, _ = net.wait([p], timeout=warm + secs + 30)[p]
    if rc != 0:
        raise RuntimeError(f"probe failed ({rc})")
    with open(out_path) as f:
        return json.load(f)


def rx_bytes(host):
    out = netem.sh("ip", "netns", "exec", host.ns, "cat", "/sys/class/net/eth0/statistics/rx_bytes")
    return int(out.strip())


def download_mbit(host, secs):
    """What `host`'s link received over the next `secs` seconds, in Mbit/s."""
    before, t = rx_bytes(host), time.monotonic()
    time.sleep(secs)
    return (rx_bytes(host) - before) * 8 / 1e6 / (time.monotonic() - t)


def tbf_limit_s(mbit):
    rate = mbit * 1e6 / 8
    return max(rate * 0.025, 3 * max(96 * 1024, rate * 0.002)) / rate


def measure(rate, flows, secs, down, down_flows, pace, work):
    with netem.Net("tftqp") as net:
        a = net.add_host("a", rate, down)
        b = net.add_host("b", 1000, 1000)
        c = net.add_host("c", 1000, 1000)
        for h in (a, b):
            net.start(h, [sys.executable, "-c", SINK])
        idle = probe(net, a, b, 2.0, 0.5, os.path.join(work, "idle.json"))
        net.start(c, [sys.executable, "-c", SOURCE, a.ip, str(down_flows), "0"])
        time.sleep(1.0)
        alone = download_mbit(a, secs / 2)
        per_flow = int(pace * rate * 1e6 / 8 / flows) if pace else 0
        src = net.start(a, [sys.executable, "-c", SOURCE, b.ip, str(flows), str(per_flow)])
        time.sleep(2.0)
        loaded_down = download_mbit(a, secs / 2)
        loaded = probe(net, a, b, secs, 0.0, os.path.join(work, "loaded.json"))
        net.kill(src)
    q = statistics.quantiles(loaded, n=10)
    return {"rate_mbit": rate, "flows": flows, "idle_ms": 1e3 * statistics.median(idle),
            "median_ms": 1e3 * statistics.median(loaded), "p90_ms": 1e3 * q[8],
            "tbf_limit_ms": 1e3 * tbf_limit_s(rate), "samples": len(loaded),
            "down_mbit": down, "down_flows": down_flows, "download_alone_mbit": alone,
            "download_while_loaded_mbit": loaded_down, "paced_at": pace}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="1,2,5,20", help="uplink caps, Mbit/s")
    ap.add_argument("--flows", default="1,2,4,8", help="bulk flow counts")
    ap.add_argument("--secs", type=float, default=8.0, help="loaded seconds probed")
    ap.add_argument("--down", type=float, default=150.0, help="host a's downlink, Mbit/s")
    ap.add_argument("--down-flows", type=int, default=1, help="bulk flows into host a")
    ap.add_argument("--pace", type=float, default=0.0,
                    help="cap the upload flows' pacing (SO_MAX_PACING_RATE) at this fraction "
                         "of the uplink, split evenly; 0: not capped")
    ap.add_argument("--work", default="/tmp/queue_probe")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
        cc = f.read().strip()
    rows = []
    for rate in [float(r) for r in a.rates.split(",")]:
        for flows in [int(n) for n in a.flows.split(",")]:
            row = measure(rate, flows, a.secs, a.down, a.down_flows, a.pace, a.work)
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
    print(json.dumps({"congestion_control": cc, "kernel": os.uname().release,
                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
