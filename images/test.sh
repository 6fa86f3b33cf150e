#!/usr/bin/env bash
# `make images-test`: runs the images `make images` built (same REGISTRY) and fails unless each
#   - runs as uid/gid 65532 (the image's config, and the running process as `podman top` sees it),
#   - has no shell and no package manager anywhere in its filesystem, and `--entrypoint /bin/sh` fails,
#   - carries the OCI labels, and has its binary as the entrypoint,
#   - answers `--version` with its crate's version and `--help`, exit 0;
# and the worker refuses to start without configuration, naming what is missing; the emulator starts
# with a read-only root, no capabilities and no privilege escalation (the chart's securityContext),
# answers /healthz over HTTPS on 127.0.0.1 with the CA it generated, and exits 0 on SIGTERM.
#
#   RUN_FLAGS   flags of every `run` (podman default: runc and explicit ulimits, which this project's
#               machines need: crun and the default ulimits are refused there)
set -euo pipefail
cd "$(dirname "$0")/.."
source images/lib.sh

engine=$(images_engine)
if [[ -z ${RUN_FLAGS+set} ]]; then
  RUN_FLAGS=""
  [[ $engine == podman ]] && RUN_FLAGS="--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
fi
read -ra run_flags <<<"$RUN_FLAGS"
failures=0
containers=()
cleanup() {
  for c in "${containers[@]}"; do "$engine" rm -f "$c" >/dev/null 2>&1 || true; done
  [[ -z ${state:-} ]] || rm -rf "$state"
}
trap cleanup EXIT

pass() { echo "  ok    $*"; }
fail() {
  echo "  FAIL  $*" >&2
  failures=$((failures + 1))
}
check() { # check "what" command…: passes when the command succeeds
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
run() { "$engine" run --rm --network none "${run_flags[@]}" "$@"; }

# Paths that must not exist in any image.
forbidden='^(bin|usr/bin|usr/sbin|sbin|usr/local/bin)/(sh|bash|dash|ash|busybox|apt|apt-get|dpkg|apk|microdnf|yum|rpm)$'

for name in "${IMAGES[@]}"; do
  version=$(images_crate_version "$name")
  image=$(images_repository "$name"):$version
  echo "$image"
  "$engine" image inspect "$image" >/dev/null 2>&1 || images_fail "$image does not exist: run \`make images\` first"

  user=$("$engine" image inspect --format '{{.Config.User}}' "$image")
  check "the image's user is 65532:65532 (is: $user)" test "$user" = 65532:65532
  entrypoint=$("$engine" image inspect --format '{{json .Config.Entrypoint}}' "$image")
  check "the entrypoint is the binary (is: $entrypoint)" test "$entrypoint" = "[\"/usr/local/bin/iotsub-$name\"]"
  for label in version revision licenses title description source; do
    value=$("$engine" image inspect --format "{{index .Config.Labels \"org.opencontainers.image.$label\"}}" "$image")
    if [[ -n $value || $label == source ]]; then pass "label org.opencontainers.image.$label=$value"; else fail "label org.opencontainers.image.$label is missing"; fi
  done

  # Every path in the image's filesystem, from a created (never started) container.
  container=$("$engine" create "$image")
  containers+=("$container")
  files=$("$engine" export "$container" | tar -t | sed 's|^\./||; s|/$||')
  "$engine" rm "$container" >/dev/null
  shells=$(grep -E "$forbidden" <<<"$files" || true)
  check "no shell or package manager in the filesystem${shells:+ (found: $shells)}" test -z "$shells"
  check "the CA bundle is there" grep -qx 'etc/ssl/certs/ca-certificates.crt' <<<"$files"
  if run --entrypoint /bin/sh "$image" -c true >/dev/null 2>&1; then
    fail "--entrypoint /bin/sh ran"
  else
    pass "--entrypoint /bin/sh fails"
  fi

  out=$(run "$image" --version 2>&1) && rc=0 || rc=$?
  check "--version exits 0 and says $version (exit $rc: $out)" test "$rc" = 0 -a "$out" = "iotsub-$name $version"
  out=$(run "$image" --help 2>&1) && rc=0 || rc=$?
  check "--help exits 0 (exit $rc)" test "$rc" = 0 -a -n "$out"
done

echo "the worker without configuration"
out=$(run "$(images_repository worker):$(images_crate_version worker)" 2>&1) && rc=0 || rc=$?
check "refuses to start: exit 2 (is: $rc)" test "$rc" = 2
check "names the missing settings: $(head -n 2 <<<"$out" | tr '\n' ' ')" grep -q -- '--host' <<<"$out"

echo "the emulator on 127.0.0.1, as the chart runs a pod (read-only root, no capabilities)"
read -r api_port amqp_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
# Its state directory (the generated CA) on the host, so curl can trust the API's certificate.
state=$(mktemp -d)
chmod 0777 "$state"
emulator=$("$engine" run -d "${run_flags[@]}" --network host --read-only --cap-drop ALL --security-opt no-new-privileges \
  -v "$state:/state" "$(images_repository emulator):$(images_crate_version emulator)" \
  --api-addr "127.0.0.1:$api_port" --amqp-addr "127.0.0.1:$amqp_port" --state-dir /state)
containers+=("$emulator")
healthy=""
for _ in $(seq 1 150); do # up to 30 s
  [[ -s $state/ca.pem ]] && healthy=$(curl -fsS --max-time 1 --cacert "$state/ca.pem" "https://127.0.0.1:$api_port/healthz" 2>/dev/null || true)
  [[ $healthy == ok ]] && break
  [[ $("$engine" inspect --format '{{.State.Running}}' "$emulator") == true ]] || break
  sleep 0.2
done
check "GET https://127.0.0.1:$api_port/healthz answers ok, trusting the CA it generated (is: ${healthy:-nothing})" test "$healthy" = ok
# The kernel's view of the running process: real, effective, saved and filesystem ids.
pid=$("$engine" inspect --format '{{.State.Pid}}' "$emulator")
ids=$(awk '/^(Uid|Gid):/ { $1 = ""; printf "%s;", $0 }' "/proc/$pid/status" 2>/dev/null | tr -s ' ' || true)
check "the process runs as uid and gid 65532 (/proc/$pid/status: ${ids:-gone})" test "$ids" = " 65532 65532 65532 65532; 65532 65532 65532 65532;"
"$engine" stop -t 10 "$emulator" >/dev/null
code=$("$engine" inspect --format '{{.State.ExitCode}}' "$emulator")
check "SIGTERM stops it with exit 0 (is: $code)" test "$code" = 0
[[ $code == 0 ]] || "$engine" logs "$emulator" 2>&1 | tail -n 20 >&2

if ((failures)); then
  echo "images-test: $failures check(s) failed" >&2
  exit 1
fi
echo "images-test: all checks passed"
