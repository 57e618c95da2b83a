import json, sys, statistics
d = json.load(open(sys.argv[1]))
runs = {(r['server'], r['app']): r for r in d['runs']}
pairs = [p.split('/') for p in sys.argv[2:]]
apps = sorted(set(a for _, a in runs))
for app in apps:
    print(f"## {app}")
    for (s, a), r in sorted(runs.items()):
        if a != app: continue
        print(f"  {s:22s} median {r['rps']:9.0f} rps  p99 {r['p99_us']/1000:6.2f} ms  cpu {r['server_cpu_ms_per_1k']:6.1f} us/req  rounds {[round(x) for x in r['round_rps']]}")
    for num, den in pairs:
        if (num, app) not in runs or (den, app) not in runs: continue
        a, b = runs[(num, app)], runs[(den, app)]
        rr = [x / y for x, y in zip(a['round_rps'], b['round_rps'])]
        pr = [x / y for x, y in zip(a['round_p99_us'], b['round_p99_us'])]
        print(f"  {num} / {den}: {statistics.median(rr):.2f}x ({min(rr):.2f}-{max(rr):.2f}), p99 ratio {statistics.median(pr):.2f}x; cpu {a['server_cpu_ms_per_1k']:.1f} vs {b['server_cpu_ms_per_1k']:.1f} us")
