# Sourced by up.sh, down.sh and cluster.mk's recipes: locations and fixed ports of the local
# control plane. Every value can be overridden from the environment.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LK=${LOCALKUBE_DIR:-$repo/target/localkube}
LK_BIN=$LK/bin
LK_PKI=$LK/pki
LK_RUN=$LK/run
LK_LOGS=$LK/logs
LK_DATA=$LK/data
LK_KUBECONFIG=$LK/kubeconfig
LK_NODE=${LOCALKUBE_NODE_NAME:-localkube}
LK_ETCD_PORT=${LOCALKUBE_ETCD_PORT:-23790}
LK_ETCD_PEER_PORT=${LOCALKUBE_ETCD_PEER_PORT:-23800}
LK_APISERVER_PORT=${LOCALKUBE_APISERVER_PORT:-6443}
LK_KCM_PORT=${LOCALKUBE_KCM_PORT:-10257}
LK_SCHEDULER_PORT=${LOCALKUBE_SCHEDULER_PORT:-10259}
LK_KUBELET_PORT=${LOCALKUBE_KUBELET_PORT:-10250}
LK_TOOLS=${KUBE_TOOLS_DIR:-$repo/target/tools/bin}
IOTSUB_BIN_DIR=${IOTSUB_BIN_DIR:-$repo/target/debug}
export PATH="$LK_TOOLS:$LK_BIN:$PATH"
# The order in which components start; down.sh stops them in reverse.
LK_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler lk-agent)

# lk_alive NAME: the component's pid file names a live process of ours.
lk_alive() {
  local f=$LK_RUN/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid && -d /proc/$pid ]] || return 1
  grep -qa -- "$LK_BIN/" "/proc/$pid/cmdline" 2>/dev/null
}
