#!/usr/bin/env python3
"""The live view of `make demo` (scripts/demo.sh): what the platform (the emulator) and the
subscription's status say, refreshed every DEMO_REFRESH seconds, plus the device traffic bursts that
give the autoscaler something to do.

Usage: demo_view.py API_ADDR NAMESPACE SUBSCRIPTION CA_PEM [STANDIN_ADDR]
(the emulator's API is HTTPS only; CA_PEM is its <state-dir>/ca.pem; STANDIN_ADDR is the business-server
stand-in's host:port, whose /admin/stats the view shows)
Env: DEMO_SECONDS (stop after N seconds and exit 0 only if the workers acknowledged messages),
DEMO_REFRESH (seconds, default 2), DEMO_BURST (messages per burst), DEMO_BURST_EVERY (seconds),
KUBECONFIG (the local cluster's). Standard library only.
"""

import calendar
import json
import os
import subprocess
import sys
import ssl
import time
import urllib.request

API, NAMESPACE, NAME, CA_PEM = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
STANDIN = sys.argv[5] if len(sys.argv) > 5 else None
TLS = ssl.create_default_context(cafile=CA_PEM)
SECONDS = float(os.environ["DEMO_SECONDS"]) if os.environ.get("DEMO_SECONDS") else None
REFRESH = float(os.environ.get("DEMO_REFRESH", "2"))
BURST = int(os.environ.get("DEMO_BURST", "20000"))
BURST_EVERY = float(os.environ.get("DEMO_BURST_EVERY", "90"))
BURST_RATE = 5000  # device messages/s while a burst lasts
TTY = sys.stdout.isatty() and SECONDS is None
GROUP = "DEFAULT_GROUP"


def http(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"https://{API}{path}", data=data, method=method,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=5, context=TLS) as response:
        return json.load(response)


def traffic(rate, seconds):
    return http("POST", "/admin/traffic", {"consumerGroupId": GROUP, "ratePerSecond": rate, "devices": 50, "seconds": seconds})


def group():
    return http("GET", f"/admin/consumer-groups/{GROUP}?instanceId=")


def standin():
    """The business server's counters, or None (no stand-in, or it does not answer)."""
    if not STANDIN:
        return None
    try:
        with urllib.request.urlopen(f"http://{STANDIN}/admin/stats", timeout=2) as response:
            return json.load(response)
    except OSError:
        return None


def subscription():
    out = subprocess.run(["kubectl", "-n", NAMESPACE, "get", "cgs", NAME, "-o", "json"],
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return json.loads(out.stdout)


def age(rfc3339):
    """Seconds since an RFC 3339 UTC time, for "observed 3 s ago"."""
    try:
        t = calendar.timegm(time.strptime(rfc3339[:19], "%Y-%m-%dT%H:%M:%S"))
        return max(0, int(time.time() - t))
    except (ValueError, TypeError):
        return None


def render(elapsed, g, cgs, rate, note, client_rates, server):
    status = cgs.get("status") or {}
    spec_as = (cgs.get("spec") or {}).get("autoscaling") or {}
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    backlog = status.get("backlog") or {}
    seen = age(backlog.get("observedAt", ""))
    auto = conditions.get("Autoscaling", {})
    lines = []
    if TTY:
        lines.append(f"iotsub demo — live for {int(elapsed)} s · Ctrl-C stops and removes everything the demo started")
        lines.append("")
        lines.append(f"devices      {note}")
        lines.append(f"platform     backlog {g['backlog']:>7,}   in flight {g['inFlight']:>5,}   published {g['published']:>9,}   "
                     f"acknowledged {g['acknowledged']:>9,} ({rate:,.0f}/s)   redelivered {g['redelivered']:,}")
        lines.append(f"operator     backlog {backlog.get('messages', '?'):>7}" + (f" (read {seen} s ago)" if seen is not None else "")
                     + f"   target {spec_as.get('targetBacklogPerReplica', '?')}/replica   replicas desired {status.get('desiredReplicas', 0)}"
                     + f"  ready {status.get('readyReplicas', 0)}  (min {spec_as.get('minReplicas', '?')}, max {spec_as.get('maxReplicas', '?')})")
        lines.append(f"autoscaler   {auto.get('reason', '-')}: {auto.get('message', '')}")
        if server:
            lines.append(f"business     {server['serviceTimeMs']:g} ms per event, {server['inService']:>4} in service now, "
                         f"{server['eventsTaken']:>9,} taken, {server['faulted']:,} refused (the stand-in at {STANDIN})")
        lines.append("")
        lines.append(f"clients of {GROUP} (clientId = pod name), as the platform lists them; each pod's rate is what it moves into the business server:")
        pods = {c["clientId"]: c for c in status.get("clients", [])}
        for c in sorted(g["clients"], key=lambda c: c["clientId"]):
            ours = "pod" if pods.get(c["clientId"], {}).get("pod") else "not a pod of this subscription"
            lines.append(f"  {c['clientId']:<40} {c['remote']:<22} acknowledged {c['acknowledged']:>9,} "
                         f"{client_rates.get(c['clientId'], 0.0):>7,.0f}/s   ({ours})")
        if not g["clients"]:
            lines.append("  (none)")
        lines.append("")
        lines.append("conditions:")
        for t in ("Ready", "CredentialsValid", "BacklogAvailable", "Autoscaling"):
            c = conditions.get(t)
            if c:
                lines.append(f"  {t:<17} {c['status']:<6} {c['reason']:<22} {c['message']}")
        lines.append("")
        lines.append(f"kubectl -n {NAMESPACE} get cgs,pods   (KUBECONFIG={os.environ.get('KUBECONFIG', '')})")
        sys.stdout.write("\033[H\033[J" + "\n".join(lines) + "\n")
    else:
        clients = ",".join(f"{c['clientId']}:{client_rates.get(c['clientId'], 0.0):.0f}/s" for c in sorted(g["clients"], key=lambda c: c["clientId"])) or "none"
        cond = " ".join(f"{t}={conditions[t]['status']}/{conditions[t]['reason']}" for t in ("Ready", "CredentialsValid", "BacklogAvailable", "Autoscaling") if t in conditions)
        lines.append(f"t={elapsed:5.1f}s backlog={g['backlog']} operator-backlog={backlog.get('messages', '?')} "
                     f"desired={status.get('desiredReplicas', 0)} ready={status.get('readyReplicas', 0)} "
                     f"acknowledged={g['acknowledged']} ({rate:.0f}/s) clients={clients} {cond}")
        print("\n".join(lines))
    sys.stdout.flush()


def main():
    start = time.monotonic()
    steady = int(os.environ.get("DEMO_RATE", "200"))
    traffic(steady, 7 * 24 * 3600)
    traffic(BURST_RATE, max(1, BURST // BURST_RATE))
    bursts, last_burst = 1, start
    note = f"{steady}/s steady, plus a burst of {BURST:,} at {BURST_RATE:,}/s every {int(BURST_EVERY)} s (burst 1 just now)"
    if not TTY:
        print(f"demo: device traffic: {steady} messages/s, and a burst of {BURST:,} now", flush=True)
    previous = None
    first_acked = group()["acknowledged"]
    failures = 0
    while True:
        now = time.monotonic()
        if now - last_burst >= BURST_EVERY:
            traffic(BURST_RATE, max(1, BURST // BURST_RATE))
            bursts, last_burst = bursts + 1, now
            note = f"{steady}/s steady, plus a burst of {BURST:,} at {BURST_RATE:,}/s every {int(BURST_EVERY)} s (burst {bursts} just now)"
        elif TTY:
            note = (f"{steady}/s steady, plus a burst of {BURST:,} at {BURST_RATE:,}/s every {int(BURST_EVERY)} s "
                    f"(next in {int(BURST_EVERY - (now - last_burst))} s)")
        try:
            g, cgs = group(), subscription()
            failures = 0
        except Exception as error:  # a slow apiserver or a stopped emulator: say so, keep going a while
            failures += 1
            print(f"demo: could not read the state ({error})", file=sys.stderr, flush=True)
            if failures >= 10:
                print("demo: giving up after 10 failed reads in a row", file=sys.stderr)
                return 1
            time.sleep(REFRESH)
            continue
        span = None if previous is None else max(1e-3, now - previous[0])
        rate = 0.0 if span is None else (g["acknowledged"] - previous[1]) / span
        client_rates = {} if span is None else {
            c["clientId"]: (c["acknowledged"] - previous[2].get(c["clientId"], c["acknowledged"])) / span for c in g["clients"]}
        previous = (now, g["acknowledged"], {c["clientId"]: c["acknowledged"] for c in g["clients"]})
        render(now - start, g, cgs, rate, note, client_rates, standin())
        if SECONDS is not None and now - start >= SECONDS:
            acked = g["acknowledged"] - first_acked
            status = cgs.get("status") or {}
            print(f"demo: {acked:,} messages acknowledged by the workers in {now - start:.0f} s; "
                  f"replicas desired {status.get('desiredReplicas', 0)}, ready {status.get('readyReplicas', 0)}", flush=True)
            if acked <= 0:
                print("demo: FAILED: the workers acknowledged nothing", file=sys.stderr)
                return 1
            return 0
        time.sleep(max(0.0, REFRESH - (time.monotonic() - now)))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
