#!/usr/bin/env python3
"""Draws docs/samples-comparison.svg from the figures bench/compare.py recorded in
docs/samples-comparison.json: one panel per figure, one bar per client, the worker/sample ratios
beside. Plain SVG written by hand, so it needs nothing beyond Python.

    python3 bench/chart.py [--data docs/samples-comparison.json] [--out docs/samples-comparison.svg]
"""

import argparse
import json
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLORS = {"worker": "#2563eb", "java": "#ea580c", "python": "#16a34a"}
NAMES = {"worker": "iotsub-worker (Rust)", "java": "Java sample (Qpid JMS)", "python": "Python sample (Qpid Proton)"}
PANELS = [
    ("msgsPerS1", "messages/s at saturation, 1 connection", "higher is better", "{:,.0f}"),
    ("msgsPerS4", "messages/s at saturation, 4 connections", "higher is better", "{:,.0f}"),
    ("cpuSPer10k1", "CPU seconds per 10 000 messages (saturation, 1 connection)", "lower is better", "{:.2f} s"),
    ("p99Ms", "p99 latency at 1 000 msg/s, push to accept", "lower is better", "{:.2f} ms"),
    ("peakRssMiB", "peak RSS", "lower is better", "{:.0f} MiB"),
]

WIDTH, LEFT, BAR_W, BAR_H, GAP, PANEL_GAP = 900, 210, 470, 18, 6, 26


def draw(data):
    summary, ratios = data["summary"], data.get("ratios", {})
    clients = [c for c in ("worker", "java", "python") if c in summary]
    machine = data.get("machine", {})
    out = []
    y = 30
    out.append('<text x="20" y="%d" font-size="18" font-weight="bold">%s</text>' % (y, escape(data.get("title", "Worker vs the official samples"))))
    y += 20
    subtitle = "%s, %s CPUs (%s), load average %s before / %s after; emulator and client share the machine" % (
        data.get("date", "?"), machine.get("cpus", "?"), machine.get("model", "?"),
        "/".join("%.1f" % x for x in machine.get("loadavgBefore", [])), "/".join("%.1f" % x for x in machine.get("loadavgAfter", [])))
    out.append('<text x="20" y="%d" font-size="11" fill="#555">%s</text>' % (y, escape(subtitle)))
    y += 18
    # Legend.
    x = 20
    for c in clients:
        out.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (x, y - 10, COLORS[c]))
        out.append('<text x="%d" y="%d" font-size="12">%s</text>' % (x + 16, y, escape(NAMES[c])))
        x += 16 + 8 * len(NAMES[c]) + 20
    y += 14
    for key, title, better, fmt in PANELS:
        values = {c: summary[c].get(key) for c in clients}
        present = [v for v in values.values() if v is not None]
        if not present:
            continue
        y += PANEL_GAP
        out.append('<text x="20" y="%d" font-size="13" font-weight="bold">%s</text>' % (y, escape(title)))
        out.append('<text x="%d" y="%d" font-size="11" fill="#777" text-anchor="end">%s</text>' % (WIDTH - 20, y, better))
        y += 8
        top = max(present)
        for c in clients:
            v = values[c]
            out.append('<text x="%d" y="%d" font-size="12" text-anchor="end">%s</text>' % (LEFT - 8, y + BAR_H - 5, escape(c)))
            if v is None:
                out.append('<text x="%d" y="%d" font-size="12" fill="#999">not measured</text>' % (LEFT, y + BAR_H - 5))
            else:
                w = max(1.5, BAR_W * v / top)
                out.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (LEFT, y, w, BAR_H, COLORS[c]))
                label = fmt.format(v)
                r = ratios.get(c, {}).get(key)
                if r:
                    verdict = "" if r["workerLeads"] else (", a tie" if abs(r["ratio"] - 1) < 0.05 else ", sample leads")
                    label += "   (worker/%s = %.2f×%s)" % (c, r["ratio"], verdict)
                out.append('<text x="%.1f" y="%d" font-size="12">%s</text>' % (LEFT + w + 6, y + BAR_H - 5, escape(label)))
            y += BAR_H + GAP
    y += 16
    settings = data.get("settings", {})
    note = "Medians of %s rounds; backlogs %s / %s messages of %s bytes; latency run %s msg/s for %s s; data: docs/samples-comparison.json" % (
        settings.get("rounds", "?"), settings.get("messages1", "?"), settings.get("messages4", "?"), settings.get("payloadBytes", "?"),
        settings.get("rate", "?"), settings.get("latencySeconds", "?"))
    out.append('<text x="20" y="%d" font-size="11" fill="#555">%s</text>' % (y, escape(note)))
    y += 14
    head = ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
            'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">' % (WIDTH, y, WIDTH, y))
    return "\n".join([head, '<rect width="100%" height="100%" fill="white"/>'] + out + ["</svg>"]) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT / "docs" / "samples-comparison.json"))
    p.add_argument("--out", default=str(ROOT / "docs" / "samples-comparison.svg"))
    args = p.parse_args()
    svg = draw(json.loads(Path(args.data).read_text()))
    Path(args.out).write_text(svg)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
