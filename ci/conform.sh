#!/usr/bin/env bash
# Conformance cases (fixtures/cases/*.toml) against our servers and the peers.
#
#   ci/conform.sh          all servers: host-py, host-c, gunicorn, waitress, granian.
#                          Regenerates docs/CONFORMANCE.md. Peers come from .venv
#                          (ci/install.sh installs ci/peers-requirements.txt there).
#   ci/conform.sh --ours   host-py and host-c only, as CI runs it, twice: with each case's
#                          own fragmenting, then with every request split at random
#                          points (--fragment random). The exit status is non-zero when
#                          any case fails for our servers. JUnit: target/conform/junit.xml
#                          and target/conform-random/junit.xml.
#
# Extra arguments are passed to `isapi-harness conform` (e.g. --only chunk, -v,
# --fragment random). Outputs: target/conform/{conformance.md,junit.xml,logs/}.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYO3_PYTHON="${PYO3_PYTHON:-/usr/bin/python3}"
target="${CARGO_TARGET_DIR:-target}"

cargo build -q -p isapi-host -p pyisapie -p isapi-harness
harness="$target/debug/isapi-harness"

if [ "${1:-}" = "--ours" ]; then
  shift
  status=0
  # 1. every case with its own fragmenting mode
  "$harness" conform --server host-py --server host-c \
    --markdown target/conform/conformance.md --junit target/conform/junit.xml "$@" || status=$?
  # 2. every case again, each request split at seeded random points into many writes
  "$harness" conform --server host-py --server host-c --fragment random --out target/conform-random \
    --markdown target/conform-random/conformance.md --junit target/conform-random/junit.xml "$@" || status=$?
  exit "$status"
fi

status=0
"$harness" conform --server host-py --server host-c --server gunicorn --server waitress --server granian \
  --markdown docs/CONFORMANCE.md --junit target/conform/junit.xml "$@" || status=$?
echo "docs/CONFORMANCE.md regenerated (exit status $status: non-zero means one of OUR servers failed a case)"
exit "$status"
