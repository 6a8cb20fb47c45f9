#!/usr/bin/env python3
"""Alternating benchmark. usage: bench.py ROUNDS 'variant' ...  ('pipe' = baseline)
Waits for an idle machine before each run; measures foreign CPU during the run
(system busy time from /proc/stat minus our pipeline's own CPU) and re-runs a
measurement (up to 4 times) if foreign CPU > 0.15 s. Appends to results.txt."""
import os, sys, time, subprocess, resource, statistics
N = int(os.environ.get("N", 4294967296))
def busy():
    f = open("/proc/stat").readline().split()[1:]
    v = list(map(int, f)); idle = v[3] + v[4]
    return sum(v[:8]) - idle, sum(v[:8])
def wait_idle():
    for _ in range(120):
        b0, t0 = busy(); time.sleep(0.5); b1, t1 = busy()
        if (b1 - b0) / max(1, t1 - t0) < 0.05: return
def run(v):
    cmd = f"head -c {N} /dev/zero | cat > /dev/null" if v == "pipe" else f"head -c {N} /dev/zero | ./relay {v} > /dev/null"
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN); b0, _ = busy(); s = time.monotonic()
    subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], check=True)
    e = time.monotonic(); b1, _ = busy(); r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    hz = os.sysconf("SC_CLK_TCK"); foreign = (b1 - b0) / hz - own
    return N / (e - s) / 1e6, own, foreign
rounds = int(sys.argv[1]); vs = sys.argv[2:]
res = {v: [] for v in vs}
out = open("results.txt", "a")
for r in range(rounds):
    for v in vs:
        for attempt in range(5):
            wait_idle(); mb, own, foreign = run(v)
            if foreign < 0.15: break
            print(f"  (retry {v}: foreign cpu {foreign:.2f}s)", flush=True)
        res[v].append(mb)
        line = f"{r}|{v}|{mb:.0f}|cpu={own:.2f}s|foreign={foreign:.2f}s"
        print(line, flush=True); out.write(line + "\n"); out.flush()
pipe = statistics.median(res["pipe"]) if "pipe" in res else None
print("\nSUMMARY (median MB/s, % of pipe median)")
for v in vs:
    m = statistics.median(res[v])
    print(f"{v:55s} {m:7.0f}  {100*m/pipe if pipe else 0:5.1f}%   runs={[round(x) for x in res[v]]}")
