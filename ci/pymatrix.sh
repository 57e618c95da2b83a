#!/usr/bin/env bash
# ci/pymatrix.sh - pyisapie built against other Pythons, each with its WSGI end-to-end tests.
#
#   ci/pymatrix.sh [--prepare | --build-only] [3.X ...] [-- CARGO_TEST_ARGS...]
#
# Versions default to 3.9 3.10 3.12 3.13: every supported Python but the 3.11 that
# ci/test.sh runs the whole suite on (any 3.9 or later may be named, 3.11 too). For each:
#   1. its interpreter: the newest $PYENV_ROOT/versions/3.X.N (default ~/.pyenv), else
#      python3.X on PATH. It must have a shared libpython (built with --enable-shared).
#      A version not found, or without a shared libpython, prints
#      "skipped: Python 3.X not found (...)" and never counts as passed.
#   2. pyisapie built against it (debug): PYO3_PYTHON=that python, its own
#      CARGO_TARGET_DIR=$TARGET/py/3.X (so the main target is never rebuilt), linked with
#      an rpath to that Python's LIBDIR, so libpyisapie.so loads that libpython and no
#      other, without LD_LIBRARY_PATH.
#   3. a venv, $TARGET/py/3.X/venv, with ci/python-requirements-3.X.txt where the pins must
#      differ for that Python, else ci/python-requirements.txt; made again when the
#      requirements file changes.
#   4. the host built in the main target ($TARGET/debug/isapi-host, as ci/test.sh builds
#      it), hard-linked next to that libpyisapie.so: the host loads the pyisapie next to its
#      binary (--app, and tests/support's pyisapie_lib()). Then `cargo test` with
#      ISAPI_HOST_TEST_BIN at that link, PYISAPIE_TEST_VENV and VIRTUAL_ENV at the venv
#      (never the 3.11 .venv of the working directory), and ISAPI_TEST_PYTHON_VERSION /
#      ISAPI_TEST_PYTHON_PREFIX, which tests/wsgi_python.rs checks against the running
#      interpreter (sys.version, sys.base_prefix, the libpython mapped in the host).
#
# Then pyisapie's unit tests against that Python (cargo test -p pyisapie --lib; PYMATRIX_UNIT=0
# leaves them out).
#
# The default cargo test arguments run the WSGI end-to-end tests (tests/wsgi.rs: environ,
# input, response, errors, close, threads, files, config, Flask and Django, wsgi_python;
# about 60 tests, 5 to 10 s), not the host's (tests/e2e.rs, which no Python changes):
# `--test wsgi -- --test-threads=N $PYMATRIX_SUBSET` (libtest filters, e.g.
# "wsgi_environ:: wsgi_input::"). Arguments after `--` replace them, e.g.
#   ci/pymatrix.sh 3.13 -- --test wsgi -- wsgi_input    (one module)
#
# --prepare     steps 1 and 3 only (ci/install.sh runs it: the venvs need PyPI).
# --build-only  steps 1 to 3, then prints the environment that runs the tests by hand.
#
# Output: a line per version, then
#   python matrix: 3.9 ok, 3.10 ok, 3.12 FAILED, 3.13 skipped
# Exits 1 when a version failed (its build, venv or tests), else 0; a skipped version
# fails the run only with PYMATRIX_STRICT=1. Logs: $TARGET/py/3.X/{build,pip,test}.log.
# Knobs: PYENV_ROOT, TEST_THREADS (default 2), CARGO_TARGET_DIR, PYMATRIX_SUBSET,
# PYMATRIX_STRICT, PYMATRIX_UNIT.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

mode="test"
versions=()
test_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --prepare) mode=prepare ;;
    --build-only) mode=build ;;
    --) shift; test_args=("$@"); break ;;
    3.[0-9] | 3.[0-9][0-9]) versions+=("$1") ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "pymatrix: unknown argument $1 (versions are 3.X; cargo test arguments follow --)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#versions[@]} -gt 0 ] || versions=(3.9 3.10 3.12 3.13)
# cargo (and ci_version_ge); --prepare needs no cargo.
# shellcheck source=ci/env.sh
. ci/env.sh || [ "$mode" = prepare ] || exit 1
threads=${TEST_THREADS:-2}
subset=${PYMATRIX_SUBSET:-}
if [ ${#test_args[@]} -eq 0 ]; then
  # shellcheck disable=SC2206 # the subset is a list of filters
  test_args=(--test wsgi -- --test-threads="$threads" $subset)
fi
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$PWD/$target ;; esac
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}

say() { echo "pymatrix: $*"; }

# find_python 3.X: prints the interpreter's path, or why there is none (status 1).
find_python() {
  local v=$1 p cand=() shared
  # pyenv's 3.X.N folders, newest first (not 3.Xt, 3.X-dev, ...).
  for p in $(printf '%s\n' "$pyenv_root"/versions/"$v".* | grep -E "/$v\.[0-9]+$" | sort -rV); do
    [ -x "$p/bin/python$v" ] && cand+=("$p/bin/python$v")
  done
  # then python3.X on PATH (pyenv's shims aside: they run whatever pyenv selects).
  local IFS=: d
  for d in $PATH; do
    case $d in */shims | "") continue ;; esac
    if [ -x "$d/python$v" ]; then
      cand+=("$d/python$v")
      break
    fi
  done
  unset IFS
  if [ ${#cand[@]} -eq 0 ]; then
    echo "not found (looked in $pyenv_root/versions and for python$v on PATH)"
    return 1
  fi
  for p in "${cand[@]}"; do
    # the library, not just the flag: Debian's python3.X needs libpython3.X-dev's .so.
    shared=$("$p" -c 'import os, sysconfig as s
lib = os.path.join(s.get_config_var("LIBDIR") or "", s.get_config_var("LDLIBRARY") or "")
print(lib if s.get_config_var("Py_ENABLE_SHARED") and os.path.exists(lib) else "")' 2>/dev/null) || continue
    if [ -n "$shared" ]; then
      echo "$p"
      return 0
    fi
  done
  echo "found (${cand[*]}) but without a shared libpython (build it with --enable-shared)"
  return 1
}

# make_venv 3.X PYTHON DIR: the venv with that version's pinned requirements.
make_venv() {
  local v=$1 py=$2 dir=$3 req stamp want
  req=ci/python-requirements-$v.txt
  [ -f "$req" ] || req=ci/python-requirements.txt
  stamp=$dir/venv/.pymatrix-requirements
  want="$("$py" -c 'import sys; print(sys.version)') $(sha256sum "$req" | cut -d' ' -f1) $req"
  if [ -x "$dir/venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  mkdir -p "$dir"
  "$py" -m venv --clear "$dir/venv" >"$dir/pip.log" 2>&1 &&
    "$dir/venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >>"$dir/pip.log" 2>&1 &&
    echo "$want" >"$stamp"
}

# build_pyisapie PYTHON DIR: libpyisapie.so for that Python in DIR/debug.
build_pyisapie() {
  local py=$1 dir=$2 libdir
  libdir=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
  # `cargo rustc` gives the rpath to pyisapie's own link only; the dependencies are built
  # as usual (PYO3_PYTHON is all they see).
  PYO3_PYTHON=$py CARGO_TARGET_DIR=$dir cargo rustc -p pyisapie --lib -q \
    -- -C "link-arg=-Wl,-rpath,$libdir" >"$dir/build.log" 2>&1
}

if [ "$mode" = test ]; then
  # The normal host and the test binaries, in the main target (nothing to do after
  # ci/test.sh built them).
  cargo_args=()
  for a in "${test_args[@]}"; do
    [ "$a" = -- ] && break
    cargo_args+=("$a")
  done
  say "building the host and the tests (main target)"
  if ! cargo build -q --bin isapi-host || ! cargo test -q --no-run "${cargo_args[@]}"; then
    echo "python matrix: the host or the tests do not build"
    exit 1
  fi
fi

results=()
status=0
for v in "${versions[@]}"; do
  t=$SECONDS
  dir=$target/py/$v
  if ! ci_version_ge "$v" 3.9; then
    echo "skipped: Python $v is older than 3.9 (pyo3 0.30 needs 3.9 or later)"
    results+=("$v skipped")
    continue
  fi
  if ! py=$(find_python "$v"); then
    echo "skipped: Python $v $py"
    results+=("$v skipped")
    [ "${PYMATRIX_STRICT:-0}" = 1 ] && status=1
    continue
  fi
  full=$("$py" -c 'import platform; print(platform.python_version())')
  prefix=$("$py" -c 'import sys; print(sys.base_prefix)')
  say "$v: $py (Python $full)"
  mkdir -p "$dir"
  if ! make_venv "$v" "$py" "$dir"; then
    tail -n 20 "$dir/pip.log"
    echo "pymatrix: $v: the venv could not be made (log: $dir/pip.log)"
    results+=("$v FAILED (venv)")
    status=1
    continue
  fi
  if [ "$mode" = prepare ]; then
    results+=("$v venv ready")
    continue
  fi
  if ! build_pyisapie "$py" "$dir"; then
    tail -n 30 "$dir/build.log"
    echo "pymatrix: $v: pyisapie does not build against Python $full (log: $dir/build.log)"
    results+=("$v FAILED (build)")
    status=1
    continue
  fi
  built=$((SECONDS - t))
  lib=$dir/debug/libpyisapie.so
  host=$dir/debug/isapi-host
  # (a hard link: the host finds pyisapie next to the path it was started by)
  if [ -f "$target/debug/isapi-host" ]; then
    ln -f "$target/debug/isapi-host" "$host" 2>/dev/null || cp -f "$target/debug/isapi-host" "$host"
  fi
  if [ "$mode" = build ]; then
    libdir=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
    say "$v: built in ${built}s: $lib"
    echo "  the end-to-end tests on it ($host is a hard link of $target/debug/isapi-host: make it again after rebuilding the host):"
    echo "    ISAPI_HOST_TEST_BIN=$host PYISAPIE_TEST_VENV=$dir/venv VIRTUAL_ENV=$dir/venv ISAPI_TEST_PYTHON_VERSION=$full ISAPI_TEST_PYTHON_PREFIX=$prefix cargo test --test wsgi"
    echo "  pyisapie's unit tests on it (--lib: the library above stays as it is):"
    echo "    PYO3_PYTHON=$py CARGO_TARGET_DIR=$dir LD_LIBRARY_PATH=$libdir cargo test -p pyisapie --lib"
    results+=("$v built")
    continue
  fi
  rc=0
  ISAPI_HOST_TEST_BIN=$host ISAPI_TEST_PYISAPIE=$lib \
    PYISAPIE_TEST_VENV=$dir/venv VIRTUAL_ENV=$dir/venv \
    ISAPI_TEST_PYTHON_VERSION=$full ISAPI_TEST_PYTHON_PREFIX=$prefix \
    cargo test "${test_args[@]}" >"$dir/test.log" 2>&1 || rc=$?
  # pyisapie's unit tests too (the own-GIL ones run on 3.12 and later only): the same
  # dependencies, and the library above is left as it is; the test program finds
  # libpython through LD_LIBRARY_PATH.
  if [ "${PYMATRIX_UNIT:-1}" = 1 ]; then
    libdir=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
    PYO3_PYTHON=$py CARGO_TARGET_DIR=$dir LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
      cargo test -p pyisapie --lib -- --test-threads="$threads" >>"$dir/test.log" 2>&1 || rc=$?
  fi
  grep -E '^test .* FAILED$' "$dir/test.log" || true
  passed=$(grep '^test result:' "$dir/test.log" | grep -Eo '[0-9]+ passed' | awk '{ n += $1 } END { print n + 0 }')
  failed=$(grep '^test result:' "$dir/test.log" | grep -Eo '[0-9]+ failed' | awk '{ n += $1 } END { print n + 0 }')
  if [ "$rc" -eq 0 ] && [ "$passed" -gt 0 ]; then
    say "$v: ok: $passed passed (build ${built}s, total $((SECONDS - t))s)"
    results+=("$v ok")
  else
    tail -n 40 "$dir/test.log"
    say "$v: FAILED: $passed passed, $failed failed, cargo test exit $rc (log: $dir/test.log)"
    results+=("$v FAILED")
    status=1
  fi
done

line=""
for r in "${results[@]}"; do line="${line:+$line, }$r"; done
echo "python matrix: $line"
exit "$status"
