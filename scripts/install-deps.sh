#!/usr/bin/env bash
# Installs what the tests need beyond Rust: idempotent, and quick when everything is present.
#
#   scripts/install-deps.sh            what `make test` needs, with the local cluster's kubelet node:
#                                      containerd, runc, the CNI plugins, nft, podman (test images)
#   scripts/install-deps.sh --images   also what `make images` and `make images-test` need
#
# With LOCALKUBE_NODE_AGENT=lk-agent the node's packages are not installed (that node runs pods as
# host processes).
set -euo pipefail
cd "$(dirname "$0")/.."

with_images=0
for arg in "$@"; do
  case $arg in
    --images) with_images=1 ;;
    *)
      echo "install-deps: unknown argument $arg (known: --images)" >&2
      exit 2
      ;;
  esac
done

python_has() { python3 -c "import $1" >/dev/null 2>&1; }

# Debian packages: Java and Maven for the Artemis interop broker and the Qpid JMS sample,
# OpenSSL's headers for Qpid Proton's TLS. apt runs only when something is missing.
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev pkg-config)
# The kubelet node of tests/cluster (node.sh): containerd and runc run the pods, the CNI plugins wire
# them to a bridge, nft serves kube-proxy, podman builds the project's images from the debug
# binaries (images/Containerfile), gcc the static pause program.
node=()
if [[ ${LOCALKUBE_NODE_AGENT:-kubelet} == kubelet ]]; then
  command -v containerd >/dev/null || node+=(containerd)
  command -v runc >/dev/null || node+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || node+=(containernetworking-plugins)
  command -v nft >/dev/null || node+=(nftables)
  command -v podman >/dev/null || node+=(podman)
  command -v gcc >/dev/null || node+=(gcc libc6-dev)
fi
if ((${#missing[@]} + ${#node[@]})); then
  apt-get update -qq
fi
if ((${#missing[@]})); then
  apt-get install -y -qq "${missing[@]}"
fi
if ((${#node[@]})); then
  # No recommends: podman's (buildah, slirp4netns, fuse-overlayfs) are not needed as root; runc
  # listed beside podman satisfies its `crun | runc` (crun is refused here: cgroups v1).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${node[@]}" runc
fi

# Qpid Proton builds from source and only links TLS when OpenSSL's headers are there.
if ! python_has proton || ! python3 -c "import proton,sys; sys.exit(0 if proton.SSL.present() else 1)" >/dev/null 2>&1; then
  python3 -m pip install -q cffi
  python3 -m pip install -q --force-reinstall --no-deps --no-binary python-qpid-proton "python-qpid-proton==0.40.0"
fi
python_has pytest || python3 -m pip install -q pytest

if [[ -x scripts/install-kube-tools.sh ]]; then
  scripts/install-kube-tools.sh
fi
if ((with_images)); then
  scripts/install-container-tools.sh
fi
