#!/usr/bin/env bash
# Miri over the unit tests of the two `ffi` modules, the crates' unsafe code:
#
#   ci/miri.sh
#
#   host      cargo +nightly miri test -p isapi-host --lib -- ffi::
#             src/ffi/tests/: the four callbacks through a real EcbCell with a fake
#             Handler, every ServerSupportFunction code the decoder reads pointers for
#             (size probing, MAP_URL_TO_PATH rewriting the caller's buffer, the
#             HSE_TF_INFO / HSE_RESPONSE_VECTOR / HSE_URL_MAPEX_INFO structures), the
#             completion routine, the registry across threads, panics in a handler.
#   pyisapie  cargo +nightly miri test -p pyisapie --lib -- ffi::
#             isapi-dll/src/ffi/tests.rs: Ecb against a fake server (size probing,
#             partial reads and writes, HSE_SEND_HEADER_EX_INFO, TRANSMIT_FILE's
#             completion context handed to another thread and taken back), and the
#             exports with a fake Extension (description truncation, panics).
#
# Tests that need what Miri cannot run (mimalloc, dladdr: foreign C calls) are marked
# #[cfg_attr(miri, ignore = "...")] and listed as ignored. The host's lib is built with
# its `fuzzing` feature, which leaves the global allocator (mimalloc, C) out.
#
# MIRIFLAGS (override with MIRIFLAGS=...):
#   -Zmiri-permissive-provenance  ISAPI passes integers in pointer types: HCONN is the
#       request's id, HANDLE a descriptor, SET_FLUSH_FLAG's BOOL comes in lpvBuffer,
#       and the host keeps the completion context as a usize. Those int-to-pointer
#       casts are sound under the permissive model (the pointers either are never
#       dereferenced or were exposed first); -Zmiri-strict-provenance rejects them.
#   Stacked Borrows (Miri's default aliasing model, the stricter of the two), data-race
#   detection and the leak check stay on; isolation stays on (no test needs the OS).
#
# Prints "miri: ok", "miri: FAILED" or "miri: skipped (why)" as its last line; a skip
# (no nightly, no miri or rust-src component) exits 0, never silently.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=ci/env.sh
. ci/env.sh || exit 1

skip() {
  echo "miri: skipped ($*)"
  exit 0
}

command -v rustup >/dev/null 2>&1 || skip "no rustup: Miri comes as a nightly component"
rustup run nightly rustc --version >/dev/null 2>&1 || skip "no nightly toolchain"
installed=$(rustup component list --toolchain nightly --installed 2>/dev/null)
for c in miri rust-src; do
  grep -q "^$c" <<<"$installed" ||
    skip "no $c component on nightly (rustup component add --toolchain nightly miri rust-src)"
done

export CARGO_TARGET_DIR=${MIRI_TARGET_DIR:-target/miri}
export MIRIFLAGS=${MIRIFLAGS:--Zmiri-permissive-provenance}
started=$(date +%s)
status=0
echo "miri: MIRIFLAGS=$MIRIFLAGS"
cargo +nightly miri setup -q || skip "cargo miri setup failed (no network for the sysroot?)"
cargo +nightly miri test -q -p isapi-host --lib --features fuzzing -- ffi:: || status=1
cargo +nightly miri test -q -p pyisapie --lib -- ffi:: || status=1
echo "miri: $(($(date +%s) - started)) s"
if [ "$status" -ne 0 ]; then
  echo "miri: FAILED"
  exit 1
fi
echo "miri: ok"
