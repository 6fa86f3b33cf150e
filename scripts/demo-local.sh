#!/usr/bin/env bash
# The system on this machine without Kubernetes: the emulator, device traffic, and a worker with two
# connections consuming it, with a live view until Ctrl-C (or DEMO_SECONDS), then everything stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

# The whole workspace, as `make build` does: building two packages alone would unify features
# differently and recompile shared dependencies.
cargo build -q --workspace --bins
dir=target/demo-local
rm -rf "$dir" && mkdir -p "$dir"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "demo: stopped; logs and the messages the worker took are in $dir/"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

target/debug/iotsub-emulator --amqp-addr 127.0.0.1:0 --api-addr 127.0.0.1:0 --state-dir "$dir" 2>"$dir/emulator.log" &
pids+=($!)
for _ in $(seq 100); do [[ -s $dir/endpoints.json ]] && break; sleep 0.1; done
[[ -s $dir/endpoints.json ]] || { echo "demo: the emulator did not start; see $dir/emulator.log" >&2; exit 1; }
amqp=$(python3 -c "import json;print(json.load(open('$dir/endpoints.json'))['amqp'])")
api=$(python3 -c "import json;print(json.load(open('$dir/endpoints.json'))['api'])")

target/debug/iotsub-worker --host localhost --port "${amqp##*:}" --consumer-group-id DEFAULT_GROUP \
  --access-key-id demo --access-key-secret demo-secret --ca-file "$dir/ca.pem" \
  --client-id demo-worker --connections 2 --http-addr 127.0.0.1:0 --http-addr-file "$dir/worker.addr" \
  >"$dir/messages.jsonl" 2>"$dir/worker.log" &
pids+=($!)

curl -fsS --cacert "$dir/ca.pem" "https://$api/admin/traffic" -H 'content-type: application/json' \
  -d '{"consumerGroupId":"DEFAULT_GROUP","ratePerSecond":200,"devices":20,"seconds":3600}' >/dev/null
echo "demo: emulator on $amqp (API https://$api, CA $dir/ca.pem), worker demo-worker-0/1, 200 device messages/s; Ctrl-C stops"

started=$SECONDS
while true; do
  sleep 2
  python3 - "$api" "$dir/messages.jsonl" "$dir/ca.pem" <<'PY'
import json, ssl, sys, urllib.request
api, messages, ca = sys.argv[1], sys.argv[2], sys.argv[3]
g = json.load(urllib.request.urlopen(f"https://{api}/admin/consumer-groups/DEFAULT_GROUP?instanceId=",
                                     context=ssl.create_default_context(cafile=ca)))
clients = ", ".join(f"{c['clientId']}({c['acknowledged']})" for c in g["clients"]) or "none"
lat = g.get("ackLatency") or {}
with open(messages) as f:
    lines = sum(1 for _ in f)
print(f"backlog {g['backlog']:>5}  published {g['published']:>7}  acknowledged {g['acknowledged']:>7}  "
      f"sink lines {lines:>7}  p99 ack {lat.get('p99Us', 0) / 1000:.1f} ms  clients: {clients}", flush=True)
PY
  if [[ -n ${DEMO_SECONDS:-} ]] && (( SECONDS - started >= DEMO_SECONDS )); then
    acked=$(curl -fsS --cacert "$dir/ca.pem" "https://$api/admin/consumer-groups/DEFAULT_GROUP?instanceId=" |
      python3 -c "import json,sys;print(json.load(sys.stdin)['acknowledged'])")
    (( acked > 0 )) || { echo "demo: nothing was acknowledged" >&2; exit 1; }
    exit 0
  fi
done
