#!/usr/bin/env bash
# `make demo`: starts the example host (examples/host.toml) and shows, as a
# transcript, what a Qubes user expects from qrexec. Needs root and bubblewrap.
# Leaves nothing running or mounted.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="${QREXEC_BIN_DIR:-$root/build/bin}"
config="$root/examples/host.toml"
state=/var/lib/qrexec-demo
log=$(mktemp /tmp/qrexec-demo-host.XXXXXX.log)

if [ "$(id -u)" != 0 ]; then
  echo "make demo needs root (the domains are bubblewrap sandboxes with their own namespaces)" >&2
  exit 1
fi
command -v bwrap >/dev/null || { echo "bubblewrap is missing: apt-get install bubblewrap" >&2; exit 1; }

host() { "$bin/qrexec-host" --config "$config" "$@"; }

# Shows a command as a user would type it, runs it, and shows its exit code.
step() {
  local title=$1; shift
  printf '\n\033[1m## %s\033[0m\n' "$title"
  printf '$ %s\n' "$*"
  "$@"
  local rc=$?
  printf '[exit code %d]\n' "$rc"
  return 0
}

stop_host() {
  if [ -n "${host_pid:-}" ] && kill -0 "$host_pid" 2>/dev/null; then
    kill -TERM "$host_pid"
    for _ in $(seq 100); do kill -0 "$host_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$host_pid" 2>/dev/null
    wait "$host_pid" 2>/dev/null
  fi
}
trap stop_host EXIT

rm -rf "$state"
echo "Starting the embedded host (log: $log)"
"$bin/qrexec-host" --config "$config" up >"$log" 2>&1 &
host_pid=$!
for _ in $(seq 200); do
  host ls >/dev/null 2>&1 && break
  kill -0 "$host_pid" 2>/dev/null || { echo "qrexec-host exited:"; cat "$log"; exit 1; }
  sleep 0.1
done

step "The domains: work is started with the host, vault is halted" \
  host ls
step "An allowed call: work calls demo.Echo in vault, which is started on demand (autostart)" \
  bash -c "echo 'hello vault' | '$bin/qrexec-host' --config '$config' call work vault demo.Echo"
step "vault is running now" \
  host ls
step "The policy denies demo.Secret: qrexec-client-vm exits 126" \
  host call work vault demo.Secret
step "A call to @dispvm runs in a fresh disposable made from 'dvm'" \
  host call work @dispvm demo.WhoAmI
step "Another one gets another disposable" \
  host call work '$dispvm' demo.WhoAmI
step "The disposables are gone once their calls ended" \
  host ls
step "An 'ask' rule: the policy agent answers with the rule's default target (vault)" \
  host call work @default demo.Hello
step "A file receiver: work sends a file, vault stores it in ~/QubesIncoming/work" \
  bash -c "echo 'secret notes' | '$bin/qrexec-host' --config '$config' call work vault demo.ReceiveFile+notes.txt"
step "dom0 runs a command in vault (like qvm-run)" \
  host run vault cat /home/user/QubesIncoming/work/notes.txt
step "A domain calls a service in dom0" \
  host call work @adminvm demo.HostName
step "Inside a domain: own hostname, own processes only" \
  host call work vault demo.WhoAmI

printf '\n\033[1m## Stopping the host\033[0m\n'
stop_host
trap - EXIT
leftover=$(pgrep -f "$state" | tr '\n' ' ' || true)
mounts=$(grep -c "$state" /proc/mounts || true)
echo "processes left: ${leftover:-none}; mounts left under $state: $mounts"
[ -z "$leftover" ] && [ "$mounts" = 0 ] || exit 1
echo "Demo finished."
