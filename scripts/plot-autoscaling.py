#!/usr/bin/env python3
"""Draws docs/autoscaling.svg from the run the autoscaling cluster test recorded
(target/e2e/autoscaling-run.json, written by tests/e2e/tests/autoscaling.rs): the consumer group's
backlog above, the replicas and the group's clients below, against the client cap. Plain SVG written
by hand, so it needs nothing beyond Python.

    python3 scripts/plot-autoscaling.py [--data target/e2e/autoscaling-run.json] [--out docs/autoscaling.svg]
"""

import argparse
import json
import shutil
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTH, LEFT, RIGHT, TOP = 960, 70, 30, 70
BACKLOG_H, REPLICAS_H, GAP = 200, 220, 56
COLORS = {
    "backlog": "#2563eb",
    "desired": "#dc2626",
    "ready": "#16a34a",
    "ours": "#9333ea",
    "total": "#ea580c",
    "cap": "#111827",
}


def steps(points):
    """A step line: each value holds until the next sample."""
    out = []
    for i, (x, y) in enumerate(points):
        if i:
            out.append((x, points[i - 1][1]))
        out.append((x, y))
    return out


def path(points, color, width=2.0, dash=None, fill=None):
    d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    fill_attr = fill or "none"
    return f'<path d="{d}" stroke="{color}" stroke-width="{width}" fill="{fill_attr}"{extra}/>'


def draw(run):
    samples, phases, settings = run["samples"], run["phases"], run["settings"]
    t_end = max(s["t"] for s in samples)
    plot_w = WIDTH - LEFT - RIGHT
    x = lambda t: LEFT + plot_w * t / t_end
    backlog_max = max(max(s["backlog"] for s in samples), 1)
    cap = settings["clientCap"]
    top2 = TOP + BACKLOG_H + GAP
    y_backlog = lambda v: TOP + BACKLOG_H * (1 - v / backlog_max)
    y_rep = lambda v: top2 + REPLICAS_H * (1 - v / (cap + 1))
    bottom = 70 + 15 * max(len(phases), 4)
    height = top2 + REPLICAS_H + bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="16" font-weight="bold">iotsub autoscaler: backlog and replicas over one recorded run</text>',
        f'<text x="{LEFT}" y="38" fill="#4b5563">target {settings["targetBacklogPerReplica"]} messages per replica, replicas {settings["minReplicas"]}–{settings["maxReplicas"]}, '
        f'client cap {cap}, scale-down window {settings["scaleDownStabilizationSeconds"]} s and poll every {settings["pollIntervalSeconds"]} s (shortened for the test)</text>',
        f'<text x="{LEFT}" y="{height - 10}" fill="#6b7280">Recorded by tests/e2e/tests/autoscaling.rs (real worker pods, local control plane, emulator); drawn by scripts/plot-autoscaling.py</text>',
    ]
    # Axes and grid.
    for frac in (0, 0.25, 0.5, 0.75, 1):
        v = backlog_max * frac
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y_backlog(v):.1f}" y2="{y_backlog(v):.1f}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y_backlog(v) + 4:.1f}" text-anchor="end" fill="#4b5563">{v:,.0f}</text>')
    for v in range(0, cap + 1, 2):
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y_rep(v):.1f}" y2="{y_rep(v):.1f}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y_rep(v) + 4:.1f}" text-anchor="end" fill="#4b5563">{v}</text>')
    out.append(f'<text x="{LEFT}" y="{TOP - 6}" font-weight="bold" fill="{COLORS["backlog"]}">backlog (messages waiting in the consumer group)</text>')
    out.append(f'<text x="{LEFT}" y="{top2 - 6}" font-weight="bold">replicas and the group\'s AMQP clients</text>')
    for t in range(0, int(t_end) + 1, 10):
        out.append(f'<text x="{x(t):.1f}" y="{top2 + REPLICAS_H + 16}" text-anchor="middle" fill="#4b5563">{t} s</text>')
    # Phases.
    for i, phase in enumerate(phases):
        px = x(phase["t"])
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{top2 + REPLICAS_H}" stroke="#9ca3af" stroke-dasharray="3 3"/>')
        out.append(f'<text x="{LEFT}" y="{top2 + REPLICAS_H + 40 + 15 * i}" fill="#374151">{i + 1}. at {phase["t"]:.0f} s: {escape(phase["label"])}</text>')
        out.append(f'<text x="{px + 3:.1f}" y="{TOP + 12}" fill="#374151" font-weight="bold">{i + 1}</text>')
    # Backlog.
    pts = [(x(s["t"]), y_backlog(s["backlog"])) for s in samples]
    area = [(x(samples[0]["t"]), y_backlog(0))] + pts + [(x(samples[-1]["t"]), y_backlog(0))]
    out.append(path(area, "none", 0, fill="#dbeafe"))
    out.append(path(pts, COLORS["backlog"]))
    # Replicas and clients.
    out.append(path([(LEFT, y_rep(cap)), (WIDTH - RIGHT, y_rep(cap))], COLORS["cap"], 1.5, dash="6 4"))
    out.append(f'<text x="{LEFT + 4}" y="{y_rep(cap) - 5:.1f}">the consumer group\'s client cap ({cap})</text>')
    series = [
        ("total", "all clients of the group (ours + other teams')", lambda s: s["ours_connected"] + s["others_connected"], 1.5, "2 2"),
        ("desired", "desired replicas (status.desiredReplicas)", lambda s: s["desired"], 2.5, None),
        ("ready", "ready replicas", lambda s: s["ready"], 1.5, None),
        ("ours", "our connected clients", lambda s: s["ours_connected"], 1.5, "5 3"),
    ]
    legend_y = top2 + REPLICAS_H + 40
    for key, label, value, width, dash in series:
        out.append(path(steps([(x(s["t"]), y_rep(value(s))) for s in samples]), COLORS[key], width, dash=dash))
    for i, (key, label, _, width, dash) in enumerate(series):
        lx, ly = WIDTH - RIGHT - 330, legend_y + 15 * i
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="{lx}" x2="{lx + 24}" y1="{ly - 4}" y2="{ly - 4}" stroke="{COLORS[key]}" stroke-width="{width}"{dash_attr}/>')
        out.append(f'<text x="{lx + 30}" y="{ly}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=ROOT / "target/e2e/autoscaling-run.json", type=Path)
    parser.add_argument("--out", default=ROOT / "docs/autoscaling.svg", type=Path)
    args = parser.parse_args()
    run = json.loads(args.data.read_text())
    args.out.write_text(draw(run) + "\n")
    # The data beside the picture, so it can be checked and redrawn.
    kept = args.out.with_name(args.out.stem + "-run.json")
    if args.data.resolve() != kept.resolve():
        shutil.copyfile(args.data, kept)
    print(f"wrote {args.out} and {kept} ({len(run['samples'])} samples over {run['samples'][-1]['t']:.0f} s)")


if __name__ == "__main__":
    main()
