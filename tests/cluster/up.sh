#!/usr/bin/env bash
# Starts the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler) and the node, and waits until the cluster can run pods. The node is a real
# kubelet with containerd and kube-proxy in a network namespace of its own (node.sh), or with
# LOCALKUBE_NODE_AGENT=lk-agent the stand-in that runs pods as host processes on 127.0.0.1.
# A component that is already running is left alone, so a second run is a quick check.
# Writes target/localkube/kubeconfig (cluster-admin).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
start_time=$(date +%s)

"$repo/scripts/install-kube-tools.sh"
"$repo/tests/cluster/build.sh"
mkdir -p "$LK_RUN" "$LK_LOGS" "$LK_DATA"

case $LK_NODE_AGENT in
  kubelet)
    source "$repo/tests/cluster/node.sh"
    node_check_tools
    echo "localkube: node: kubelet with containerd (LOCALKUBE_NODE_AGENT=kubelet)" >&2
    ;;
  lk-agent) echo "localkube: node: lk-agent, pods as host processes (LOCALKUBE_NODE_AGENT=lk-agent)" >&2 ;;
  *) echo "localkube: LOCALKUBE_NODE_AGENT is kubelet or lk-agent, not $LK_NODE_AGENT" >&2; exit 2 ;;
esac
# The API server's address depends on the node: one cluster cannot switch while it runs.
if lk_alive kube-apiserver && [[ $(cat "$LK_RUN/node-agent" 2>/dev/null) != "$LK_NODE_AGENT" ]]; then
  echo "localkube: the cluster runs with the node agent $(cat "$LK_RUN/node-agent" 2>/dev/null || echo lk-agent);" \
    "stop it first (make cluster-down) to start it with $LK_NODE_AGENT" >&2
  exit 1
fi
echo "$LK_NODE_AGENT" >"$LK_RUN/node-agent"
[[ $LK_NODE_AGENT == kubelet ]] && node_net_up

"$LK_BIN/lk-pki" -dir "$LK_PKI" -admin-kubeconfig "$LK_KUBECONFIG" \
  -server "https://$LK_API_IP:$LK_APISERVER_PORT" -node-name "$LK_NODE" \
  -api-ip "$LK_HOST_IP" -node-ip "$LK_NODE_IP"

# start NAME BINARY ARGS...: runs it in its own session (so its process group is its own),
# logs to logs/NAME.log, records its pid in run/NAME.pid.
start() {
  local name=$1; shift
  if lk_alive "$name"; then return 0; fi
  echo "localkube: starting $name" >&2
  setsid "$@" >>"$LK_LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$LK_RUN/$name.pid"
}

# wait_for WHAT SECONDS COMMAND...: polls COMMAND until it succeeds, or fails with the log.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if (( $(date +%s) > deadline )); then
      echo "localkube: $what not ready after ${secs}s; last log lines:" >&2
      tail -n 30 "$LK_LOGS/$what.log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

curl_admin() {
  curl -fsS --max-time 5 --cacert "$LK_PKI/ca.crt" --cert "$LK_PKI/admin.crt" --key "$LK_PKI/admin.key" "$@"
}

start etcd "$LK_BIN/lk-etcd" \
  --name localkube --data-dir "$LK_DATA/etcd" \
  --listen-client-urls "http://127.0.0.1:$LK_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$LK_ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$LK_ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$LK_ETCD_PEER_PORT" \
  --initial-cluster "localkube=http://127.0.0.1:$LK_ETCD_PEER_PORT" \
  --unsafe-no-fsync --log-level warn
wait_for etcd 60 curl -fsS --max-time 2 "http://127.0.0.1:$LK_ETCD_PORT/health"

start kube-apiserver "$LK_BIN/localkube" kube-apiserver \
  --bind-address="$LK_API_IP" --advertise-address="$LK_API_IP" --secure-port="$LK_APISERVER_PORT" \
  --etcd-servers="http://127.0.0.1:$LK_ETCD_PORT" \
  --tls-cert-file="$LK_PKI/apiserver.crt" --tls-private-key-file="$LK_PKI/apiserver.key" \
  --client-ca-file="$LK_PKI/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$LK_PKI/sa.pub" --service-account-signing-key-file="$LK_PKI/sa.key" \
  --service-cluster-ip-range="$LK_SERVICE_CIDR" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --kubelet-client-certificate="$LK_PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$LK_PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$LK_PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
  --allow-privileged=true --profiling=false --cert-dir="$LK_DATA/apiserver" --v=1
wait_for kube-apiserver 180 curl_admin "https://$LK_API_IP:$LK_APISERVER_PORT/readyz"

start kube-controller-manager "$LK_BIN/localkube" kube-controller-manager \
  --kubeconfig="$LK_PKI/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$LK_PKI/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$LK_PKI/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$LK_KCM_PORT" --cert-dir="$LK_DATA/kube-controller-manager" \
  --service-account-private-key-file="$LK_PKI/sa.key" --root-ca-file="$LK_PKI/ca.crt" \
  --use-service-account-credentials --controllers='*' \
  --cluster-signing-cert-file="$LK_PKI/ca.crt" --cluster-signing-key-file="$LK_PKI/ca.key" \
  --service-cluster-ip-range="$LK_SERVICE_CIDR" --leader-elect=false --profiling=false --v=1

start kube-scheduler "$LK_BIN/localkube" kube-scheduler \
  --kubeconfig="$LK_PKI/scheduler.kubeconfig" \
  --authentication-kubeconfig="$LK_PKI/scheduler.kubeconfig" \
  --authorization-kubeconfig="$LK_PKI/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$LK_SCHEDULER_PORT" --leader-elect=false --profiling=false --v=1

if [[ $LK_NODE_AGENT == kubelet ]]; then
  node_cgroups_up
  node_write_config
  start containerd nsenter --net="/run/netns/$LK_NETNS" -- containerd --config "$LK_NODE_DIR/containerd.toml"
  wait_for containerd 60 lk_ctr version
  node_pause_image
  node_testapp_image
  node_project_images
  start kubelet nsenter --net="/run/netns/$LK_NETNS" -- "$LK_BIN/localkube" kubelet \
    --config="$LK_NODE_DIR/kubelet.yaml" --kubeconfig="$LK_PKI/node.kubeconfig" \
    --root-dir="$LK_NODE_DIR/kubelet" --node-ip="$LK_NODE_IP" --hostname-override="$LK_NODE" --v=1
  start kube-proxy nsenter --net="/run/netns/$LK_NETNS" -- "$LK_BIN/localkube" kube-proxy \
    --config="$LK_NODE_DIR/kube-proxy.yaml" --v=1
else
  images="iotsub-worker=$IOTSUB_BIN_DIR/iotsub-worker,iotsub-operator=$IOTSUB_BIN_DIR/iotsub-operator"
  images+=",iotsub-emulator=$IOTSUB_BIN_DIR/iotsub-emulator,iotsub-standin=$IOTSUB_BIN_DIR/iotsub-standin"
  images+=",lk-testapp=$LK_BIN/lk-testapp"
  # The image map is fixed when the agent starts: if it changed (another IOTSUB_BIN_DIR or
  # LOCALKUBE_IMAGES), restart the agent; its pods' processes restart with it.
  images+=${LOCALKUBE_IMAGES:+,$LOCALKUBE_IMAGES}
  if lk_alive lk-agent && [[ $(cat "$LK_RUN/lk-agent.images" 2>/dev/null) != "$images" ]]; then
    echo "localkube: image map changed, restarting lk-agent" >&2
    pid=$(<"$LK_RUN/lk-agent.pid")
    kill -TERM "$pid"
    for (( i = 0; i < 200; i++ )); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  echo "$images" >"$LK_RUN/lk-agent.images"
  start lk-agent "$LK_BIN/lk-agent" \
    --kubeconfig="$LK_PKI/node.kubeconfig" --node-name="$LK_NODE" \
    --root-dir="$LK/agent" --log-dir="$LK_LOGS" --ca-file="$LK_PKI/ca.crt" \
    --kubelet-port="$LK_KUBELET_PORT" \
    --tls-cert-file="$LK_PKI/node-serving.crt" --tls-private-key-file="$LK_PKI/node-serving.key" \
    --client-ca-file="$LK_PKI/ca.crt" --image="$images" \
    --pod-ip-prefix="${LOCALKUBE_POD_IP_PREFIX:-127.1}"
fi

wait_for kube-controller-manager 120 curl -fsSk --max-time 2 "https://127.0.0.1:$LK_KCM_PORT/healthz"
wait_for kube-scheduler 120 curl -fsSk --max-time 2 "https://127.0.0.1:$LK_SCHEDULER_PORT/healthz"
export KUBECONFIG=$LK_KUBECONFIG
node_ready() {
  [[ $(kubectl get node "$LK_NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]] &&
    [[ -z $(kubectl get node "$LK_NODE" -o jsonpath='{.spec.taints}') ]]
}
# Data kept from an API server on another port leaves the `kubernetes` Endpoints on that port (the
# reconciler compares addresses only): pods would reach nothing at 10.0.0.1. Deleted, it is rewritten.
if [[ $(kubectl -n default get endpoints kubernetes -o jsonpath='{.subsets[0].ports[0].port}' 2>/dev/null) =~ ^[0-9]+$ ]] &&
  [[ $(kubectl -n default get endpoints kubernetes -o jsonpath='{.subsets[0].ports[0].port}' 2>/dev/null) != "$LK_APISERVER_PORT" ]]; then
  echo "localkube: the kubernetes Endpoints named another port; rewriting them" >&2
  kubectl -n default delete endpoints kubernetes >/dev/null 2>&1 || true
fi
if [[ $LK_NODE_AGENT == kubelet ]]; then
  # The kubelet authorizes the API server's requests (logs, exec, port-forward) with a
  # SubjectAccessReview: its client certificate needs the kubelet API role.
  kubectl create clusterrolebinding localkube:kubelet-api --clusterrole=system:kubelet-api-admin \
    --user=kube-apiserver-kubelet-client --dry-run=client -o yaml | kubectl apply -f - >/dev/null
fi
wait_for "$(if [[ $LK_NODE_AGENT == kubelet ]]; then echo kubelet; else echo lk-agent; fi)" 120 node_ready
if [[ $LK_NODE_AGENT == kubelet ]]; then
  wait_for kube-proxy 60 nsrun curl -fsS --max-time 2 http://127.0.0.1:10256/healthz
fi
# Pods can be created once the namespace's default service account exists.
wait_for kube-controller-manager 120 kubectl -n default get serviceaccount default
echo "localkube: ready in $(( $(date +%s) - start_time ))s; export KUBECONFIG=$LK_KUBECONFIG" >&2
