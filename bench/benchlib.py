"""Shared by the Python benchmarks (bench/swarm.py, bench/sim_suite.py): the lower bounds a
swarm run is measured against, the same formulas as src/bounds.rs."""

import math


def bounds(file_size, origin_up, ups, downs):
    """(Kumar-Ross minimum, client-server time) for clients arriving at once.

    Kumar & Ross (2006): no schedule beats max(F/u_s, F/d_min, N*F/(u_s + sum u_i)); the
    origin alone needs max(N*F/u_s, F/d_min). Any consistent units (bytes and bytes/s give
    seconds); a `downs` entry of None is unlimited."""
    f, n = file_size, len(ups)
    finite = [d for d in downs if d is not None]
    d_min = min(finite) if finite else math.inf
    t_min = max(f / origin_up, f / d_min, n * f / (origin_up + sum(ups)))
    t_cs = max(n * f / origin_up, f / d_min)
    return t_min, t_cs
