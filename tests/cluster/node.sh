# Sourced (after env.sh) by up.sh when LOCALKUBE_NODE_AGENT=kubelet, and by down.sh always: the
# node as a real one runs: containerd with runc and the CNI plugins (Debian's packages), a kubelet and a
# kube-proxy built from k8s.io/kubernetes, in a network namespace of their own.
#
#   host                                   netns $LK_NETNS (the node)
#   $LK_VETH  $LK_HOST_IP  <--veth-->  eth0 $LK_NODE_IP          kubelet, containerd, kube-proxy
#   (kube-apiserver, test servers)         $LK_BRIDGE  first address of $LK_POD_CIDR (the pods' gateway)
#
# The host routes $LK_POD_CIDR to the node; the node has no default route, so nothing a pod sends
# leaves the machine. Ports inside the namespace (kubelet healthz, kube-proxy, containerd's stream
# server) cannot collide with anything on the host. Everything lives under $LK_NODE_DIR.

LK_CONTAINERD_SOCK=$LK_RUN/containerd.sock
LK_CRI_ENDPOINT=unix://$LK_CONTAINERD_SOCK
LK_PAUSE_IMAGE=localhost/localkube-pause:1
LK_RUNC_ROOT=$LK_NODE_DIR/runc

# nsrun CMD...: CMD in the node's network namespace only (not `ip netns exec`, which also gives
# CMD a mount namespace of its own: the kubelet's volume mounts must be the ones runc sees).
nsrun() { nsenter --net="/run/netns/$LK_NETNS" -- "$@"; }

# The pods' gateway: the first address of $LK_POD_CIDR (a network address ending in .0).
pod_gateway() {
  local net=${LK_POD_CIDR%/*}
  echo "${net%.*}.$(( ${net##*.} + 1 ))"
}

node_fail() {
  echo "localkube: $*" >&2
  exit 1
}

# What the node needs from Debian: containerd, runc, the CNI plugins, nft (kube-proxy).
node_check_tools() {
  local missing=() t
  for t in containerd ctr runc nft nsenter; do command -v "$t" >/dev/null || missing+=("$t"); done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] || missing+=(containernetworking-plugins)
  ((${#missing[@]} == 0)) ||
    node_fail "the kubelet node needs ${missing[*]}: run scripts/install-deps.sh, or use LOCALKUBE_NODE_AGENT=lk-agent"
  [[ $EUID == 0 ]] || node_fail "the kubelet node needs root (network namespaces, mounts, cgroups); or use LOCALKUBE_NODE_AGENT=lk-agent"
}

node_net_up() {
  [[ -e /run/netns/$LK_NETNS ]] || ip netns add "$LK_NETNS"
  if ! ip link show "$LK_VETH" >/dev/null 2>&1; then
    ip link add "$LK_VETH" type veth peer name eth0 netns "$LK_NETNS"
    ip addr add "$LK_HOST_IP" peer "$LK_NODE_IP" dev "$LK_VETH"
    ip link set "$LK_VETH" up
    ip -n "$LK_NETNS" addr add "$LK_NODE_IP" peer "$LK_HOST_IP" dev eth0
    ip -n "$LK_NETNS" link set eth0 up
    ip -n "$LK_NETNS" link set lo up
  fi
  ip route replace "$LK_POD_CIDR" via "$LK_NODE_IP" dev "$LK_VETH"
  if ! ip -n "$LK_NETNS" link show "$LK_BRIDGE" >/dev/null 2>&1; then
    ip -n "$LK_NETNS" link add "$LK_BRIDGE" type bridge
    ip -n "$LK_NETNS" addr add "$(pod_gateway)/${LK_POD_CIDR#*/}" dev "$LK_BRIDGE"
    ip -n "$LK_NETNS" link set "$LK_BRIDGE" up
  fi
  # Routing between the pods and the host, inside the node only; bridged traffic through
  # netfilter so a Service's DNAT also applies between two pods on the bridge.
  nsrun sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
}

node_net_down() {
  ip netns del "$LK_NETNS" 2>/dev/null
  ip link del "$LK_VETH" 2>/dev/null
  return 0
}

# The kubelet requires its cgroup root to exist in every hierarchy (cgroups v1 here).
node_cgroups_up() {
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -d $h ]] || continue
    mkdir -p "$h${LK_CGROUP_ROOT#/}"
    if [[ -f $h/cpuset.cpus ]]; then
      cat "$h/cpuset.cpus" >"$h${LK_CGROUP_ROOT#/}/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h${LK_CGROUP_ROOT#/}/cpuset.mems"
    fi
  done
}

node_cgroups_down() {
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -d $h${LK_CGROUP_ROOT#/} ]] && find "$h${LK_CGROUP_ROOT#/}" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}

# write_if_changed FILE: stdin into FILE, leaving FILE untouched when it has that content already
# (kube-proxy exits when its configuration file changes under it).
write_if_changed() {
  local content
  content=$(cat)
  [[ -f $1 && $(<"$1") == "$content" ]] && return 0
  printf '%s\n' "$content" >"$1"
}

node_write_config() {
  mkdir -p "$LK_NODE_DIR/cni/net.d" "$LK_LOGS/pods"
  write_if_changed "$LK_NODE_DIR/containerd.toml" <<EOF
# Written by tests/cluster/node.sh.
version = 2
root = "$LK_NODE_DIR/containerd/root"
state = "$LK_NODE_DIR/containerd/state"
oom_score = 0

[grpc]
  address = "$LK_CONTAINERD_SOCK"

[plugins."io.containerd.internal.v1.opt"]
  path = "$LK_NODE_DIR/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  # The pause image built by node.sh (a static C pause(), FROM scratch): nothing is pulled.
  sandbox_image = "$LK_PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: runc cannot lower a sandbox's oom_score_adj below its own.
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  disable_hugetlb_controller = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  # cgroupfs: the kubelet's driver (containerd 1.6 cannot tell it the driver over CRI).
  SystemdCgroup = false
  BinaryName = "$(command -v runc)"
  Root = "$LK_RUNC_ROOT"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "$LK_NODE_DIR/cni/net.d"
EOF

  write_if_changed "$LK_NODE_DIR/cni/net.d/10-localkube.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "localkube",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$LK_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$LK_POD_CIDR", "gateway": "$(pod_gateway)"}]],
        "dataDir": "$LK_NODE_DIR/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

  write_if_changed "$LK_NODE_DIR/kubelet.yaml" <<EOF
# Written by tests/cluster/node.sh.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $LK_NODE_IP
port: $LK_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
tlsCertFile: $LK_PKI/node-serving.crt
tlsPrivateKeyFile: $LK_PKI/node-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $LK_PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: $LK_CRI_ENDPOINT
podLogsDir: $LK_LOGS/pods
# cgroups v1 on this machine; containerd 1.6 cannot report its cgroup driver.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $LK_CGROUP_ROOT
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
failSwapOn: false
# No DNS here yet; pods get no resolv.conf of the host's.
resolvConf: ""
clusterDomain: cluster.local
hairpinMode: none
makeIPTablesUtilChains: false
serializeImagePulls: false
# Secret and ConfigMap volumes follow their objects within this period (the default is 1 min).
syncFrequency: 10s
# This machine's disk is shared: no image garbage collection or disk evictions from a full disk
# of somebody else's.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
maxPods: 110
EOF

  write_if_changed "$LK_NODE_DIR/kube-proxy.yaml" <<EOF
# Written by tests/cluster/node.sh.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $LK_PKI/kube-proxy.kubeconfig}
hostnameOverride: $LK_NODE
mode: nftables
clusterCIDR: $LK_POD_CIDR
bindAddress: $LK_NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$LK_NODE_IP/32]
# Leave the conntrack sysctls alone (some are the host's, not the namespace's).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

# ctr against our containerd, in the namespace the CRI uses.
lk_ctr() { ctr --address "$LK_CONTAINERD_SOCK" -n k8s.io "$@"; }

# node_has_images NAME...: every NAME is in containerd's image store. (Not `| grep -q`: it stops
# reading at the first match, and under pipefail ctr's broken pipe fails the test.)
node_has_images() {
  local list name
  list=$(lk_ctr images ls -q) || return 1
  for name; do grep -xF -- "$name" <<<"$list" >/dev/null || return 1; done
}

# oci_import NAME USER ENTRYPOINT FILE...: an image of the static FILEs in / (no base, no image
# builder: an OCI archive written here) imported into containerd as NAME.
oci_import() {
  local name=$1 user=$2 entrypoint=$3 dir
  shift 3
  dir=$(mktemp -d "$LK_NODE_DIR/oci.XXXXXX")
  mkdir -p "$dir/rootfs" "$dir/oci/blobs/sha256"
  cp "$@" "$dir/rootfs/"
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -C "$dir/rootfs" -cf "$dir/layer.tar" .
  # blob FILE: stores FILE in the layout, prints "DIGEST SIZE".
  blob() {
    local digest
    digest=$(sha256sum <"$1" | cut -d' ' -f1)
    cp "$1" "$dir/oci/blobs/sha256/$digest"
    echo "$digest $(stat -c %s "$1")"
  }
  local layer config manifest
  read -r -a layer <<<"$(blob "$dir/layer.tar")"
  printf '{"architecture":"amd64","os":"linux","config":{"User":"%s","Entrypoint":["%s"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$user" "$entrypoint" "${layer[0]}" >"$dir/config.json"
  read -r -a config <<<"$(blob "$dir/config.json")"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
    "${config[0]}" "${config[1]}" "${layer[0]}" "${layer[1]}" >"$dir/manifest.json"
  read -r -a manifest <<<"$(blob "$dir/manifest.json")"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"io.containerd.image.name":"%s"}}]}' \
    "${manifest[0]}" "${manifest[1]}" "$name" >"$dir/oci/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci/oci-layout"
  tar -C "$dir/oci" -cf "$dir/image.tar" .
  lk_ctr images import "$dir/image.tar" >/dev/null
  rm -rf "$dir"
  node_has_images "$name" || node_fail "the image did not import as $name"
}

# The sandbox image: a static pause() program, imported once.
node_pause_image() {
  node_has_images "$LK_PAUSE_IMAGE" && return 0
  mkdir -p "$LK_NODE_DIR/pause"
  gcc -static -Os -s -o "$LK_NODE_DIR/pause/pause" "$repo/tests/cluster/node/pause.c" ||
    node_fail "cannot build the pause program (gcc, libc6-dev)"
  oci_import "$LK_PAUSE_IMAGE" 65535:65535 /pause "$LK_NODE_DIR/pause/pause"
}

# The test program of e2e/ (static) as the image localhost/lk-testapp:test, again when it was rebuilt.
node_testapp_image() {
  local name=localhost/lk-testapp:test stamp
  stamp=$(stat -c '%s %Y' "$LK_BIN/lk-testapp")
  [[ $(cat "$LK_NODE_DIR/lk-testapp.stamp" 2>/dev/null) == "$stamp" ]] && node_has_images "$name" && return 0
  oci_import "$name" 65532:65532 /lk-testapp "$LK_BIN/lk-testapp"
  echo "$stamp" >"$LK_NODE_DIR/lk-testapp.stamp"
}

# The project's images, built from the binaries in $IOTSUB_BIN_DIR (target/debug for the tests) with
# the Containerfile and base of `make images` (images/build.sh), named
# localhost/iotsub-{operator,worker,emulator}:$LK_IMAGE_TAG and imported into containerd; again
# only when a binary or the Containerfile changed. Skipped while the binaries are not built yet.
LK_IMAGE_TAG=localkube
LK_CUSTOM_WORKER_IMAGE=localhost/team/iotsub-worker:custom
node_project_images() {
  local files=() names=() name stamp
  for name in operator worker emulator standin; do
    if [[ ! -x $IOTSUB_BIN_DIR/iotsub-$name ]]; then
      echo "localkube: no $IOTSUB_BIN_DIR/iotsub-$name: the project's images are not imported (cargo build, then make cluster-up)" >&2
      return 0
    fi
    files+=("$IOTSUB_BIN_DIR/iotsub-$name")
    names+=("localhost/iotsub-$name:$LK_IMAGE_TAG")
  done
  stamp=$(stat -c '%n %s %Y' "${files[@]}" "$repo/images/Containerfile" "$repo/images/build-runtime.sh" | sha256sum | cut -c1-16)
  if [[ $(cat "$LK_NODE_DIR/images.stamp" 2>/dev/null) == "$stamp" ]] && node_has_images "${names[@]}" "$LK_CUSTOM_WORKER_IMAGE"; then
    return 0
  fi
  local started=$SECONDS
  command -v podman >/dev/null || node_fail "building the project's images needs podman: run scripts/install-deps.sh"
  BIN_DIR=$IOTSUB_BIN_DIR TAGS=$LK_IMAGE_TAG REGISTRY=localhost ENGINE=podman "$repo/images/build.sh" 2>&1 | sed 's/^/  /' >&2
  podman save -q --format docker-archive -m -o "$LK_NODE_DIR/images.tar" "${names[@]}"
  lk_ctr images import "$LK_NODE_DIR/images.tar" >/dev/null
  rm -f "$LK_NODE_DIR/images.tar"
  # The worker by another name, for the e2e tests of a subscription's own spec.worker.image.
  lk_ctr images tag --force "${names[1]}" "$LK_CUSTOM_WORKER_IMAGE" >/dev/null
  echo "$stamp" >"$LK_NODE_DIR/images.stamp"
  echo "localkube: imported ${names[*]} from $IOTSUB_BIN_DIR in $((SECONDS - started))s" >&2
}

# node_stop_pods: every container stopped with a grace period, every sandbox (network, namespace,
# shm mount) removed, while containerd still runs.
node_stop_pods() {
  [[ -S $LK_CONTAINERD_SOCK ]] && lk_alive containerd || return 0
  "$LK_BIN/lk-cri" -endpoint "$LK_CRI_ENDPOINT" -grace 10s
}

# What a killed containerd or kubelet may leave: runc containers, shims, mounts under $LK.
node_sweep() {
  local id pid p
  if [[ -d $LK_RUNC_ROOT ]]; then
    for id in $(runc --root "$LK_RUNC_ROOT/k8s.io" list -q 2>/dev/null); do
      runc --root "$LK_RUNC_ROOT/k8s.io" kill "$id" KILL 2>/dev/null
      runc --root "$LK_RUNC_ROOT/k8s.io" delete -f "$id" 2>/dev/null
    done
  fi
  # Shims of our containerd: their command line names its socket.
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    grep -qaF -- "$LK_CONTAINERD_SOCK" "$p/cmdline" 2>/dev/null || continue
    grep -qa containerd-shim "$p/cmdline" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  # Mounts under $LK (the kubelet's volumes and its shared root, sandboxes' shm, rootfs overlays),
  # deepest first.
  local m
  awk -v root="$LK/" 'index($5, root) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  return 0
}
