#!/usr/bin/env python3
"""The worker's HTTP sink into the business-server stand-in, at several service times.

    python3 bench/http_sink.py --out docs/http-sink.json        # or: make bench-http

The production path: emulator → worker (`--sink http`, acknowledging each message only after the
stand-in's 2xx) → iotsub-standin answering each POST after a service time (0, 1 and 20 ms by
default, no concurrency limit). For each service time, on a fresh emulator and stand-in per run,
the scenarios of bench/compare.py (whose helpers this reuses):

  sat1 / sat4  saturation with 1 / 4 connections: msg/s between 10 % and 90 % of the backlog, the
               worker's CPU s per 10 000 messages, its peak RSS; the stand-in's CPU is recorded too;
  latency      1 connection at 1 000 msg/s: p50/p99 push → accept from the emulator's wire clock
               (the transfer's write to the disposition's read), the POST and its service time
               included.

The emulator runs on the first CPU and the worker on the last (taskset); the stand-in is not pinned
and shares the machine with both. Credit is the worker's only concurrency knob (default 100 per
connection, `--worker-arg=--credit=N`): every credited message is one POST in flight, or one event of
a batch in flight in batched mode.

`--variants` compares ways of running the sink, alternating within each round, e.g.

    python3 bench/http_sink.py --service-times 1 \
        --variants "binary=;http2=--sink-protocol=http2;batch=--sink-mode=batch"
"""

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import compare

SERVICE_TIMES = [0.0, 1.0, 20.0]


class Standin:
    """An iotsub-standin on a free port of 127.0.0.1."""

    def __init__(self, binary, workdir, service_time_ms):
        self.dir = Path(tempfile.mkdtemp(prefix="standin-", dir=workdir))
        addr_file = self.dir / "addr"
        self.log = open(self.dir / "standin.log", "wb")
        self.proc = subprocess.Popen([str(binary), "--listen", "127.0.0.1:0", "--addr-file", str(addr_file),
                                      "--service-time-ms", str(service_time_ms)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=compare.clean_env())
        addr = compare.wait_for("the stand-in's address", lambda: addr_file.exists() and addr_file.read_text().strip(), 30)
        self.url = "http://%s/events" % addr

    def cpu(self):
        return compare.cpu_seconds(self.proc.pid)

    def stop(self):
        compare.stop_process(self.proc, grace=5)
        self.log.close()


def run(scenario, service_time_ms, variant_args, args, binaries, cpus):
    standin = Standin(args.standin, args.workdir, service_time_ms)
    try:
        mine = dict(binaries, worker_sink=["--sink", "http", "--sink-url", standin.url] + variant_args)
        before = standin.cpu()
        if scenario == "latency":
            result = compare.run_latency("worker", args, mine, cpus)
            n = result["messages"]
        else:
            result = compare.run_saturation("worker", 1 if scenario == "sat1" else 4, args, mine, cpus)
            n = result["messages"] + args.warmup
        result["standinCpuSPer10k"] = (standin.cpu() - before) * 10_000 / n
        return result
    finally:
        standin.stop()


def parse_variants(text):
    """`name=flag flag;name=…` → [(name, [flags])]; an empty text is the sink's defaults."""
    variants = []
    for part in [p for p in text.split(";") if p.strip()] or ["binary="]:
        name, _, flags = part.partition("=")
        variants.append((name.strip(), flags.split()))
    return variants


def summarize(all_runs, service_times):
    """{variant: {service time: figures}}."""
    return {v: summarize_variant([r for r in all_runs if r["variant"] == v], service_times)
            for v in dict.fromkeys(r["variant"] for r in all_runs)}


def summarize_variant(runs, service_times):
    def median(ms, scenario, key):
        values = [r[key] for r in runs if r["serviceTimeMs"] == ms and r["scenario"] == scenario and key in r]
        return statistics.median(values) if values else None

    def spread(ms, scenario, key):
        values = [r[key] for r in runs if r["serviceTimeMs"] == ms and r["scenario"] == scenario and key in r]
        return [min(values), max(values)] if values else None

    out = {}
    for ms in service_times:
        mine = [r for r in runs if r["serviceTimeMs"] == ms]
        out[str(ms)] = {
            "msgsPerS1": median(ms, "sat1", "msgsPerS"), "msgsPerS1Range": spread(ms, "sat1", "msgsPerS"),
            "msgsPerS4": median(ms, "sat4", "msgsPerS"), "msgsPerS4Range": spread(ms, "sat4", "msgsPerS"),
            "cpuSPer10k1": median(ms, "sat1", "cpuSPer10k"), "cpuSPer10k4": median(ms, "sat4", "cpuSPer10k"),
            "standinCpuSPer10k1": median(ms, "sat1", "standinCpuSPer10k"),
            "p50Ms": median(ms, "latency", "p50Ms"), "p99Ms": median(ms, "latency", "p99Ms"),
            "p99MsRange": spread(ms, "latency", "p99Ms"),
            "peakRssMiB": max((r["peakRssMiB"] for r in mine), default=None),
        }
    return out


def markdown(summaries):
    return "\n\n".join("%s:\n\n%s" % (variant, table(summary)) for variant, summary in summaries.items())


def table(summary):
    keys = list(summary)
    rows = [
        ("messages/s per pod, 1 connection (min–max)", lambda s: "%.0f (%.0f–%.0f)" % (s["msgsPerS1"], *s["msgsPerS1Range"]) if s["msgsPerS1"] else "–"),
        ("messages/s per pod, 4 connections (min–max)", lambda s: "%.0f (%.0f–%.0f)" % (s["msgsPerS4"], *s["msgsPerS4Range"]) if s["msgsPerS4"] else "–"),
        ("worker CPU s per 10 000 messages (1 / 4 connections)", lambda s: "%.3f / %.3f" % (s["cpuSPer10k1"], s["cpuSPer10k4"]) if s["cpuSPer10k4"] else "–"),
        ("stand-in CPU s per 10 000 messages (1 connection)", lambda s: "%.3f" % s["standinCpuSPer10k1"] if s["standinCpuSPer10k1"] else "–"),
        ("p50 push → accept at 1 000 msg/s, ms", lambda s: "%.2f" % s["p50Ms"] if s["p50Ms"] is not None else "–"),
        ("p99 push → accept at 1 000 msg/s, ms (min–max)", lambda s: "%.2f (%.2f–%.2f)" % (s["p99Ms"], *s["p99MsRange"]) if s["p99Ms"] is not None else "–"),
        ("worker peak RSS, MiB", lambda s: "%.1f" % s["peakRssMiB"] if s["peakRssMiB"] else "–"),
    ]
    lines = ["| figure | " + " | ".join("%g ms" % float(k) for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for label, cell in rows:
        lines.append("| %s | %s |" % (label, " | ".join(cell(summary[k]) for k in keys)))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description="The worker's HTTP sink into the stand-in at several service times.")
    p.add_argument("--out", default=str(compare.ROOT / "docs" / "http-sink.json"))
    p.add_argument("--service-times", default=",".join("%g" % t for t in SERVICE_TIMES), help="milliseconds, comma-separated")
    p.add_argument("--scenarios", default="sat1,sat4,latency")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=5_000)
    p.add_argument("--messages-1", type=int, default=40_000)
    p.add_argument("--messages-4", type=int, default=80_000)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--latency-seconds", type=int, default=15)
    p.add_argument("--timeout", type=int, default=300)
    p.add_argument("--emulator", default=str(compare.ROOT / "target" / "release" / "iotsub-emulator"))
    p.add_argument("--worker", default=str(compare.ROOT / "target" / "release" / "iotsub-worker"))
    p.add_argument("--standin", default=str(compare.ROOT / "target" / "release" / "iotsub-standin"))
    p.add_argument("--worker-arg", action="append", default=[], help="extra worker flag, e.g. --worker-arg=--credit=500")
    p.add_argument("--variants", default="", help="name=worker flags;name=…: sink settings compared, alternating (default: the sink's defaults)")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--note", default="")
    args = p.parse_args()
    variants = parse_variants(args.variants)
    for path in (args.emulator, args.worker, args.standin):
        if not Path(path).is_file():
            sys.exit("%s is missing: cargo build --release -p iotsub-emulator -p iotsub-worker -p iotsub-standin --bins" % path)
    service_times = [float(t) for t in args.service_times.split(",") if t]
    scenarios = [s for s in args.scenarios.split(",") if s]
    args.workdir = tempfile.mkdtemp(prefix="iotsub-http-")
    cpus = compare.pinned_cpus(args.no_pin)
    binaries = {"emulator": args.emulator, "worker": args.worker, "worker_args": args.worker_arg, "java_args": []}
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = compare.loadavg()
    runs = []
    for rnd in range(args.rounds):
        for ms in service_times:
            for scenario in scenarios:
                for variant, flags in variants:
                    la = compare.loadavg()[0]
                    r = run(scenario, ms, flags, args, binaries, cpus)
                    r.update({"variant": variant, "serviceTimeMs": ms, "scenario": scenario, "round": rnd + 1, "loadavg1Before": la})
                    runs.append(r)
                    shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                             if k not in ("variant", "scenario", "serviceTimeMs", "round")}
                    compare.log("round %d %gms %-7s %-8s %s" % (rnd + 1, ms, scenario, variant, shown))
    summary = summarize(runs, service_times)
    record = {
        "title": "The worker's HTTP sink into the business-server stand-in",
        "command": "python3 bench/http_sink.py " + " ".join(sys.argv[1:]),
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": dict(compare.machine(), loadavgBefore=load_before, loadavgAfter=compare.loadavg()),
        "commit": subprocess.run(["git", "-C", str(compare.ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "settings": dict({k: getattr(args, k) for k in ("rounds", "warmup", "messages_1", "messages_4", "rate", "latency_seconds", "worker_arg")},
                         variants={name: flags for name, flags in variants}),
        "note": args.note,
        "runs": runs,
        "summary": summary,
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(summary))


if __name__ == "__main__":
    main()
