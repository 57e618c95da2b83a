# shellcheck shell=bash
# Sourced by bash (ci/cargo, ci/install.sh; ci/test.sh and .ci/run may source it too):
# puts first on PATH a cargo whose rustc is at least the workspace's rust-version, so
# that `cargo` works in a shell whose PATH does not know the toolchain yet (rustup's
# ~/.cargo/bin right after ci/install.sh installed it, or Ubuntu's /usr/lib/rust-1.NN/bin).
# Looks, in this order, at: the cargo already on PATH, $CARGO_HOME/bin (rustup,
# default ~/.cargo/bin), /usr/bin (Debian's cargo or cargo-web), then
# /usr/lib/rust-1.NN/bin, newest first (Ubuntu's cargo-1.NN). Returns 1, with a
# message on stderr, when none of them will do. Changes nothing else in the caller.

# The workspace's rust-version (Cargo.toml [workspace.package]).
ci_rust_version() {
  local toml
  toml="$(dirname "${BASH_SOURCE[0]}")/../Cargo.toml"
  sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$toml" 2>/dev/null | head -n 1
}

# True when version $1 >= version $2 (dotted numbers).
ci_version_ge() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

# The version of the rustc in directory $1 (or on PATH when $1 is empty), e.g. 1.96.0.
ci_rustc_version() {
  local v
  v=$("${1:+$1/}rustc" --version 2>/dev/null) || return 1
  v=${v#rustc }
  v=${v%% *}
  printf '%s\n' "${v%%-*}"
}

# Prints the directory of the first usable cargo ("" for the one on PATH).
ci_find_cargo() {
  local want dir v
  want=$(ci_rust_version)
  for dir in "" "${CARGO_HOME:-$HOME/.cargo}/bin" /usr/bin \
    $(printf '%s\n' /usr/lib/rust-1.*/bin | sort -rV); do
    if [ -z "$dir" ]; then
      command -v cargo >/dev/null 2>&1 || continue
    else
      [ -x "$dir/cargo" ] || continue
    fi
    v=$(ci_rustc_version "$dir") || continue
    if [ -z "$want" ] || ci_version_ge "$v" "$want"; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}

ci_use_cargo() {
  local dir
  if ! dir=$(ci_find_cargo); then
    echo "no cargo with rustc $(ci_rust_version) or newer (on PATH, in ${CARGO_HOME:-$HOME/.cargo}/bin, /usr/bin or /usr/lib/rust-1.NN/bin): run ci/install.sh" >&2
    return 1
  fi
  if [ -n "$dir" ]; then
    PATH="$dir:$PATH"
    export PATH
  fi
}

ci_use_cargo
