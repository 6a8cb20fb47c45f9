#!/usr/bin/env bash
# `make bench`: runs every benchmark program and merges their metrics into
# bench/results.json (a JSON list of {"name","value","unit"}).
# BENCH_ARGS=--quick gives a short run (smaller counts and streams).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for program in build/bench/*_bench bench/*_bench.sh; do
  [ -x "$program" ] || continue
  name=$(basename "$program" .sh)
  echo "== $name"
  if ! "$program" --json "$out/$name.json" ${BENCH_ARGS:-}; then
    echo "!! $name failed"
    status=1
  fi
done
python3 - "$out" "$root/bench/results.json" <<'PY'
import glob, json, sys
merged = []
for path in sorted(glob.glob(sys.argv[1] + "/*.json")):
    with open(path) as f:
        merged.extend(json.load(f))
with open(sys.argv[2], "w") as f:
    json.dump(merged, f, indent=2)
    f.write("\n")
print(f"wrote {len(merged)} metrics to {sys.argv[2]}")
PY
exit $status
