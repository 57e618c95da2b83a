# ci/windows-lib.sh - shared settings for the Windows build (ci/windows.sh) and the
# Windows tests under Wine (ci/windows-test.sh). Source it from the repository root:
#   . ci/windows-lib.sh
# It only sets variables and defines functions; it runs nothing.
#
# Knobs (environment):
#   WINDOWS_PYTHONS  Python versions to build pyisapie.dll for (default "3.11 3.12";
#                    "none" for none)
#   WINDOWS_DIR      root of everything Windows (default target/windows)

WINDOWS_PYTHONS=${WINDOWS_PYTHONS:-"3.11 3.12"}
# "none": only isapi-host.exe and the fixtures, no pyisapie.dll and no CPython
# (for running another project's ISAPI DLLs, see the README).
[ "$WINDOWS_PYTHONS" = none ] && WINDOWS_PYTHONS=""
WINDOWS_DIR=${WINDOWS_DIR:-$PWD/target/windows}
case $WINDOWS_DIR in /*) ;; *) WINDOWS_DIR=$PWD/$WINDOWS_DIR ;; esac
WINDOWS_TRIPLE=x86_64-pc-windows-gnu
WINDOWS_OUT=$WINDOWS_DIR/out            # bin/, fixtures/, py3XX/
WINDOWS_DOWNLOADS=$WINDOWS_DIR/downloads
MINGW_PREFIX=x86_64-w64-mingw32
WINE64=/usr/lib/wine/wine64             # the plain `wine` wrapper looks for the 32-bit loader
export WINDOWS_PYTHONS WINDOWS_DIR WINDOWS_OUT

# Quiet Wine, its own prefix, no Mono/Gecko install prompts.
export WINEPREFIX=${WINEPREFIX:-$WINDOWS_DIR/wineprefix}
export WINEDEBUG=${WINEDEBUG:--all}
export WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-"mscoree,mshtml="}

# 3.11 -> py311
windows_py_tag() { echo "py${1/./}"; }

# The cargo target dir of one Python version: $WINDOWS_DIR/cargo-py311.
windows_cargo_dir() { echo "$WINDOWS_DIR/cargo-$(windows_py_tag "$1")"; }

# The Python version whose cargo target dir also builds isapi-host.exe:
# 3.11 when it is in WINDOWS_PYTHONS, else the first one, else none.
windows_host_python() {
  local v
  for v in $WINDOWS_PYTHONS; do [ "$v" = 3.11 ] && { echo 3.11; return; }; done
  set -- $WINDOWS_PYTHONS
  echo "${1:-}"
}

# The cargo target dir that builds isapi-host.exe.
windows_host_cargo_dir() {
  local py
  py=$(windows_host_python)
  if [ -n "$py" ]; then windows_cargo_dir "$py"; else echo "$WINDOWS_DIR/cargo-host"; fi
}

# Names a PE file exports (one a line), from objdump's export table.
windows_dll_exports() {
  "$MINGW_PREFIX-objdump" -p "$1" | awk '
    /^\[Ordinal\/Name Pointer\] Table/ { t = 1; next }
    t && /^[ \t]*\[ *[0-9]+\]/ { print $NF; next }
    t { t = 0 }'
}

# DLLs a PE file imports (one a line, as written in the file).
windows_dll_imports() {
  "$MINGW_PREFIX-objdump" -p "$1" | awk '/^[ \t]*DLL Name: / { print $3 }'
}
