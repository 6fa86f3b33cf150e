#!/usr/bin/env bash
# Stops the node, then the control plane. The kubelet node: kube-proxy and the kubelet stop, every
# pod's containers are stopped (SIGTERM, SIGKILL after 10 s) and its sandbox removed through the
# CRI, then containerd; whatever a killed component left (shims, runc containers, mounts) is swept
# up, and the node's network namespace, veth and cgroups removed. lk-agent stops its containers
# itself; any container process group left behind is killed. Data (etcd, certificates) stays;
# add --purge to remove it too.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

stop() {
  local name=$1 secs=$2 pid i
  lk_alive "$name" || { rm -f "$LK_RUN/$name.pid"; return 0; }
  pid=$(<"$LK_RUN/$name.pid")
  kill -TERM "$pid" 2>/dev/null
  for (( i = 0; i < secs * 10; i++ )); do
    [[ -d /proc/$pid ]] || break
    sleep 0.1
  done
  if [[ -d /proc/$pid ]]; then
    echo "localkube: $name did not stop in ${secs}s, killing it" >&2
    kill -KILL "$pid" 2>/dev/null
  fi
  # Each component runs in its own session: take its whole process group with it.
  kill -KILL -- "-$pid" 2>/dev/null
  rm -f "$LK_RUN/$name.pid"
}

# Both node agents, whichever this cluster ran (LOCALKUBE_NODE_AGENT may differ from up's).
source "$repo/tests/cluster/node.sh"
stop kube-proxy 10
stop kubelet 10
node_stop_pods
stop containerd 10
node_sweep
node_cgroups_down
node_net_down
stop lk-agent 20
for (( i = ${#LK_CONTROL_PLANE[@]} - 1; i >= 0; i-- )); do
  stop "${LK_CONTROL_PLANE[i]}" 10
done
rm -f "$LK_RUN/node-agent"

# Containers the agent could not stop (if it was killed): each pid file belongs to a process
# group whose leader carries its pod's UID in its environment.
for f in "$LK"/agent/pods/*/containers/*.pid; do
  [[ -f $f ]] || continue
  uid=$(basename "$(dirname "$(dirname "$f")")")
  pid=$(<"$f")
  if [[ -r /proc/$pid/environ ]] && tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "LOCALKUBE_POD_UID=$uid"; then
    kill -KILL -- "-$pid" 2>/dev/null
  fi
  rm -f "$f"
done

if [[ ${1:-} == --purge ]]; then
  rm -rf "$LK_DATA" "$LK/agent" "$LK_NODE_DIR" "$LK_LOGS" "$LK_PKI" "$LK_KUBECONFIG"
fi
echo "localkube: stopped" >&2
