#!/usr/bin/env bash
# Builds the local control plane into target/localkube/bin (cached: a binary is rebuilt only
# when go.mod, go.sum or its sources are newer than it).
#   localkube   kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy
#               (k8s.io/kubernetes v1.36.3)
#   lk-etcd     etcd 3.6 (go.etcd.io/etcd/server/v3)
#   lk-agent    the node agent that runs pods as host processes (LOCALKUBE_NODE_AGENT=lk-agent)
#   lk-cri      stops and removes the kubelet node's pods through the CRI (down.sh)
#   lk-pki      certificates and kubeconfigs
#   lk-testapp  the test program (image "lk-testapp")
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${LOCALKUBE_DIR:-$repo/target/localkube}/bin
mkdir -p "$bin"
cd "$here"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

# The version the binaries report on /version (and helm's kubeVersion checks see).
version=v1.36.3
build_date=2026-07-22T18:07:38Z # the release's date: fixed, so the link is reproducible and cached
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=36 -X $p.gitCommit="
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
done

stale=()
for cmd in localkube lk-etcd lk-agent lk-cri lk-pki lk-testapp; do
  out=$bin/$cmd
  if [[ ! -x $out ]] || [[ -n $(find build.sh go.mod go.sum "cmd/$cmd" -newer "$out" -print -quit) ]]; then
    stale+=("./cmd/$cmd")
  fi
done
if (( ${#stale[@]} == 0 )); then
  exit 0
fi
echo "localkube: building ${stale[*]} (the first build takes several minutes)" >&2
start=$(date +%s)
# The test program runs in a FROM-scratch image on the kubelet node: static, no cgo.
go_stale=()
for s in "${stale[@]}"; do
  if [[ $s == ./cmd/lk-testapp ]]; then
    CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/" "$s"
  else
    go_stale+=("$s")
  fi
done
if (( ${#go_stale[@]} )); then
  go build -trimpath -ldflags "$ldflags" -o "$bin/" "${go_stale[@]}"
fi
# go build leaves an up-to-date binary untouched; touch so the staleness check is satisfied.
for s in "${stale[@]}"; do touch "$bin/${s#./cmd/}"; done
echo "localkube: built in $(( $(date +%s) - start ))s" >&2
