#!/bin/sh
# Cargo runner for pyisapie's unit tests built for x86_64-pc-windows-gnu: runs the test .exe
# under Wine with PYISAPIE_TEST_PYTHON_DIR (a folder holding python3XX.dll and, for Wine 8,
# the stand-in bcryptprimitives.dll) on the DLL search path (WINEPATH). Set it with
#   CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=isapi-dll/scripts/wine-test-runner.sh
# WINEPREFIX is taken from the environment. Give absolute paths: cargo runs tests from
# the package folder.
set -e
: "${PYISAPIE_TEST_PYTHON_DIR:?set PYISAPIE_TEST_PYTHON_DIR to the folder holding python3XX.dll}"
export WINEDEBUG="${WINEDEBUG:--all}" WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}"
WINEPATH="Z:$(cd "$PYISAPIE_TEST_PYTHON_DIR" && pwd | tr / "\\\\")"
export WINEPATH
exec "${WINE:-/usr/lib/wine/wine64}" "$@"
