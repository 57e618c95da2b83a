#!/usr/bin/env bash
# usage: cg.sh LABEL HOSTBIN N  -- instructions per request of host-c@single (hello) under callgrind
set -u
label=$1; bin=$2; n=$3
out=/tmp/w-exp/cg-$label
rm -f $out.*
valgrind --tool=callgrind --callgrind-out-file=$out.%p --dump-instr=no --collect-atstart=yes \
  $bin serve --no-supervisor --bind 127.0.0.1:0 --threads 4 --access-log off --extension /tmp/w-fix/libhello.so >$out.log 2>&1 &
vp=$!
for i in $(seq 600); do
  addr=$(grep -o 'listening on http://[0-9.:]*' $out.log | head -1 | sed 's/.*http:\/\///'); [ -n "$addr" ] && break; sleep 0.2; done
python3 /tmp/w-exp/client.py $addr 300 4 /hello >/dev/null
callgrind_control -z $vp >/dev/null
python3 /tmp/w-exp/client.py $addr $n 4 /hello >/dev/null
callgrind_control -d $vp >/dev/null
sleep 1
kill -INT $vp; wait $vp 2>/dev/null
f=$(ls -t $out.[0-9]* | grep -v '\.0*$' | head -1)
tot=$(for f in $out.[0-9]*.[0-9]*; do grep -h '^summary:\|^totals:' $f | head -1 | awk '{print $2}'; done | paste -sd+ | bc)
echo "$label: $tot Ir over $n requests = $((tot / n)) Ir/request"
