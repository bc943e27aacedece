#!/usr/bin/env python3
"""Emulated network of hosts in Linux network namespaces, for swarm benchmarks.

One namespace per host, each with one veth into a Linux bridge that lives in a namespace of
its own (the switch); `tc qdisc tbf` caps each host's upload (egress of its veth) and
download (egress of the switch's end). Addresses are 10.77.0.0/24 inside these namespaces
only: no traffic leaves them. Programs run in a host with `ip netns exec`; everything this
module creates (namespaces, links, processes by PID) is removed by `close()`, which also runs
on exceptions, SIGINT and SIGTERM. Needs root and iproute2. Standard library only.

    with Net("tft") as net:
        s = net.add_host("server", up_mbit=40, down_mbit=1000)
        c = net.add_host("c0", up_mbit=400, down_mbit=400)
        p = net.start(c, ["python3", "-c", "..."])
        net.wait([p], timeout=10)
"""

import os
import signal
import subprocess
import time

SUBNET = "10.77.0"


def sh(*argv, check=True):
    """Runs a command, raising with its stderr on failure."""
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r.stdout


def tbf(ns, dev, mbit):
    """Caps egress of `dev` in namespace `ns` at `mbit` Mbit/s with a token bucket, built as
    the independent checks build theirs (../shared/README.md).

    The bucket holds 2 ms of the rate but at least 96 KiB, so a segmentation-offloaded packet
    always passes whole; the queue holds 25 ms of the rate but at least 3 buckets, which on a
    slow link is deep, as on many home links (1.2 s at 2 Mbit/s)."""
    rate = mbit * 1e6 / 8
    burst = max(96 * 1024, int(rate * 0.002))
    limit = max(int(rate * 0.025), 3 * burst)
    sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
       "rate", f"{mbit}mbit", "burst", str(burst), "limit", str(limit))


class Host:
    def __init__(self, name, ns, index, up_mbit, down_mbit):
        self.name = name
        self.ns = ns
        self.index = index
        self.ip = f"{SUBNET}.{index + 1}"
        self.up_mbit = up_mbit
        self.down_mbit = down_mbit

    def tx_bytes(self):
        """Bytes the host has sent on its link so far."""
        out = sh("ip", "netns", "exec", self.ns, "cat", "/sys/class/net/eth0/statistics/tx_bytes")
        return int(out.strip())


class Net:
    def __init__(self, prefix="tft"):
        self.prefix = prefix
        self.switch = f"{prefix}-sw"
        self.hosts = []
        self.procs = []
        self._closed = False
        self._old = {}

    def __enter__(self):
        self.remove_stale()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._on_signal)
        sh("ip", "netns", "add", self.switch)
        sh("ip", "netns", "exec", self.switch, "ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "netns", "exec", self.switch, "ip", "link", "set", "br0", "up")
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _on_signal(self, signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def remove_stale(self):
        """Deletes namespaces with this prefix left by a run that was killed."""
        for line in sh("ip", "netns", "list").splitlines():
            name = line.split()[0] if line.strip() else ""
            if name.startswith(self.prefix + "-"):
                sh("ip", "netns", "del", name, check=False)

    def add_host(self, name, up_mbit, down_mbit):
        i = len(self.hosts)
        ns = f"{self.prefix}-{name}"
        a, b = f"{self.prefix}{i}a", f"{self.prefix}{i}b"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "netns", ns)
        sh("ip", "link", "set", b, "netns", self.switch)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", a, "name", "eth0")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{SUBNET}.{i + 1}/24", "dev", "eth0")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", self.switch, "ip", "link", "set", b, "master", "br0")
        sh("ip", "netns", "exec", self.switch, "ip", "link", "set", b, "up")
        tbf(ns, "eth0", up_mbit)
        tbf(self.switch, b, down_mbit)
        host = Host(name, ns, i, up_mbit, down_mbit)
        self.hosts.append(host)
        return host

    def start(self, host, argv, stdout=None, stderr=None):
        """Starts `argv` in `host`'s namespace, in a process group of its own."""
        out = open(stdout, "wb") if stdout else subprocess.DEVNULL
        err = open(stderr, "wb") if stderr else subprocess.DEVNULL
        p = subprocess.Popen(["ip", "netns", "exec", host.ns] + list(argv),
                             stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        p.started = time.monotonic()
        self.procs.append(p)
        return p

    def wait(self, procs, timeout):
        """Waits for `procs` until `timeout` seconds have passed, then kills the rest.
        Returns {proc: (exit code or None, seconds from its start to its exit)}."""
        deadline = time.monotonic() + timeout
        done = {}
        while len(done) < len(procs):
            for p in procs:
                if p in done:
                    continue
                rc = p.poll()
                if rc is not None:
                    done[p] = (rc, time.monotonic() - p.started)
            if time.monotonic() >= deadline:
                for p in procs:
                    if p not in done:
                        self.kill(p)
                        done[p] = (None, time.monotonic() - p.started)
                break
            time.sleep(0.02)
        return done

    def kill(self, p):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    def close(self):
        if self._closed:
            return
        self._closed = True
        for p in self.procs:
            self.kill(p)
        for h in self.hosts:
            sh("ip", "netns", "del", h.ns, check=False)
        sh("ip", "netns", "del", self.switch, check=False)
        for sig, old in self._old.items():
            signal.signal(sig, old)


if __name__ == "__main__":
    # Self-check: two hosts, one TCP exchange across the bridge (no ping: iputils may not be
    # installed), everything removed afterwards.
    import sys
    with Net("tftcheck") as net:
        a = net.add_host("a", 100, 100)
        b = net.add_host("b", 100, 100)
        serve = ("import socket; s = socket.create_server(('0.0.0.0', 5000)); "
                 "c = s.accept()[0]; c.sendall(c.recv(5))")
        ask = ("import socket, time\n"
               "for _ in range(100):\n"
               "    try: c = socket.create_connection((%r, 5000)); break\n"
               "    except ConnectionRefusedError: time.sleep(0.05)\n"
               "c.sendall(b'hello'); assert c.recv(5) == b'hello'" % b.ip)
        net.start(b, [sys.executable, "-c", serve])
        p = net.start(a, [sys.executable, "-c", ask])
        rc, _ = net.wait([p], timeout=10)[p]
        print("tcp", "ok" if rc == 0 else f"failed ({rc})")
    left = [l for l in sh("ip", "netns", "list").splitlines() if l.startswith("tftcheck-")]
    print("cleanup", "ok" if not left else f"left {left}")
