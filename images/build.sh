#!/usr/bin/env bash
# `make images`: the release binaries, then the images iotsub-operator, iotsub-worker,
# iotsub-emulator and iotsub-standin, each tagged with its crate's version and the git commit.
#
#   REGISTRY=registry.example.com/team   prefix of the image names (default: none, local names)
#   BASE=gcr.io/distroless/cc-debian12:nonroot
#                                         the base image (default: iotsub-runtime:debian12, built
#                                         here from Debian packages by images/build-runtime.sh)
#   ENGINE=podman|docker                  default: podman, else a docker whose daemon answers
#   SOURCE=https://…                      org.opencontainers.image.source (default: git's origin URL)
#   SKIP_CARGO=1                          use target/release as it is
#   BIN_DIR=target/debug                  take the binaries from there instead (no cargo build):
#                                         the local cluster's test images (tests/cluster/node.sh)
#   TAGS="a b"                            these tags instead of <crate version> and <git commit>
set -euo pipefail
cd "$(dirname "$0")/.."
source images/lib.sh

engine=$(images_engine)
revision=$(images_revision)
source_url=${SOURCE:-$(git config --get remote.origin.url 2>/dev/null || true)}
context=target/images/context
seconds() { echo "$EPOCHREALTIME"; }
between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
since() { between "$1" "$(seconds)"; }

bin_dir=${BIN_DIR:-target/release}
t0=$(seconds)
if [[ ${SKIP_CARGO:-0} != 1 && $bin_dir == target/release ]]; then
  echo "images: cargo build --release (the four binaries)" >&2
  cargo build --release -q -p iotsub-operator -p iotsub-worker -p iotsub-emulator -p iotsub-standin --bins
fi
t_cargo=$(seconds)

base=${BASE:-}
pull=()
if [[ -z $base ]]; then
  base=iotsub-runtime:debian12
  RUNTIME_IMAGE=$base images/build-runtime.sh "$engine"
  # Local only: never look for it in a registry.
  [[ $engine == podman ]] && pull=(--pull=never)
fi
t_runtime=$(seconds)

# The build context is only the stripped binaries: never the repository with its target/.
rm -rf "$context"
mkdir -p "$context"
cp images/Containerfile "$context/Containerfile"
for name in "${IMAGES[@]}"; do
  binary=$bin_dir/iotsub-$name
  [[ -x $binary ]] || images_fail "$binary is missing (cargo build --release -p iotsub-$name)"
  # Symbols and line tables out: the release profile keeps line tables for profiling on the host.
  strip --strip-all -o "$context/iotsub-$name" "$binary"
done

built=()
for name in "${IMAGES[@]}"; do
  version=$(images_crate_version "$name")
  repository=$(images_repository "$name")
  tags=() names=()
  for tag in ${TAGS:-$version $revision}; do
    tags+=(-t "$repository:$tag")
    names+=("$repository:$tag")
  done
  started=$(seconds)
  "$engine" build -q "${pull[@]}" \
    --target "$name" \
    --build-arg "BASE=$base" \
    --build-arg "VERSION=$version" \
    --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    --build-arg "SOURCE=$source_url" \
    "${tags[@]}" "$context" >/dev/null
  size=$("$engine" image inspect --format '{{.Size}}' "${tags[1]}")
  built+=("$(printf '%-45s %5s MB  %5s s' "${names[*]}" "$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }')" "$(since "$started")")")
done

echo "images: built with $engine on $base:" >&2
printf '  %s\n' "${built[@]}" >&2
echo "images: $(since "$t0") s in all (cargo $(between "$t0" "$t_cargo") s, runtime $(between "$t_cargo" "$t_runtime") s)" >&2
