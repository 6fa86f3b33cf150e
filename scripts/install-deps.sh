#!/usr/bin/env bash
# Installs what the tests need beyond Rust: idempotent, and quick when everything is present.
#
#   scripts/install-deps.sh            what `make test` needs (no container engine: it builds no image)
#   scripts/install-deps.sh --images   also podman and runc, for `make images` and `make images-test`
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
if ((${#missing[@]})); then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
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
