#!/usr/bin/env bash
# ctest bench.smoke: runs every benchmark program in its --quick mode and
# checks that the metrics issue 5 names are all there and that no call
# failed. Timings are never asserted (they live in `make bench`); this only
# keeps the benchmarks working. Usage: smoke_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
source=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for program in "$build"/bench/*_bench "$source"/bench/*_bench.sh; do
  [ -x "$program" ] || continue
  name=$(basename "$program" .sh)
  echo "== $name"
  QREXEC_BIN_DIR="$build/bin" "$program" --json "$out/$name.json" --quick
done
python3 - "$out" "$build" <<'PY'
import glob, json, os, sys
metrics = {}
for path in glob.glob(sys.argv[1] + "/*.json"):
    for m in json.load(open(path)):
        assert set(m) == {"name", "value", "unit"}, m
        metrics[m["name"]] = m["value"]
required = ["latency.floor.spawn.p50", "latency.vm_to_vm.socket.p50", "latency.vm_to_vm.socket.p99",
            "throughput.pipe", "throughput.socketpair", "throughput.caller_to_service",
            "throughput.service_to_caller", "concurrency.one_domain.failures",
            "concurrency.one_domain.max_ms", "policy.evals_per_s.10000_rules",
            "stages.total.p50", "concurrency.mesh.failures",
            "latency.vm_to_vm.socket.fork_per_call.p50"]
if os.geteuid() == 0 and any(os.access(os.path.join(d, "bwrap"), os.X_OK) for d in os.environ["PATH"].split(":")):
    required.append("latency.vm_to_vm.host.p50")
if os.geteuid() == 0 and os.access(os.path.join(sys.argv[2], "bin", "qrexec-pam-session"), os.X_OK):
    required += ["exec.other_user.direct.p50", "exec.other_user.pam.p50", "exec.other_user.pam_ratio"]
missing = [n for n in required if n not in metrics]
failed = {n: v for n, v in metrics.items() if n.endswith("failures") and v != 0}
print(f"{len(metrics)} metrics; missing: {missing or 'none'}; failures: {failed or 'none'}")
sys.exit(1 if missing or failed else 0)
PY
