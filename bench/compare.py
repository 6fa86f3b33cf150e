#!/usr/bin/env python3
"""The worker side by side with the platform's official sample consumers, against the emulator.

    python3 bench/compare.py --out docs/samples-comparison.json && python3 bench/chart.py

Clients: the worker (`iotsub-worker --sink log`, stdout to /dev/null), the Java sample
(bench/samples/java, Apache Qpid JMS) and the Python sample (bench/samples/python, Apache Qpid
Proton); each signs its own login per connection and acknowledges every message after reading its
body and properties and writing one line to /dev/null.

Scenarios, each on a fresh emulator (push-rate limits lifted) so every counter and the emulator's
latency window hold that run only; the clients alternate within each scenario and the order
rotates from round to round:

  sat1 / sat4  saturation with 1 / 4 connections: a warm-up batch, then delivery paused, the
               backlog published, delivery resumed; messages/s = the emulator's acknowledgement
               rate between 10 % and 90 % of the backlog; CPU = the client's utime+stime over the
               backlog, per 10 000 messages.
  latency      1 connection, the emulator's traffic generator at 1 000 msg/s; p50/p99 of the
               emulator's push-to-accept latency (`ackLatency`, the last 10 000 acknowledgements).

Peak RSS is the client's VmHWM, the largest over its runs. With --pin (the default when there are
at least 2 CPUs) the emulator runs on CPU 0 and the client on the last CPU, started under taskset
so the JVM and Tokio size themselves for one CPU.
"""

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JAVA_DIR = ROOT / "bench" / "samples" / "java"
PYTHON_CONSUMER = ROOT / "bench" / "samples" / "python" / "consumer.py"
CLIENTS = ["worker", "java", "python"]
SCENARIOS = ["sat1", "sat4", "latency"]
GROUP = "DEFAULT_GROUP"
ACCESS_KEY_ID, ACCESS_KEY_SECRET = "demo", "demo-secret"
TOPIC = "/a1b2c3d4e5f/dev-0001/thing/event/property/post"
# The property-post payload the worker's own benchmark publishes (230 bytes).
PAYLOAD = ('{"iotId":"4z819VQHk6VSLmmBJfrf00107ee200","productKey":"a1b2c3d4e5f","deviceName":"dev-0001",'
           '"gmtCreate":1510799670074,"items":{"Temperature":{"value":23.5,"time":1510799670074},'
           '"Humidity":{"value":41,"time":1510799670074}}}')
EMULATOR_CONFIG = """[limits]
realtime_rate_per_connection = 0
stacked_rate_per_group = 0
ack_timeout_ms = 120000
"""
POLL_S = 0.025


def log(*parts):
    print("[%s]" % time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def loadavg():
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_seconds(pid):
    """utime + stime of every thread of `pid`, in seconds."""
    stat = Path("/proc/%d/stat" % pid).read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid):
    """(VmRSS, VmHWM) in MiB."""
    values = {}
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024.0
    return values["VmRSS"], values["VmHWM"]


# host:port of an emulator's API -> an SSL context trusting its CA.
EMULATOR_TLS = {}


def http(url, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout, context=EMULATOR_TLS.get(url.split("/")[2])) as response:
        return json.loads(response.read() or b"null")


def clean_env():
    """The shell's IOTSUB_* must not configure the clients behind the benchmark's back."""
    return {k: v for k, v in os.environ.items() if not k.startswith("IOTSUB_")}


def stop_process(proc, grace=15):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Emulator:
    def __init__(self, binary, workdir, cpu):
        self.dir = Path(tempfile.mkdtemp(prefix="emulator-", dir=workdir))
        (self.dir / "emulator.toml").write_text(EMULATOR_CONFIG)
        state = self.dir / "state"
        argv = [str(binary), "--config", str(self.dir / "emulator.toml"), "--amqp-addr", "127.0.0.1:0",
                "--api-addr", "127.0.0.1:0", "--state-dir", str(state)]
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        self.log = open(self.dir / "emulator.log", "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=clean_env())
        deadline = time.monotonic() + 30
        endpoints = state / "endpoints.json"
        while not endpoints.exists() or not endpoints.read_text().strip().endswith("}"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start; see %s" % (self.dir / "emulator.log"))
            time.sleep(0.05)
        ends = json.loads(endpoints.read_text())
        self.amqp_port = int(ends["amqp"].rsplit(":", 1)[1])
        self.api = "https://" + ends["api"]
        self.ca = state / "ca.pem"
        # The emulator's API is HTTPS only, under its own CA.
        EMULATOR_TLS[ends["api"]] = ssl.create_default_context(cafile=str(self.ca))

    def group(self):
        return http("%s/admin/consumer-groups/%s?instanceId=" % (self.api, GROUP))

    def publish(self, count, chunk=100_000):
        while count > 0:
            n = min(chunk, count)
            http(self.api + "/admin/messages",
                 {"instanceId": "", "consumerGroupId": GROUP, "topic": TOPIC, "payload": PAYLOAD, "count": n}, timeout=120)
            count -= n

    def fault(self, action):
        return http(self.api + "/admin/faults", {"action": action, "consumerGroupId": GROUP})

    def traffic(self, rate, seconds):
        return http(self.api + "/admin/traffic",
                    {"instanceId": "", "consumerGroupId": GROUP, "ratePerSecond": rate, "devices": 20, "seconds": seconds})

    def stop(self):
        stop_process(self.proc, grace=5)
        self.log.close()


def java_trust_store(emulator, workdir):
    """A PKCS12 trust store (password `changeit`) holding the emulator's CA, for Qpid JMS."""
    trust = Path(workdir) / ("trust-%d.p12" % os.getpid())
    if trust.exists():
        trust.unlink()
    subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "emulator-ca", "-file", str(emulator.ca),
                    "-keystore", str(trust), "-storetype", "PKCS12", "-storepass", "changeit"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return trust


class Client:
    """One consumer process of `kind` with `connections` connections to `emulator`."""

    def __init__(self, kind, emulator, connections, workdir, cpu, binaries):
        self.kind = kind
        self.errlog_path = Path(workdir) / ("%s-%d.log" % (kind, connections))
        common = ["--host", "localhost", "--port", str(emulator.amqp_port), "--consumer-group-id", GROUP,
                  "--access-key-id", ACCESS_KEY_ID, "--access-key-secret", ACCESS_KEY_SECRET,
                  "--client-id", "bench-" + kind, "--connections", str(connections)]
        if kind == "worker":
            sink = binaries.get("worker_sink", ["--sink", "log"])
            argv = [str(binaries["worker"])] + common + ["--ca-file", str(emulator.ca), "--http-addr", "127.0.0.1:0"] + sink + binaries["worker_args"]
        elif kind in binaries.get("peers", {}):
            # Another benchmark's client: it builds its own argv from the common flags.
            argv = binaries["peers"][kind](common, emulator, workdir)
        elif kind == "java":
            trust = java_trust_store(emulator, workdir)
            classpath = "%s:%s/*" % (JAVA_DIR / "target" / "classes", JAVA_DIR / "target" / "lib")
            argv = ["java"] + binaries["java_args"] + ["-cp", classpath, "dev.iotsub.bench.SampleConsumer"] + common + [
                "--trust-store", str(trust), "--trust-store-password", "changeit", "--out", "/dev/null"]
        elif kind == "python":
            argv = [sys.executable, str(PYTHON_CONSUMER)] + common + ["--ca-file", str(emulator.ca)]
        else:
            raise ValueError(kind)
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        self.errlog = open(self.errlog_path, "ab")
        # taskset execs the client, so the pid is the client's own.
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.errlog, env=clean_env())
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        stop_process(self.proc)
        self.errlog.close()


def pinned_cpus(no_pin=False):
    """(emulator CPU, client CPU): the first and the last CPU we may run on, or (None, None)."""
    allowed = os.sched_getaffinity(0)
    return (None, None) if no_pin or len(allowed) < 2 else (min(allowed), max(allowed))


def wait_for(what, predicate, timeout, client=None, hint=""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if client is not None and not client.alive():
            raise RuntimeError("%s exited while waiting for %s; see %s" % (client.kind, what, client.errlog_path))
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %ss waiting for %s%s" % (timeout, what, hint))
        time.sleep(POLL_S)


def hint(kind):
    if kind not in ("java", "java-http", "camel"):
        return ""
    # Qpid JMS begins a connection-level session before the JMS session that carries the consumer.
    return ("; Qpid JMS attaches its receiver on its second session (it begins a connection session first): "
            "the emulator must accept a receiver link on any session of the connection")


def attached(emulator, n):
    return lambda: sum(1 for c in emulator.group()["clients"] if c.get("attached")) == n


def acked_at_least(emulator, n):
    def check():
        g = emulator.group()
        return g if g["acknowledged"] >= n else None
    return check


@contextlib.contextmanager
def attached_client(kind, connections, args, binaries, cpus):
    """An emulator and a client of `kind` with its connections attached; both stopped at the end."""
    emulator = Emulator(binaries["emulator"], args.workdir, cpus[0])
    client = None
    try:
        client = Client(kind, emulator, connections, args.workdir, cpus[1], binaries)
        wait_for("%d attached connection(s)" % connections if connections > 1 else "an attached connection",
                 attached(emulator, connections), 60, client, hint(kind))
        yield emulator, client
    finally:
        if client is not None:
            client.stop()
        emulator.stop()


def memory_and_redelivered(client, group):
    rss, hwm = memory_mib(client.pid)
    return {"rssMiB": rss, "peakRssMiB": hwm, "redelivered": group["redelivered"]}


def run_saturation(kind, connections, args, binaries, cpus):
    with attached_client(kind, connections, args, binaries, cpus) as (emulator, client):
        emulator.publish(args.warmup)
        wait_for("the warm-up", acked_at_least(emulator, args.warmup), 300, client)
        emulator.fault("pause-delivery")
        n = args.messages_1 if connections == 1 else args.messages_4
        emulator.publish(n)
        base = args.warmup
        cpu_before, emu_cpu_before = cpu_seconds(client.pid), cpu_seconds(emulator.proc.pid)
        started = time.monotonic()
        emulator.fault("resume")
        t10 = t90 = None
        deadline = started + args.timeout
        while True:
            g = emulator.group()
            done, now = g["acknowledged"] - base, time.monotonic()
            if t10 is None and done >= n // 10:
                t10 = (now, done)
            if t90 is None and done >= n * 9 // 10:
                t90 = (now, done)
            if done >= n:
                break
            if now > deadline or not client.alive():
                raise RuntimeError("%s: only %d of %d acknowledged (%s)" % (kind, done, n, client.errlog_path))
            time.sleep(POLL_S)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(client.pid) - cpu_before
        emu_cpu = cpu_seconds(emulator.proc.pid) - emu_cpu_before
        (a, na), (b, nb) = t10, t90
        return {
            "messages": n,
            "msgsPerS": (nb - na) / max(b - a, 1e-9),
            "msgsPerSWhole": n / elapsed,
            "cpuSPer10k": cpu * 10_000 / n,
            "emulatorCpuSPer10k": emu_cpu * 10_000 / n,
            **memory_and_redelivered(client, g),
        }


def run_latency(kind, args, binaries, cpus):
    with attached_client(kind, 1, args, binaries, cpus) as (emulator, client):
        total = args.rate * args.latency_seconds
        cpu_before = cpu_seconds(client.pid)
        emulator.traffic(args.rate, args.latency_seconds)
        g = wait_for("the traffic to be acknowledged", acked_at_least(emulator, total), args.latency_seconds + 120, client)
        cpu = cpu_seconds(client.pid) - cpu_before
        lat = g["ackLatency"]
        return {
            "messages": total,
            "rate": args.rate,
            "latencySamples": lat["samples"],
            "p50Ms": lat["p50Us"] / 1000.0,
            "p90Ms": lat["p90Us"] / 1000.0,
            "p99Ms": lat["p99Us"] / 1000.0,
            "maxMs": lat["maxUs"] / 1000.0,
            "cpuSPer10kAtRate": cpu * 10_000 / total,
            **memory_and_redelivered(client, g),
        }


def summarize(runs, clients):
    def median(kind, scenario, key):
        values = [r[key] for r in runs if r["client"] == kind and r["scenario"] == scenario and key in r]
        return statistics.median(values) if values else None

    summary = {}
    for kind in clients:
        mine = [r for r in runs if r["client"] == kind]
        cpu1, cpu4 = median(kind, "sat1", "cpuSPer10k"), median(kind, "sat4", "cpuSPer10k")
        summary[kind] = {
            "msgsPerS1": median(kind, "sat1", "msgsPerS"),
            "msgsPerS4": median(kind, "sat4", "msgsPerS"),
            "cpuSPer10k1": median(kind, "sat1", "cpuSPer10k"),
            "cpuSPer10k4": median(kind, "sat4", "cpuSPer10k"),
            "cpuSPer10kAt1000": median(kind, "latency", "cpuSPer10kAtRate"),
            "p50Ms": median(kind, "latency", "p50Ms"),
            "p99Ms": median(kind, "latency", "p99Ms"),
            "peakRssMiB": max((r["peakRssMiB"] for r in mine), default=None),
            # What one fully used CPU would sustain: independent of how much of its core the client got.
            "msgsPerCpuS1": 10_000 / cpu1 if cpu1 else None,
            "msgsPerCpuS4": 10_000 / cpu4 if cpu4 else None,
        }
    # worker / sample for every figure; "leads" says whether that ratio favours the worker
    # (higher is better for messages/s, lower for CPU, latency and memory).
    higher_is_better = {"msgsPerS1", "msgsPerS4", "msgsPerCpuS1", "msgsPerCpuS4"}
    ratios = {}
    if "worker" in summary:
        for kind in clients:
            if kind == "worker":
                continue
            ratios[kind] = {}
            for key, value in summary["worker"].items():
                other = summary[kind].get(key)
                if value is None or not other:
                    continue
                ratio = value / other
                ratios[kind][key] = {"ratio": ratio, "workerLeads": ratio > 1 if key in higher_is_better else ratio < 1}
    return summary, ratios


LABELS = [
    ("msgsPerS1", "messages/s at saturation, 1 connection", "%.0f"),
    ("msgsPerS4", "messages/s at saturation, 4 connections", "%.0f"),
    ("cpuSPer10k1", "CPU s per 10 000 messages (saturation, 1 connection)", "%.3f"),
    ("cpuSPer10k4", "CPU s per 10 000 messages (saturation, 4 connections)", "%.3f"),
    ("cpuSPer10kAt1000", "CPU s per 10 000 messages at 1 000 msg/s", "%.3f"),
    ("p50Ms", "p50 latency at 1 000 msg/s, ms (push to accept)", "%.2f"),
    ("p99Ms", "p99 latency at 1 000 msg/s, ms (push to accept)", "%.2f"),
    ("peakRssMiB", "peak RSS, MiB", "%.1f"),
    ("msgsPerCpuS1", "messages per CPU second (derived, 1 connection)", "%.0f"),
    ("msgsPerCpuS4", "messages per CPU second (derived, 4 connections)", "%.0f"),
]


def markdown(summary, ratios, clients):
    others = [k for k in clients if k != "worker"]
    head = "| figure | " + " | ".join(clients) + "".join(" | worker/%s" % k for k in others) + " |"
    lines = [head, "|" + "---|" * (1 + len(clients) + len(others))]
    for key, label, fmt in LABELS:
        cells = [(fmt % summary[k][key]) if summary[k].get(key) is not None else "–" for k in clients]
        for k in others:
            r = ratios.get(k, {}).get(key)
            verdict = "" if not r or r["workerLeads"] else (" (a tie)" if abs(r["ratio"] - 1) < 0.05 else " (sample leads)")
            cells.append("%.2f×%s" % (r["ratio"], verdict) if r else "–")
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    return "\n".join(lines)


def java_build():
    jar = JAVA_DIR / "target" / "sample-consumer-jms-0.1.0.jar"
    sources = list((JAVA_DIR / "src").rglob("*.java")) + [JAVA_DIR / "pom.xml"]
    if jar.exists() and (JAVA_DIR / "target" / "lib").is_dir() and all(s.stat().st_mtime <= jar.stat().st_mtime for s in sources):
        return
    log("building the Java sample: mvn -q -B package")
    subprocess.run(["mvn", "-q", "-B", "package"], cwd=JAVA_DIR, check=True)


def versions(binaries):
    def out(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except Exception as e:  # recorded, not fatal
            return "unknown (%s)" % e
    import proton
    commit = out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "worker", "emulator", "aliyun"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "commit": commit + (" (worker/emulator/aliyun with uncommitted changes)" if dirty else ""),
        "worker": out([str(binaries["worker"]), "--version"]),
        "java": out(["java", "-version"]),
        "qpidJms": "qpid-jms-client " + next((p.name[len("qpid-jms-client-"):-4] for p in (JAVA_DIR / "target" / "lib").glob("qpid-jms-client-*.jar")), "?"),
        "python": sys.version.split()[0],
        "proton": "python-qpid-proton " + ".".join(map(str, proton.VERSION)),
    }


def machine():
    model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")), 0)
    return {"cpus": os.cpu_count(), "model": model, "memGiB": round(mem / 1024 / 1024, 1)}


def main():
    p = argparse.ArgumentParser(description="The worker side by side with the platform's official sample consumers.")
    p.add_argument("--out", default=str(ROOT / "docs" / "samples-comparison.json"), help="the recorded JSON")
    p.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated: worker,java,python")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: sat1,sat4,latency")
    p.add_argument("--rounds", type=int, default=3, help="rounds; figures are medians over them (default 3)")
    p.add_argument("--warmup", type=int, default=10_000, help="messages acknowledged before each saturation run")
    p.add_argument("--messages-1", type=int, default=60_000, help="backlog of the 1-connection saturation run")
    p.add_argument("--messages-4", type=int, default=120_000, help="backlog of the 4-connection saturation run")
    p.add_argument("--rate", type=int, default=1000, help="msg/s of the latency run")
    p.add_argument("--latency-seconds", type=int, default=20, help="length of the latency run (the window is the last 10 000)")
    p.add_argument("--timeout", type=int, default=300, help="seconds a saturation run may take")
    p.add_argument("--emulator", default=str(ROOT / "target" / "release" / "iotsub-emulator"))
    p.add_argument("--worker", default=str(ROOT / "target" / "release" / "iotsub-worker"))
    p.add_argument("--worker-arg", action="append", default=[], help="extra worker flag, e.g. --worker-arg=--credit=500")
    p.add_argument("--java-arg", action="append", default=[], help="extra JVM flag, e.g. --java-arg=-Xmx64m")
    p.add_argument("--build", action="store_true", help="cargo build --release the emulator and the worker first")
    p.add_argument("--no-pin", action="store_true", help="don't pin the emulator and the client to separate CPUs")
    p.add_argument("--note", default="", help="free text recorded with the figures (e.g. which emulator build)")
    p.add_argument("--workdir", default=None, help="logs and emulator state (default: a temporary directory)")
    p.add_argument("--summarize", metavar="JSON", help="print the table of an earlier record and update its summary; run nothing")
    args = p.parse_args()

    if args.summarize:
        record = json.loads(Path(args.summarize).read_text())
        clients = [c for c in CLIENTS if any(r["client"] == c for r in record["runs"])]
        record["summary"], record["ratios"] = summarize(record["runs"], clients)
        Path(args.summarize).write_text(json.dumps(record, indent=2) + "\n")
        print(markdown(record["summary"], record["ratios"], clients))
        return

    clients = [c for c in args.clients.split(",") if c]
    scenarios = [s for s in args.scenarios.split(",") if s]
    assert set(clients) <= set(CLIENTS) and set(scenarios) <= set(SCENARIOS), "unknown client or scenario"
    if args.build:
        subprocess.run(["cargo", "build", "--release", "-p", "iotsub-emulator", "-p", "iotsub-worker"], cwd=ROOT, check=True)
    if "java" in clients:
        java_build()
    for path in (args.emulator, args.worker):
        if not Path(path).is_file():
            sys.exit("%s is missing: cargo build --release -p iotsub-emulator -p iotsub-worker (or --build)" % path)
    cleanup = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="iotsub-compare-")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    cpus = pinned_cpus(args.no_pin)
    binaries = {"emulator": args.emulator, "worker": args.worker, "worker_args": args.worker_arg, "java_args": args.java_arg}

    emulator_shown = str(Path(args.emulator).resolve())
    if emulator_shown.startswith(str(ROOT) + "/"):
        emulator_shown = emulator_shown[len(str(ROOT)) + 1:]
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = loadavg()
    log("load average before: %s; clients %s; scenarios %s; %d round(s); logs in %s" % (load_before, clients, scenarios, args.rounds, args.workdir))
    runs = []
    turn = 0
    for rnd in range(args.rounds):
        for scenario in scenarios:
            order = clients[turn % len(clients):] + clients[:turn % len(clients)]
            turn += 1
            for kind in order:
                la = loadavg()
                t0 = time.monotonic()
                if scenario == "latency":
                    result = run_latency(kind, args, binaries, cpus)
                else:
                    result = run_saturation(kind, 1 if scenario == "sat1" else 4, args, binaries, cpus)
                result.update({"client": kind, "scenario": scenario, "round": rnd + 1, "loadavg1Before": la[0],
                               "seconds": round(time.monotonic() - t0, 1)})
                runs.append(result)
                shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items() if k not in ("client", "scenario", "round")}
                log("round %d %-7s %-6s %s" % (rnd + 1, scenario, kind, shown))
    load_after = loadavg()
    summary, ratios = summarize(runs, clients)
    record = {
        "title": "Worker vs the official samples",
        "command": "python3 bench/compare.py " + " ".join(sys.argv[1:]),
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "durationSeconds": round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()),
        "machine": dict(machine(), loadavgBefore=load_before, loadavgAfter=load_after,
                        pinned=None if cpus[0] is None else {"emulator": cpus[0], "client": cpus[1]}),
        "versions": versions(binaries),
        "settings": {"rounds": args.rounds, "warmup": args.warmup, "messages1": args.messages_1, "messages4": args.messages_4,
                     "rate": args.rate, "latencySeconds": args.latency_seconds, "payloadBytes": len(PAYLOAD),
                     "emulatorConfig": EMULATOR_CONFIG, "workerArgs": args.worker_arg, "javaArgs": args.java_arg,
                     "emulator": emulator_shown},
        "note": args.note,
        "runs": runs,
        "summary": summary,
        "ratios": ratios,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(summary, ratios, clients))
    log("load average after: %s; wrote %s" % (load_after, args.out))
    if cleanup:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
