#!/usr/bin/env bash
# Fuzzing: builds the cargo-fuzz targets in fuzz/ and runs each for FUZZ_SECONDS (30)
# from its committed seeds (fuzz/corpus/<target>), FUZZ_JOBS (2) at a time. Any crash,
# leak or timeout fails the run; its input lands in fuzz/artifacts/<target>/. Ends with
# one line: "fuzz: ok" or "fuzz: FAILED <targets>". FUZZ_TARGETS narrows the list.
# Longer runs and their figures: docs/RELIABILITY.md, "Fuzzing".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=ci/env.sh
. ci/env.sh

CARGO_FUZZ_VERSION=0.13.2
seconds=${FUZZ_SECONDS:-30}
jobs=${FUZZ_JOBS:-2}

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" || {
    echo "fuzz: FAILED (cannot install cargo-fuzz)"
    exit 1
  }
fi

# libFuzzer needs nightly flags (-Zsanitizer, sancov): rustup's nightly when there is one,
# else the stable compiler with RUSTC_BOOTSTRAP=1.
toolchain=()
if command -v rustup >/dev/null 2>&1 && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi

cd fuzz || exit 1
mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
fi
started=$(date +%s)
if ! cargo "${toolchain[@]}" fuzz build; then
  echo "fuzz: FAILED (build)"
  exit 1
fi
echo "fuzz: built in $(($(date +%s) - started)) s"
triple=$(rustc -vV | sed -n 's/^host: //p')
bin=target/$triple/release

run() {
  local t=$1
  mkdir -p "work/$t" "artifacts/$t" "corpus/$t"
  # The first corpus directory takes the new inputs; the seeds stay as committed.
  "$bin/$t" "work/$t" "corpus/$t" -max_total_time="$seconds" -timeout=25 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
    >"work/$t.log" 2>&1
  echo $? >"work/$t.rc"
}

failed=()
for t in "${targets[@]}"; do
  rm -f "work/$t.rc"
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n || true
  done
  run "$t" &
done
wait
for t in "${targets[@]}"; do
  if [ "$(cat "work/$t.rc" 2>/dev/null)" = 0 ]; then
    stats=$(grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec' "work/$t.log" |
      awk '{ printf "%s ", $2 }')
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "work/$t.log" | tail -n 1)
    echo "fuzz: $t: ok (runs, exec/s: ${stats}; ${cov})"
  else
    failed+=("$t")
    echo "fuzz: $t: FAILED; the log's end (fuzz/work/$t.log):"
    tail -n 40 "work/$t.log"
  fi
done
echo "fuzz: $(($(date +%s) - started)) s in all"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED ${failed[*]}"
  exit 1
fi
echo "fuzz: ok"
