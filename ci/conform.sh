#!/usr/bin/env bash
# Conformance cases (fixtures/cases/*.toml) against our servers and the peers.
#
#   ci/conform.sh          all servers: host-py, host-c, gunicorn, waitress, granian, and,
#                          when ci/windows.sh has built target/windows/out, the Windows
#                          builds under Wine: host-c-win and host-py-win-py3XX (one column
#                          per out/py3XX folder; WINDOWS_CONFORM=0 leaves them out).
#                          Regenerates docs/CONFORMANCE.md. Peers come from .venv
#                          (ci/install.sh installs ci/peers-requirements.txt there).
#                          The Windows binaries are whatever ci/windows.sh last built: run
#                          it first so that they match the source.
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
# shellcheck source=ci/env.sh
. ci/env.sh
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

# The Windows builds, when present (ci/windows.sh; ci/windows-test.sh runs them in CI):
# each beside its Linux counterpart in the matrix.
py_win=()
c_win=()
win_args=()
win_out=${WINDOWS_OUT:-target/windows/out}
if [ "${WINDOWS_CONFORM:-1}" != 0 ] && [ -f "$win_out/bin/isapi-host.exe" ] && [ -x /usr/lib/wine/wine64 ]; then
  for d in "$win_out"/py3*; do
    [ -f "$d/pyisapie.dll" ] && py_win+=(--server "host-py-win-$(basename "$d")")
  done
  c_win=(--server host-c-win)
  win_args=(--windows-out "$win_out")
  echo "Windows columns from $win_out: ${py_win[*]} ${c_win[*]}"
fi

status=0
"$harness" conform --server host-py "${py_win[@]}" --server host-c "${c_win[@]}" \
  --server gunicorn --server waitress --server granian "${win_args[@]}" \
  --markdown docs/CONFORMANCE.md --junit target/conform/junit.xml "$@" || status=$?
echo "docs/CONFORMANCE.md regenerated (exit status $status: non-zero means one of OUR servers failed a case)"
exit "$status"
