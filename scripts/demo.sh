#!/usr/bin/env bash
# `make demo`: the whole system on this machine, installed the way a user installs it.
#
#   1. builds what it needs (the workspace, kubectl and helm, the local control plane) and starts
#      the local Kubernetes control plane (tests/cluster) unless it is already up;
#   2. starts the platform emulator (its own state dir, target/demo/emulator);
#   3. installs the chart charts/iotsub with helm into iotsub-system (release iotsub, watching only
#      iotsub-demo), makes the emulator's CA a Secret, starts the business-server stand-in as a pod
#      and applies examples/quickstart.yaml with its HTTP sink pointed at the stand-in;
#   4. once the workers are logged in, starts device traffic (a steady rate plus bursts that build
#      a backlog) and shows a live view until Ctrl-C;
#   5. removes everything it started: the namespaces, the release, the emulator, and the cluster
#      if it started it.
#
# DEMO_SECONDS=N: non-interactive, N seconds of live view, then exit non-zero unless the workers
# acknowledged messages (`make demo-smoke`). DEMO_REFRESH, DEMO_RATE, DEMO_BURST, DEMO_BURST_EVERY
# tune the view and the traffic (scripts/demo_view.py); DEMO_SERVICE_TIME_MS (50) the business
# server's time per event and DEMO_CREDIT (20) the workers' credit.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/cluster/env.sh # repo, LK_* paths, PATH with target/tools/bin first, lk_alive
export KUBECONFIG=$LK_KUBECONFIG

DEMO_NS=iotsub-demo
SYSTEM_NS=iotsub-system
RELEASE=iotsub
SUBSCRIPTION=telemetry
CRD=consumergroupsubscriptions.iotsub.dev
OWNER_LABEL=iotsub.dev/demo # on the namespaces the demo made, so a leftover is recognised as ours
dir=$repo/target/demo
mkdir -p "$dir"

t0=$(date +%s%N)
elapsed() { local d=$(( ($(date +%s%N) - t0) / 100000000 )); echo "$(( d / 10 )).$(( d % 10 ))"; }
say() { echo "demo [$(elapsed) s]: $*"; }
fail() {
  echo "demo [$(elapsed) s]: FAILED: $*" >&2
  exit 1
}

# One demo at a time: the namespaces, the release and the default ports are shared.
exec 9>"$dir/lock"
flock -n 9 || fail "another demo is running (it holds $dir/lock)"

# --- cleanup: only what this run started --------------------------------------------------------
emulator_pid=""
started_cluster=0
created_crd=0
cleaned=0
cleanup() {
  local status=$?
  (( cleaned )) && return "$status"
  cleaned=1
  trap '' INT TERM # a second Ctrl-C must not leave half the demo behind
  echo "demo: cleaning up: namespaces $DEMO_NS and $SYSTEM_NS, release $RELEASE, the emulator$( (( started_cluster )) && echo ", the control plane")"
  if kubectl get --request-timeout=5s namespace "$DEMO_NS" -o name >/dev/null 2>&1; then
    kubectl delete namespace "$DEMO_NS" --wait=false >/dev/null 2>&1 || true
  fi
  if helm status "$RELEASE" -n "$SYSTEM_NS" >/dev/null 2>&1; then
    helm uninstall "$RELEASE" -n "$SYSTEM_NS" --wait --timeout 60s >/dev/null 2>&1 ||
      echo "demo: helm uninstall $RELEASE failed; see: helm status $RELEASE -n $SYSTEM_NS" >&2
  fi
  if kubectl get --request-timeout=5s namespace "$SYSTEM_NS" -o name >/dev/null 2>&1; then
    kubectl delete namespace "$SYSTEM_NS" --wait=false >/dev/null 2>&1 || true
  fi
  for ns in "$DEMO_NS" "$SYSTEM_NS"; do
    kubectl wait --for=delete "namespace/$ns" --timeout=120s >/dev/null 2>&1 ||
      echo "demo: namespace $ns is still terminating after 120 s: kubectl get all -n $ns" >&2
  done
  if (( created_crd )) && [[ -z $(kubectl get cgs -A -o name 2>/dev/null) ]]; then
    kubectl delete crd "$CRD" --wait=true >/dev/null 2>&1 || true
  fi
  if [[ -n $emulator_pid ]]; then
    kill -TERM "$emulator_pid" 2>/dev/null || true
    wait "$emulator_pid" 2>/dev/null || true
  fi
  if (( started_cluster )); then
    echo "demo: stopping the local control plane it started"
    tests/cluster/down.sh >/dev/null 2>&1 || true
  fi
  echo "demo: done; logs: target/demo/emulator.log, target/demo/operator.log, the workers' in ${LK_LOGS#"$repo"/}/$( [[ $LK_NODE_AGENT == kubelet ]] && echo "pods/")${DEMO_NS}_*"
  return "$status"
}
trap cleanup EXIT
viewing=0
trap 'exit $(( viewing ? 0 : 130 ))' INT # Ctrl-C is how the live view ends: not an error then
trap 'exit 143' TERM

# --- 1. build, tools, cluster --------------------------------------------------------------------
cluster_up() {
  local c
  for c in "${LK_COMPONENTS[@]}"; do lk_alive "$c" || return 1; done
}
if cluster_up; then
  say "the local control plane is already up; it stays up afterwards"
else
  started_cluster=1
fi
if [[ -x target/debug/iotsub-operator && -x target/debug/iotsub-worker && -x target/debug/iotsub-emulator ]]; then
  say "building (cargo build --workspace --bins, kubectl and helm: seconds when nothing changed)"
else
  say "building the workspace for the first time (cargo build --workspace --bins: a few minutes; log: target/demo/build.log)"
fi
make -s --no-print-directory build >"$dir/build.log" 2>&1 || { tail -n 30 "$dir/build.log" >&2; fail "cargo build failed (full log: target/demo/build.log)"; }
make -s --no-print-directory kube-tools >>"$dir/build.log" 2>&1 || { tail -n 30 "$dir/build.log" >&2; fail "installing kubectl/helm failed (target/demo/build.log)"; }
t_built=$(elapsed)
if [[ ! -x $LK_BIN/localkube || ! -x $LK_BIN/lk-etcd ]]; then
  say "building the local control plane from the Kubernetes Go modules for the first time: about 10 minutes on 2 cores (log: target/demo/cluster.log)"
fi
if (( started_cluster )); then
  say "starting the local control plane (tests/cluster/up.sh)"
fi
tests/cluster/up.sh >"$dir/cluster.log" 2>&1 || { tail -n 30 "$dir/cluster.log" >&2; fail "the local control plane did not start (target/demo/cluster.log, target/localkube/logs/)"; }
t_cluster=$(elapsed)

# --- leftovers of a demo that was killed ----------------------------------------------------------
for ns in "$DEMO_NS" "$SYSTEM_NS"; do
  if kubectl get namespace "$ns" -o name >/dev/null 2>&1; then
    if [[ $(kubectl get namespace "$ns" -o jsonpath="{.metadata.labels.iotsub\.dev/demo}") != true ]]; then
      fail "namespace $ns exists and was not made by the demo; the demo will not touch it (delete it, or run the demo elsewhere)"
    fi
    say "removing namespace $ns left by an earlier demo"
    [[ $ns == "$SYSTEM_NS" ]] && helm uninstall "$RELEASE" -n "$SYSTEM_NS" --wait --timeout 60s >/dev/null 2>&1 || true
    kubectl delete namespace "$ns" --wait=true --timeout=120s >/dev/null || fail "namespace $ns left by an earlier demo did not go away"
  fi
done
if [[ -f $dir/emulator.pid ]]; then
  old=$(<"$dir/emulator.pid")
  if [[ -d /proc/$old ]] && grep -qa -- "--state-dir" "/proc/$old/cmdline" && grep -qa -- "$dir/emulator" "/proc/$old/cmdline"; then
    say "stopping the emulator left by an earlier demo (pid $old)"
    kill -TERM "$old" 2>/dev/null || true
  fi
fi

# --- 2. the emulator -------------------------------------------------------------------------------
# Where the pods reach this machine: the API server's address (127.0.0.1 for lk-agent's pods, the
# host end of the node's veth for the kubelet's; tests/cluster/env.sh). The emulator listens there.
host=$LK_API_IP
free_port() { # free_port PORT: PORT when nothing listens on $host:PORT, else 0 (the OS picks one)
  python3 - "$1" "$host" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((sys.argv[2], int(sys.argv[1])))
    print(sys.argv[1])
except OSError:
    print(0)
PY
}
start_emulator() { # start_emulator AMQP_PORT API_PORT: 0 when it listens, 1 when it exited
  rm -rf "$dir/emulator" && mkdir -p "$dir/emulator"
  # Its own session: a Ctrl-C in the terminal reaches the view, and the emulator stays up until
  # the cleanup, which needs it no more but stops it last.
  local san=()
  [[ $host == 127.0.0.1 ]] || san=(--tls-san "$host")
  setsid target/debug/iotsub-emulator --amqp-addr "$host:$1" --api-addr "$host:$2" "${san[@]}" \
    --state-dir "$dir/emulator" 2>"$dir/emulator.log" &
  emulator_pid=$!
  echo "$emulator_pid" >"$dir/emulator.pid"
  local deadline=$(( SECONDS + 20 ))
  until [[ -s $dir/emulator/endpoints.json ]]; do
    if [[ ! -d /proc/$emulator_pid ]]; then
      wait "$emulator_pid" 2>/dev/null || true
      emulator_pid=""
      return 1
    fi
    (( SECONDS < deadline )) || fail "the emulator did not listen within 20 s; $(tail -n 5 "$dir/emulator.log")"
    sleep 0.1
  done
}
amqp_port=$(free_port 5671)
api_port=$(free_port 8080)
if ! start_emulator "$amqp_port" "$api_port"; then
  # Someone took a port between the check and the bind: let the OS pick both.
  start_emulator 0 0 || fail "the emulator exited: $(tail -n 5 "$dir/emulator.log")"
fi
amqp=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['amqp'])" "$dir/emulator/endpoints.json")
api=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['api'])" "$dir/emulator/endpoints.json")
[[ ${amqp##*:} == 5671 ]] || say "port 5671 is busy: the emulator's AMQP is on ${amqp##*:}"
[[ ${api##*:} == 8080 ]] || say "port 8080 is busy: the emulator's API is on ${api##*:}"
say "emulator: AMQP amqps://$amqp, OpenAPI and admin API https://$api, CA target/demo/emulator/ca.pem"
t_emulator=$(elapsed)

# --- 3. the chart, the Secrets, the quickstart ---------------------------------------------------
for ns in "$DEMO_NS" "$SYSTEM_NS"; do
  kubectl create namespace "$ns" >/dev/null
  kubectl label namespace "$ns" "$OWNER_LABEL=true" >/dev/null
done
crd_flags=()
if kubectl get crd "$CRD" -o name >/dev/null 2>&1; then
  # Helm applies a chart's CRD server-side and fails on another manager's fields: bring the
  # cluster's CRD to this checkout's version ourselves, as charts/iotsub/README.md says.
  kubectl apply --server-side --force-conflicts --field-manager=iotsub-demo -f charts/iotsub/crds/ >/dev/null ||
    fail "applying charts/iotsub/crds/ to the cluster"
  crd_flags=(--skip-crds)
else
  created_crd=1
fi
# The images up.sh imported into the node from target/debug (lk-agent runs the binaries by name).
images=(--set image.registry=localhost --set image.tag=localkube)
say "helm install $RELEASE charts/iotsub -n $SYSTEM_NS --set watchNamespace=$DEMO_NS ${images[*]}${crd_flags:+ ${crd_flags[*]}}"
if ! helm install "$RELEASE" charts/iotsub -n "$SYSTEM_NS" "${crd_flags[@]}" "${images[@]}" \
  --set watchNamespace="$DEMO_NS" --set logLevel=info --wait --timeout 120s >"$dir/helm.log" 2>&1; then
  cat "$dir/helm.log" >&2
  kubectl -n "$SYSTEM_NS" get pods -o wide >&2 || true
  kubectl -n "$SYSTEM_NS" logs "deployment/$RELEASE" --tail 20 >&2 || true
  fail "helm install did not get the operator ready within 120 s"
fi
t_helm=$(elapsed)

kubectl -n "$DEMO_NS" create secret generic emulator-ca --from-file=ca.pem="$dir/emulator/ca.pem" >/dev/null
# The operator uses only Secrets labelled for it (README: Security model).
kubectl -n "$DEMO_NS" label secret emulator-ca iotsub.dev/credentials=true >/dev/null
# The business server: the stand-in as a pod, answering each event after a service time. One worker
# moves at most credit / service time messages a second into it (Little's law: 20 / 50 ms = 400/s),
# enough for the steady 200/s but not for a burst: more replicas drain a burst faster.
service_time=${DEMO_SERVICE_TIME_MS:-50}
credit=${DEMO_CREDIT:-20}
kubectl -n "$DEMO_NS" apply -f - >/dev/null <<YAML || fail "creating the business-server stand-in pod was refused"
apiVersion: v1
kind: Pod
metadata: {name: business-server, labels: {app: business-server}}
spec:
  containers:
    - name: standin
      image: localhost/iotsub-standin:localkube
      env: [{name: IOTSUB_STANDIN_SERVICE_TIME_MS, value: "$service_time"}]
      ports: [{containerPort: 8080}]
      readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
      securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true}
YAML
kubectl -n "$DEMO_NS" wait --for=condition=Ready pod/business-server --timeout=60s >/dev/null ||
  fail "the business-server stand-in pod was not Ready within 60 s: $(kubectl -n "$DEMO_NS" describe pod business-server | tail -n 5)"
standin=$(kubectl -n "$DEMO_NS" get pod business-server -o jsonpath='{.status.podIP}'):8080
say "business server: the stand-in pod at http://$standin, ${service_time} ms per event; the workers' credit is $credit"
# The quickstart names the emulator's default address and ports and the log sink; substitute the
# emulator's address and ports, and the stand-in behind the HTTP sink.
manifest=$(sed -e "s|^\(    host:\) 127.0.0.1$|\1 $host|" -e "s|^\(    port:\) 5671$|\1 ${amqp##*:}|" \
  -e "s|https://127.0.0.1:8080|https://$api|" -e "s|^\(    credit:\) 100 |\1 $credit |" \
  -e "s|^    type: log .*|    type: http\n    http: {url: \"http://$standin/events\", timeoutSeconds: 5}|" examples/quickstart.yaml)
grep -q "host: $host$" <<<"$manifest" && grep -q "port: ${amqp##*:}$" <<<"$manifest" && grep -q "apiEndpoint: https://$api$" <<<"$manifest" &&
  grep -q "credit: $credit " <<<"$manifest" && grep -q "url: \"http://$standin/events\"" <<<"$manifest" ||
  fail "examples/quickstart.yaml no longer has 'host: 127.0.0.1', 'port: 5671', 'apiEndpoint: https://127.0.0.1:8080', 'credit: 100' and 'type: log' where the demo substitutes them"
kubectl -n "$DEMO_NS" apply -f - <<<"$manifest" >/dev/null || fail "kubectl apply of examples/quickstart.yaml was refused"
say "applied examples/quickstart.yaml to $DEMO_NS; waiting for the workers to log in"

# --- 4. live: Ready, and the platform lists the pods as clients -----------------------------------
show_failure() {
  echo "--- the subscription's status:" >&2
  kubectl -n "$DEMO_NS" get cgs "$SUBSCRIPTION" >&2 || true
  kubectl -n "$DEMO_NS" get cgs "$SUBSCRIPTION" \
    -o jsonpath='{range .status.conditions[*]}  {.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2 || true
  echo "--- pods:" >&2
  kubectl get pods -n "$SYSTEM_NS" -o wide >&2 || true
  kubectl get pods -n "$DEMO_NS" -o wide >&2 || true
  echo "--- the operator's log (last 30 lines):" >&2
  kubectl -n "$SYSTEM_NS" logs "deployment/$RELEASE" --tail 30 >&2 || true
  echo "--- logins the emulator refused:" >&2
  curl -fsS --cacert "$dir/emulator/ca.pem" "https://$api/admin/refusals" >&2 || true
  echo >&2
}
live() {
  python3 - "$api" "$DEMO_NS" "$SUBSCRIPTION" "$dir/emulator/ca.pem" <<'PY'
import json, ssl, subprocess, sys, urllib.request
api, ns, name, ca = sys.argv[1:5]
cgs = json.loads(subprocess.run(["kubectl", "-n", ns, "get", "cgs", name, "-o", "json"], capture_output=True, text=True, check=True).stdout)
status = cgs.get("status") or {}
ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
pods = {c["clientId"] for c in status.get("clients", []) if c.get("pod") and c.get("connected")}
group = json.load(urllib.request.urlopen(f"https://{api}/admin/consumer-groups/DEFAULT_GROUP?instanceId=", timeout=5,
                                         context=ssl.create_default_context(cafile=ca)))
attached = {c["clientId"] for c in group["clients"] if c.get("attached")}
sys.exit(0 if ready and pods and pods <= attached else 1)
PY
}
ready_timeout=${DEMO_READY_TIMEOUT:-120}
deadline=$(( SECONDS + ready_timeout ))
until live 2>/dev/null; do
  if (( SECONDS >= deadline )); then
    show_failure
    fail "the subscription $DEMO_NS/$SUBSCRIPTION was not Ready with its workers logged in within ${ready_timeout} s"
  fi
  sleep 1
done
t_live=$(elapsed)
say "LIVE in $t_live s (build and tools $t_built s, control plane up at $t_cluster s, emulator at $t_emulator s, operator ready at $t_helm s, workers logged in at $t_live s)"
echo "$t_live" >"$dir/time-to-live"

# --- the live view -------------------------------------------------------------------------------
view_status=0
viewing=1
python3 scripts/demo_view.py "$api" "$DEMO_NS" "$SUBSCRIPTION" "$dir/emulator/ca.pem" "$standin" || view_status=$?
# Keep the logs of this run beside the emulator's (the pods' go with the cluster's log dir).
operator_pod=$(kubectl -n "$SYSTEM_NS" get pods -l app.kubernetes.io/component=operator -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true)
[[ -n $operator_pod ]] && kubectl -n "$SYSTEM_NS" logs "$operator_pod" >"$dir/operator.log" 2>/dev/null || true
case $view_status in
  0 | 130) ;; # the time was up with messages acknowledged, or Ctrl-C
  *)
    show_failure
    fail "the live view ended with status $view_status (see above)"
    ;;
esac
