#!/usr/bin/env bash
# Installs what the tests need beyond Rust: idempotent, and quick when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

python_has() { python3 -c "import $1" >/dev/null 2>&1; }

# Qpid Proton builds from source and only links TLS when OpenSSL's headers are there.
if ! python_has proton || ! python3 -c "import proton,sys; sys.exit(0 if proton.SSL.present() else 1)" >/dev/null 2>&1; then
  if ! dpkg -s libssl-dev >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq libssl-dev pkg-config
  fi
  python3 -m pip install -q --force-reinstall --no-binary python-qpid-proton "python-qpid-proton==0.40.0"
fi
python_has pytest || python3 -m pip install -q pytest

if [[ -x scripts/install-kube-tools.sh ]]; then
  scripts/install-kube-tools.sh
fi
