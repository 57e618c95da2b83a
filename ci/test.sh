#!/usr/bin/env bash
# The whole test suite: unit tests, end-to-end tests against the real host,
# the real pyisapie extension and the C fixtures, then the conformance cases
# against our two servers. Run ci/install.sh once first.
set -euo pipefail
cd "$(dirname "$0")/.."
# cargo, even where this shell's PATH does not know it yet (see ci/env.sh).
# shellcheck source=ci/env.sh
. ci/env.sh
export PYISAPIE_TEST_VENV="${PYISAPIE_TEST_VENV:-$PWD/.venv}"

# The e2e tests find libpyisapie.so next to the isapi-host binary.
cargo build --workspace --all-targets

# Lints and structure, before the long run: clippy with warnings as errors
# (undocumented unsafe blocks, missing docs on the library crates, ...), and
# no source file over 700 lines (test files aside).
cargo clippy --workspace --all-targets -q -- -D warnings
long=$(find src isapi-dll/src harness/src crates -name '*.rs' ! -name 'tests.rs' ! -path '*/tests/*' \
  -exec awk 'END { if (NR > 700) print FILENAME ": " NR " lines" }' {} \;)
if [ -n "$long" ]; then
  echo "source files over 700 lines (split them):" >&2
  echo "$long" >&2
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets --no-fail-fast -- --test-threads="${TEST_THREADS:-2}" 2>&1 | tee "$log" || status=$?

# The other Pythons: pyisapie built against 3.9, 3.10, 3.12 and 3.13 (pyenv's), each with
# the WSGI end-to-end tests and pyisapie's unit tests (ci/pymatrix.sh); a version not found
# is reported skipped.
matrix_status=0
# (its lines go to stderr through cat: `tee /dev/stderr` would reopen, and truncate, a log
# file that stderr is redirected to)
matrix_line=$(ci/pymatrix.sh 2>&1 | tee >(cat >&2) | tail -n 1) || matrix_status=$?
case $matrix_line in "python matrix: "*) ;; *) matrix_line="python matrix: FAILED (ci/pymatrix.sh did not finish)" matrix_status=1 ;; esac

conform_status=0
if [ -x ci/conform.sh ]; then
  ci/conform.sh --ours || conform_status=$?
fi

# Request smuggling: the desync cases against the host directly and through nginx and
# HAProxy (ci/install.sh installs them); any failing case fails the run.
harness="${CARGO_TARGET_DIR:-target}/debug/isapi-harness"
smuggle_status=0
"$harness" smuggle || smuggle_status=$?

# A 60-second soak: a mixed load at 256 keep-alive connections; fails on an unexpected
# error, RSS growing 5 % or more over its last half, or a descriptor leak.
soak_status=0
"$harness" soak --duration "${SOAK_DURATION:-60s}" || soak_status=$?

# Fuzzing: every cargo-fuzz target (fuzz/) for FUZZ_SECONDS (30) from its seeds; a crash fails.
fuzz_status=0
ci/fuzz.sh || fuzz_status=$?

# Sanitizers: the e2e tests against an AddressSanitizer host and C fixtures (ci/asan.sh),
# the ffi unit tests under Miri (ci/miri.sh). Each ends with "asan: ok", "... FAILED (why)"
# or "... skipped (why)" (no toolchain: not a failure, never silent).
asan_line=$(ci/asan.sh 2>&1 | tee >(cat >&2) | tail -n 1) || true
miri_line=$(ci/miri.sh 2>&1 | tee >(cat >&2) | tail -n 1) || true
case $asan_line in "asan: ok" | "asan: skipped ("*) ;; "asan: FAILED"*) status=1 ;; *) asan_line="asan: FAILED (ci/asan.sh did not finish)" status=1 ;; esac
case $miri_line in "miri: ok" | "miri: skipped ("*) ;; "miri: FAILED"*) status=1 ;; *) miri_line="miri: FAILED (ci/miri.sh did not finish)" status=1 ;; esac

# One closing line over every test binary.
sum() { grep -Eo "[0-9]+ $1" | awk '{ n += $1 } END { print n + 0 }'; }
passed=$(grep '^test result:' "$log" | sum passed || true)
failed=$(grep '^test result:' "$log" | sum failed || true)
echo "$matrix_line"
echo "conformance: $([ "$conform_status" -eq 0 ] && echo ok || echo FAILED)"
echo "smuggling: $([ "$smuggle_status" -eq 0 ] && echo ok || echo FAILED)"
echo "soak: $([ "$soak_status" -eq 0 ] && echo ok || echo FAILED)"
echo "fuzz: $([ "$fuzz_status" -eq 0 ] && echo ok || echo FAILED)"
echo "$asan_line"
echo "$miri_line"
echo "tests: ${passed} passed, ${failed} failed"
if [ "$status" -ne 0 ] || [ "$matrix_status" -ne 0 ] || [ "$conform_status" -ne 0 ] || [ "$smuggle_status" -ne 0 ] || [ "$soak_status" -ne 0 ] || [ "$fuzz_status" -ne 0 ]; then
  exit 1
fi
