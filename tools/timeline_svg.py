#!/usr/bin/env python3
"""A tfttp run's --timeline files as one SVG picture. Standard library only.

    tools/timeline_svg.py DIR|FILE... [-o OUT.svg] [--starts swarm.json] [--title TEXT]

Top: each client's progress over time (pieces verified, as a fraction of the file's pieces).
Bottom: the bytes the clients received each second, stacked by where they came from (the
origin, other peers), with the duplicates they threw away as a line. Files are found and
vetted as tools/swarm_timeline.py does (every *.timeline in a DIR; warnings on stderr for
what cannot be used); a client's rows are shifted by its arrival time from bench/swarm.py's
results when --starts (or DIR/../swarm.json) has it. Writes OUT.svg (default timeline.svg);
exits 1 when it read nothing to draw.
"""

import argparse
import collections
import os
import sys
from xml.sax.saxutils import escape

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import swarm_timeline  # noqa: E402

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]
# Canvas, margins (left, bottom, top, right for the legend) and the two panels' heights.
W, L, R, T = 760, 70, 150, 40
PANEL, GAP, B = 240, 70, 50
H = T + PANEL + GAP + PANEL + B
MBIT = 8 / 1e6
# Client lines get a legend entry each up to this many; beyond it they are drawn unlabelled.
MAX_LEGEND = 16


def nice_max(v):
    """The smallest 1, 2 or 5 times a power of ten at or above v (an axis' end)."""
    if v <= 0:
        return 1.0
    p = 10 ** len(str(int(v))) / 10
    for m in (1, 2, 5, 10):
        if m * p >= v:
            return m * p
    return 10 * p


def curves(series, starts):
    """Per client, (t, have) points shifted by its arrival; per second of swarm time, the
    bytes received from the origin and from peers and the duplicates."""
    progress = {}
    per_sec = collections.defaultdict(collections.Counter)
    for label, (index, rows) in series.items():
        t0 = starts.get(index, 0.0)
        progress[label] = [(t0, 0)] + [(t0 + r["t"], r.get("have", 0)) for r in rows]
        prev = None
        for r in rows:
            if prev is not None:
                sec = max(1, round(t0 + r["t"]))
                b = per_sec[sec]
                b["origin"] += r.get("from_origin", 0) - prev.get("from_origin", 0)
                b["peers"] += r.get("from_peers", 0) - prev.get("from_peers", 0)
                b["dup"] += r.get("discarded", 0) - prev.get("discarded", 0)
            prev = r
    return progress, per_sec


def axes(out, top, xmax, ymax, ylabel, yfmt, xlabel):
    """Frame, ticks and labels of one panel whose plot area starts at y = top."""
    bottom = top + PANEL
    out.append(f'<line x1="{L}" y1="{bottom}" x2="{W - R}" y2="{bottom}" stroke="black"/>')
    out.append(f'<line x1="{L}" y1="{bottom}" x2="{L}" y2="{top}" stroke="black"/>')
    for k in range(6):
        x = L + (W - L - R) * k / 5
        y = bottom - PANEL * k / 5
        out.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">'
                   f'{xmax * k / 5:.0f}</text>')
        out.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{yfmt(ymax * k / 5)}</text>')
        if k:
            out.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" '
                       f'stroke="#e0e0e0"/>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{bottom + 34}" text-anchor="middle">'
               f'{escape(xlabel)}</text>')
    mid = top + PANEL / 2
    out.append(f'<text x="16" y="{mid}" transform="rotate(-90 16 {mid})" '
               f'text-anchor="middle">{escape(ylabel)}</text>')


def render(series, starts, title):
    progress, per_sec = curves(series, starts)
    pieces = max((h for pts in progress.values() for _, h in pts), default=0) or 1
    xmax = nice_max(max([t for pts in progress.values() for t, _ in pts] + list(per_sec)))
    sx = lambda t: L + (W - L - R) * t / xmax  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="22" font-size="14">{escape(title)}</text>']

    # Progress per client.
    top = T
    sy = lambda f: top + PANEL - PANEL * f  # noqa: E731
    axes(out, top, xmax, 1.0, f"pieces verified (of {pieces})", lambda v: f"{v:.1f}",
         "seconds")
    for k, (label, pts) in enumerate(sorted(progress.items())):
        colour = COLOURS[k % len(COLOURS)]
        d = " ".join(f"{sx(t):.1f},{sy(h / pieces):.1f}" for t, h in pts)
        out.append(f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="1.5">'
                   f'<title>{escape(label)}</title></polyline>')
        if k < MAX_LEGEND:
            out.append(f'<text x="{W - R + 10}" y="{top + 12 + 15 * k}" fill="{colour}">'
                       f'{escape(label)}</text>')
    if len(progress) > MAX_LEGEND:
        out.append(f'<text x="{W - R + 10}" y="{top + 12 + 15 * MAX_LEGEND}" fill="gray">'
                   f'+{len(progress) - MAX_LEGEND} more</text>')

    # Bytes received per second by source, stacked: origin below, peers above.
    top = T + PANEL + GAP
    secs = sorted(per_sec)
    peak = max([(per_sec[s]["origin"] + per_sec[s]["peers"]) * MBIT for s in secs]
               + [per_sec[s]["dup"] * MBIT for s in secs] + [0])
    ymax = nice_max(peak)
    sy = lambda v: top + PANEL - PANEL * v / ymax  # noqa: E731
    out.append(f'<text x="{L}" y="{top - 12}" font-size="13">received per second, by source '
               f'(all clients)</text>')
    axes(out, top, xmax, ymax, "Mbit/s", lambda v: f"{v:.0f}", "seconds")

    def band(lower, upper, colour, name, k):
        if not secs:
            return
        # Each second's bytes arrived during the second before it: steps from s-1 to s.
        edge_hi, edge_lo = [], []
        for s in secs:
            lo, hi = lower(per_sec[s]) * MBIT, upper(per_sec[s]) * MBIT
            edge_hi += [(sx(s - 1), sy(hi)), (sx(s), sy(hi))]
            edge_lo += [(sx(s - 1), sy(lo)), (sx(s), sy(lo))]
        pts = edge_hi + edge_lo[::-1]
        d = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        out.append(f'<polygon points="{d}" fill="{colour}" fill-opacity="0.6" stroke="none"/>')
        out.append(f'<rect x="{W - R + 10}" y="{top + 3 + 16 * k}" width="10" height="10" '
                   f'fill="{colour}" fill-opacity="0.6"/>')
        out.append(f'<text x="{W - R + 26}" y="{top + 12 + 16 * k}">{name}</text>')

    band(lambda b: 0, lambda b: b["origin"], "#d62728", "from the origin", 0)
    band(lambda b: b["origin"], lambda b: b["origin"] + b["peers"], "#1f77b4", "from peers", 1)
    if any(per_sec[s]["dup"] for s in secs):
        d = " ".join(f"{sx(x):.1f},{sy(per_sec[s]['dup'] * MBIT):.1f}"
                     for s in secs for x in (s - 1, s))
        out.append(f'<polyline points="{d}" fill="none" stroke="black" stroke-dasharray="4,2"/>')
        out.append(f'<text x="{W - R + 10}" y="{top + 12 + 16 * 2}">- - duplicates</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", metavar="DIR|FILE",
                    help="directories of *.timeline files, or timeline files")
    ap.add_argument("-o", "--output", default="timeline.svg", help="SVG to write")
    ap.add_argument("--starts", help="bench/swarm.py results (default: DIR/../swarm.json)")
    ap.add_argument("--title", help="the picture's title (default: the first path)")
    a = ap.parse_args()
    first = a.paths[0]
    starts = swarm_timeline.starts_from(a.starts or os.path.join(first, "..", "swarm.json"),
                                        first)
    series = swarm_timeline.client_series(a.paths)
    if not series:
        return 1
    title = a.title or f"{os.path.basename(os.path.normpath(first))}: {len(series)} clients"
    with open(a.output, "w") as f:
        f.write(render(series, starts, title))
    print(f"wrote {a.output} ({len(series)} clients)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
