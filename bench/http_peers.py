#!/usr/bin/env python3
"""The worker's HTTP sink side by side with its peers on the production path, against the emulator
and the business-server stand-in, in one run:

    python3 bench/http_peers.py            # or: make bench-http-peers
    python3 bench/http_peers.py --summarize docs/http-peers.json   # redraw table and chart only
    python3 bench/http_peers.py --check     # each client acknowledges nothing answered 503

Clients, each acknowledging a message only after the stand-in answered its POST with a 2xx:

  worker     iotsub-worker --sink http (credit 100 per connection: up to 100 POSTs in flight each);
  java-http  bench/peers/java-http: the platform's Java sample (Qpid JMS) extended with
             java.net.http.HttpClient and a thread pool of 100 per connection;
  camel      bench/peers/camel: Apache Camel 4.18 (camel-main, camel-amqp, camel-vertx-http), async
             consumer, Vert.x pool of 100 connections per AMQP connection.

Per service time (0, 1, 20 ms by default) and per scenario (those of bench/compare.py: sat1, sat4,
latency at 1 000 msg/s for 12 s after a warm-up batch), every client runs on a fresh emulator and a fresh stand-in; the clients
alternate, their order rotating from one scenario to the next. The emulator runs on the first CPU,
the client on the last (taskset), the stand-in unpinned. The Maven peers are built on first use
(`mvn -q -B package`, offline with -o once their dependencies are in the local repository).
"""

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from html import escape
from pathlib import Path

import compare
import http_sink

ROOT = compare.ROOT
PEERS_DIR = ROOT / "bench" / "peers"
CLIENTS = ["worker", "java-http", "camel"]
SCENARIOS = ["sat1", "sat4", "latency"]
MAIN_CLASS = {"java-http": "dev.iotsub.peers.JavaHttpPeer", "camel": "dev.iotsub.peers.CamelPeer"}
HIGHER_IS_BETTER = {"msgsPerS1", "msgsPerS4", "msgsPerCpuS1", "msgsPerCpuS4"}


def peer_build(kind):
    """Builds bench/peers/<kind> unless its jar is newer than its sources; offline first."""
    project = PEERS_DIR / kind
    jars = list((project / "target").glob("*.jar"))
    sources = list((project / "src").rglob("*.java")) + [project / "pom.xml"]
    if jars and (project / "target" / "lib").is_dir() and all(s.stat().st_mtime <= jars[0].stat().st_mtime for s in sources):
        return
    compare.log("building bench/peers/%s: mvn -q -B package (offline first)" % kind)
    if subprocess.run(["mvn", "-q", "-o", "-B", "package"], cwd=project).returncode != 0:
        subprocess.run(["mvn", "-q", "-B", "package"], cwd=project, check=True)


def peer_argv(kind, sink_url, java_args):
    """How compare.Client starts the peer `kind` (a function of the common flags)."""
    project = PEERS_DIR / kind
    classpath = "%s:%s/*" % (project / "target" / "classes", project / "target" / "lib")

    def argv(common, emulator, workdir):
        trust = compare.java_trust_store(emulator, workdir)
        return ["java"] + java_args + ["-cp", classpath, MAIN_CLASS[kind]] + common + [
            "--trust-store", str(trust), "--trust-store-password", "changeit", "--sink-url", sink_url]
    return argv


def run_latency(kind, args, binaries, cpus):
    """compare.run_latency after a warm-up batch, so a JVM's first seconds (class loading, JIT) are
    not in the emulator's window of the last 10 000 acknowledgements."""
    assert args.rate * args.latency_seconds >= 10_000, "the latency window must hold the traffic only"
    with compare.attached_client(kind, 1, args, binaries, cpus) as (emulator, client):
        emulator.publish(args.warmup)
        compare.wait_for("the warm-up", compare.acked_at_least(emulator, args.warmup), 300, client)
        total = args.rate * args.latency_seconds
        cpu_before = compare.cpu_seconds(client.pid)
        emulator.traffic(args.rate, args.latency_seconds)
        g = compare.wait_for("the traffic to be acknowledged", compare.acked_at_least(emulator, args.warmup + total),
                             args.latency_seconds + 120, client)
        cpu = compare.cpu_seconds(client.pid) - cpu_before
        lat = g["ackLatency"]
        return {
            "messages": total, "rate": args.rate, "latencySamples": lat["samples"],
            "p50Ms": lat["p50Us"] / 1000.0, "p90Ms": lat["p90Us"] / 1000.0, "p99Ms": lat["p99Us"] / 1000.0, "maxMs": lat["maxUs"] / 1000.0,
            "cpuSPer10kAtRate": cpu * 10_000 / total,
            **compare.memory_and_redelivered(client, g),
        }


def run(kind, scenario, service_time_ms, args, binaries, cpus):
    standin = http_sink.Standin(args.standin, args.workdir, service_time_ms)
    try:
        mine = dict(binaries, worker_sink=["--sink", "http", "--sink-url", standin.url],
                    peers={k: peer_argv(k, standin.url, args.java_arg) for k in MAIN_CLASS})
        before = standin.cpu()
        if scenario == "latency":
            result = run_latency(kind, args, mine, cpus)
            n = result["messages"] + args.warmup
        else:
            result = compare.run_saturation(kind, 1 if scenario == "sat1" else 4, args, mine, cpus)
            n = result["messages"] + args.warmup
        result["standinCpuSPer10k"] = (standin.cpu() - before) * 10_000 / n
        return result
    finally:
        standin.stop()


def check_acknowledgement(kind, args, binaries, cpus, count=50):
    """Fails unless `kind` has acknowledged nothing once the stand-in answered 503 at least `count`
    times (the peers settle such a delivery back to the platform, the worker retries it), and
    acknowledges all `count` messages after the stand-in answers 200 again."""
    standin = http_sink.Standin(args.standin, args.workdir, 0)
    base = standin.url.rsplit("/", 1)[0]
    try:
        mine = dict(binaries, worker_sink=["--sink", "http", "--sink-url", standin.url],
                    peers={k: peer_argv(k, standin.url, args.java_arg) for k in MAIN_CLASS})
        compare.http(base + "/admin/fault", {"status": 503})
        with compare.attached_client(kind, 1, args, mine, cpus) as (emulator, client):
            emulator.publish(count)
            compare.wait_for("%d answers 503" % count, lambda: compare.http(base + "/admin/stats")["faulted"] >= count, 120, client)
            g = emulator.group()
            if g["acknowledged"]:
                raise RuntimeError("%s acknowledged %d message(s) that the stand-in answered 503" % (kind, g["acknowledged"]))
            settled_back = g["refusedByClient"]
            urllib.request.urlopen(urllib.request.Request(base + "/admin/fault", method="DELETE"), timeout=10).close()
            g = compare.wait_for("every message acknowledged after the 200s", compare.acked_at_least(emulator, count), 120, client)
        return {"client": kind, "settledBackDuring503": settled_back, "acknowledged": g["acknowledged"], "redelivered": g["redelivered"]}
    finally:
        standin.stop()


def summarize(runs, clients, service_times):
    def values(kind, ms, scenario, key):
        return [r[key] for r in runs if r["client"] == kind and r["serviceTimeMs"] == ms and r["scenario"] == scenario and key in r]

    def median(*key):
        v = values(*key)
        return statistics.median(v) if v else None

    summary, ratios = {}, {}
    for ms in service_times:
        at = summary[str(ms)] = {}
        for kind in clients:
            cpu1, cpu4 = median(kind, ms, "sat1", "cpuSPer10k"), median(kind, ms, "sat4", "cpuSPer10k")
            mine = [r for r in runs if r["client"] == kind and r["serviceTimeMs"] == ms]
            at[kind] = {
                "msgsPerS1": median(kind, ms, "sat1", "msgsPerS"),
                "msgsPerS4": median(kind, ms, "sat4", "msgsPerS"),
                "cpuSPer10k1": cpu1,
                "cpuSPer10k4": cpu4,
                "cpuSPer10kAt1000": median(kind, ms, "latency", "cpuSPer10kAtRate"),
                "p50Ms": median(kind, ms, "latency", "p50Ms"),
                "p99Ms": median(kind, ms, "latency", "p99Ms"),
                "peakRssMiB": max((r["peakRssMiB"] for r in mine), default=None),
                "msgsPerCpuS1": 10_000 / cpu1 if cpu1 else None,
                "msgsPerCpuS4": 10_000 / cpu4 if cpu4 else None,
                "redelivered": sum(r.get("redelivered", 0) for r in mine),
            }
        if "worker" not in at:
            continue
        ratios[str(ms)] = {}
        for kind in clients:
            if kind == "worker":
                continue
            ratios[str(ms)][kind] = {}
            for key, value in at["worker"].items():
                other = at[kind].get(key)
                if key == "redelivered" or value is None or not other:
                    continue
                ratio = value / other
                ratios[str(ms)][kind][key] = {"ratio": ratio, "workerLeads": ratio > 1 if key in HIGHER_IS_BETTER else ratio < 1}
    return summary, ratios


LABELS = [
    ("msgsPerS1", "msg/s per pod, 1 connection", "%.0f"),
    ("msgsPerS4", "msg/s per pod, 4 connections", "%.0f"),
    ("cpuSPer10k1", "CPU s per 10 000 messages, 1 connection", "%.3f"),
    ("cpuSPer10k4", "CPU s per 10 000 messages, 4 connections", "%.3f"),
    ("msgsPerCpuS1", "messages per CPU second, 1 connection", "%.0f"),
    ("msgsPerCpuS4", "messages per CPU second, 4 connections", "%.0f"),
    ("cpuSPer10kAt1000", "CPU s per 10 000 messages at 1 000 msg/s", "%.3f"),
    ("p50Ms", "p50 push → accept at 1 000 msg/s, ms", "%.2f"),
    ("p99Ms", "p99 push → accept at 1 000 msg/s, ms", "%.2f"),
    ("peakRssMiB", "peak RSS, MiB", "%.1f"),
]


def markdown(summary, ratios, clients):
    others = [k for k in clients if k != "worker"]
    out = []
    for ms, at in summary.items():
        out.append("\n**%g ms service time**\n" % float(ms))
        out.append("| figure | " + " | ".join(clients) + "".join(" | worker/%s" % k for k in others) + " |")
        out.append("|" + "---|" * (1 + len(clients) + len(others)))
        for key, label, fmt in LABELS:
            cells = [(fmt % at[k][key]) if at.get(k, {}).get(key) is not None else "–" for k in clients]
            for k in others:
                r = ratios.get(ms, {}).get(k, {}).get(key)
                verdict = "" if not r or r["workerLeads"] else (" (a tie)" if abs(r["ratio"] - 1) < 0.05 else " (**peer leads**)")
                cells.append("%.2f×%s" % (r["ratio"], verdict) if r else "–")
            out.append("| %s | %s |" % (label, " | ".join(cells)))
    return "\n".join(out).lstrip()


COLORS = {"worker": "#2563eb", "java-http": "#ea580c", "camel": "#9333ea"}
NAMES = {"worker": "iotsub-worker --sink http (Rust)", "java-http": "Java sample + java.net.http (Qpid JMS)",
         "camel": "Apache Camel 4.18 (camel-amqp → vertx-http)"}
PANELS = [
    ("msgsPerS1", "messages/s per pod, 1 connection", "higher is better", "{:,.0f}"),
    ("msgsPerS4", "messages/s per pod, 4 connections", "higher is better", "{:,.0f}"),
    ("msgsPerCpuS1", "messages per CPU second (1 connection)", "higher is better", "{:,.0f}"),
    ("p99Ms", "p99 push → accept at 1 000 msg/s", "lower is better", "{:.2f} ms"),
    ("peakRssMiB", "peak RSS", "lower is better", "{:.0f} MiB"),
]
WIDTH, LEFT, BAR_W, BAR_H, GAP = 960, 250, 420, 14, 3


def chart(record):
    """The figures as a plain SVG: one panel per figure, a group of bars per service time."""
    summary, ratios = record["summary"], record["ratios"]
    clients = [c for c in CLIENTS if any(c in at for at in summary.values())]
    m = record["machine"]
    out, y = [], 30
    out.append('<text x="20" y="%d" font-size="18" font-weight="bold">%s</text>' % (y, escape(record["title"])))
    y += 20
    sub = "%s, %s CPUs (%s), load average %s before / %s after; emulator CPU 0, client CPU 1, stand-in unpinned" % (
        record["date"], m["cpus"], m["model"], "/".join("%.1f" % x for x in m["loadavgBefore"]), "/".join("%.1f" % x for x in m["loadavgAfter"]))
    out.append('<text x="20" y="%d" font-size="11" fill="#555">%s</text>' % (y, escape(sub)))
    y += 18
    x = 20
    for c in clients:
        out.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (x, y - 10, COLORS[c]))
        out.append('<text x="%d" y="%d" font-size="12">%s</text>' % (x + 16, y, escape(NAMES[c])))
        x += 16 + 7 * len(NAMES[c]) + 24
    y += 8
    for key, title, better, fmt in PANELS:
        present = [at[c][key] for at in summary.values() for c in clients if at.get(c, {}).get(key) is not None]
        if not present:
            continue
        y += 26
        out.append('<text x="20" y="%d" font-size="13" font-weight="bold">%s</text>' % (y, escape(title)))
        out.append('<text x="%d" y="%d" font-size="11" fill="#777" text-anchor="end">%s</text>' % (WIDTH - 20, y, better))
        y += 6
        top = max(present)
        for ms, at in summary.items():
            out.append('<text x="%d" y="%d" font-size="12" text-anchor="end">%g ms service time</text>' % (LEFT - 10, y + BAR_H * 2, float(ms)))
            for c in clients:
                v = at.get(c, {}).get(key)
                if v is None:
                    y += BAR_H + GAP
                    continue
                w = max(1.5, BAR_W * v / top)
                out.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (LEFT, y, w, BAR_H, COLORS[c]))
                label = fmt.format(v)
                r = ratios.get(ms, {}).get(c, {}).get(key)
                if r:
                    label += "   worker/%s = %.2f×%s" % (c, r["ratio"], "" if r["workerLeads"] else " (peer leads)")
                out.append('<text x="%.1f" y="%d" font-size="11">%s</text>' % (LEFT + w + 6, y + BAR_H - 3, escape(label)))
                y += BAR_H + GAP
            y += 6
    y += 14
    s = record["settings"]
    note = "Medians of %d rounds; backlogs %d / %d messages (1 / 4 connections) after %d warm-up; latency %d msg/s for %d s; data: docs/http-peers.json" % (
        s["rounds"], s["messages_1"], s["messages_4"], s["warmup"], s["rate"], s["latency_seconds"])
    out.append('<text x="20" y="%d" font-size="11" fill="#555">%s</text>' % (y, escape(note)))
    y += 14
    head = ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
            'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">' % (WIDTH, y, WIDTH, y))
    return "\n".join([head, '<rect width="100%" height="100%" fill="white"/>'] + out + ["</svg>"]) + "\n"


def versions(binaries):
    def out(argv):
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (p.stdout + p.stderr).strip().splitlines()[0]

    def jar(kind, prefix):
        return next((p.name[len(prefix) + 1:-4] for p in (PEERS_DIR / kind / "target" / "lib").glob(prefix + "-*.jar")), "?")
    return {
        "commit": out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "worker": out([str(binaries["worker"]), "--version"]),
        "java": out(["java", "-version"]),
        "javaHttpQpidJms": jar("java-http", "qpid-jms-client"),
        "camel": jar("camel", "camel-core-engine"),
        "camelQpidJms": jar("camel", "qpid-jms-client"),
        "camelVertx": jar("camel", "vertx-core"),
    }


def main():
    p = argparse.ArgumentParser(description="The worker's http sink vs its Java and Camel peers.")
    p.add_argument("--out", default=str(ROOT / "docs" / "http-peers.json"))
    p.add_argument("--svg", default=str(ROOT / "docs" / "http-peers.svg"))
    p.add_argument("--clients", default=",".join(CLIENTS))
    p.add_argument("--service-times", default="0,1,20", help="milliseconds, comma-separated")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=5_000)
    p.add_argument("--messages-1", type=int, default=20_000)
    p.add_argument("--messages-4", type=int, default=40_000)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--latency-seconds", type=int, default=12)
    p.add_argument("--timeout", type=int, default=300)
    p.add_argument("--emulator", default=str(ROOT / "target" / "release" / "iotsub-emulator"))
    p.add_argument("--worker", default=str(ROOT / "target" / "release" / "iotsub-worker"))
    p.add_argument("--standin", default=str(ROOT / "target" / "release" / "iotsub-standin"))
    p.add_argument("--worker-arg", action="append", default=[], help="extra worker flag")
    p.add_argument("--java-arg", action="append", default=[], help="extra JVM flag for both peers")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--note", default="")
    p.add_argument("--check", action="store_true",
                   help="only check that each client acknowledges nothing the stand-in answers 503, and everything after 200s")
    p.add_argument("--summarize", metavar="JSON", help="recompute summary, table and chart of an earlier record; run nothing")
    args = p.parse_args()

    if args.summarize:
        record = json.loads(Path(args.summarize).read_text())
        clients = [c for c in CLIENTS if any(r["client"] == c for r in record["runs"])]
        times = sorted({r["serviceTimeMs"] for r in record["runs"]})
        record["summary"], record["ratios"] = summarize(record["runs"], clients, times)
        Path(args.summarize).write_text(json.dumps(record, indent=2) + "\n")
        Path(args.svg).write_text(chart(record))
        print(markdown(record["summary"], record["ratios"], clients))
        return

    clients = [c for c in args.clients.split(",") if c]
    if args.check:
        args.workdir = tempfile.mkdtemp(prefix="iotsub-http-peers-")
        cpus = compare.pinned_cpus(args.no_pin)
        binaries = {"emulator": args.emulator, "worker": args.worker, "worker_args": args.worker_arg, "java_args": args.java_arg}
        for kind in clients:
            if kind in MAIN_CLASS:
                peer_build(kind)
            compare.log("acknowledgement check: %s" % check_acknowledgement(kind, args, binaries, cpus))
        return
    scenarios = [s for s in args.scenarios.split(",") if s]
    service_times = [float(t) for t in args.service_times.split(",") if t]
    assert set(clients) <= set(CLIENTS) and set(scenarios) <= set(SCENARIOS), "unknown client or scenario"
    for path in (args.emulator, args.worker, args.standin):
        if not Path(path).is_file():
            sys.exit("%s is missing: cargo build --release -p iotsub-emulator -p iotsub-worker -p iotsub-standin --bins" % path)
    for kind in clients:
        if kind in MAIN_CLASS:
            peer_build(kind)
    args.workdir = tempfile.mkdtemp(prefix="iotsub-http-peers-")
    cpus = compare.pinned_cpus(args.no_pin)
    binaries = {"emulator": args.emulator, "worker": args.worker, "worker_args": args.worker_arg, "java_args": args.java_arg}
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = compare.loadavg()
    compare.log("load average before: %s; clients %s; service times %s; logs in %s" % (load_before, clients, service_times, args.workdir))
    runs, turn = [], 0
    for rnd in range(args.rounds):
        for ms in service_times:
            for scenario in scenarios:
                order = clients[turn % len(clients):] + clients[:turn % len(clients)]
                turn += 1
                for kind in order:
                    la = compare.loadavg()[0]
                    t0 = time.monotonic()
                    r = run(kind, scenario, ms, args, binaries, cpus)
                    r.update({"client": kind, "serviceTimeMs": ms, "scenario": scenario, "round": rnd + 1,
                              "loadavg1Before": la, "seconds": round(time.monotonic() - t0, 1)})
                    runs.append(r)
                    shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                             if k not in ("client", "scenario", "serviceTimeMs", "round")}
                    compare.log("round %d %gms %-7s %-9s %s" % (rnd + 1, ms, scenario, kind, shown))
    summary, ratios = summarize(runs, clients, service_times)
    record = {
        "title": "The worker's http sink vs its peers on the production path (AMQP in, HTTP out)",
        "command": "python3 bench/http_peers.py " + " ".join(sys.argv[1:]),
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "durationSeconds": round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()),
        "machine": dict(compare.machine(), loadavgBefore=load_before, loadavgAfter=compare.loadavg(),
                        pinned=None if cpus[0] is None else {"emulator": cpus[0], "client": cpus[1]}),
        "versions": versions(binaries),
        "settings": {k: getattr(args, k) for k in ("rounds", "warmup", "messages_1", "messages_4", "rate", "latency_seconds",
                                                   "worker_arg", "java_arg")},
        "note": args.note,
        "runs": runs,
        "summary": summary,
        "ratios": ratios,
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    Path(args.svg).write_text(chart(record))
    print(markdown(summary, ratios, clients))
    compare.log("wrote %s and %s" % (args.out, args.svg))


if __name__ == "__main__":
    main()
