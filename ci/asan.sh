#!/usr/bin/env bash
# AddressSanitizer over the host's end-to-end tests with the C fixtures (tests/e2e.rs).
#
#   ci/asan.sh [TEST FILTER...]      e.g. ci/asan.sh host_ssf
#
# 1. Builds isapi-host with -Zsanitizer=address for an explicit --target (so build
#    scripts and proc-macros stay uninstrumented) into $ASAN_TARGET_DIR (target/asan).
#    The toolchain: nightly when rustup has it, else the stable one with
#    RUSTC_BOOTSTRAP=1 (it ships the same runtime, librustc-stable_rt.asan.a).
#    - With the `fuzzing` feature, which swaps the global allocator (mimalloc) for the
#      system one: ASan's malloc, with a redzone around every block, so that the
#      host's own heap is checked as precisely as the C fixtures'. (mimalloc built with
#      MI_TRACK_ASAN poisons only past its per-block padding: a one-byte overflow of a
#      block whose size is exactly a size class went unseen.) The feature adds nothing
#      else to the binary but a hidden module the fuzz targets call.
#    - The runtime is linked statically into the host; -Wl,--export-dynamic makes its
#      __asan_* symbols (and malloc and friends) visible to libraries the host dlopens.
# 2. Compiles every fixtures/isapi-c/*.c with -fsanitize=address, compiled only: the
#    shared libraries are linked without libasan, so their __asan_* references bind
#    to the host's one runtime (gcc's libasan.so beside it would be a second runtime).
# 3. Runs `cargo test --test e2e` (the test binary itself is the plain build) with
#    ISAPI_HOST_TEST_BIN and ISAPI_TEST_FIXTURE_DIR pointing at those, so every host
#    process a test starts (supervisor and workers) is the instrumented one.
#
# A report fails the run even when the test around it passes (a test that expects the
# connection to drop would): ASAN_OPTIONS sends every report to a file under
# $ASAN_TARGET_DIR/reports, and any file there afterwards is printed and fails the run.
#   halt_on_error=1  the first error ends the process (the default, stated);
#   detect_leaks=0   LeakSanitizer cannot see into mimalloc's pages, so blocks a
#                    fixture malloc()s and the host keeps only in its own heap would be
#                    reported as leaks; the tests also kill most hosts, and the soak
#                    (isapi-harness soak) watches RSS instead;
#   handle_segv=0    tests crash workers on purpose (crash.c) and check that the
#                    supervisor reports "killed by SIGSEGV": ASan must not turn that
#                    signal into its own report and exit code;
#   quarantine_size_mb=16  freed blocks wait in a 16 MiB quarantine (a use after free
#                    is caught while the block is among the last 16 MiB freed), not the
#                    default 256 MiB: the tests that bound the host's RSS growth at
#                    64 MiB (100 MB uploads, 256 MiB responses) keep their limits.
# Pyisapie (Python) is not run here: the tests that need it skip when it is not next
# to the host (see docs/RELIABILITY.md, "Sanitizers").
#
# Prints "asan: ok", "asan: FAILED" or "asan: skipped (why)" as its last line; a
# skip exits 0, so that a machine without the toolchain does not fail CI, but never
# silently.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=ci/env.sh
. ci/env.sh || exit 1

skip() {
  echo "asan: skipped ($*)"
  exit 0
}
fail() {
  echo "asan: FAILED ($*)"
  exit 1
}

triple=x86_64-unknown-linux-gnu
[ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] || skip "needs Linux on x86_64"

# The toolchain.
toolchain=()
if command -v rustup >/dev/null 2>&1 && rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
  sysroot=$(rustup run nightly rustc --print sysroot)
else
  sysroot=$(rustc --print sysroot 2>/dev/null) || skip "no rustc"
  export RUSTC_BOOTSTRAP=1
fi
ls "$sysroot/lib/rustlib/$triple/lib/"librustc-*_rt.asan.a >/dev/null 2>&1 ||
  skip "no ASan runtime in $sysroot (rustup toolchain install nightly)"

# The C compiler must instrument the fixtures.
cc=${CC:-cc}
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int f(int *p) { return *p; }\n' >"$probe/p.c"
"$cc" -fsanitize=address -c -o "$probe/p.o" "$probe/p.c" 2>/dev/null ||
  skip "$cc cannot compile with -fsanitize=address"

plain_target=${CARGO_TARGET_DIR:-target}
asan_target=${ASAN_TARGET_DIR:-target/asan}
case $asan_target in /*) ;; *) asan_target=$PWD/$asan_target ;; esac
reports="$asan_target/reports"
fixtures="$asan_target/fixtures"
host="$asan_target/$triple/debug/isapi-host"
started=$(date +%s)

# ---- 1. the instrumented host ------------------------------------------------------
echo "asan: building the host ($asan_target)"
CARGO_TARGET_DIR=$asan_target \
  RUSTFLAGS="-Zsanitizer=address -Cforce-frame-pointers=yes -Clink-arg=-Wl,--export-dynamic" \
  cargo "${toolchain[@]}" build -q --bin isapi-host --features fuzzing --target "$triple" ||
  fail "building the instrumented host"
nm -D "$host" 2>/dev/null | grep ' T __asan_report_load8$' >/dev/null ||
  fail "$host does not export the ASan runtime"

# ---- 2. the instrumented fixtures --------------------------------------------------
mkdir -p "$fixtures"
for src in fixtures/isapi-c/*.c; do
  name=$(basename "$src" .c)
  if ! "$cc" -O1 -g -fsanitize=address -fno-omit-frame-pointer -fPIC -pthread \
    -Wall -Wextra -Werror -I fixtures/isapi-c -c -o "$fixtures/$name.o" "$src" ||
    ! "$cc" -shared -pthread -o "$fixtures/lib$name.so" "$fixtures/$name.o"; then
    fail "compiling $src"
  fi
done

# ---- 3. the end-to-end tests against them ------------------------------------------
# Tests not run here, each with its reason (printed), as
#   "module::test|why"
# (none at present: keep the list, so that an exclusion is always stated).
not_run=()
skip_args=()
for entry in "${not_run[@]}"; do
  echo "asan: not run: ${entry%%|*} (${entry#*|})"
  skip_args+=(--skip "${entry%%|*}")
done
rm -rf "$reports"
mkdir -p "$reports"
skip_log="$asan_target/skipped.log"
rm -f "$skip_log"
echo "asan: cargo test --test e2e, host $host"
status=0
test_log="$asan_target/e2e.log"
CARGO_TARGET_DIR=$plain_target \
  ISAPI_HOST_TEST_BIN="$host" \
  ISAPI_TEST_FIXTURE_DIR="$fixtures" \
  ISAPI_TEST_SKIP_LOG="$skip_log" \
  ASAN_OPTIONS="halt_on_error=1:detect_leaks=0:handle_segv=0:quarantine_size_mb=16:log_path=$reports/asan" \
  cargo test -q --test e2e -- --test-threads="${TEST_THREADS:-2}" "${skip_args[@]}" "$@" 2>&1 |
  tee "$test_log" || status=$?
# Tests that skip themselves (those needing pyisapie, which is not built here) say so.
if [ -s "$skip_log" ]; then
  echo "asan: $(wc -l <"$skip_log") test(s) skipped themselves:"
  sed 's/^/asan:   /' "$skip_log"
fi

found=$(find "$reports" -type f | sort)
if [ -n "$found" ]; then
  for f in $found; do
    echo "---- $f"
    cat "$f"
  done
fi
echo "asan: $(($(date +%s) - started)) s"
[ -z "$found" ] || fail "$(echo "$found" | wc -l) AddressSanitizer report(s), above"
# The failed tests by name, in the summary line (CI keeps only the end of the output).
failed=$(awk '/^failures:$/ { names = ""; on = 1; next }
  on && /^    [A-Za-z0-9_:]+$/ { names = names (names ? ", " : "") $1; next }
  { on = 0 } END { print names }' "$test_log")
[ "$status" -eq 0 ] || fail "end-to-end tests failed under ASan: ${failed:-see above}"
echo "asan: ok"
