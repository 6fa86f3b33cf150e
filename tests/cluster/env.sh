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

# The node: a real kubelet with containerd (kubelet, see node.sh), or lk-agent, the stand-in that
# runs pods as host processes (where containerd cannot run).
LK_NODE_AGENT=${LOCALKUBE_NODE_AGENT:-kubelet}
# The kubelet's node lives in a network namespace of its own, joined to the host by a veth pair:
# the host end carries LK_HOST_IP (the API server listens there, and servers the tests start for
# pods), the node end LK_NODE_IP; the pods sit on a bridge in the node's namespace. Nothing in it
# routes off the machine. The defaults follow the API server's port, so a second cluster with its
# own ports gets its own namespace, link, addresses and cgroup (6443: localkube-6443, lk-6443,
# 10.250.N.1 and .2, pods 10.251.N.0/24, N from a checksum of the port); each can be set.
lk_net=$(( $(printf %s "$LK_APISERVER_PORT" | cksum | cut -d' ' -f1) % 250 + 1 ))
LK_NETNS=${LOCALKUBE_NETNS:-localkube-$LK_APISERVER_PORT}
LK_VETH=${LOCALKUBE_VETH:-lk-$LK_APISERVER_PORT}
LK_HOST_IP=${LOCALKUBE_HOST_IP:-10.250.$lk_net.1}
LK_NODE_IP=${LOCALKUBE_NODE_IP:-10.250.$lk_net.2}
LK_POD_CIDR=${LOCALKUBE_POD_CIDR:-10.251.$lk_net.0/24}
LK_BRIDGE=${LOCALKUBE_BRIDGE:-lk-br0}
# The cgroup (in every v1 hierarchy) under which the kubelet puts its pods.
LK_CGROUP_ROOT=${LOCALKUBE_CGROUP_ROOT:-/localkube-$LK_APISERVER_PORT}
LK_SERVICE_CIDR=10.0.0.0/24
LK_NODE_DIR=$LK/node
# Where the API server listens: loopback for lk-agent, the host end of the veth for the kubelet's pods.
if [[ $LK_NODE_AGENT == kubelet ]]; then
  LK_API_IP=$LK_HOST_IP
else
  LK_API_IP=127.0.0.1
fi

# The order in which components start; down.sh stops them in reverse.
LK_CONTROL_PLANE=(etcd kube-apiserver kube-controller-manager kube-scheduler)
LK_NODE_COMPONENTS=(containerd kubelet kube-proxy)
LK_COMPONENTS=("${LK_CONTROL_PLANE[@]}" lk-agent)
[[ $LK_NODE_AGENT == kubelet ]] && LK_COMPONENTS=("${LK_CONTROL_PLANE[@]}" "${LK_NODE_COMPONENTS[@]}")

# lk_alive NAME: the component's pid file names a live process of ours.
lk_alive() {
  local f=$LK_RUN/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid && -d /proc/$pid ]] || return 1
  grep -qa -- "$LK/" "/proc/$pid/cmdline" 2>/dev/null
}
