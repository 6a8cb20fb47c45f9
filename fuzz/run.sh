#!/usr/bin/env bash
# Runs every libFuzzer target in DIR for SECONDS seconds each, on a scratch
# copy of its checked-in seed corpus. A crash leaves its input in fuzz/crashes/
# (make it a regression test: add it to the target's corpus folder).
set -euo pipefail
dir=${1:?usage: run.sh FUZZ_BIN_DIR SECONDS}
seconds=${2:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/fuzz/crashes"
status=0
for target in "$dir"/*_fuzz; do
  [ -x "$target" ] || continue
  name=$(basename "$target")
  seeds=$(find "$root/lib" "$root/policy-tools" "$root/daemon" "$root/agent" -type d -path "*/corpus/$name" 2>/dev/null | head -n 1)
  work=$(mktemp -d)
  echo "== $name (${seconds}s)"
  if ! "$target" -max_total_time="$seconds" -max_len=70000 -timeout=10 \
       -artifact_prefix="$root/fuzz/crashes/$name-" "$work" ${seeds:+"$seeds"} 2>"$work.log"; then
    echo "!! $name found a problem; see $root/fuzz/crashes/ and $work.log"
    status=1
  else
    grep -E '^(#[0-9]+|Done)' "$work.log" | tail -n 1 || true
  fi
  rm -rf "$work"
done
exit $status
