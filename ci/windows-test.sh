#!/usr/bin/env bash
# ci/windows-test.sh - the host's suites on the Windows build, under Wine.
#
# Runs, against what ci/windows.sh laid out in target/windows/out (it runs this script
# at its end):
#   1. the host's end-to-end tests (cargo test --test e2e): out/bin/isapi-host.exe
#      with the PE fixtures of out/fixtures;
#   2. the conformance cases that need no Python against host-c-win, twice (each
#      case's own fragmenting, then --fragment random), as ci/conform.sh --ours does;
#   3. for each out/py3XX folder (embeddable CPython + pyisapie.dll + isapi-host.exe):
#      the WSGI end-to-end tests (cargo test --test wsgi), with a Windows virtualenv
#      holding ci/python-requirements.txt (target/windows/venv/py3XX, made here with
#      pip for win_amd64), and the WSGI conformance cases against host-py-win-py3XX;
#   4. pyisapie's unit tests built as a Windows program and run under Wine, beside the
#      first out/py3XX folder.
# The test binaries are the ordinary Linux ones; tests/support/mod.rs runs the .exe
# through Wine (ISAPI_HOST_TEST_BIN, ISAPI_HOST_TEST_RUNNER, ISAPI_TEST_FIXTURE_DIR,
# ISAPI_TEST_PYISAPIE). A test that cannot run on the Windows host says
# "SKIPPED: <test>: <reason>" in ISAPI_TEST_SKIP_LOG: it is counted as skipped, never
# as passed.
#
# Prints per-suite lines, then on its own line:
#   windows tests: N passed, M failed, K skipped
# (N and M count test functions and conformance cases; n/a cases are not counted).
# Exits non-zero on any failure, or when a suite did not run.
#
# Knobs: WINDOWS_DIR (default target/windows), WINDOWS_PYTHONS (versions that must be
# tested, default "3.11 3.12"; every other out/py3XX found is tested too),
# TEST_THREADS (default 2), CARGO_TARGET_DIR.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -f ci/windows-lib.sh ]; then
  # shellcheck source=ci/windows-lib.sh
  . ci/windows-lib.sh
fi
WINDOWS_DIR=${WINDOWS_DIR:-$PWD/target/windows}
case $WINDOWS_DIR in /*) ;; *) WINDOWS_DIR=$PWD/$WINDOWS_DIR ;; esac
WINDOWS_OUT=${WINDOWS_OUT:-$WINDOWS_DIR/out}
WINDOWS_PYTHONS=${WINDOWS_PYTHONS-"3.11 3.12"}  # "" (WINDOWS_PYTHONS=none): no Python suites required
WINE64=${WINE64:-/usr/lib/wine/wine64}
export WINEPREFIX=${WINEPREFIX:-$WINDOWS_DIR/wineprefix}
export WINEDEBUG=${WINEDEBUG:--all}
export WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-"mscoree,mshtml="}
threads=${TEST_THREADS:-2}
target="${CARGO_TARGET_DIR:-target}"
logs=$WINDOWS_DIR/test-logs
mkdir -p "$logs"

T0=$SECONDS
total_pass=0
total_fail=0
total_skip=0
status=0
summary=()
skip_lines=()
fail_lines=()

fail_suite() { # suite, message
  echo "windows-test: $1: $2" >&2
  summary+=("$(printf '%-34s did not run: %s' "$1" "$2")")
  total_fail=$((total_fail + 1))
  status=1
}

# cargo test output -> "passed failed" (sums every "test result:" line).
count_results() {
  grep '^test result:' "$1" | awk '{
    for (i = 1; i <= NF; i++) {
      if ($(i) ~ /^passed;?$/) p += $(i - 1)
      if ($(i) ~ /^failed;?$/) f += $(i - 1)
    }
  } END { print p + 0, f + 0 }'
}

# run_cargo_suite SUITE LOGNAME -- cargo test args... ; the environment is set by the caller.
run_cargo_suite() {
  local suite=$1 name=$2
  shift 3
  local log=$logs/$name.log skips=$logs/$name.skips t=$SECONDS rc=0
  rm -f "$skips"
  echo "== windows: $suite"
  ISAPI_TEST_SKIP_LOG=$skips cargo test "$@" --no-fail-fast -- --test-threads="$threads" >"$log" 2>&1 || rc=$?
  grep -E '^test .* (FAILED|ok)$|^test result:' "$log" | grep -v ' ok$' || true
  if ! grep -q '^test result:' "$log"; then
    tail -30 "$log"
    fail_suite "$suite" "cargo test exited with $rc before running tests (log: $log)"
    return
  fi
  local counts p f k
  counts=$(count_results "$log")
  p=${counts% *}
  f=${counts#* }
  k=0
  if [ -f "$skips" ]; then
    k=$(grep -c '^SKIPPED: ' "$skips" || true)
    while IFS= read -r line; do skip_lines+=("$suite: ${line#SKIPPED: }"); done <"$skips"
  fi
  # a skipped test returned early: libtest counted it as passed
  p=$((p - k))
  while IFS= read -r line; do fail_lines+=("$suite: $line"); done < <(grep -E '^test .* FAILED$' "$log" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    fail_suite "$suite" "cargo test exited with $rc (log: $log)"
  fi
  [ "$f" -gt 0 ] && status=1
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  total_skip=$((total_skip + k))
  summary+=("$(printf '%-34s %3d passed, %2d failed, %2d skipped  (%ss)' "$suite" "$p" "$f" "$k" $((SECONDS - t)))")
}

# run_conform SUITE OUTDIR harness-args... : every case of our server must pass.
run_conform() {
  local suite=$1 out=$2
  shift 2
  local log=$logs/$(basename "$out").log t=$SECONDS rc=0
  echo "== windows: $suite"
  "$harness" conform "$@" --out "$out" --markdown "$out/conformance.md" --junit "$out/junit.xml" >"$log" 2>&1 || rc=$?
  grep -E '^  (FAIL|.* did not start)' "$log" || true
  # "  host-c-win: 91 pass, 0 fail, 50 n/a"
  local line p f
  line=$(grep -E '^  host-[a-z0-9-]+: [0-9]+ pass, [0-9]+ fail' "$log" | tail -1)
  if [ -z "$line" ]; then
    tail -20 "$log"
    fail_suite "$suite" "isapi-harness exited with $rc (log: $log)"
    return
  fi
  p=$(sed -E 's/.*: ([0-9]+) pass.*/\1/' <<<"$line")
  f=$(sed -E 's/.* ([0-9]+) fail.*/\1/' <<<"$line")
  while IFS= read -r l; do fail_lines+=("$suite: ${l#  FAIL }"); done < <(grep -E '^  FAIL ' "$log")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    fail_suite "$suite" "isapi-harness exited with $rc (log: $log)"
  fi
  [ "$f" -gt 0 ] && status=1
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  summary+=("$(printf '%-34s %3d passed, %2d failed  (%ss; %s)' "$suite" "$p" "$f" $((SECONDS - t)) "$out/conformance.md")")
}

# A Windows virtualenv (Lib\site-packages, pyvenv.cfg) with ci/python-requirements.txt
# for CPython $1 (3.11), whose home is $2 (the out/py3XX folder). Made again only when
# the requirements change.
windows_venv() {
  local ver=$1 home=$2 venv=$3
  # Django needs tzdata on Windows, click colorama: pip adds neither for another platform.
  local extra="tzdata==2026.6 colorama==0.4.6"
  local stamp
  stamp=$(cat ci/python-requirements.txt <(echo "$extra $ver $home") | sha256sum | cut -c1-16)
  if [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$stamp" ]; then
    return 0
  fi
  rm -rf "$venv"
  mkdir -p "$venv/Lib/site-packages" "$venv/Scripts"
  local py=python3
  [ -x .venv/bin/python ] && py=.venv/bin/python
  # shellcheck disable=SC2086
  "$py" -m pip install -q --disable-pip-version-check --no-compile --target "$venv/Lib/site-packages" \
    --platform win_amd64 --python-version "$ver" --implementation cp --only-binary=:all: \
    -r ci/python-requirements.txt $extra || return 1
  rm -rf "$venv/Lib/site-packages/bin" # Linux entry-point scripts
  local win_home="Z:${home//\//\\}"
  printf 'home = %s\ninclude-system-site-packages = false\nversion = %s\n' "$win_home" "$ver" >"$venv/pyvenv.cfg"
  echo "$stamp" >"$venv/.stamp"
}

# ---- preconditions ----------------------------------------------------------------
if [ ! -x "$WINE64" ]; then
  echo "windows-test: $WINE64 missing (apt-get install wine64; ci/windows.sh does it)" >&2
  echo "windows tests: 0 passed, 1 failed, 0 skipped"
  exit 1
fi
host_exe=$WINDOWS_OUT/bin/isapi-host.exe
if [ ! -f "$host_exe" ] || [ ! -d "$WINDOWS_OUT/fixtures" ]; then
  echo "windows-test: no Windows build in $WINDOWS_OUT (run ci/windows.sh)" >&2
  echo "windows tests: 0 passed, 1 failed, 0 skipped"
  exit 1
fi
echo "== windows: $("$WINE64" --version), prefix $WINEPREFIX, build $WINDOWS_OUT"
# One wineserver for the whole run, kept 30 s after the last Windows process exits:
# each host start then costs a fraction of a second, not a new server (it fails
# harmlessly when one already runs for this prefix).
if command -v wineserver >/dev/null; then
  wineserver -p30 2>/dev/null || true
fi
# The first start in a fresh prefix creates it (several seconds): do it once, here.
"$WINE64" cmd /c exit >/dev/null 2>&1 || true

cargo build -q -p isapi-harness || fail_suite "build" "cargo build -p isapi-harness failed"
harness="$target/debug/isapi-harness"

# ---- 1. host e2e, 2. host conformance ---------------------------------------------
ISAPI_HOST_TEST_BIN=$host_exe ISAPI_HOST_TEST_RUNNER=$WINE64 ISAPI_TEST_FIXTURE_DIR=$WINDOWS_OUT/fixtures \
  run_cargo_suite "e2e (host-c-win)" e2e -- --test e2e
if [ -x "$harness" ]; then
  run_conform "conformance host-c-win" "$target/conform-win" \
    --server host-c-win --windows-out "$WINDOWS_OUT" --wine "$WINE64"
  run_conform "conformance host-c-win (random)" "$target/conform-win-random" \
    --server host-c-win --windows-out "$WINDOWS_OUT" --wine "$WINE64" --fragment random
fi

# ---- 3. WSGI, per Python version -----------------------------------------------------
folders=()
for d in "$WINDOWS_OUT"/py3*; do
  [ -d "$d" ] && folders+=("$(basename "$d")")
done
for v in $WINDOWS_PYTHONS; do
  tag="py${v/./}"
  if [ ! -d "$WINDOWS_OUT/$tag" ]; then
    fail_suite "wsgi $tag" "$WINDOWS_OUT/$tag missing (WINDOWS_PYTHONS has $v; run ci/windows.sh)"
  fi
done
for tag in "${folders[@]}"; do
  dir=$WINDOWS_OUT/$tag
  ver="3.${tag#py3}"
  if [ ! -f "$dir/isapi-host.exe" ] || [ ! -f "$dir/pyisapie.dll" ]; then
    fail_suite "wsgi $tag" "$dir has no isapi-host.exe or pyisapie.dll"
    continue
  fi
  venv=$WINDOWS_DIR/venv/$tag
  if ! windows_venv "$ver" "$dir" "$venv"; then
    echo "windows-test: pip could not make the Windows venv $venv: the framework tests will fail" >&2
  fi
  # (ISAPI_TEST_PYTHON_VERSION: tests/wsgi_python.rs checks that this folder's Python served)
  ISAPI_HOST_TEST_BIN=$dir/isapi-host.exe ISAPI_HOST_TEST_RUNNER=$WINE64 ISAPI_TEST_PYISAPIE=$dir/pyisapie.dll \
    ISAPI_TEST_PYTHON_VERSION=$ver PYISAPIE_TEST_VENV=$venv run_cargo_suite "wsgi $tag (host-py-win-$tag)" "wsgi-$tag" -- --test wsgi
  if [ -x "$harness" ]; then
    run_conform "conformance host-py-win-$tag" "$target/conform-win-$tag" \
      --server "host-py-win-$tag" --windows-out "$WINDOWS_OUT" --wine "$WINE64"
    run_conform "conformance host-py-win-$tag (random)" "$target/conform-win-$tag-random" \
      --server "host-py-win-$tag" --windows-out "$WINDOWS_OUT" --wine "$WINE64" --fragment random
  fi
done

# ---- 4. pyisapie's own unit tests, as a Windows program --------------------------------
# The Windows-only code (the library's folder, TRANSMIT_FILE handles from Python's C
# runtime, the path rules) runs natively under Wine, next to the first CPython laid out.
# Its own target dir: `test` in -Zbuild-std would rebuild std in cargo-py3XX each time.
if [ ${#folders[@]} -gt 0 ]; then
  tag=${folders[0]}
  ver="3.${tag#py3}"
  unit_dir=$WINDOWS_DIR/cargo-unit-$tag
  PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_PROFILE_RELEASE_DEBUG=0 \
    PYO3_CROSS=1 PYO3_CROSS_PYTHON_VERSION="$ver" PYISAPIE_TEST_PYTHON_DIR="$WINDOWS_OUT/$tag" \
    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$PWD/isapi-dll/scripts/wine-test-runner.sh" \
    run_cargo_suite "pyisapie unit tests ($tag, native)" "unit-$tag" -- \
    -Zbuild-std=std,panic_abort,test --target x86_64-pc-windows-gnu --target-dir "$unit_dir" \
    --config 'target.x86_64-pc-windows-gnu.linker="x86_64-w64-mingw32-gcc"' -p pyisapie --lib
fi

# ---- summary ---------------------------------------------------------------------------
echo
echo "== windows: test summary (logs: $logs)"
printf '  %s\n' "${summary[@]}"
if [ ${#skip_lines[@]} -gt 0 ]; then
  echo "  skipped on Windows:"
  printf '    %s\n' "${skip_lines[@]}"
fi
if [ ${#fail_lines[@]} -gt 0 ]; then
  echo "  failed on Windows:"
  printf '    %s\n' "${fail_lines[@]}"
fi
echo "  time: $((SECONDS - T0))s"
echo "windows tests: ${total_pass} passed, ${total_fail} failed, ${total_skip} skipped"
exit "$status"
