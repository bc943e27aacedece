#!/usr/bin/env python3
"""Compare two runs of bench/sim_suite.py scenario by scenario.

    python3 bench/sim_compare.py BEFORE_DIR AFTER_DIR

Both directories must hold runs of the same suite (same --seed, --count, --max-clients and
--reseed): the scenarios are matched by file name. Prints, per arrival family and for all,
the geometric mean over scenarios of AFTER/BEFORE for the last honest completion over
T_min, the honest mean completion and the origin's copies; the misbehaving clients that
finished early (issue 12's rule, `sim_suite.riders_early`); the scenarios that moved most;
and each run's incentive violations and stalls from its scorecard.

A change is shown only by figures outside the noise floor: two runs of one build at
different --reseed (README, "How far the suite moves by chance").
"""

import json
import math
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sim_suite import riders_early  # noqa: E402

FAMILIES = ("at-once", "poisson", "burst")


def scenario_figures(result):
    """The per-scenario figures compared, or None if no honest client completed."""
    summary = result["summary"]
    if summary.get("honest_last_s") is None:
        return None
    bad, early = riders_early(result)
    return {
        "ratio": summary["honest_last_s"] / result["t_min_s"]["honest_arrivals_goodput"],
        "mean": summary["honest_mean_s"],
        "copies": result["origin"]["uploaded"] / result["file_size"],
        "bad": len(bad),
        "early": len(early),
    }


def load(run_dir):
    """{scenario file name: figures} for every result in RUN_DIR/results."""
    out = {}
    results = os.path.join(run_dir, "results")
    for name in sorted(os.listdir(results)):
        with open(os.path.join(results, name)) as f:
            figures = scenario_figures(json.load(f))
        if figures is not None:
            out[name] = figures
    return out


def geo_mean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def compare(before, after):
    """Rows (family, n, last, mean, copies, early before, early after, misbehaving)."""
    common = sorted(set(before) & set(after))
    rows = []
    for family in FAMILIES + ("all",):
        names = [n for n in common if family == "all" or n.startswith(family + "-")]
        ratio = lambda key: geo_mean([after[n][key] / before[n][key] for n in names])  # noqa: E731
        rows.append((family, len(names), ratio("ratio"), ratio("mean"), ratio("copies"),
                     sum(before[n]["early"] for n in names),
                     sum(after[n]["early"] for n in names),
                     sum(before[n]["bad"] for n in names)))
    return rows


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    before, after = load(argv[0]), load(argv[1])
    print("| family | scenarios | last/T_min | honest mean | origin copies | riders early |")
    print("|---|---|---|---|---|---|")
    for family, n, last, mean, copies, e0, e1, bad in compare(before, after):
        print(f"| {family} | {n} | {last:.3f} | {mean:.3f} | {copies:.3f} | {e0} -> {e1} of {bad} |")
    common = sorted(set(before) & set(after), key=lambda n: after[n]["ratio"] / before[n]["ratio"])
    for label, names in (("gained most", common[:5]), ("lost most", common[::-1][:5])):
        print(f"\n{label}: " + "; ".join(
            f"{n[:-5]} {before[n]['ratio']:.2f}x -> {after[n]['ratio']:.2f}x" for n in names))
    print()
    for run_dir in argv:
        with open(os.path.join(run_dir, "scorecard.json")) as f:
            card = json.load(f)
        nm = card.get("naming")
        named = "" if nm is None else (f", honest clients named while downloading "
                                       f"{nm['honest_downloading']} ({nm['honest_s']:.0f} s)")
        causes = card["free_rider_order"].get("early_causes")
        early = "" if not causes else ", early riders " + ", ".join(
            f"{k} {n}" for k, n in causes.items())
        print(f"{run_dir}: incentive violations {card['incentive']['count']}, stalled clients "
              f"{card['stalls']['clients']} in {card['stalls']['count']} scenarios{named}{early}")
    return 0


class CompareTest(unittest.TestCase):
    @staticmethod
    def result(last, mean, behaves=("honest", "honest", "free-rider"), times=(1.0, 2.0, 1.0)):
        clients = [{"behave": b, "complete_s": t} for b, t in zip(behaves, times)]
        return {"summary": {"honest_last_s": last, "honest_mean_s": mean},
                "t_min_s": {"honest_arrivals_goodput": 2.0}, "origin": {"uploaded": 300},
                "file_size": 100, "clients": clients}

    def test_ratios_are_geometric_means_per_family(self):
        before = {"at-once-a.json": scenario_figures(self.result(4.0, 2.0)),
                  "poisson-b.json": scenario_figures(self.result(2.0, 1.0))}
        after = {"at-once-a.json": scenario_figures(self.result(2.0, 2.0)),
                 "poisson-b.json": scenario_figures(self.result(2.0, 1.0))}
        rows = {r[0]: r for r in compare(before, after)}
        self.assertAlmostEqual(rows["at-once"][2], 0.5)
        self.assertAlmostEqual(rows["poisson"][2], 1.0)
        self.assertAlmostEqual(rows["all"][2], math.sqrt(0.5))
        self.assertEqual(rows["burst"][1], 0)

    def test_riders_early_counted_and_no_completion_skipped(self):
        self.assertEqual(scenario_figures(self.result(2.0, 1.5))["early"], 1)
        self.assertIsNone(scenario_figures(self.result(None, None)))


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        unittest.main(argv=sys.argv[:1])
    else:
        sys.exit(main(sys.argv[1:]))
