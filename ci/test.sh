#!/usr/bin/env bash
# The whole test suite: unit tests, end-to-end tests against the real host,
# the real pyisapie extension and the C fixtures, then the conformance cases
# against our two servers. Run ci/install.sh once first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYISAPIE_TEST_VENV="${PYISAPIE_TEST_VENV:-$PWD/.venv}"

# The e2e tests find libpyisapie.so next to the isapi-host binary.
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-2}"
if [ -x ci/conform.sh ]; then
  ci/conform.sh --ours
fi
