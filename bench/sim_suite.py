#!/usr/bin/env python3
"""Scenario suite for the tfttp swarm simulator (`tfttp sim`), with a scorecard.

Generates a few hundred swarm scenarios (docs/SIMULATOR.md gives the file format) that
cover these axes, runs `tfttp sim` on each and scores the results:

  arrivals      all at once; Poisson; 2-4 bursts
  size          2 to 500 clients, log-uniform
  capacity mix  homogeneous; bimodal; four classes spanning 20x; ADSL-like (down = 10x up);
                long-tailed (Pareto up caps on a 1-2-5 grid); origin up 0.5x-10x the median
  misbehaviour  none; 5-20% free riders, liars or both, anywhere in the arrival order, and
                some scenarios with a free rider first; a quarter of the scenarios also
                hold a colluding pair (`behave: colluder`), one of them first in a third
  churn         none; some clients leaving a fixed time after arrival; some leaving on
                completion
  RTT           per-host rtt_ms uniform in [0, R] with R from 1 ms (LAN) to 300 ms
  up_rate       clients told nothing of their uplink (half: they run the default,
                `--up-rate off`, or the pacer with --pace auto), told its rate
                (`--up-rate` = link), or told 0.8x of it

What the scorecard measures (DIR/scorecard.md and DIR/scorecard.json, also printed):
  * last/T_min: the latest honest completion after the first arrival (honest_last_s) over
    the Kumar-Ross minimum for the honest clients at goodput with their real arrival times
    (t_min_s.honest_arrivals_goodput; all at once it is Kumar-Ross itself).
  * free-rider order: scenarios where a free rider or liar needs less time (complete_s,
    from its own arrival) than the median honest client.
  * incentive compatibility: honest clients grouped by identical `up`; a violation is a
    class with more upload whose mean complete_s exceeds a slower class's by more than 5%.
  * never completed: clients with no complete_s that were not told to leave early.
  * consistency: result facts that cannot hold in a correct simulator (bytes received
    below the file size on completion, a free rider uploading, completion after the end).
  * totals: simulator events, wall time, events/s, peak RSS.

    python3 bench/sim_suite.py [--tfttp PATH] [--out DIR] [--count N] [--seed S]
        [--jobs J] [--timeout SEC] [--families a,b] [--max-clients M]
        [--file-size BYTES] [--policy tft|bittorrent|all] [--rescore] [--strict]
    python3 bench/sim_suite.py --self-test

--families keeps only the named arrival patterns and/or capacity mixes (at-once, poisson,
burst, homog, bimodal, spread20, adsl, cable, pareto). --rescore skips generating and running and
scores DIR again. Scenarios go to DIR/scenarios (index.json describes each), results to
DIR/results. Exit status 0 if every scenario ran, 1 if any failed (nonzero exit, timeout,
unreadable output); with --strict also 1 if a client never completed or a result is
inconsistent. Python 3.11 standard library only.
"""

import argparse
import collections
import contextlib
import concurrent.futures
import io
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import unittest

from benchlib import bounds

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TFTTP = os.path.normpath(os.path.join(HERE, "..", "target", "release", "tfttp"))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, "..", "target", "sim-suite"))

MBIT = 125_000  # bytes per second in one Mbit/s
MIB = 1 << 20

ARRIVALS = ("at-once", "poisson", "burst")
MIXES = ("homog", "bimodal", "spread20", "adsl", "cable", "pareto")
# Cable and fibre home links: a slow uplink under a downlink this many times faster, where a
# busy uplink starves the ACKs of the downloads (README, "Uploads starve downloads").
CABLE_DOWN = 25
MISBEHAVIOURS = ("none", "fr", "liar", "mixed", "fr-first")
# A quarter of the scenarios also hold a colluding pair (drawn from a stream of its own, so the
# other scenarios are the ones the suite had before colluders).
COLLUSIONS = ("none", "none", "none", "pair")
CHURNS = ("none", "early", "none", "on-complete")  # half the scenarios without churn
RTT_MAX_MS = (1, 20, 50, 100, 300)
# The origin's uplink over the median client's, drawn log-uniform. `--origin-range 10,300`
# makes a family of fast origins (a data-centre server and home clients), the same
# scenarios otherwise.
ORIGIN_RANGE = (0.5, 10.0)
UP_RATES = ("none", "none", "link", "0.8x")  # what clients are told of their uplink (--up-rate)
DOWN_MULTIPLES = (None, 2, 4, 10)  # down cap as a multiple of up; None = unlimited
PARETO_GRID_MBIT = (1, 2, 5, 10, 20, 50, 100, 200)

IC_TOLERANCE = 0.05  # incentive compatibility: slack before a faster class counts as slower
WORST = 10  # scenarios listed as the worst by last/T_min
MD_LIST_MAX = 25  # longest list printed in scorecard.md; scorecard.json has everything
STALL_S = 5.0  # issue 12: no client may wait this long for a piece while it lacks some
# The origin judges a client from its third one-second choking round on (docs/PROTOCOL.md
# §5.6): a misbehaving client that completes sooner was never judged.
JUDGED_AFTER_S = 3.0
# A misbehaving client with fewer honest clients than this downloading beside it, on average
# over its download, had nobody to give to: what it got was the origin's or seeds' spare.
ALONE_BELOW = 0.5


# ---------------------------------------------------------------- generation


def stratified(rng, values, count):
    """`count` picks from `values`, each value used floor or ceil of count/len times."""
    seq = []
    while len(seq) < count:
        block = list(values)
        rng.shuffle(block)
        seq.extend(block)
    return seq[:count]


def stratified_sizes(rng, count, lo, hi):
    """`count` swarm sizes log-uniform in [lo, hi], one from each of `count` strata."""
    strata = list(range(count))
    rng.shuffle(strata)
    span = math.log(hi) - math.log(lo)
    return [min(hi, max(lo, round(math.exp(math.log(lo) + (k + rng.random()) / count * span))))
            for k in strata]


def log_uniform(rng, lo, hi):
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def capacity_mix(rng, mix, n):
    """Client up caps (bytes/s), the down cap multiple (None = unlimited) and a description."""
    if mix == "homog":
        r = rng.choice((5, 10, 20, 50, 100))
        return [r * MBIT] * n, rng.choice(DOWN_MULTIPLES), f"all {r} Mbit/s"
    if mix == "bimodal":
        lo, hi = rng.choice(((10, 25), (20, 50), (10, 100), (5, 50)))
        k = min(n - 1, max(1, round(rng.uniform(0.25, 0.75) * n)))
        ups = [hi * MBIT] * k + [lo * MBIT] * (n - k)
        rng.shuffle(ups)
        return ups, rng.choice(DOWN_MULTIPLES), f"{n - k}x{lo} + {k}x{hi} Mbit/s"
    if mix == "spread20":
        ups = [r * MBIT for r in stratified(rng, (5, 10, 25, 100), n)]
        return ups, rng.choice(DOWN_MULTIPLES), "5/10/25/100 Mbit/s"
    if mix == "adsl":
        ups = [r * MBIT for r in stratified(rng, (1, 2, 4), n)]
        return ups, 10, "ADSL 1/2/4 Mbit/s up"
    if mix == "cable":
        ups = [r * MBIT for r in stratified(rng, (5, 10, 20, 40), n)]
        return ups, CABLE_DOWN, f"cable 5/10/20/40 Mbit/s up, {CABLE_DOWN}x down"
    if mix == "pareto":
        ups = [pareto_up(rng) for _ in range(n)]
        return ups, rng.choice(DOWN_MULTIPLES), "Pareto(1.2) from 2 Mbit/s, 1-2-5 grid to 200"
    raise ValueError(f"unknown capacity mix {mix}")


def pareto_up(rng, alpha=1.2, xm=2.0):
    """A Pareto-distributed up cap in bytes/s, clipped and snapped to a 1-2-5 grid so that
    clients fall into classes (the incentive check compares classes)."""
    r = min(xm * (1.0 - rng.random()) ** (-1.0 / alpha), PARETO_GRID_MBIT[-1])
    snap = min(PARETO_GRID_MBIT, key=lambda g: abs(math.log(g / r)))
    return snap * MBIT


def arrival_times(rng, pattern, n, t_cs):
    """Sorted arrival times (s) and a description. Poisson arrivals span about 0.2-2x the
    client-server time; bursts are 2-4 groups arriving together, 0.1-0.5x t_cs apart."""
    if pattern == "at-once":
        return [0.0] * n, "all at t=0"
    if pattern == "poisson":
        span = rng.uniform(0.2, 2.0) * t_cs
        gap = span / max(1, n - 1)
        times, t = [], 0.0
        for _ in range(n):
            times.append(round(t, 3))
            t += rng.expovariate(1.0 / gap)
        return times, f"Poisson, mean gap {gap:.2f} s (target span {span:.0f} s)"
    if pattern == "burst":
        groups = min(n, rng.randint(2, 4))
        cuts = sorted(rng.sample(range(1, n), groups - 1))
        sizes = [b - a for a, b in zip([0] + cuts, cuts + [n])]
        times, t = [], 0.0
        for size in sizes:
            times.extend([round(t, 3)] * size)
            t += rng.uniform(0.1, 0.5) * t_cs
        return times, f"{groups} bursts of {'/'.join(map(str, sizes))}"
    raise ValueError(f"unknown arrival pattern {pattern}")


def misbehaviour(rng, kind, n):
    """Per-client behaviour in arrival order: 5-20% (at least one, at most a fifth or one)
    free riders and/or liars at random positions; 'fr-first' puts a free rider first."""
    behave = ["honest"] * n
    if kind == "none":
        return behave
    k = min(max(1, round(rng.uniform(0.05, 0.20) * n)), max(1, n // 5))
    positions = rng.sample(range(n), k)
    if kind == "fr-first" and 0 not in positions:
        positions[0] = 0
    for j, p in enumerate(positions):
        if kind in ("fr", "fr-first"):
            behave[p] = "free-rider"
        elif kind == "liar":
            behave[p] = "liar"
        else:  # mixed: alternate, the first one either
            behave[p] = ("free-rider", "liar")[(j + (k == 1 and rng.random() < 0.5)) % 2]
    return behave


def collusion(rng, kind, behave):
    """For 'pair': two honest clients (one the first arrival in a third of the cases, if it
    is honest) become colluders, when at least two honest ones would remain."""
    honest = [j for j, b in enumerate(behave) if b == "honest"]
    if kind != "pair" or len(honest) < 4:
        return behave
    pair = rng.sample(honest, 2)
    if behave[0] == "honest" and 0 not in pair and rng.random() < 1 / 3:
        pair[0] = 0
    out = list(behave)
    for j in pair:
        out[j] = "colluder"
    return out


def leaves(rng, kind, n, t_min):
    """Per-client `leave`: 'linger'; for 'early' 10-30% leave 0.2-1.5x T_min seconds after
    arriving; for 'on-complete' 30-100% leave on completion."""
    leave = ["linger"] * n
    if kind == "early":
        for p in rng.sample(range(n), max(1, round(rng.uniform(0.1, 0.3) * n))):
            leave[p] = round(max(0.1, rng.uniform(0.2, 1.5) * t_min), 1)
    elif kind == "on-complete":
        for p in rng.sample(range(n), max(1, round(rng.uniform(0.3, 1.0) * n))):
            leave[p] = "on_complete"
    return leave


def compress(clients):
    """Merge runs of identical client entries into one entry with a count."""
    out = []
    for c in clients:
        if out and {k: v for k, v in out[-1].items() if k != "count"} == c:
            out[-1]["count"] += 1
        else:
            out.append(dict(c, count=1))
    return out


def expand_clients(scenario):
    """The scenario's clients in file order with `count` expanded (as the simulator numbers
    them)."""
    out = []
    for c in scenario["clients"]:
        entry = {k: v for k, v in c.items() if k != "count"}
        out.extend(dict(entry) for _ in range(int(c.get("count", 1))))
    return out


def misbehaviour_tag(behave):
    n = len(behave)
    fr = behave.count("free-rider")
    liar = behave.count("liar")
    col = behave.count("colluder")
    if fr + liar + col == 0:
        return "honest"
    tag = (f"fr{round(100 * fr / n)}" if fr else "") + (f"liar{round(100 * liar / n)}" if liar else "")
    tag += f"col{col}" if col else ""
    return tag + ("first" if behave[0] != "honest" else "")


def churn_tag(leave):
    early = sum(1 for x in leave if not isinstance(x, str))
    oncomp = leave.count("on_complete")
    n = len(leave)
    return (f"leave{round(100 * early / n)}" if early else "") + \
        (f"oncomp{round(100 * oncomp / n)}" if oncomp else "")


def make_scenario(rng, i, axes, file_size, policy, origin_range=ORIGIN_RANGE):
    """One scenario (the JSON dict `tfttp sim` reads) and its index entry."""
    n = axes["n"]
    ups, down_mult, mix_desc = capacity_mix(rng, axes["mix"], n)
    downs = [None if down_mult is None else u * down_mult for u in ups]
    origin_up = round(statistics.median(ups) * log_uniform(rng, *origin_range))
    t_min, t_cs = bounds(file_size, origin_up, ups, downs)
    arrive, arrival_desc = arrival_times(rng, axes["arrival"], n, t_cs)
    behave = misbehaviour(rng, axes["misbehave"], n)
    behave = collusion(random.Random(f"collusion {i}"), axes.get("collude", "none"), behave)
    leave = leaves(rng, axes["churn"], n, t_min)
    rtt_max = axes["rtt_max_ms"]
    told = axes.get("up_rate", "none")

    def rtt():
        return round(rng.uniform(0.0, rtt_max), 2)

    clients = [dict(up=ups[j], down=downs[j], arrive_s=arrive[j], leave=leave[j],
                    behave=behave[j], rtt_ms=rtt()) for j in range(n)]
    for c in clients:
        if told == "link":
            c["up_rate"] = "link"
        elif told == "0.8x":
            c["up_rate"] = round(0.8 * c["up"])
    time_limit = math.ceil(max(3600.0, arrive[-1] + 2 * t_cs + 60))
    scenario = {
        "file_size": file_size, "piece_size": None, "seed": rng.randrange(1, 2**31),
        "policy": policy, "time_limit_s": time_limit,
        "origin": {"up": origin_up, "down": None, "rtt_ms": rtt()},
        "clients": compress(clients),
    }
    tags = [axes["arrival"], axes["mix"], f"n{n}", misbehaviour_tag(behave), churn_tag(leave),
            f"rtt{rtt_max}", {"none": "", "link": "uprate", "0.8x": "uprate08"}[told], f"s{i}"]
    name = "-".join(t for t in tags if t)
    desc = (f"{arrival_desc}; {n} clients, {mix_desc}, down "
            f"{'unlimited' if down_mult is None else f'{down_mult}x up'}; origin up "
            f"{origin_up / MBIT:.1f} Mbit/s; {behave.count('free-rider')} free riders, "
            f"{behave.count('liar')} liars, {behave.count('colluder')} colluders"
            f"{' (one first)' if behave[0] != 'honest' else ''}; "
            f"churn {axes['churn']}; rtt 0-{rtt_max} ms; clients' --up-rate {told}; "
            f"T_min~{t_min:.1f} s, t_cs~{t_cs:.1f} s")
    return name, scenario, {"axes": axes, "desc": desc}


def generate(seed, count, max_clients, file_size, policy, arrivals=ARRIVALS, mixes=MIXES,
             origin_range=ORIGIN_RANGE):
    """[(name, scenario dict, index entry)] for `count` scenarios, deterministic in `seed`."""
    rng = random.Random(seed)
    columns = {
        "arrival": stratified(rng, arrivals, count),
        "mix": stratified(rng, mixes, count),
        "misbehave": stratified(rng, MISBEHAVIOURS, count),
        "churn": stratified(rng, CHURNS, count),
        "rtt_max_ms": stratified(rng, RTT_MAX_MS, count),
        "n": stratified_sizes(rng, count, 2, max(2, max_clients)),
    }
    # Drawn from a stream of its own, so adding the axis left every other draw as it was.
    columns["up_rate"] = stratified(random.Random(seed ^ 0x5EED_0F_0A7E), UP_RATES, count)
    columns["collude"] = stratified(random.Random(seed ^ 0xC011_0DE5), COLLUSIONS, count)
    out = []
    for i in range(count):
        axes = {k: v[i] for k, v in columns.items()}
        out.append(make_scenario(random.Random(rng.randrange(2**63)), i, axes, file_size, policy,
                                 origin_range))
    return out


def set_pace(scenario, pace):
    """`up_rate: pace` for the origin and every client not told its uplink."""
    scenario["origin"]["up_rate"] = pace
    for c in scenario["clients"]:
        c.setdefault("up_rate", pace)


def reseed(scenario, k):
    """The same arrangement with other random draws in the simulator: two runs of one
    build that differ only so show how far a comparison moves by chance."""
    scenario["seed"] += k


def write_scenarios(out_dir, generated):
    """Write DIR/scenarios/NAME.json and DIR/scenarios/index.json; return the index."""
    sdir = os.path.join(out_dir, "scenarios")
    os.makedirs(sdir, exist_ok=True)
    for f in os.listdir(sdir):
        if f.endswith(".json"):
            os.remove(os.path.join(sdir, f))
    index = {}
    for name, scenario, entry in generated:
        path = os.path.join(sdir, name + ".json")
        write_json(path, scenario)
        index[name] = dict(entry, file=path)
    write_json(os.path.join(sdir, "index.json"), index)
    return index


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- running


def run_one(tfttp, scenario_path, result_path, timeout):
    """Run one scenario; a record with status 'ok', 'timeout', 'exit N', 'error' or
    'bad-json', the wall time and the tail of stderr."""
    if os.path.exists(result_path):
        os.remove(result_path)
    cmd = [tfttp, "sim", scenario_path, "--json", result_path]
    start = time.monotonic()
    rec = {"cmd": " ".join(cmd)}
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return dict(rec, status="timeout", wall_s=time.monotonic() - start, stderr=tail(err))
    except OSError as e:
        return dict(rec, status="error", wall_s=time.monotonic() - start, stderr=str(e))
    rec.update(wall_s=time.monotonic() - start, stderr=tail(p.stderr))
    if p.returncode != 0:
        return dict(rec, status=f"exit {p.returncode}")
    try:
        read_json(result_path)
    except (OSError, ValueError) as e:
        return dict(rec, status="bad-json", stderr=tail(p.stderr + f"\n{e}"))
    return dict(rec, status="ok")


def tail(text, lines=15):
    return "\n".join((text or "").rstrip().splitlines()[-lines:])


def run_all(tfttp, out_dir, index, jobs, timeout, log=sys.stderr):
    """Run every scenario in `index`, `jobs` at a time; {name: run record}."""
    rdir = os.path.join(out_dir, "results")
    os.makedirs(rdir, exist_ok=True)
    runs = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(run_one, tfttp, entry["file"],
                               os.path.join(rdir, name + ".json"), timeout): name
                   for name, entry in index.items()}
        for k, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            name = futures[fut]
            runs[name] = dict(fut.result(), result=os.path.join(rdir, name + ".json"))
            print(f"[{k}/{len(index)}] {runs[name]['status']:>8} {runs[name]['wall_s']:7.1f} s  "
                  f"{name}", file=log, flush=True)
    return {name: runs[name] for name in index}


# ---------------------------------------------------------------- scoring


def percentile(xs, q):
    """Linear interpolation between closest ranks; q in [0, 100]."""
    xs = sorted(xs)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def distribution(xs):
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "min": min(xs), "p10": percentile(xs, 10),
            "median": percentile(xs, 50), "p90": percentile(xs, 90), "max": max(xs)}


def t_min_of(result):
    """The bound the run is measured against: t_min_s.honest_arrivals_goodput (Kumar-Ross
    with the real arrival times) where the simulator reports it, else honest_goodput."""
    t = result["t_min_s"]
    return t.get("honest_arrivals_goodput") or t.get("honest_goodput")


def last_over_tmin(result):
    """honest_last_s / the bound of t_min_of, or None if no honest client completed."""
    last = result["summary"].get("honest_last_s")
    t_min = t_min_of(result)
    if last is None or not t_min:
        return None
    return last / t_min


def free_rider_order(result):
    """Free riders and liars whose complete_s is below the median honest complete_s:
    (median, [offending clients]); median None if no honest client completed."""
    honest = [c["complete_s"] for c in result["clients"]
              if c["behave"] == "honest" and c["complete_s"] is not None]
    if not honest:
        return None, []
    median = statistics.median(honest)
    bad = [c for c in result["clients"] if c["behave"] != "honest"
           and c["complete_s"] is not None and c["complete_s"] < median]
    return median, bad


def riders_early(result):
    """The issue's target for misbehaving clients: each must finish after at least 90% of the
    honest clients and at no less than 1.5x their median (complete_s, from its own
    arrival). Returns ([misbehaving clients], [those that finished earlier]); a client that
    never completed is never early."""
    honest = sorted(c["complete_s"] for c in result["clients"]
                    if c["behave"] == "honest" and c["complete_s"] is not None)
    bad = [c for c in result["clients"] if c["behave"] != "honest"]
    if not honest:
        return bad, []
    median = statistics.median(honest)
    p90 = honest[min(len(honest) - 1, math.ceil(0.9 * len(honest)) - 1)]
    early = [c for c in bad if c["complete_s"] is not None
             and (c["complete_s"] < 1.5 * median or c["complete_s"] < p90)]
    return bad, early


def early_cause(result, c):
    """Why a misbehaving client that finished early (`riders_early`) could: "alone" (on
    average fewer than ALONE_BELOW honest clients downloaded beside it, so there was nobody
    it could have given to), "unjudged" (it completed within JUDGED_AFTER_S, before the
    origin's policy judges anyone), or "judged" (neither: the policy had its chance).
    Only for a client that completed (`riders_early` returns no other)."""
    start, took = c["arrive_s"], c["complete_s"]
    beside = 0.0
    for h in result["clients"]:
        if h["behave"] != "honest":
            continue
        end = h["arrive_s"] + (h["complete_s"] if h["complete_s"] is not None else math.inf)
        if h.get("left_s") is not None:
            end = min(end, h["left_s"])
        beside += max(0.0, min(start + took, end) - max(start, h["arrive_s"]))
    if took <= 0 or beside / took < ALONE_BELOW:
        return "alone"
    return "unjudged" if took < JUDGED_AFTER_S else "judged"


def named_clients(result):
    """Whom the origin named as taking without giving: {"honest": honest clients named at
    some time, "honest_downloading": those named before they completed, "honest_s": their
    named seconds before completing, "bad": misbehaving clients named, "bad_all": all
    misbehaving clients}; None for a result without `named_downloading_s` (an older
    simulator's)."""
    clients = result["clients"]
    if any("named_downloading_s" not in c for c in clients):
        return None
    honest = [c for c in clients if c["behave"] == "honest"]
    bad = [c for c in clients if c["behave"] != "honest"]
    return {"honest": sum(1 for c in honest if c["named_s"] > 0),
            "honest_downloading": sum(1 for c in honest if c["named_downloading_s"] > 0),
            "honest_s": sum(c["named_downloading_s"] for c in honest),
            "bad": sum(1 for c in bad if c["named_s"] > 0), "bad_all": len(bad)}


def up_classes(result):
    """Honest clients by identical `up`: [(up, mean complete_s, completed, members)],
    slowest up first; classes where nobody completed are left out."""
    classes = {}
    for c in result["clients"]:
        if c["behave"] == "honest":
            classes.setdefault(c["up"], []).append(c["complete_s"])
    out = []
    for up in sorted(classes):
        done = [t for t in classes[up] if t is not None]
        if done:
            out.append((up, statistics.fmean(done), len(done), len(classes[up])))
    return out


def incentive_violations(result, tolerance=IC_TOLERANCE):
    """Pairs of honest up classes where the class with more upload took on average more than
    (1 + tolerance) times as long as a class with less."""
    cls = up_classes(result)
    return [{"more_up": hi[0], "more_mean_s": hi[1], "more_n": hi[3],
             "less_up": lo[0], "less_mean_s": lo[1], "less_n": lo[3]}
            for a, lo in enumerate(cls) for hi in cls[a + 1:]
            if hi[1] > (1.0 + tolerance) * lo[1]]


def never_completed(scenario, result):
    """Clients with no complete_s whose `leave` was not a number of seconds (early leavers
    may rightly never complete), colluders aside: the origin sends no client a piece it
    claimed to hold, so a colluder whose partner's claims it repeated may never complete."""
    specs = expand_clients(scenario)
    out = []
    for c in result["clients"]:
        spec = specs[c["i"]] if c["i"] < len(specs) else {}
        leave = spec.get("leave", "linger")
        if c["complete_s"] is None and isinstance(leave, str) and c["behave"] != "colluder":
            out.append({"i": c["i"], "behave": c["behave"], "leave": leave,
                        "arrive_s": c["arrive_s"], "left_s": c.get("left_s"),
                        "failed": c.get("failed")})
    return out


def stalled(result, limit=STALL_S):
    """Honest clients that waited longer than `limit` seconds for a piece between arriving
    and completing: for their first piece (`first_piece_s`, the start-up) or between pieces
    after it (`max_piece_gap_s`; in outputs before `first_piece_s` it included the
    start-up). `gap_s` is the longer of the two, `startup` whether that was the start-up."""
    out = []
    for c in result["clients"]:
        first, later = c.get("first_piece_s", 0.0), c.get("max_piece_gap_s", 0.0)
        if c["behave"] == "honest" and max(first, later) > limit:
            out.append({"i": c["i"], "gap_s": max(first, later), "startup": first >= later,
                        "complete_s": c["complete_s"]})
    return out


def consistency(scenario, result):
    """Facts a correct simulator cannot violate; a list of problems (strings)."""
    problems = []
    specs = expand_clients(scenario)
    clients = result["clients"]
    file_size = result["file_size"]
    end = result["summary"].get("end_s")
    if len(clients) != len(specs):
        problems.append(f"{len(clients)} clients in the result, {len(specs)} in the scenario")
    for c in clients:
        got = c["from_origin"] + c["from_peers"]
        if c["complete_s"] is not None and got < file_size:
            problems.append(f"client {c['i']} completed with {got} of {file_size} bytes")
        if c["behave"] != "honest" and c["uploaded"] > 0:
            problems.append(f"client {c['i']} ({c['behave']}) uploaded {c['uploaded']} bytes")
        if c["complete_s"] is not None and end is not None and \
                c["arrive_s"] + c["complete_s"] > end + 1e-6:
            problems.append(f"client {c['i']} completed at {c['arrive_s'] + c['complete_s']:.3f}"
                            f" s, after the end ({end:.3f} s)")
        if c["i"] < len(specs) and abs(c["arrive_s"] - specs[c["i"]]["arrive_s"]) > 1e-6:
            problems.append(f"client {c['i']} arrived at {c['arrive_s']}, scenario says "
                            f"{specs[c['i']]['arrive_s']}")
    sent = result["origin"]["uploaded"] + sum(c["uploaded"] for c in clients)
    received = sum(c["from_origin"] + c["from_peers"] for c in clients)
    if received > sent:
        problems.append(f"clients received {received} bytes, only {sent} were uploaded")
    return problems


def score(records, suite=None):
    """The scorecard from [{name, file, desc, axes, scenario, result, run}] (result None when
    the run failed)."""
    ok = [r for r in records if r["result"] is not None]
    card = {"suite": suite or {}, "scenarios": len(records), "ran": len(ok)}
    card["failed"] = [{"name": r["name"], "file": r["file"], "status": r["run"]["status"],
                       "cmd": r["run"].get("cmd"), "stderr": r["run"].get("stderr", "")}
                      for r in records if r["result"] is None]
    ratios = {r["name"]: last_over_tmin(r["result"]) for r in ok}
    fam = {"all": [r for r in ok]}
    for a in ARRIVALS:
        fam[a] = [r for r in ok if r["axes"]["arrival"] == a]
    card["ratio"] = {k: distribution([ratios[r["name"]] for r in v if ratios[r["name"]] is not None])
                     for k, v in fam.items()}
    card["no_honest_completion"] = [r["name"] for r in ok if ratios[r["name"]] is None]
    ranked = sorted((r for r in ok if ratios[r["name"]] is not None),
                    key=lambda r: ratios[r["name"]], reverse=True)
    card["worst"] = [worst_entry(r, ratios[r["name"]]) for r in ranked[:WORST]]
    card["worst_at_once"] = [worst_entry(r, ratios[r["name"]]) for r in ranked
                             if r["axes"]["arrival"] == "at-once"][:WORST]
    card["free_rider_order"] = score_free_riders(ok)
    card["naming"] = score_naming(ok)
    card["incentive"] = score_incentive(ok)
    card["never_completed"] = score_never_completed(ok)
    card["stalls"] = score_stalls(ok)
    card["consistency"] = [{"name": r["name"], "file": r["file"], "problems": p}
                           for r in ok for p in [consistency(r["scenario"], r["result"])] if p]
    card["totals"] = totals(ok)
    return card


def worst_entry(r, ratio):
    arrive = [c["arrive_s"] for c in expand_clients(r["scenario"])]
    return {"name": r["name"], "file": r["file"], "ratio": ratio, "desc": r["desc"],
            "arrival_span_s": max(arrive) - min(arrive) if arrive else 0.0,
            "t_min_s": t_min_of(r["result"])}


def score_free_riders(ok):
    out = []
    for r in ok:
        median, bad = free_rider_order(r["result"])
        if bad:
            out.append({"name": r["name"], "file": r["file"], "honest_median_s": median,
                        "offenders": [{"i": c["i"], "behave": c["behave"],
                                       "complete_s": c["complete_s"]} for c in bad]})
    with_misbehaviour = sum(1 for r in ok if any(c["behave"] != "honest"
                                                 for c in r["result"]["clients"]))
    early = collections.Counter()
    total = collections.Counter()
    causes = collections.Counter()
    from_origin = collections.defaultdict(list)
    for r in ok:
        bad, soon = riders_early(r["result"])
        total.update(c["behave"] for c in bad)
        early.update(c["behave"] for c in soon)
        causes.update(early_cause(r["result"], c) for c in soon)
        for c in r["result"]["clients"]:
            # Origin bytes per client as a share of the file, by behaviour.
            from_origin[c["behave"]].append(c["from_origin"] / r["result"]["file_size"])
    return {"scenarios_with_misbehaviour": with_misbehaviour, "count": len(out), "list": out,
            "early": {b: [early[b], total[b]] for b in sorted(total)},
            "early_causes": {k: causes[k] for k in ("alone", "unjudged", "judged")},
            "from_origin_files": {b: statistics.fmean(v) for b, v in sorted(from_origin.items())}}


def score_naming(ok):
    """Whom the origin named as taking without giving: honest clients it wronged (and for
    how long while they downloaded), misbehaving ones it caught. None if no result reports
    it."""
    rows = [(r, n) for r in ok for n in [named_clients(r["result"])] if n is not None]
    if not rows:
        return None
    total = {k: sum(n[k] for _, n in rows) for k in rows[0][1]}
    total["honest_all"] = sum(1 for r, _ in rows for c in r["result"]["clients"]
                              if c["behave"] == "honest")
    wronged = [{"name": r["name"], "file": r["file"], "honest": n["honest_downloading"],
                "seconds": n["honest_s"]} for r, n in rows if n["honest_downloading"]]
    wronged.sort(key=lambda x: x["seconds"], reverse=True)
    return {**total, "list": wronged}


def score_incentive(ok):
    out = []
    multi = 0
    for r in ok:
        multi += len(up_classes(r["result"])) > 1
        v = incentive_violations(r["result"])
        if v:
            out.append({"name": r["name"], "file": r["file"], "arrival": r["axes"]["arrival"],
                        "pairs": v})
    return {"tolerance": IC_TOLERANCE, "scenarios_with_classes": multi, "count": len(out),
            "pairs": sum(len(x["pairs"]) for x in out), "list": out}


def score_never_completed(ok):
    out = []
    for r in ok:
        stuck = never_completed(r["scenario"], r["result"])
        if stuck:
            out.append({"name": r["name"], "file": r["file"], "clients": stuck,
                        "end_s": r["result"]["summary"].get("end_s"),
                        "time_limit_s": r["scenario"].get("time_limit_s", 3600)})
    reasons = collections.Counter(c["failed"] or "no reason given" for x in out
                                  for c in x["clients"])
    return {"clients": sum(len(x["clients"]) for x in out), "count": len(out),
            "reasons": reasons.most_common(), "list": out}


def score_stalls(ok):
    out = [{"name": r["name"], "file": r["file"], "clients": st,
            "worst_gap_s": max(c["gap_s"] for c in st)}
           for r in ok for st in [stalled(r["result"])] if st]
    out.sort(key=lambda x: x["worst_gap_s"], reverse=True)
    return {"limit_s": STALL_S, "clients": sum(len(x["clients"]) for x in out),
            "startup": sum(c["startup"] for x in out for c in x["clients"]),
            "count": len(out), "list": out}


def totals(ok):
    events = sum(r["result"].get("events", 0) for r in ok)
    wall = sum(r["result"].get("wall_s", 0.0) for r in ok)
    rss = [r["result"].get("peak_rss_bytes") for r in ok if r["result"].get("peak_rss_bytes")]
    return {"events": events, "sim_wall_s": wall, "events_per_s": events / wall if wall else None,
            "peak_rss_max_bytes": max(rss) if rss else None,
            "max_events": max((r["result"].get("events", 0) for r in ok), default=0),
            "max_wall_s": max((r["result"].get("wall_s", 0.0) for r in ok), default=0.0)}


# ---------------------------------------------------------------- rendering


def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def render(card):
    """The scorecard as Markdown (also what is printed)."""
    s = card["suite"]
    out = ["# tfttp sim suite scorecard", ""]
    if s:
        out += [f"seed {s.get('seed')}, {card['scenarios']} scenarios, file {s.get('file_size')}"
                f" bytes, policy {s.get('policy')}, max clients {s.get('max_clients')}, "
                f"tfttp {s.get('tfttp')}"
                + "".join(f", {k.replace('_', ' ')} {s[k]}" for k in ("origin_range", "pace",
                                                                      "reseed") if k in s),
                ""]
    out += [f"Ran {card['ran']} of {card['scenarios']}; {len(card['failed'])} failed.", ""]
    out += render_ratio(card) + render_worst(card) + render_free_riders(card)
    out += render_naming(card) + render_incentive(card) + render_never(card) + render_stalls(card)
    out += render_consistency(card)
    out += render_totals(card) + render_failed(card)
    return "\n".join(out) + "\n"


def render_ratio(card):
    out = ["## last / T_min", "",
           "honest_last_s (latest honest completion after the first arrival) over "
           "t_min_s.honest_arrivals_goodput: the Kumar-Ross minimum for the honest clients at "
           "goodput, extended to their real arrival times (the clients arriving after t need "
           "their copies after t; each client needs F/d after it arrives). All at once it is "
           "Kumar-Ross itself; 1 = optimal in every family.",
           "", "| family | n | min | p10 | median | p90 | max |", "|---|---|---|---|---|---|---|"]
    for k, d in card["ratio"].items():
        out.append(f"| {k} | {d['n']} | " + " | ".join(fmt(d.get(q)) for q in
                                                      ("min", "p10", "median", "p90", "max")) + " |")
    if card["no_honest_completion"]:
        out += ["", f"No honest client completed in {len(card['no_honest_completion'])} "
                    f"scenarios (no ratio): " + ", ".join(card["no_honest_completion"][:MD_LIST_MAX])]
    return out + [""]


def render_worst(card):
    out = []
    for key, title in (("worst", "all families"), ("worst_at_once", "all at once")):
        out += [f"## Worst {WORST} by last / T_min, {title}", ""]
        for w in card[key]:
            span = w["arrival_span_s"] / w["t_min_s"] if w["t_min_s"] else 0.0
            out.append(f"- {fmt(w['ratio'])} (arrival span {span:.2f} T_min)  `{w['file']}`  \n"
                       f"  {w['desc']}")
        out.append("")
    return out


def render_free_riders(card):
    fr = card["free_rider_order"]
    out = ["## Free-rider order", "",
           "A scenario counts if some free rider or liar took less time (complete_s, from its "
           "own arrival) than the median honest client.", "",
           f"**{fr['count']}** of {fr['scenarios_with_misbehaviour']} scenarios with free "
           f"riders or liars.", ""]
    if fr.get("early"):
        out += ["Misbehaving clients that finished before 90% of the honest ones or before "
                "1.5x their median (issue 12's target): " +
                ", ".join(f"{b} {e} of {t}" for b, (e, t) in fr["early"].items()) + ".", ""]
        if fr.get("early_causes"):
            out += ["Of those, by cause (`early_cause`): " +
                    ", ".join(f"{k} {n}" for k, n in fr["early_causes"].items()) +
                    f" (alone: under {ALONE_BELOW:g} honest clients downloading beside it on "
                    f"average; unjudged: completed within {JUDGED_AFTER_S:g} s, before the "
                    "origin judges anyone).", ""]
        out += ["Mean bytes from the origin per client, in files: " +
                ", ".join(f"{b} {x:.3f}" for b, x in fr["from_origin_files"].items()) + ".", ""]
    for x in fr["list"][:MD_LIST_MAX]:
        offenders = ", ".join(f"#{c['i']} {c['behave']} {c['complete_s']:.1f} s"
                              for c in x["offenders"])
        out.append(f"- `{x['file']}`: honest median {x['honest_median_s']:.1f} s; {offenders}")
    return out + more(fr["list"]) + [""]


def render_naming(card):
    nm = card.get("naming")
    if nm is None:
        return []
    out = ["## Naming", "",
           "Clients the origin named as taking without giving (STANDING) at some time "
           "(`named_s` > 0), and honest ones named before they completed "
           "(`named_downloading_s` > 0: peers then give them nothing but in return).", "",
           f"**{nm['honest_downloading']}** of {nm['honest_all']} honest clients named while "
           f"downloading, {nm['honest_s']:.1f} client-seconds in all ({nm['honest']} named at "
           f"some time); {nm['bad']} of {nm['bad_all']} misbehaving clients named.", ""]
    for x in nm["list"][:MD_LIST_MAX]:
        out.append(f"- `{x['file']}`: {x['honest']} honest, {x['seconds']:.1f} s")
    return out + more(nm["list"]) + [""]


def render_incentive(card):
    ic = card["incentive"]
    out = ["## Incentive compatibility", "",
           f"Honest clients grouped by identical up cap; a violation is a pair of classes where "
           f"the class with more upload has a mean complete_s more than "
           f"{ic['tolerance']:.0%} above the class with less.", "",
           f"**{ic['count']}** of {ic['scenarios_with_classes']} scenarios with two or more "
           f"classes ({ic['pairs']} class pairs).", ""]
    for x in ic["list"][:MD_LIST_MAX]:
        pairs = "; ".join(f"{p['more_up'] / MBIT:g} Mbit/s (n={p['more_n']}) {p['more_mean_s']:.1f} s"
                          f" > {p['less_up'] / MBIT:g} Mbit/s (n={p['less_n']}) "
                          f"{p['less_mean_s']:.1f} s" for p in x["pairs"])
        out.append(f"- `{x['file']}`: {pairs}")
    return out + more(ic["list"]) + [""]


def render_never(card):
    nc = card["never_completed"]
    out = ["## Never completed", "",
           "Clients with no complete_s that were not told to leave early (bugs or stalls).", "",
           f"**{nc['clients']}** clients in {nc['count']} scenarios.", ""]
    if nc["reasons"]:
        out += ["| clients | reason (the result's `failed`) |", "|---|---|"]
        out += [f"| {k} | {reason} |" for reason, k in nc["reasons"][:MD_LIST_MAX]] + [""]
    for x in nc["list"][:MD_LIST_MAX]:
        who = ", ".join(f"#{c['i']} {c['behave']} ({c['leave']}, left {fmt(c['left_s'], 1)})"
                        for c in x["clients"][:10])
        extra = f" and {len(x['clients']) - 10} more" if len(x["clients"]) > 10 else ""
        out.append(f"- `{x['file']}` (end {fmt(x['end_s'], 1)} s, limit {x['time_limit_s']} s): "
                   f"{who}{extra}")
    return out + more(nc["list"]) + [""]


def render_stalls(card):
    st = card["stalls"]
    out = ["## Stalls", "",
           f"Honest clients that waited over {st['limit_s']:g} s for a piece between arriving and "
           "completing (issue 12's target: none).", "",
           f"**{st['clients']}** clients in {st['count']} scenarios; for "
           f"{st.get('startup', 0)} of them the longest wait was for the first piece (the "
           "start-up: handshakes behind the senders' uplink queues), marked *.", ""]
    for x in st["list"][:MD_LIST_MAX]:
        who = ", ".join(f"#{c['i']} {fmt(c['gap_s'], 1)} s{'*' if c.get('startup') else ''}"
                        for c in x["clients"][:10])
        out.append(f"- `{x['file']}`: {who}")
    return out + more(st["list"]) + [""]


def render_consistency(card):
    out = ["## Consistency", "",
           f"Results a correct simulator cannot produce: **{len(card['consistency'])}** scenarios.",
           ""]
    for x in card["consistency"][:MD_LIST_MAX]:
        out.append(f"- `{x['file']}`: " + "; ".join(x["problems"][:5]))
    return out + more(card["consistency"]) + [""]


def render_totals(card):
    t = card["totals"]
    rss = t["peak_rss_max_bytes"]
    return ["## Totals", "",
            f"- events: {t['events']} (largest run {t['max_events']})",
            f"- simulator wall time: {fmt(t['sim_wall_s'], 1)} s (longest run "
            f"{fmt(t['max_wall_s'], 2)} s); suite wall time {fmt(card['suite'].get('wall_s'), 1)} s",
            f"- events/s: {fmt(t['events_per_s'], 0)}",
            f"- peak RSS, largest: {'-' if rss is None else f'{rss / MIB:.1f} MiB'}", ""]


def render_failed(card):
    out = ["## Failed runs", "", f"**{len(card['failed'])}**", ""]
    for f in card["failed"]:
        out.append(f"- `{f['file']}`: {f['status']}")
        if f["stderr"]:
            out += ["  ```"] + ["  " + line for line in f["stderr"].splitlines()] + ["  ```"]
    return out + [""]


def more(items):
    return [f"- ... and {len(items) - MD_LIST_MAX} more (scorecard.json)"] \
        if len(items) > MD_LIST_MAX else []


# ---------------------------------------------------------------- main


def load_records(index, runs):
    records = []
    for name, entry in index.items():
        run = runs.get(name, {"status": "not run"})
        result = None
        if run["status"] == "ok":
            try:
                result = read_json(run["result"])
            except (OSError, ValueError) as e:
                run = dict(run, status="bad-json", stderr=str(e))
        records.append({"name": name, "file": entry["file"], "desc": entry["desc"],
                        "axes": entry["axes"], "scenario": read_json(entry["file"]),
                        "result": result, "run": run})
    return records


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tfttp", default=DEFAULT_TFTTP, help="tfttp binary")
    p.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    p.add_argument("--count", type=int, default=300, help="number of scenarios")
    p.add_argument("--seed", type=int, default=1, help="generator seed")
    p.add_argument("--jobs", type=int, default=2, help="simulations in parallel")
    p.add_argument("--timeout", type=float, default=300, help="seconds per simulation")
    p.add_argument("--families", default="",
                   help="comma-separated arrival patterns and/or capacity mixes to keep: "
                        + ",".join(ARRIVALS + MIXES))
    p.add_argument("--max-clients", type=int, default=500)
    p.add_argument("--file-size", type=int, default=16 * MIB, help="bytes")
    p.add_argument("--policy", default="tft", choices=("tft", "bittorrent", "all"))
    p.add_argument("--origin-range", default="0.5,10",
                   help="LO,HI: the origin's uplink over the median client's, log-uniform "
                        "(default %(default)s; 10,300 for fast origins)")
    p.add_argument("--pace", choices=("auto", "off"),
                   help="--up-rate of the origin and of the clients not told their uplink "
                        "(default: the node's default)")
    p.add_argument("--reseed", type=int, default=0,
                   help="add K to every scenario's simulation seed: the same arrangements with "
                        "other random draws, to measure a comparison's noise floor")
    p.add_argument("--rescore", action="store_true",
                   help="score the scenarios and results already in --out")
    p.add_argument("--self-test", action="store_true", help="run the unit tests")
    p.add_argument("--strict", action="store_true",
                   help="also exit 1 if a client never completed or a result is inconsistent")
    a = p.parse_args(argv)
    fams = [f for f in a.families.split(",") if f]
    unknown = [f for f in fams if f not in ARRIVALS + MIXES]
    if unknown:
        p.error(f"unknown families {unknown}; choose from {','.join(ARRIVALS + MIXES)}")
    a.arrivals = tuple(f for f in fams if f in ARRIVALS) or ARRIVALS
    a.mixes = tuple(f for f in fams if f in MIXES) or MIXES
    try:
        lo, hi = (float(x) for x in a.origin_range.split(","))
    except ValueError:
        p.error(f"--origin-range {a.origin_range!r}: two numbers, LO,HI")
    # Below a hundredth of the median client an origin of the slowest mix rounds to nothing.
    if not (0.01 <= lo <= hi and math.isfinite(hi)):
        p.error(f"--origin-range {a.origin_range!r}: need 0.01 <= LO <= HI, both finite")
    a.origin_range = (lo, hi)
    if a.max_clients < 2 or a.count < 1:
        p.error("--max-clients must be at least 2 and --count at least 1")
    return a


def main(argv):
    a = parse_args(argv)
    if a.self_test:
        return self_test()
    os.makedirs(a.out, exist_ok=True)
    runs_path = os.path.join(a.out, "runs.json")
    suite = {"seed": a.seed, "count": a.count, "file_size": a.file_size, "policy": a.policy,
             "max_clients": a.max_clients, "families": a.families, "tfttp": a.tfttp}
    if a.origin_range != ORIGIN_RANGE:
        suite["origin_range"] = list(a.origin_range)
    start = time.monotonic()
    if a.rescore:
        index = read_json(os.path.join(a.out, "scenarios", "index.json"))
        saved = read_json(runs_path)
        runs, suite = saved["runs"], saved["suite"]
    else:
        generated = generate(a.seed, a.count, a.max_clients, a.file_size, a.policy,
                             a.arrivals, a.mixes, a.origin_range)
        if a.pace:
            suite["pace"] = a.pace
            for _, scenario, _ in generated:
                set_pace(scenario, a.pace)
        if a.reseed:
            suite["reseed"] = a.reseed
            for _, scenario, _ in generated:
                reseed(scenario, a.reseed)
        index = write_scenarios(a.out, generated)
        runs = run_all(a.tfttp, a.out, index, a.jobs, a.timeout)
        suite["wall_s"] = time.monotonic() - start
        write_json(runs_path, {"suite": suite, "runs": runs})
    card = score(load_records(index, runs), suite)
    text = render(card)
    write_json(os.path.join(a.out, "scorecard.json"), card)
    with open(os.path.join(a.out, "scorecard.md"), "w") as f:
        f.write(text)
    print(text)
    print(f"scorecard: {os.path.join(a.out, 'scorecard.md')} and scorecard.json")
    if card["failed"]:
        return 1
    # --strict (CI): a client that never completed without being told to leave is a stall,
    # and an impossible result is a simulator bug; either fails the run.
    if a.strict and (card["never_completed"]["clients"] or card["consistency"]):
        return 1
    return 0


# ---------------------------------------------------------------- self-test


def fake_client(i, up=2_500_000, complete=10.0, behave="honest", arrive=0.0, got=1000,
                uploaded=0, named=0.0):
    return {"i": i, "arrive_s": arrive, "complete_s": complete, "left_s": None,
            "behave": behave, "up": up, "down": None, "from_origin": got, "from_peers": 0,
            "uploaded": uploaded, "discarded": 0, "named_s": named,
            "named_downloading_s": min(named, complete or math.inf)}


def fake_result(clients, last=20.0, t_min=10.0, file_size=1000):
    return {"tfttp_sim": 1, "seed": 1, "file_size": file_size, "piece_size": 100, "pieces": 10,
            "policy": "tft", "goodput": True,
            "t_min_s": {"all": t_min, "all_goodput": t_min, "honest": t_min,
                        "honest_goodput": t_min},
            "summary": {"honest_mean_s": last, "honest_last_s": last, "completed": len(clients),
                        "clients": len(clients), "end_s": 100.0},
            "origin": {"uploaded": 10**9, "discarded_by_receivers": 0},
            "clients": clients, "events": 1000, "wall_s": 0.5, "peak_rss_bytes": 10 * MIB}


def fake_scenario(n, leave=None):
    return {"file_size": 1000, "clients": [
        {"up": 1, "down": None, "arrive_s": 0.0, "leave": (leave or {}).get(i, "linger"),
         "behave": "honest", "rtt_ms": 0, "count": 1} for i in range(n)]}


FAKE_SIM = r'''#!/usr/bin/env python3
import json, sys, time
scen, out = sys.argv[2], sys.argv[4]
s = json.load(open(scen))
mode = s.get("fake", "ok")
if mode == "crash":
    sys.stderr.write("thread 'main' panicked at src/sim/engine.rs:1:1\n"); sys.exit(101)
if mode == "hang":
    time.sleep(30)
specs = [c for c in s["clients"] for _ in range(c.get("count", 1))]
n = len(specs)
clients = [{"i": i, "arrive_s": c["arrive_s"], "complete_s": 5.0, "left_s": None,
            "behave": "honest", "up": 1, "down": None, "from_origin": s["file_size"],
            "from_peers": 0, "uploaded": 0, "discarded": 0} for i, c in enumerate(specs)]
json.dump({"tfttp_sim": 1, "file_size": s["file_size"],
           "t_min_s": {"honest_goodput": 2.5}, "summary": {"honest_last_s": 5.0, "end_s": specs[-1]["arrive_s"] + 5.0},
           "origin": {"uploaded": n * s["file_size"]}, "clients": clients, "events": 7,
           "wall_s": 0.01, "peak_rss_bytes": 1}, open(out, "w"))
'''


class BoundsTest(unittest.TestCase):
    def test_kumar_ross_picks_the_binding_term(self):
        self.assertEqual(bounds(100, 10, [50], [None])[0], 10)  # origin-bound
        self.assertEqual(bounds(100, 100, [50], [5])[0], 20)  # download-bound
        self.assertEqual(bounds(100, 10, [2.5] * 4, [None] * 4)[0], 20)  # swarm-bound

    def test_client_server_ignores_client_uploads(self):
        self.assertEqual(bounds(100, 10, [1e9] * 4, [None] * 4)[1], 40)
        self.assertEqual(bounds(100, 1000, [0, 0], [5, None])[1], 20)


class GeneratorTest(unittest.TestCase):
    def setUp(self):
        self.gen = generate(7, 60, 120, 16 * MIB, "tft")

    def test_deterministic(self):
        self.assertEqual(generate(7, 60, 120, 16 * MIB, "tft"), self.gen)
        self.assertNotEqual(generate(8, 60, 120, 16 * MIB, "tft"), self.gen)

    def test_origin_range_must_be_two_finite_numbers_in_order(self):
        self.assertEqual(parse_args([]).origin_range, ORIGIN_RANGE)
        self.assertEqual(parse_args(["--origin-range", "10,300"]).origin_range, (10.0, 300.0))
        for bad in ("10", "a,b", "300,10", "0,1", "1e-12,1e-12", "inf,inf", "1,nan"):
            with self.assertRaises(SystemExit, msg=bad), \
                    contextlib.redirect_stderr(io.StringIO()):
                parse_args(["--origin-range", bad])

    def test_origin_range_moves_the_origin_and_keeps_the_clients(self):
        # Arrival spans and early leaves scale with the scenario's minimum time, which the
        # origin's uplink sets; the clients' links and behaviour stay.
        fast = generate(7, 60, 120, 16 * MIB, "tft", origin_range=(10.0, 300.0))
        facts = ("up", "down", "behave", "rtt_ms")
        for (_, base, _), (_, other, _) in zip(self.gen, fast):
            ups = [c["up"] for c in expand_clients(base)]
            ratio = other["origin"]["up"] / statistics.median(ups)
            self.assertTrue(10.0 * 0.99 <= ratio <= 300.0 * 1.01, ratio)
            self.assertEqual([[c[k] for k in facts] for c in expand_clients(base)],
                             [[c[k] for k in facts] for c in expand_clients(other)])

    def test_reseed_changes_only_the_simulation_seed(self):
        again = generate(7, 60, 120, 16 * MIB, "tft")
        for (_, scenario, _), (_, original, _) in zip(again, self.gen):
            reseed(scenario, 3)
            self.assertEqual(scenario["seed"], original["seed"] + 3)
            self.assertEqual(dict(scenario, seed=0), dict(original, seed=0))

    def test_names_unique_and_descriptive(self):
        names = [g[0] for g in self.gen]
        self.assertEqual(len(set(names)), len(names))
        for name, _, entry in self.gen:
            self.assertTrue(name.startswith(entry["axes"]["arrival"] + "-" + entry["axes"]["mix"]))
            self.assertIn(f"-n{entry['axes']['n']}-", name)

    def test_every_axis_value_covered(self):
        axes = [g[2]["axes"] for g in self.gen]
        for key, values in (("arrival", ARRIVALS), ("mix", MIXES), ("misbehave", MISBEHAVIOURS),
                            ("churn", CHURNS), ("rtt_max_ms", RTT_MAX_MS)):
            self.assertEqual({a[key] for a in axes}, set(values), key)
        sizes = [a["n"] for a in axes]
        self.assertEqual(min(sizes) >= 2 and max(sizes) <= 120, True)
        self.assertLess(min(sizes), 5)
        self.assertGreater(max(sizes), 60)

    def test_small_count_still_covers_main_axes(self):
        axes = [g[2]["axes"] for g in generate(1, 15, 60, 16 * MIB, "tft")]
        self.assertEqual({a["arrival"] for a in axes}, set(ARRIVALS))
        self.assertEqual({a["mix"] for a in axes}, set(MIXES))
        self.assertEqual({a["misbehave"] for a in axes}, set(MISBEHAVIOURS))

    def test_free_rider_first_exists(self):
        firsts = [g for g in self.gen if expand_clients(g[1])[0]["behave"] == "free-rider"]
        self.assertTrue(firsts)
        self.assertTrue(all("first" in g[0] for g in firsts))

    def test_scenarios_well_formed(self):
        for name, s, entry in self.gen:
            clients = expand_clients(s)
            axes = entry["axes"]
            self.assertEqual(len(clients), axes["n"], name)
            self.assertEqual(s["file_size"], 16 * MIB)
            self.assertIsNone(s["piece_size"])
            self.assertEqual(s["policy"], "tft")
            self.assertGreater(s["origin"]["up"], 0)
            arrive = [c["arrive_s"] for c in clients]
            self.assertEqual(arrive, sorted(arrive), name)
            self.assertEqual(arrive[0], 0.0)
            if axes["arrival"] == "at-once":
                self.assertEqual(set(arrive), {0.0})
            else:
                self.assertGreater(arrive[-1], 0.0, name)
            if axes["arrival"] == "burst":
                self.assertIn(len(set(arrive)), (2, 3, 4))
            ups = sorted(c["up"] for c in clients)
            med = statistics.median(ups)
            self.assertTrue(0.5 * med - 1 <= s["origin"]["up"] <= 10 * med + 1, name)
            bad = sum(c["behave"] in ("free-rider", "liar") for c in clients)
            self.assertLessEqual(bad, max(1, len(clients) // 5), name)
            self.assertEqual(bad == 0, axes["misbehave"] == "none", name)
            colluders = sum(c["behave"] == "colluder" for c in clients)
            self.assertIn(colluders, (0, 2), name)
            if axes["collude"] == "none":
                self.assertEqual(colluders, 0, name)
            self.assertGreaterEqual(len(clients) - bad - colluders, 2 if colluders else 0, name)
            for c in clients:
                self.assertIn(c["behave"], ("honest", "free-rider", "liar", "colluder"))
                self.assertGreater(c["up"], 0)
                self.assertIsInstance(c["up"], int)
                self.assertTrue(c["down"] is None or c["down"] >= c["up"])
                if axes["mix"] == "adsl":
                    self.assertEqual(c["down"], 10 * c["up"])
                if axes["mix"] == "cable":
                    self.assertEqual(c["down"], CABLE_DOWN * c["up"])
                self.assertTrue(0 <= c["rtt_ms"] <= axes["rtt_max_ms"])
                leave = c["leave"]
                self.assertTrue(leave in ("linger", "on_complete") or leave > 0, name)
            if axes["churn"] == "early":
                self.assertTrue(any(not isinstance(c["leave"], str) for c in clients))
            if axes["churn"] == "on-complete":
                self.assertTrue(any(c["leave"] == "on_complete" for c in clients))
            self.assertGreaterEqual(s["time_limit_s"], max(3600, arrive[-1]))
            json.dumps(s)  # serialisable

    def test_capacity_mixes(self):
        rng = random.Random(3)
        ups, _, _ = capacity_mix(rng, "bimodal", 50)
        self.assertEqual(len(set(ups)), 2)
        ups, _, _ = capacity_mix(rng, "spread20", 50)
        self.assertEqual(max(ups) / min(ups), 20)
        ups, _, _ = capacity_mix(rng, "pareto", 400)
        self.assertEqual(min(ups), 2 * MBIT)
        self.assertTrue(set(u // MBIT for u in ups) <= set(PARETO_GRID_MBIT))
        self.assertGreater(len(set(ups)), 3)

    def test_poisson_span(self):
        rng = random.Random(5)
        times, _ = arrival_times(rng, "poisson", 400, 100.0)
        self.assertTrue(10 < times[-1] < 300, times[-1])

    def test_families_filter(self):
        axes = [g[2]["axes"] for g in generate(1, 20, 30, MIB, "all", ("burst",), ("adsl", "homog"))]
        self.assertEqual({a["arrival"] for a in axes}, {"burst"})
        self.assertEqual({a["mix"] for a in axes}, {"adsl", "homog"})

    def test_compress_round_trip(self):
        cs = [{"up": 1, "leave": "linger"}] * 3 + [{"up": 2, "leave": "linger"}] + \
             [{"up": 1, "leave": "linger"}]
        packed = compress(cs)
        self.assertEqual([c["count"] for c in packed], [3, 1, 1])
        self.assertEqual(expand_clients({"clients": packed}), cs)


class ScoreTest(unittest.TestCase):
    def test_percentile(self):
        self.assertEqual(percentile([3, 1, 2], 50), 2)
        self.assertEqual(percentile([1, 2, 3, 4], 50), 2.5)
        self.assertAlmostEqual(percentile(list(range(11)), 10), 1.0)
        self.assertEqual(distribution([5.0]), {"n": 1, "min": 5.0, "p10": 5.0, "median": 5.0,
                                               "p90": 5.0, "max": 5.0})
        self.assertEqual(distribution([]), {"n": 0})

    def test_ratio(self):
        self.assertEqual(last_over_tmin(fake_result([], last=30.0, t_min=10.0)), 3.0)
        self.assertIsNone(last_over_tmin(fake_result([], last=None)))

    def test_free_rider_order(self):
        honest = [fake_client(i, complete=t) for i, t in enumerate((10.0, 20.0, 30.0))]
        ok = fake_result(honest + [fake_client(3, complete=20.0, behave="free-rider")])
        self.assertEqual(free_rider_order(ok), (20.0, []))
        bad = fake_result(honest + [fake_client(3, complete=19.9, behave="liar"),
                                    fake_client(4, complete=None, behave="free-rider")])
        median, offenders = free_rider_order(bad)
        self.assertEqual((median, [c["i"] for c in offenders]), (20.0, [3]))
        self.assertEqual(free_rider_order(fake_result([fake_client(0, complete=None)])), (None, []))

    def test_early_cause(self):
        honest = [fake_client(0, complete=10.0), fake_client(1, complete=10.0, arrive=20.0)]
        result = fake_result(honest)
        # Client 0 downloads through 0-10 s, client 1 through 20-30 s; nobody in 12-14 s.
        self.assertEqual(early_cause(result, fake_client(2, complete=2.0)), "unjudged")
        self.assertEqual(early_cause(result, fake_client(2, complete=5.0)), "judged")
        self.assertEqual(early_cause(result, fake_client(2, complete=2.0, arrive=12.0)), "alone")
        # Beside one honest client for 4 of its 10 s: 0.4 on average, under ALONE_BELOW.
        self.assertEqual(early_cause(result, fake_client(2, complete=10.0, arrive=6.0)), "alone")

    def test_named_clients(self):
        result = fake_result([fake_client(0, named=1.5), fake_client(1),
                              fake_client(2, named=0.5), fake_client(3, behave="liar", named=9.0),
                              fake_client(4, behave="free-rider")])
        self.assertEqual(named_clients(result), {"honest": 2, "honest_downloading": 2,
                                                 "honest_s": 2.0, "bad": 1, "bad_all": 2})
        result["clients"][2]["named_downloading_s"] = 0.0  # named once it was done
        self.assertEqual(named_clients(result)["honest_downloading"], 1)
        del result["clients"][0]["named_downloading_s"]
        self.assertIsNone(named_clients(result), "an older simulator's output")

    def test_incentive_tolerance(self):
        def result(slow_mean, fast_mean):
            return fake_result([fake_client(0, up=1, complete=slow_mean - 1),
                                fake_client(1, up=1, complete=slow_mean + 1),
                                fake_client(2, up=5, complete=fast_mean),
                                fake_client(3, up=5, complete=None),
                                fake_client(4, up=9, complete=1.0, behave="free-rider")])
        self.assertEqual(incentive_violations(result(100.0, 105.0)), [])  # exactly 5%: fine
        self.assertEqual(incentive_violations(result(100.0, 50.0)), [])
        v = incentive_violations(result(100.0, 105.5))
        self.assertEqual(len(v), 1)
        self.assertEqual((v[0]["more_up"], v[0]["less_up"], v[0]["more_n"]), (5, 1, 2))
        self.assertAlmostEqual(v[0]["less_mean_s"], 100.0)
        # Three classes, the middle one slowest: one violation (middle over lowest), not two.
        three = fake_result([fake_client(0, up=1, complete=10.0), fake_client(1, up=2, complete=20.0),
                             fake_client(2, up=3, complete=5.0)])
        self.assertEqual([(p["more_up"], p["less_up"]) for p in incentive_violations(three)],
                         [(2, 1)])

    def test_never_completed_skips_early_leavers(self):
        scen = fake_scenario(4, leave={1: 12.5, 2: "on_complete"})
        res = fake_result([fake_client(0, complete=None), fake_client(1, complete=None),
                           fake_client(2, complete=None), fake_client(3)])
        self.assertEqual([c["i"] for c in never_completed(scen, res)], [0, 2])

    def test_stalled_counts_honest_clients_over_the_limit(self):
        clients = [fake_client(0), fake_client(1), fake_client(2, behave="free-rider")]
        for c, gap in zip(clients, (6.0, 1.0, 9.0)):
            c["max_piece_gap_s"] = gap
        self.assertEqual([c["i"] for c in stalled(fake_result(clients))], [0])
        self.assertEqual(stalled(fake_result([fake_client(0)])), [])

    def test_stalled_tells_a_slow_start_from_a_gap(self):
        clients = [fake_client(i) for i in range(3)]
        for c, first, later in zip(clients, (7.0, 0.5, 6.0), (1.0, 8.0, 2.0)):
            c["first_piece_s"], c["max_piece_gap_s"] = first, later
        st = stalled(fake_result(clients))
        self.assertEqual([(c["i"], c["gap_s"], c["startup"]) for c in st],
                         [(0, 7.0, True), (1, 8.0, False), (2, 6.0, True)])

    def test_consistency(self):
        scen = fake_scenario(2)
        good = fake_result([fake_client(0), fake_client(1, behave="free-rider")])
        self.assertEqual(consistency(scen, good), [])
        bad = fake_result([fake_client(0, got=999), fake_client(1, behave="liar", uploaded=5)])
        bad["origin"]["uploaded"] = 0
        problems = consistency(scen, bad)
        self.assertEqual(len(problems), 3, problems)
        self.assertEqual(len(consistency(fake_scenario(3), good)), 1)

    def test_score_and_render(self):
        def rec(name, arrival, result):
            return {"name": name, "file": f"/x/{name}.json", "desc": "d",
                    "axes": {"arrival": arrival}, "scenario": fake_scenario(len(result["clients"]))
                    if result else fake_scenario(1), "result": result,
                    "run": {"status": "ok" if result else "exit 101", "stderr": "panicked"}}
        honest = [fake_client(0, complete=10.0), fake_client(1, complete=30.0)]
        records = [rec("a", "at-once", fake_result(honest, last=12.0)),
                   rec("b", "poisson", fake_result(honest + [fake_client(2, complete=1.0,
                                                                         behave="liar")], last=40.0)),
                   rec("c", "burst", fake_result([fake_client(0, complete=None)], last=None)),
                   rec("d", "burst", None)]
        card = score(records, {"seed": 1})
        self.assertEqual((card["scenarios"], card["ran"]), (4, 3))
        self.assertEqual([f["name"] for f in card["failed"]], ["d"])
        self.assertEqual(card["ratio"]["all"]["n"], 2)
        self.assertEqual(card["ratio"]["at-once"]["median"], 1.2)
        self.assertEqual(card["ratio"]["poisson"]["max"], 4.0)
        self.assertEqual(card["no_honest_completion"], ["c"])
        self.assertEqual([w["name"] for w in card["worst"]], ["b", "a"])
        self.assertEqual(card["free_rider_order"]["count"], 1)
        self.assertEqual(card["never_completed"]["clients"], 1)
        self.assertEqual(card["stalls"]["clients"], 0)
        self.assertEqual(card["totals"]["events"], 3000)
        text = render(card)
        for needle in ("last / T_min", "at-once", "Worst", "Free-rider order", "Naming",
                       "Incentive compatibility", "Never completed", "Stalls", "Failed runs", "panicked",
                       "events/s"):
            self.assertIn(needle, text)
        json.dumps(card)


class RunnerTest(unittest.TestCase):
    def test_runs_and_records_failures(self):
        with tempfile.TemporaryDirectory() as d:
            sim = os.path.join(d, "fake-tfttp")
            with open(sim, "w") as f:
                f.write(FAKE_SIM)
            os.chmod(sim, 0o755)
            gen = generate(2, 3, 5, MIB, "tft")
            gen[1][1]["fake"] = "crash"
            gen[2][1]["fake"] = "hang"
            index = write_scenarios(d, gen)
            runs = run_all(sim, d, index, jobs=2, timeout=3, log=open(os.devnull, "w"))
            status = [runs[g[0]]["status"] for g in gen]
            self.assertEqual(status, ["ok", "exit 101", "timeout"])
            self.assertIn("panicked", runs[gen[1][0]]["stderr"])
            card = score(load_records(index, runs))
            self.assertEqual((card["ran"], len(card["failed"])), (1, 2))
            self.assertEqual(card["ratio"]["all"]["median"], 2.0)
            self.assertEqual(card["consistency"], [])


def self_test():
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
