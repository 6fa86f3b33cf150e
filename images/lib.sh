# Shared by images/build.sh, push.sh and test.sh (sourced, not run): the engine, the names, the tags.

IMAGES=(operator worker emulator standin)

images_fail() {
  echo "images: $*" >&2
  exit 1
}

# ENGINE if set, else podman, else a docker whose daemon answers (the CLI alone cannot build).
images_engine() {
  if [[ -n ${ENGINE:-} ]]; then
    command -v "$ENGINE" >/dev/null || images_fail "ENGINE=$ENGINE is not on PATH"
    echo "$ENGINE"
  elif command -v podman >/dev/null; then
    echo podman
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo docker
  else
    images_fail "no container engine: neither podman nor a running docker (scripts/install-container-tools.sh installs podman)"
  fi
}

# The crate's version, as Cargo sees it (iotsub-operator → 0.1.0).
images_crate_version() {
  local pkgid
  pkgid=$(cargo pkgid -p "iotsub-$1" 2>/dev/null) || images_fail "cargo pkgid -p iotsub-$1 failed"
  echo "${pkgid##*[@#]}"
}

# The commit the images are built from; `-dirty` when tracked files differ from it, so a tag never
# claims a commit the binaries were not built from.
images_revision() {
  local revision
  revision=$(git rev-parse --short HEAD 2>/dev/null) || {
    echo unknown
    return
  }
  git diff --quiet HEAD -- 2>/dev/null || revision+=-dirty
  echo "$revision"
}

# REGISTRY=registry.example.com/team → registry.example.com/team/iotsub-operator; none → iotsub-operator.
images_repository() {
  local registry=${REGISTRY:-}
  registry=${registry%/}
  echo "${registry:+$registry/}iotsub-$1"
}
