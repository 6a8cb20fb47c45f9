#!/usr/bin/env bash
# VM-to-VM call latency on the embedded host (broker transport, bubblewrap
# domains): 2,000 sequential calls of a service that exits at once, timed
# inside domain `work` around each qrexec-client-vm, beside the same loop
# spawning the trivial program itself (the floor), in the same domain and run.
# Usage: host_bench.sh --json FILE [--quick]. Needs root and bubblewrap;
# elsewhere it writes no metrics and says why.
set -euo pipefail
json=/dev/null
calls=2000
while [ $# -gt 0 ]; do
  case $1 in
    --json) json=$2; shift ;;
    --quick) calls=200 ;;
  esac
  shift
done
root=$(cd "$(dirname "$0")/.." && pwd)
bin="${QREXEC_BIN_DIR:-$root/build/bin}"
echo "[]" > "$json"
if [ "$(id -u)" != 0 ] || ! command -v bwrap >/dev/null; then
  echo "  skipped: the embedded host needs root and bubblewrap"
  exit 0
fi
work=$(mktemp -d /tmp/qrexec-hostbench.XXXXXX)
host_pid=
cleanup() {
  [ -n "$host_pid" ] && kill -TERM "$host_pid" 2>/dev/null && wait "$host_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/rpc" "$work/policy.d"
ln -s /bin/true "$work/rpc/bench.True"
echo 'bench.True * work vault allow' > "$work/policy.d/30-bench.policy"
cat > "$work/host.toml" <<TOML
[host]
state_dir = "$work/state"
policy_dir = "policy.d"
[[domain]]
name = "debian"
class = "TemplateVM"
services = "rpc"
[[domain]]
name = "work"
template = "debian"
autostart = true
[[domain]]
name = "vault"
template = "debian"
autostart = true
TOML
host() { "$bin/qrexec-host" --config "$work/host.toml" "$@"; }
"$bin/qrexec-host" --config "$work/host.toml" up > "$work/host.log" 2>&1 &
host_pid=$!
for _ in $(seq 200); do host ls >/dev/null 2>&1 && break; sleep 0.1; done
# Each line: "<floor ns> <call ns>"; the first call warms up.
script='qrexec-client-vm vault bench.True 2>/tmp/hb.err; i=0
while [ $i -lt '"$calls"' ]; do
  a=$(date +%s%N); /bin/true; b=$(date +%s%N)
  qrexec-client-vm vault bench.True 2>>/tmp/hb.err || echo FAIL
  c=$(date +%s%N); echo "$((b - a)) $((c - b))"; i=$((i + 1))
done'
host run work "$script; cat /tmp/hb.err >&2" > "$work/times" 2>"$work/run.err" || true
head -3 "$work/run.err" | sed "s/^/  (domain) /"
python3 - "$work/times" "$json" <<'PY'
import json, sys
floor, calls, failures = [], [], 0
for line in open(sys.argv[1]):
    parts = line.split()
    if parts == ["FAIL"]:
        failures += 1
        continue
    if len(parts) == 2:
        floor.append(int(parts[0]) / 1e6)
        calls.append(int(parts[1]) / 1e6)
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100 * (len(v) - 1) + 0.5))] if v else 0.0
metrics = [
    ("latency.vm_to_vm.host.floor.p50", pct(floor, 50), "ms"),
    ("latency.vm_to_vm.host.p50", pct(calls, 50), "ms"),
    ("latency.vm_to_vm.host.p90", pct(calls, 90), "ms"),
    ("latency.vm_to_vm.host.p99", pct(calls, 99), "ms"),
    ("latency.vm_to_vm.host.failures", failures, "count"),
]
for name, value, unit in metrics:
    print(f"  {name:<42} {value:>14.3f} {unit}")
if floor and calls:
    print(f"  host vm_to_vm p50 / in-domain spawn floor p50 = {pct(calls, 50) / pct(floor, 50):.2f}x")
json.dump([{"name": n, "value": v, "unit": u} for n, v, u in metrics], open(sys.argv[2], "w"), indent=2)
PY
