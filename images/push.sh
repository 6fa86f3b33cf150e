#!/usr/bin/env bash
# `make images-push REGISTRY=…`: pushes the images `make images REGISTRY=…` built, both tags (the
# crate version and the git commit). Log in first (`podman login <registry host>`).
#
#   PUSH_FLAGS="--tls-verify=false"   extra flags of `<engine> push` (e.g. a plain-HTTP registry)
set -euo pipefail
cd "$(dirname "$0")/.."
source images/lib.sh

[[ -n ${REGISTRY:-} ]] || images_fail "REGISTRY is not set: make images REGISTRY=registry.example.com/team, then make images-push REGISTRY=registry.example.com/team"
engine=$(images_engine)
revision=$(images_revision)
read -ra flags <<<"${PUSH_FLAGS:-}"

for name in "${IMAGES[@]}"; do
  repository=$(images_repository "$name")
  for tag in "$(images_crate_version "$name")" "$revision"; do
    "$engine" image inspect "$repository:$tag" >/dev/null 2>&1 ||
      images_fail "$repository:$tag does not exist here: run \`make images REGISTRY=$REGISTRY\` first (at this commit)"
  done
done
for name in "${IMAGES[@]}"; do
  repository=$(images_repository "$name")
  for tag in "$(images_crate_version "$name")" "$revision"; do
    echo "images: pushing $repository:$tag" >&2
    "$engine" push "${flags[@]}" "$repository:$tag"
  done
done
