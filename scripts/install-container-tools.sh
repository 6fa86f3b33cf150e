#!/usr/bin/env bash
# Installs what `make images` and `make images-test` need: podman with runc (Debian's packages).
# Idempotent, and quick when everything is present. Not part of `make deps`: `make test` builds no
# image, so it never needs a container engine.
#
# A working docker (a daemon that answers `docker info`) is enough on its own; the docker CLI without
# a daemon is not. runc, not crun: crun is refused on this project's machines (cgroups v1), and podman
# takes whichever of the two is installed.
set -euo pipefail

if command -v podman >/dev/null && command -v runc >/dev/null; then
  exit 0
fi
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  exit 0
fi

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
# Root runs apt directly; anyone else through sudo, when there is one.
apt=(apt-get)
((EUID == 0)) || apt=(sudo apt-get)
echo "install-container-tools: installing ${missing[*]} (Debian packages)" >&2
"${apt[@]}" update -qq
# Listing runc beside podman satisfies podman's `crun | runc` with runc; no recommends (buildah,
# slirp4netns, fuse-overlayfs: not needed to build images or run them as root).
DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" runc
