#!/usr/bin/env bash
# Installs what a fresh Debian 12, Debian 13 or Ubuntu 24.04 machine lacks to build and
# test pyisapie-rs. Safe to run again: it installs only what is missing.
#
#   system packages  a C compiler, curl, CA certificates, procps (the tests use kill),
#                    nginx and haproxy (the proxies of `isapi-harness smuggle`; never started
#                    as services: the harness runs them from its own configuration),
#                    python3 and, for the Python that pyisapie links (PYO3_PYTHON,
#                    default /usr/bin/python3, 3.9 or later), its libpython3.X-dev and
#                    python3.X-venv, 3.X being whatever that python3 is.
#   Rust             only when no cargo whose rustc is at least Cargo.toml's rust-version
#                    is found (ci/env.sh says where it looks). First rustup, from
#                    static.rust-lang.org (the script sh.rustup.rs serves): stable, minimal
#                    profile and clippy, into ~/.cargo. When that cannot be downloaded or
#                    fails, the distribution's newest packaged toolchain that is recent
#                    enough: cargo/rustc, cargo-web/rustc-web (Debian 12 and 13) or
#                    cargo-1.NN/rustc-1.NN (Ubuntu), with its clippy package.
#                    INSTALL_RUST=rustup or =apt picks one. Clippy (ci/test.sh runs it)
#                    is added to a toolchain found without it, the same two ways.
#   .venv            a venv of that Python with ci/python-requirements.txt and
#                    ci/peers-requirements.txt (pinned; they need Python 3.11 or later:
#                    on an older Python they are skipped with a warning, the demo needs
#                    none of them).
#   matrix venvs     target/py/3.X/venv for the other Pythons ci/pymatrix.sh builds
#                    pyisapie against (pyenv's 3.9, 3.10, 3.12, 3.13), each with its
#                    pinned requirements (ci/python-requirements-3.X.txt where they must
#                    differ). A Python that is not there cannot be downloaded
#                    (python.org is out of reach): ci/pymatrix.sh reports it skipped.
#
# A toolchain installed here is not on this shell's PATH yet: build with ci/cargo, which
# finds it (ci/env.sh). rustup also adds ~/.cargo/bin to the PATH of new login shells.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "install: $*"; }
die() {
  echo "install: error: $*" >&2
  exit 1
}

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "not root and no sudo: run this as root, or install sudo"
  SUDO=(sudo)
fi
HAVE_APT=1
command -v apt-get >/dev/null 2>&1 || HAVE_APT=0

apt_updated=0
apt_update() {
  [ "$apt_updated" = 1 ] && return 0
  "${SUDO[@]}" apt-get update -qq
  apt_updated=1
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
# apt_install PKG...: installs those not installed yet.
apt_install() {
  local missing=() p
  for p in "$@"; do
    installed "$p" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$HAVE_APT" = 1 ] || die "no apt-get: install ${missing[*]} (or their equivalents) yourself"
  say "apt-get install ${missing[*]}"
  apt_update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
# The upstream version (1.96.0) of package $1's install candidate; fails when there is none.
apt_candidate() {
  local v
  v=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
  [ -n "$v" ] && [ "$v" != "(none)" ] || return 1
  v=${v#*:}
  printf '%s\n' "$v" | grep -Eo '^[0-9]+(\.[0-9]+)*' | head -n 1
}

CALLER_PATH=$PATH
# ci_version_ge, ci_find_cargo and friends; PATH gets a usable cargo if there is one.
# shellcheck source=ci/env.sh
. ci/env.sh 2>/dev/null || true
RUST_MIN=$(ci_rust_version)

# ---- 1. system packages ----------------------------------------------------------
apt_install ca-certificates curl gcc libc6-dev pkg-config procps
apt_install nginx haproxy

# ---- 2. the Python that pyisapie links, and its development files -----------------
PY=${PYO3_PYTHON:-/usr/bin/python3}
if [ ! -x "$PY" ] && [ "$PY" = /usr/bin/python3 ]; then
  apt_install python3
fi
[ -x "$PY" ] || die "no Python at $PY (PYO3_PYTHON)"
PYV=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ci_version_ge "$PYV" 3.9 || die "$PY is Python $PYV: pyisapie needs 3.9 or later"
if [ "$HAVE_APT" = 1 ] && dpkg-query -S "$(readlink -f "$PY")" >/dev/null 2>&1; then
  # The distribution's python3: libpython3.X-dev has the shared library to link,
  # python3.X-venv the venv module (Debian splits both off).
  dev=libpython$PYV-dev venv=python$PYV-venv
  if ! installed "$dev" || ! installed "$venv"; then
    apt_update
    apt_candidate "$dev" >/dev/null || dev=python3-dev
    apt_candidate "$venv" >/dev/null || venv=python3-venv
    apt_install "$dev" "$venv"
  fi
fi
# pyisapie embeds Python: it links the shared libpython.
libpy=$("$PY" -c 'import sysconfig as s; print("%s/%s" % (s.get_config_var("LIBDIR"), s.get_config_var("LDLIBRARY")))')
[ -e "$libpy" ] || die "$PY has no shared library at $libpy (a Python built with --enable-shared is needed)"
say "python: $PY, Python $PYV, $libpy"

# ---- 3. Rust ---------------------------------------------------------------------

rust_from_rustup() {
  local cargo_home=${CARGO_HOME:-$HOME/.cargo} script
  if [ -x "$cargo_home/bin/rustup" ]; then
    say "rustup is installed but its default toolchain is older than $RUST_MIN: run \`rustup update\` (or \`rustup default stable\`)"
    return 1
  fi
  script=$(mktemp)
  say "rust: rustup from https://static.rust-lang.org/rustup/rustup-init.sh"
  if ! curl --proto '=https' --tlsv1.2 -sSf --retry 2 --connect-timeout 20 \
    https://static.rust-lang.org/rustup/rustup-init.sh -o "$script"; then
    rm -f "$script"
    say "rust: static.rust-lang.org cannot be reached"
    return 1
  fi
  # (its closing advice, on stdout, is about PATH: ci/cargo takes care of that)
  if ! sh "$script" -y --quiet --profile minimal --component clippy --default-toolchain stable >/dev/null; then
    rm -f "$script"
    say "rust: rustup-init failed"
    return 1
  fi
  rm -f "$script"
}

# The distribution's clippy for its cargo package $1 (cargo, cargo-web, cargo-1.NN).
clippy_package() {
  case "$1" in
    cargo) echo rust-clippy ;;
    cargo-web) echo rust-web-clippy ;;
    cargo-1.*) echo "rust-${1#cargo-}-clippy" ;;
    *) return 1 ;;
  esac
}

# ci/test.sh runs `cargo clippy`: adds clippy to the toolchain whose cargo is in $1
# ("" for the one on PATH), with rustup or the distribution's package of that cargo.
ensure_clippy() {
  local cargo pkg
  cargo=$(command -v "${1:+$1/}cargo")
  PATH="${1:+$1:}$PATH" "$cargo" clippy --version >/dev/null 2>&1 && return 0
  if [ -x "$(dirname "$cargo")/rustup" ]; then
    say "rust: rustup component add clippy"
    "$(dirname "$cargo")/rustup" component add clippy
  elif pkg=$(dpkg-query -S "$(readlink -f "$cargo")" 2>/dev/null | cut -d: -f1) &&
    pkg=$(clippy_package "$pkg"); then
    apt_install "$pkg"
  fi
  PATH="${1:+$1:}$PATH" "$cargo" clippy --version >/dev/null 2>&1 ||
    say "warning: no clippy for $cargo: ci/test.sh's lint step will fail"
}

# The distribution's newest cargo/rustc pair whose version is at least RUST_MIN.
rust_from_apt() {
  local best="" best_v="" pair rustc v
  [ "$HAVE_APT" = 1 ] || return 1
  apt_update
  for pair in cargo:rustc cargo-web:rustc-web \
    $(apt-cache pkgnames rustc-1. 2>/dev/null | grep -E '^rustc-1\.[0-9]+$' | sed 's/^rustc-\(.*\)/cargo-\1:rustc-\1/'); do
    rustc=${pair#*:}
    v=$(apt_candidate "$rustc") || continue
    apt_candidate "${pair%%:*}" >/dev/null || continue
    ci_version_ge "$v" "${RUST_MIN:-0}" || continue
    if [ -z "$best" ] || ! ci_version_ge "$best_v" "$v"; then
      best=$pair best_v=$v
    fi
  done
  [ -n "$best" ] || {
    say "rust: no packaged rustc $RUST_MIN or newer"
    return 1
  }
  say "rust: the distribution's ${best%%:*} and ${best#*:} ($best_v)"
  apt_install "${best%%:*}" "${best#*:}" "$(clippy_package "${best%%:*}")"
}

if ! dir=$(ci_find_cargo); then
  case "${INSTALL_RUST:-auto}" in
    auto) rust_from_rustup || rust_from_apt || true ;;
    rustup) rust_from_rustup || true ;;
    apt) rust_from_apt || true ;;
    *) die "INSTALL_RUST=$INSTALL_RUST: auto, rustup or apt" ;;
  esac
  dir=$(ci_find_cargo) || die "no Rust toolchain with rustc $RUST_MIN or newer could be installed"
fi
say "rust: $(command -v "${dir:+$dir/}cargo"): $("${dir:+$dir/}cargo" --version), rustc $(ci_rustc_version "$dir")"
ensure_clippy "$dir"
# cargo-fuzz for ci/fuzz.sh, pinned (it builds with rustup's nightly when there is one, else
# with this stable compiler and RUSTC_BOOTSTRAP=1).
if ! "${dir:+$dir/}cargo" fuzz --version >/dev/null 2>&1; then
  say "cargo-fuzz: cargo install --locked cargo-fuzz --version 0.13.2"
  "${dir:+$dir/}cargo" install --locked --quiet cargo-fuzz --version 0.13.2
fi

# ci/miri.sh and ci/asan.sh: with rustup, a nightly toolchain (minimal profile) with the
# miri and rust-src components. Optional: without them ci/miri.sh reports itself skipped,
# and ci/asan.sh uses the stable toolchain's ASan runtime (RUSTC_BOOTSTRAP=1).
rustup_bin=$(command -v rustup 2>/dev/null || echo "${CARGO_HOME:-$HOME/.cargo}/bin/rustup")
if [ -x "$rustup_bin" ]; then
  if ! "$rustup_bin" run nightly rustc --version >/dev/null 2>&1; then
    say "rust: rustup toolchain install nightly (minimal, miri, rust-src) for ci/miri.sh"
    "$rustup_bin" toolchain install nightly --profile minimal --component miri,rust-src >/dev/null ||
      say "warning: no nightly toolchain: ci/miri.sh will report itself skipped"
  elif ! "$rustup_bin" component add --toolchain nightly miri rust-src >/dev/null 2>&1; then
    say "warning: no miri or rust-src for nightly: ci/miri.sh will report itself skipped"
  fi
fi

# ---- 4. .venv --------------------------------------------------------------------
# A venv of another Python (made before the system's python3 changed) is made again.
if [ -x .venv/bin/python ] &&
  [ "$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" != "$PYV" ]; then
  say ".venv is not Python $PYV: making it again"
  "$PY" -m venv --clear .venv
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ci_version_ge "$PYV" 3.11; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  for req in ci/python-requirements.txt ci/peers-requirements.txt; do
    if [ -f "$req" ]; then
      .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
    fi
  done
else
  say "warning: the pinned requirements (ci/*-requirements.txt) need Python 3.11 or later;" \
    ".venv has none of them: the demo runs, the Flask/Django tests and the peer servers will not"
fi

# ---- 5. the Python version matrix's venvs ----------------------------------------
ci/pymatrix.sh --prepare || say "warning: ci/pymatrix.sh --prepare failed (above): the matrix will fail those versions"

cargo=$(command -v "${dir:+$dir/}cargo")
if [ "$(PATH=$CALLER_PATH command -v cargo)" = "$cargo" ]; then
  say "ok"
else
  say "ok; $cargo is not on your shell's PATH: ci/cargo runs it"
fi
