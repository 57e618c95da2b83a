#!/usr/bin/env bash
# usage: run.sh LABEL PATH DURATION -- server command...
# Starts the server, loads PATH at c=64 with the harness (--url), and perf-stats all
# server processes during the middle of the measured window.
set -u
label=$1; path=$2; dur=$3; shift 4
H=${H:-/tmp/w-base-bin/isapi-harness}
log=/tmp/w-exp/$label.server.log
"$@" >"$log" 2>&1 &
spid=$!
for i in $(seq 100); do
  if [ -n "${PORT:-}" ]; then
    (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && { addr=127.0.0.1:$PORT; break; }
    addr=; sleep 0.1; continue
  fi
  addr=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | sed 's/.*http:\/\///')
  [ -n "$addr" ] && break; sleep 0.1
done
[ -z "$addr" ] && { echo "no address"; cat "$log"; kill $spid; exit 1; }
sleep 1.5
pids=$( (echo $spid; pgrep -P $spid; for c in $(pgrep -P $spid); do pgrep -P $c; done) | sort -u | paste -sd,)
load=$(cut -d' ' -f1-3 /proc/loadavg)
"$H" bench --url "http://$addr$path" --pid $spid -c 64 -d ${dur}s --warmup 1s --rounds 1 --client-threads 1 --out /tmp/w-exp/out-$label --json /tmp/w-exp/$label.json --markdown /tmp/w-exp/$label.md >/tmp/w-exp/$label.bench.log 2>&1 &
bpid=$!
sleep 2
pd=$((dur-2))
perf stat ${PERTHREAD:-} -x, -e task-clock,context-switches,cpu-migrations,syscalls:sys_enter_futex,syscalls:sys_enter_sched_yield,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto -p $pids -- sleep $pd 2>/tmp/w-exp/$label.perf
wait $bpid
kill -TERM $spid; wait $spid 2>/dev/null
rps=$(python3 -c "import json,sys;d=json.load(open('/tmp/w-exp/$label.json'));r=d['results'] if 'results' in d else d; print(r)" 2>/dev/null | head -c 0)
echo "== $label load-before=$load"
grep -E '^\|' /tmp/w-exp/$label.md | head -4
python3 - "$label" "$pd" <<'PY'
import json,sys,re
label,pd=sys.argv[1],float(sys.argv[2])
md=open(f'/tmp/w-exp/{label}.md').read()
m=re.search(r'\| (\d+) ', md.split('c=64')[1])
rps=float(m.group(1))
print(f"rps={rps:.0f}")
for line in open(f'/tmp/w-exp/{label}.perf'):
    f=line.strip().split(',')
    if len(f)<3 or not f[0].replace('.','').isdigit(): continue
    v=float(f[0]); ev=f[2]
    if ev=="task-clock": v*=1000
    print(f"  {ev:40s} {v/pd/rps:8.3f} per request")
PY
