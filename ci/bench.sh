#!/usr/bin/env bash
# Benchmarks: our host (C hello fixture and pyisapie) against a bare hyper server
# and the WSGI peers, all launched by `isapi-harness bench` with the same thread
# budget. NOT run in CI. Each section starts all its servers, then measures them in
# ROUNDS interleaved rounds (every server once per workload and concurrency per round,
# in rotated order) and reports the median round and same-round ratios.
#
# Takes about an hour: a load run is WARMUP + DURATION (6 s), and there are
# servers x workloads x concurrencies x ROUNDS of them: workloads 27 x 5, scaling
# 30 x 5, bodies 15 x 5, wrk 8 x 5, workers 10 x 5, static 3 x 5, interpreters 10 x 5,
# defaults 12 x 5 = 575 runs, about 58 minutes; plus the wrk comparison (4 servers x 2 concurrencies x
# (5 wrk runs + 4 generator runs), about 7 minutes), the idle and upload measurements,
# server start-up and the release builds. Five
# rounds, because a same-round ratio still moves by about ±0.1 on a shared machine.
#
#   ci/bench.sh                    everything below; regenerates harness/bench-results/
#                                  (JSON, Markdown, SVG) and the generated sections of
#                                  BENCHMARKS.md; server logs go to target/bench/<section>/logs
#   ROUNDS=1 ci/bench.sh           a quicker pass (about 12 minutes), no spread or ranges
#   ROUNDS=3 ci/bench.sh           three rounds (about 27 minutes; wider ratio ranges)
#   DURATION=10s WARMUP=2s ci/bench.sh    longer runs (about twice as long)
#   SECTIONS="scaling wrk" ci/bench.sh   only those sections (the others keep their last results)
#   REPORT_ONLY=1 ci/bench.sh      measure nothing: render the saved JSON again and splice it
#                                  (after a change to the report's layout)
#
# Needs: ci/install.sh (the venv with the peers) and wrk (apt-get install -y wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/env.sh
. ci/env.sh
export PYO3_PYTHON="${PYO3_PYTHON:-/usr/bin/python3}"
target="${CARGO_TARGET_DIR:-target}"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
ROUNDS="${ROUNDS:-5}"
THREADS="${THREADS:-4}"
CLIENT_THREADS="${CLIENT_THREADS:-1}"
OUT=harness/bench-results

if [ -n "${REPORT_ONLY:-}" ]; then
  cargo build -q --release -p isapi-harness
else
  command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 2; }
  cargo build -q --release -p isapi-host -p pyisapie -p isapi-harness
fi
h="$target/release/isapi-harness"
ALL=(--server bare-hyper --server host-c --server host-py --server granian --server gunicorn --server waitress)
common=(--threads "$THREADS" --client-threads "$CLIENT_THREADS" -d "$DURATION" --warmup "$WARMUP" --rounds "$ROUNDS")

SECTIONS="${SECTIONS:-workloads scaling bodies wrk workers static interpreters defaults}"
run() { # name, args...
  local name=$1; shift
  [[ " $SECTIONS " == *" $name "* ]] || return 0
  mkdir -p "$OUT/$name"
  local source=("$@" "${common[@]}")
  if [ -n "${REPORT_ONLY:-}" ]; then
    [ -f "$OUT/$name/bench.json" ] || { echo "bench: no $OUT/$name/bench.json to render" >&2; return 0; }
    source=(--from-json "$OUT/$name/bench.json")
  fi
  "$h" bench "${source[@]}" --out "target/bench/$name" \
    --json "$OUT/$name/bench.json" --markdown "$OUT/$name/bench.md" --svg-dir "$OUT/$name"
}

# 1. the five workloads at c=64 (work: Python servers only), plus 1000 idle keep-alive
#    connections and a 100 MiB chunked upload
run workloads "${ALL[@]}" --app hello,echo-10k,stream,upload-1m,work -c 64 --idle-conns 1000 --upload-mib 100
# 2. scaling with concurrency
run scaling "${ALL[@]}" --app hello -c 1,16,64,256,1024
# 3. response body sizes
run bodies "${ALL[@]}" --app body-0,body-10k,body-1m -c 64
# 4. the load generator against wrk on the same servers, rps and p99, at c=64 and c=1024
#    (five alternating rounds each: the medians of three moved by more than 10 % with one round)
run wrk --server bare-hyper --server host-c --server host-py --server granian --app hello -c 64,1024 --wrk --wrk-rounds 5
# 5. worker processes (IIS web gardens): two host workers against two granian workers and
#    against one host worker, and what the supervisor costs (the default, one worker,
#    against --no-supervisor), on hello and on work (0.1 ms of Python) at c=64
run workers --server host-py --server host-py@w2 --server host-py@single --server granian@w2 \
  --server host-c --server host-c@single --app hello,work -c 64
# 6. static files: a 10 KiB file through --static against the same file from the bare
#    server's ServeDir (the same tower-http code), so only the host's own cost differs
run static --server bare-hyper --server host-c --server host-py --app static-10k -c 64
# 7. own-GIL sub-interpreter replicas (pyisapie's `replicas`): two replicas in one process
#    against one replica, the main interpreter, two worker processes and two granian
#    workers, on work and hello at c=64. Own GILs need Python 3.12+, so the host and
#    pyisapie are built against pyenv's newest 3.13 ($PY313 to choose) in their own target
#    dir, with an rpath to its libpython, and granian runs from a venv of that same Python
#    (target/bench-py313/venv): every server of the section runs the same interpreter.
if [[ " $SECTIONS " == *" interpreters "* ]]; then
  py_args=()
  if [ -z "${REPORT_ONLY:-}" ]; then
    py313=${PY313:-$(printf '%s\n' "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13.* |
      grep -E '/3\.13\.[0-9]+$' | sort -V | tail -n 1)/bin/python3}
    [ -x "$py313" ] || { echo "bench: no Python 3.13 ($py313); set PY313" >&2; exit 2; }
    libdir=$("$py313" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
    dir313="$target/bench-py313"
    PYO3_PYTHON=$py313 CARGO_TARGET_DIR=$dir313 cargo rustc -q --release -p pyisapie --lib \
      -- -C "link-arg=-Wl,-rpath,$libdir"
    CARGO_TARGET_DIR=$dir313 cargo build -q --release --bin isapi-host
    if [ ! -x "$dir313/venv/bin/granian" ]; then
      "$py313" -m venv "$dir313/venv"
      "$dir313/venv/bin/pip" install -q -r ci/peers-requirements.txt
    fi
    py_args=(--host-bin "$dir313/release/isapi-host" --venv "$dir313/venv")
  fi
  run interpreters --server host-py@r2 --server host-py@r1 --server host-py@main \
    --server host-py@w2 --server granian@w2 --app work,hello -c 64 "${py_args[@]}"
fi

# 8. defaults against defaults: every WSGI server as a user who sets nothing runs it
#    (`bench --defaults`: only the address and the app). Our host: the supervisor with one
#    worker, 8 request threads, the common access log written to a file; gunicorn: one
#    sync worker; granian and waitress: their own defaults. Then both web gardens at their
#    defaults but for the worker count: host-py --workers 2 against granian --workers 2.
#    hello and work at c=64.
run defaults --defaults --server host-py --server granian --server gunicorn --server waitress \
  --server host-py@w2 --server granian@w2 --app hello,work -c 64

# splice the generated tables into BENCHMARKS.md between <!-- BEGIN name --> and <!-- END name -->
/usr/bin/python3 - "$OUT" <<'PY'
import pathlib, re, sys
out = pathlib.Path(sys.argv[1])
doc = pathlib.Path("BENCHMARKS.md")
text = doc.read_text()
for d in sorted(p for p in out.iterdir() if p.is_dir()):
    md = (d / "bench.md").read_text().replace("](bench-", "](%s/bench-" % d.as_posix())
    pat = re.compile(r"(<!-- BEGIN %s -->\n).*?(<!-- END %s -->)" % (d.name, d.name), re.S)
    text, n = pat.subn(lambda m: m.group(1) + md + m.group(2), text)
    if n == 0:
        print("BENCHMARKS.md has no section for", d.name, file=sys.stderr)
doc.write_text(text)
PY
echo "bench: results in $OUT, BENCHMARKS.md updated"
