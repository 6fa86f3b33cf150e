#!/usr/bin/env python3
"""Draws docs/reliability.svg from a soak's record (target/soak/soak.json, written by `make soak`):
each consumer group's acknowledgements per second, its backlog, and the subscriptions' desired
replicas with each group's clients against the cap, with every fault marked where it struck. Plain
SVG written by hand, so it needs nothing beyond Python.

    python3 scripts/plot-soak.py [--data target/soak/soak.json] [--out docs/reliability.svg] [--summary docs/reliability-run.json]
"""

import argparse
import json
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTH, LEFT, RIGHT, TOP, PANEL_H, GAP = 1100, 70, 30, 60, 170, 50
GROUP_COLORS = ["#2563eb", "#ea580c"]
SUB_COLORS = ["#16a34a", "#9333ea", "#db2777"]
FAULT_COLOR = "#dc2626"


def path(points, color, width=1.6, dash=None):
    d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<path d="{d}" fill="none" stroke="{color}" stroke-width="{width}"{extra}/>'


def text(x, y, s, size=12, anchor="start", color="#111827", weight="normal"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}" '
            f'font-weight="{weight}" font-family="sans-serif">{escape(str(s))}</text>')


def rates(samples, group, window=5):
    out = []
    for i, s in enumerate(samples):
        before = samples[max(0, i - window)]
        if group not in s["groups"] or group not in before["groups"]:
            continue
        span = max(s["t"] - before["t"], 1.0)
        out.append((s["t"], (s["groups"][group]["acknowledged"] - before["groups"][group]["acknowledged"]) / span))
    return out


def panel(out, top, title, series, t_max, y_max, unit, faults):
    """series: [(label, color, [(t, v)], dash)]"""
    plot_w = WIDTH - LEFT - RIGHT
    x = lambda t: LEFT + plot_w * t / t_max
    y = lambda v: top + PANEL_H - PANEL_H * min(v, y_max) / y_max
    out.append(text(LEFT, top - 10, title, 13, weight="bold"))
    out.append(f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#d1d5db"/>')
    for i in range(5):
        v = y_max * i / 4
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#f3f4f6"/>')
        out.append(text(LEFT - 6, y(v) + 4, f"{v:,.0f}", 10, "end", "#6b7280"))
    for n, f in enumerate(faults, 1):
        fx, fx2 = x(f["began"]), x(max(f["ended"], f["began"]))
        if fx2 - fx > 1:
            out.append(f'<rect x="{fx:.1f}" y="{top}" width="{fx2 - fx:.1f}" height="{PANEL_H}" fill="{FAULT_COLOR}" opacity="0.07"/>')
        out.append(f'<line x1="{fx:.1f}" x2="{fx:.1f}" y1="{top}" y2="{top + PANEL_H}" stroke="{FAULT_COLOR}" stroke-width="0.8" opacity="0.6"/>')
    legend_x = LEFT + 300
    for label, color, points, dash in series:
        if points:
            out.append(path([(x(t), y(v)) for t, v in points], color, dash=dash))
        out.append(f'<line x1="{legend_x}" x2="{legend_x + 18}" y1="{top - 14}" y2="{top - 14}" stroke="{color}" stroke-width="2"'
                   + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
        out.append(text(legend_x + 22, top - 10, label, 11))
        legend_x += 40 + 7 * len(label)
    out.append(text(LEFT + plot_w, top + PANEL_H + 14, unit, 10, "end", "#6b7280"))


def draw(run, points=600):
    # At most `points` samples a line (a 30-minute run has one a second): every n-th, rates over
    # the same 5 s as before.
    every = max(1, len(run["samples"]) // points)
    samples = run["samples"]
    t_max = max(s["t"] for s in samples) if samples else 1
    groups = sorted({g for s in samples for g in s["groups"]})
    subs = sorted({n for s in samples for n in (s.get("subs") or {})})
    faults = [f for f in run["faults"] if f["done"]]
    out = []
    d = run["delivery"]
    out.append(text(LEFT, 24, f"Soak, seed {run['seed']}: {run['runSeconds'] / 60:.0f} min of load, {len(faults)} faults; "
                    f"published {d['published']:,}, lost {d['lost']}, duplicates {d['duplicates']:,} ({d['duplicatePercent']:.2f} %), "
                    f"acknowledged not taken {d['acknowledgedNotTaken']}", 14, weight="bold"))
    out.append(text(LEFT, 42, "red lines: a fault struck (shaded while it lasted); faults listed below", 11, color="#6b7280"))
    top = TOP + 10
    series = [(f"{g} acknowledged/s", GROUP_COLORS[i % 2], rates(samples, g)[::every], None) for i, g in enumerate(groups)]
    samples = samples[::every]
    peak = max([v for _, _, pts, _ in series for _, v in pts] + [1])
    panel(out, top, "Throughput", series, t_max, peak * 1.05, "messages per second (5 s window), against seconds of the run", faults)
    top += PANEL_H + GAP
    series = [(f"{g} backlog", GROUP_COLORS[i % 2], [(s["t"], s["groups"][g]["backlog"]) for s in samples if g in s["groups"]], None)
              for i, g in enumerate(groups)]
    peak = max([v for _, _, pts, _ in series for _, v in pts] + [1])
    panel(out, top, "Backlog", series, t_max, peak * 1.05, "messages waiting at the platform", faults)
    top += PANEL_H + GAP
    series = [(f"{n} desired", SUB_COLORS[i % 3], [(s["t"], s["subs"][n]["desired"]) for s in samples if s.get("subs")], None)
              for i, n in enumerate(subs)]
    series += [(f"{g} clients", GROUP_COLORS[i % 2], [(s["t"], s["groups"][g]["ours"] + s["groups"][g]["others"]) for s in samples
                                                      if g in s["groups"]], "4 3") for i, g in enumerate(groups)]
    series.append((f"cap {run['cap']}", "#111827", [(0, run["cap"]), (t_max, run["cap"])], "2 4"))
    panel(out, top, "Replicas and clients", series, t_max, run["cap"] + 2, "replicas; clients of the group (ours and other teams')", faults)
    top += PANEL_H + 40
    columns = 3
    for n, f in enumerate(faults):
        col, row = n % columns, n // columns
        out.append(text(LEFT + col * 340, top + row * 15, f"{f['began']:6.0f} s  {f['kind']}", 10, color="#374151"))
    height = top + ((len(faults) + columns - 1) // columns) * 15 + 20
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">'
            f'<rect width="100%" height="100%" fill="white"/>' + "".join(out) + "</svg>\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=ROOT / "target/soak/soak.json", type=Path)
    parser.add_argument("--out", default=ROOT / "docs/reliability.svg", type=Path)
    parser.add_argument("--summary", type=Path, help="also write the record without its samples here (docs/reliability-run.json)")
    args = parser.parse_args()
    run = json.loads(args.data.read_text())
    args.out.write_text(draw(run))
    print(f"wrote {args.out}")
    if args.summary:
        args.summary.write_text(json.dumps({k: v for k, v in run.items() if k != "samples"}, indent=1) + "\n")
        print(f"wrote {args.summary}")


if __name__ == "__main__":
    main()
