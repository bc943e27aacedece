#!/usr/bin/env python3
"""Completion-time CDFs as an SVG: one step line per system, the Kumar-Ross minimum and the
client-server bound as vertical lines. Standard library only.

    tools/cdf_svg.py swarm.json SCENARIO OUT.svg     (or import and call write())
"""

import json
import sys

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
W, H, L, B, T, R = 640, 400, 60, 50, 30, 150


def write(path, title, runs):
    """`runs`: results of one scenario (bench/swarm.py), each with clients[].finish."""
    series = []
    for r in runs:
        xs = sorted(c["finish"] for c in r["clients"] if c.get("finish") is not None)
        series.append((r["system"], xs))
    t_min, t_cs = runs[0]["t_min"], runs[0]["t_cs"]
    xmax = max([t_min, t_cs] + [x for _, xs in series for x in xs]) * 1.05 or 1.0
    sx = lambda x: L + (W - L - R) * x / xmax  # noqa: E731
    sy = lambda y: H - B - (H - B - T) * y  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="18" font-size="14">{title}: completion-time CDF</text>',
           f'<line x1="{L}" y1="{sy(0)}" x2="{W - R}" y2="{sy(0)}" stroke="black"/>',
           f'<line x1="{L}" y1="{sy(0)}" x2="{L}" y2="{sy(1)}" stroke="black"/>',
           f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">seconds since the first arrival</text>',
           f'<text x="14" y="{(T + H - B) / 2}" transform="rotate(-90 14 {(T + H - B) / 2})" '
           f'text-anchor="middle">fraction of clients done</text>']
    for k in range(6):
        x = xmax * k / 5
        out.append(f'<text x="{sx(x)}" y="{sy(0) + 16}" text-anchor="middle">{x:.0f}</text>')
        out.append(f'<text x="{L - 6}" y="{sy(k / 5) + 4}" text-anchor="end">{k / 5:.1f}</text>')
    for x, name, dash in [(t_min, "Kumar-Ross min", "6,3"), (t_cs, "client-server", "2,3")]:
        out.append(f'<line x1="{sx(x)}" y1="{sy(0)}" x2="{sx(x)}" y2="{sy(1)}" stroke="gray" '
                   f'stroke-dasharray="{dash}"/>')
        out.append(f'<text x="{sx(x) + 3}" y="{sy(0.03)}" fill="gray">{name}</text>')
    for k, (name, xs) in enumerate(series):
        colour = COLOURS[k % len(COLOURS)]
        n = len(xs)
        pts = [(sx(0), sy(0))]
        for i, x in enumerate(xs):
            pts += [(sx(x), sy(i / n)), (sx(x), sy((i + 1) / n))]
        d = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
        out.append(f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{W - R + 10}" y="{T + 20 + 18 * k}" fill="{colour}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    results = json.load(open(sys.argv[1]))
    write(sys.argv[3], sys.argv[2], [r for r in results if r["scenario"] == sys.argv[2]])
