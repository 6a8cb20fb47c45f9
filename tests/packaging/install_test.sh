#!/bin/bash
# The packaging test (issue 12 item 6): the three .debs of `make deb`,
# installed into a fresh Debian 12 root, carry a working qrexec.
#
# usage: install_test.sh BUILD_DIR
#
# 1. Takes build/packages/qrexec-cpp-{vm,dom0,host}_*.deb, which ctest's
#    fixture packaging.cpack has just written (a fresh `cpack -G DEB`).
# 2. mmdebstrap's a minbase bookworm root with the packages' own Depends
#    (read from the .debs), from the machine's Debian mirror. The tarball is
#    cached under the build dir, keyed by its package list, so later runs
#    need no network.
# 3. In a private mount + PID namespace (so no mount and no process outlives
#    the test, whatever ends it): extracts the root, `dpkg -i` the three
#    packages (dpkg fails on a missing dependency), checks where files
#    landed, then runs qrexec the way the installed units say:
#    tests/packaging/unit_command.py reads each unit's ExecStart= (and
#    EnvironmentFile=) from the installed unit files. Processes:
#      dom0: qubesd stand-in (fake_qubesd.py, internal.GetSystemInfo only),
#            qrexec-policy-daemon, qrexec-daemon@42-work, @43-vault
#      work (42), vault (43): one qrexec-agent each, each in its own mount
#            namespace with a private /run (so each has its own agent
#            socket) over the same installed root.
#    The agents reach their daemons over the socket vchan backend (a
#    directory of vchan.*.sock files shared by all; lib/vchan/transport.h),
#    which stands in for Xen's vchan.
# 4. Calls: work -> vault test.Echo, allowed by a policy file, runs the
#    service installed in /etc/qubes-rpc as user "user" (through
#    qrexec-pam-session and the installed /etc/pam.d/qrexec); test.Other is
#    denied (126). Then `qubes-policy -r` replaces the policy file over the
#    admin API (qrexec-client -d dom0 runs the installed
#    /etc/qubes-rpc/policy.Replace link to qubes-policy-admin), and the
#    next calls see the new rule: test.Echo denied, test.Other allowed.
#
# Exit 77 (ctest SKIP_RETURN_CODE) when not root, when a tool is missing or
# when no tarball is cached and the mirror cannot be reached. Mirror:
# $QREXEC_DEB_MIRROR, else the first bookworm entry of /etc/apt/sources.list
# or /etc/apt/sources.list.d/*.sources, else deb.debian.org.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
readonly skip_code=77
readonly vchan_dir=/var/lib/qrexec-test-vchan    # inside the root
readonly notify_dir=/var/lib/qrexec-test-notify  # inside the root
readonly path_env="PATH=/usr/sbin:/usr/bin:/sbin:/bin"

skip() { echo "SKIP: $*" >&2; exit "$skip_code"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
log() { echo "== $*"; }

# --- inside the namespaces (re-executed by the outer part) ---------------

# chroot into the test root with a clean environment plus "$@"'s VAR=VALUE
# (`start` takes the words of ${root_cmd[@]}, so that its pid is the program's).
in_root() { "${root_cmd[@]}" "$@"; }

# The command an installed unit runs, as words in the array `cmd`.
unit_cmd() {
  local text
  text="$(python3 "$here/unit_command.py" "$root" "$root/usr/lib/systemd/system/$1" ${2:+"$2"})" ||
    fail "cannot turn unit $1 into a command"
  eval "cmd=($text)"
}

pids=()
cleanup_inside() {
  local status=$?
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  if [ "$status" != 0 ]; then
    for f in "$logs"/*.log; do echo "--- $(basename "$f")"; tail -n 30 "$f"; done
  fi
  exit "$status"
}

wait_for_socket() {  # PATH NAME
  for _ in $(seq 300); do [ -S "$1" ] && return 0; sleep 0.05; done
  fail "$2 did not create $1 within 15 s"
}

# Runs "$@" in the background with its output in $logs/NAME.log.
start() {  # NAME CMD...
  local name="$1"; shift
  "$@" >"$logs/$name.log" 2>&1 &
  pids+=("$!")
}

declare -A vm_pid vm_notify vm_id=([work]=42 [vault]=43)
declare -A uuid=([dom0]=00000000-0000-0000-0000-000000000000
                 [work]=6f1e7a52-3c0d-4b8e-9a44-000000000042
                 [vault]=6f1e7a52-3c0d-4b8e-9a44-000000000043)

# A VM: the installed agent unit's command in a mount namespace of its own
# whose /run is a fresh tmpfs set up by the vm package's tmpfiles.d file.
# For a Type=notify unit, NOTIFY_SOCKET names a listener (notify_listener.py)
# whose messages land in $logs/notify-NAME.txt (wait_ready).
start_vm() {  # NAME
  local name="$1" unit=qubes-qrexec-agent.service notify=()
  unit_cmd "$unit"
  if [ "$(python3 "$here/unit_command.py" --type "$root/usr/lib/systemd/system/$unit")" = notify ]; then
    notify=("NOTIFY_SOCKET=$notify_dir/$name.sock")
    start "notify-$name" python3 "$here/notify_listener.py" "$root$notify_dir/$name.sock" \
      "$logs/notify-$name.txt"
    wait_for_socket "$root$notify_dir/$name.sock" "the notify listener of $name"
  fi
  start "agent-$name" unshare --mount --propagation private sh -c '
      r="$1"; shift
      mount -t tmpfs -o mode=0755 tmpfs "$r/run" &&
      systemd-tmpfiles --root="$r" --create "$r/usr/lib/tmpfiles.d/qrexec-volatile-config.conf" &&
      exec chroot "$r" "$@"' vm-setup "$root" \
    /usr/bin/env -i "$path_env" "VCHAN_DOMAIN=${vm_id[$name]}" "VCHAN_SOCKET_DIR=$vchan_dir" \
    "${notify[@]}" "${cmd[@]}"
  vm_pid[$name]="$!"
  vm_notify[$name]="${#notify[@]}"
}

# A Type=notify agent must have said READY=1 (it does once dom0 connected).
wait_ready() {  # NAME
  [ "${vm_notify[$1]}" = 0 ] && return 0
  for _ in $(seq 300); do
    grep -qx 'READY=1' "$logs/notify-$1.txt" 2>/dev/null && { echo "ok: agent of $1 sent READY=1"; return 0; }
    sleep 0.05
  done
  fail "the agent of $1 (Type=notify) sent no READY=1 within 15 s"
}

start_daemon() {  # NAME
  local name="$1" instance="${vm_id[$1]}-$1"
  echo "QREXEC_DOMAIN_UUID=${uuid[$name]}" >"$root/run/qubes/qrexec-daemon.$instance.env"
  unit_cmd qubes-qrexec-daemon@.service "$instance"
  start "daemon-$name" "${root_cmd[@]}" "VCHAN_SOCKET_DIR=$vchan_dir" VCHAN_DOMAIN=0 "${cmd[@]}"
}

# qrexec-client-vm in VM $1's namespaces: vm_call VM TARGET SERVICE < input
vm_call() {
  local vm="$1"; shift
  nsenter --target "${vm_pid[$vm]}" --mount -- chroot "$root" /usr/bin/env -i "$path_env" \
    "VCHAN_DOMAIN=${vm_id[$vm]}" "VCHAN_SOCKET_DIR=$vchan_dir" /usr/bin/qrexec-client-vm "$@"
}

# expect_call VM TARGET SERVICE EXIT_CODE EXPECTED_OUTPUT
expect_call() {
  local out code=0
  out="$(printf 'input of %s\n' "$3" | vm_call "$1" "$2" "$3" 2>"$logs/last-call.err")" || code=$?
  [ "$code" = "$4" ] || fail "$1 -> $2 $3 exited $code, expected $4: $(cat "$logs/last-call.err")"
  [ "$out" = "$5" ] || fail "$1 -> $2 $3 printed '$out', expected '$5'"
  echo "ok: $1 -> $2 $3: exit $code"
}

write_system_info() {
  local domains="" name type
  for name in dom0 work vault; do
    type=AppVM; [ "$name" = dom0 ] && type=AdminVM
    domains+="${domains:+,}\"$name\": {\"type\": \"$type\", \"uuid\": \"${uuid[$name]}\",
      \"tags\": [], \"template_for_dispvms\": false, \"power_state\": \"Running\",
      \"label\": \"red\", \"icon\": \"appvm-red\"}"
  done
  echo "{\"domains\": {$domains}}" >"$1"
}

check_installed() {
  local f pkg
  for pkg in qrexec-cpp-vm qrexec-cpp-dom0 qrexec-cpp-host; do
    [ "$(in_root dpkg-query -W -f='${Status}' "$pkg")" = "install ok installed" ] ||
      fail "$pkg is not installed"
  done
  for f in /usr/lib/qubes/qrexec-agent /usr/lib/qubes/qrexec-pam-session /usr/bin/qrexec-client-vm \
           /usr/sbin/qrexec-daemon /usr/bin/qrexec-client /usr/bin/qrexec-policy-daemon \
           /usr/bin/qubes-policy /usr/bin/qubes-policy-admin /usr/bin/qrexec-host \
           /usr/lib/qubes/qrexec-sandbox-init /etc/pam.d/qrexec /etc/qubes/policy.d/35-compat.policy \
           /usr/lib/systemd/system/qubes-qrexec-agent.service \
           /usr/lib/systemd/system/qubes-qrexec-daemon@.service \
           /usr/lib/systemd/system/qubes-qrexec-policy-daemon.service \
           /usr/share/man/man1/qrexec-agent.1.gz /usr/share/man/man1/qubes-policy.1.gz; do
    [ -e "$root$f" ] || fail "$f is not installed"
  done
  for pkg in qrexec-cpp-vm qrexec-cpp-dom0 qrexec-cpp-host; do
    for f in copyright changelog.gz; do
      [ -f "$root/usr/share/doc/$pkg/$f" ] || fail "/usr/share/doc/$pkg/$f is missing"
    done
  done
  [ -d "$root/etc/qubes-rpc/policy" ] || fail "/etc/qubes-rpc/policy is missing"
  for f in policy.List policy.Get policy.Replace policy.Remove policy.GetFiles; do
    [ "$(readlink "$root/etc/qubes-rpc/$f")" = /usr/bin/qubes-policy-admin ] ||
      fail "/etc/qubes-rpc/$f is not a link to /usr/bin/qubes-policy-admin"
  done
  # CPACK_STRIP_FILES: no debug information or symbol table is shipped.
  for f in /usr/lib/qubes/qrexec-agent /usr/bin/qrexec-client-vm /usr/sbin/qrexec-daemon \
           /usr/bin/qrexec-host; do
    if readelf -S --wide "$root$f" | grep -qE '\.(debug_[a-z]+|symtab)\b'; then
      fail "$f is not stripped"
    fi
  done
  echo "ok: the three packages are installed, files in the Qubes layout, binaries stripped"
}

inside() {
  root_cmd=(chroot "$root" /usr/bin/env -i "$path_env" HOME=/root LANG=C)
  trap cleanup_inside EXIT
  # This PID namespace's /proc, outside (for nsenter --target) and inside.
  mount -t proc proc /proc
  mount -t proc proc "$root/proc"
  log "installing the packages with dpkg"
  mkdir -p "$root/tmp/debs"
  cp "${debs[@]}" "$root/tmp/debs/"
  in_root dpkg -i /tmp/debs/qrexec-cpp-vm.deb /tmp/debs/qrexec-cpp-dom0.deb \
    /tmp/debs/qrexec-cpp-host.deb >"$logs/dpkg.log" 2>&1 || { cat "$logs/dpkg.log"; fail "dpkg -i"; }
  check_installed

  log "setting up dom0 and the test's service and policy"
  in_root useradd --create-home user
  for service in test.Echo test.Other; do
    printf '#!/bin/sh\necho "from $QREXEC_REMOTE_DOMAIN as $(id -un): $QREXEC_SERVICE_FULL_NAME"\ncat\n' \
      >"$root/etc/qubes-rpc/$service"
    chmod 0755 "$root/etc/qubes-rpc/$service"
  done
  printf 'test.Echo * work vault allow\n' >"$root/etc/qubes/policy.d/30-pkgtest.policy"
  mkdir -p "$root$vchan_dir" "$root$notify_dir"
  systemd-tmpfiles --root="$root" --create "$root/usr/lib/tmpfiles.d/qrexec.conf"
  write_system_info "$work/system-info.json"
  start qubesd python3 "$here/fake_qubesd.py" "$root/run/qubesd.sock" "$work/system-info.json"
  wait_for_socket "$root/run/qubesd.sock" "the qubesd stand-in"

  log "starting what the installed units run"
  unit_cmd qubes-qrexec-policy-daemon.service
  start policy-daemon "${root_cmd[@]}" "${cmd[@]}"
  wait_for_socket "$root/run/qubes/policy.sock" qrexec-policy-daemon
  for vm in work vault; do start_vm "$vm"; start_daemon "$vm"; done
  for vm in work vault; do
    wait_for_socket "$root/run/qubes/qrexec.${vm_id[$vm]}" "qrexec-daemon of $vm"
    wait_ready "$vm"
  done

  log "calls through the installed policy"
  expect_call work vault test.Echo+one 0 $'from work as user: test.Echo+one\ninput of test.Echo+one'
  expect_call work vault test.Other 126 ""

  log "qubes-policy -r over the admin API, then calls that see the new rule"
  local new_policy=$'test.Echo * work vault deny\ntest.Other * work vault allow'
  printf '%s\n' "$new_policy" | in_root /usr/bin/qubes-policy -r 30-pkgtest ||
    fail "qubes-policy -r 30-pkgtest"
  [ "$(in_root /usr/bin/qubes-policy -g 30-pkgtest)" = "$new_policy" ] ||
    fail "qubes-policy -g does not show the replaced file"
  in_root /usr/bin/qubes-policy -l | grep -qx 30-pkgtest || fail "qubes-policy -l misses 30-pkgtest"
  echo "ok: qubes-policy -r, -g and -l"
  expect_call work vault test.Echo+two 126 ""
  # The refusal came from the installed policy daemon, reloaded, not from
  # qrexec-daemon's fallback program.
  grep -q 'test.Echo+two: denied: denied by policy /etc/qubes/policy.d/30-pkgtest.policy:1' \
    "$logs/policy-daemon.log" || fail "the policy daemon did not decide test.Echo+two by the new rule"
  expect_call work vault test.Other+three 0 \
    $'from work as user: test.Other+three\ninput of test.Other+three'
  log "PASS"
}

# --- outside: checks, packages, cached root --------------------------------

find_mirror() {
  if [ -n "${QREXEC_DEB_MIRROR:-}" ]; then echo "$QREXEC_DEB_MIRROR"; return; fi
  local url=""
  if [ -f /etc/apt/sources.list ]; then
    url="$(sed -E 's/\[[^]]*\]//' /etc/apt/sources.list |
           awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }')"
  fi
  if [ -z "$url" ]; then
    url="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
      BEGIN { RS = "" }
      /(^|\n)Types:[^\n]*deb( |\n|$)/ && /(^|\n)Suites:([^\n]* )?bookworm( |\n|$)/ {
        if (match($0, /(^|\n)URIs:[ \t]*[^ \t\n]+/)) {
          u = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[ \t]*/, "", u); print u; exit
        }
      }')"
  fi
  echo "${url:-http://deb.debian.org/debian}"
}

# Debian packages the .debs depend on (first of each alternative, ours
# dropped), comma-separated.
dependencies() {
  for deb in "$@"; do dpkg-deb -f "$deb" Depends; done | tr ',' '\n' |
    sed -E 's/\(.*\)//; s/\|.*//; s/[[:space:]]//g' | grep -v -e '^qrexec-cpp-' -e '^$' |
    sort -u | paste -sd, -
}

# The bookworm minbase tarball with $1's packages, from the cache or made now.
root_tarball() {
  local deps="$1" key tarball partial mirror
  key="$(printf 'bookworm minbase %s' "$deps" | sha256sum | cut -c1-16)"
  tarball="$cache/bookworm-minbase-$key.tar"
  if [ ! -f "$tarball" ]; then
    mirror="$(find_mirror)"
    /usr/lib/apt/apt-helper -o Acquire::http::Timeout=20 download-file \
      "$mirror/dists/bookworm/Release" "$cache/probe-Release" >/dev/null 2>&1 ||
      skip "no cached root and the Debian mirror $mirror cannot be reached (set QREXEC_DEB_MIRROR)"
    rm -f "$cache/probe-Release"
    partial="$cache/partial-$key.tar"
    echo "== mmdebstrap bookworm (minbase + $deps) from $mirror" >&2
    mmdebstrap --quiet --variant=minbase --include="$deps" bookworm "$partial" "$mirror" >&2 ||
      fail "mmdebstrap failed"
    mv "$partial" "$tarball"
  fi
  echo "$tarball"
}

main() {
  [ $# -ge 1 ] || fail "usage: install_test.sh BUILD_DIR"
  build="$(cd "$1" && pwd)"
  [ "$(id -u)" = 0 ] || skip "the packaging test needs root (mmdebstrap, chroot, namespaces)"
  for tool in mmdebstrap unshare nsenter chroot python3 systemd-tmpfiles dpkg-deb readelf; do
    command -v "$tool" >/dev/null || skip "$tool is not installed (make deps)"
  done
  local pkg matches
  debs=()
  for pkg in vm dom0 host; do
    matches=("$build"/packages/qrexec-cpp-"$pkg"_*.deb)
    [ "${#matches[@]}" = 1 ] && [ -f "${matches[0]}" ] ||
      fail "expected one build/packages/qrexec-cpp-${pkg}_*.deb (run cpack; remove stale versions)"
    debs+=("${matches[0]}")
  done
  work="$build/tests/packaging/install-test"
  cache="$build/tests/packaging/cache"
  root="$work/root"; logs="$work/logs"
  mkdir -p "$cache"
  local tarball
  tarball="$(root_tarball "$(dependencies "${debs[@]}")")"
  if findmnt -rn -o TARGET | grep -q "^$work/"; then
    fail "mounts left under $work by an earlier run"
  fi
  rm -rf "$work"
  mkdir -p "$root" "$logs"
  tar -C "$root" --numeric-owner -xf "$tarball"
  # Fixed names inside the root, so the dpkg line above names the packages.
  local staged=()
  for pkg in vm dom0 host; do
    cp "${debs[0]}" "$work/qrexec-cpp-$pkg.deb"; staged+=("$work/qrexec-cpp-$pkg.deb"); debs=("${debs[@]:1}")
  done
  export QREXEC_PKGTEST_INSIDE=1
  unshare --mount --pid --fork --kill-child --propagation private \
    "$0" --inside "$build" "$work" "$root" "$logs" "${staged[@]}"
  if findmnt -rn -o TARGET | grep -q "^$work/"; then fail "mounts left under $work"; fi
  rm -rf "$root"
}

if [ "${1:-}" = --inside ] && [ -n "${QREXEC_PKGTEST_INSIDE:-}" ]; then
  build="$2" work="$3" root="$4" logs="$5"
  debs=("${@:6}")
  inside
else
  main "$@"
fi
