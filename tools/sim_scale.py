#!/usr/bin/env python3
"""Writes the simulator's scaling scenario: N clients, heterogeneous caps, all arriving within
10 s, a 1 GiB file (issue: "10,000 clients ... in under 10 minutes").

    python3 tools/sim_scale.py N [--size BYTES] [--time-limit SECS] > scenario.json

Clients cycle through four upload classes (5, 10, 25, 100 Mbit/s) with 150 Mbit/s down;
arrivals are spread evenly over 10 s; the origin uploads 1 Gbit/s.
"""
import argparse
import json

MBIT = 125_000


def scenario(n, size, time_limit=None):
    ups = [5, 10, 25, 100]
    clients = [{"up": ups[i % 4] * MBIT, "down": 150 * MBIT,
                "arrive_s": round(10.0 * i / max(n - 1, 1), 6)} for i in range(n)]
    sc = {"file_size": size, "piece_size": None, "seed": 1, "policy": "tft",
          "origin": {"up": 1000 * MBIT, "down": None, "rtt_ms": 0}, "clients": clients}
    if time_limit:
        sc["time_limit_s"] = time_limit
    return sc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int)
    ap.add_argument("--size", type=int, default=1 << 30)
    ap.add_argument("--time-limit", type=float, help="end the run at this virtual time")
    a = ap.parse_args()
    print(json.dumps(scenario(a.n, a.size, a.time_limit)))
