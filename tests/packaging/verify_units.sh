#!/bin/sh
# Installs every component into a scratch root (DESTDIR) and runs
# `systemd-analyze verify` on the installed units there, so that the units'
# ExecStart programs are checked against the paths the install rules use.
# usage: verify_units.sh BUILD_DIR SCRATCH_DIR
set -eu
build="$1"; root="$2"
rm -rf "$root"
for component in vm dom0 host; do
  DESTDIR="$root" cmake --install "$build" --prefix /usr --component "$component" >/dev/null
done
installed="$root/usr/lib/systemd/system"
# Verified against this machine's systemd (a bare scratch root has no
# sysinit.target), with the programs' paths pointed into the scratch root.
units="$root/verify"; mkdir -p "$units"
for unit in "$installed"/*.service; do
  sed "s|/usr/|$root/usr/|g" "$unit" > "$units/$(basename "$unit")"
done
# A template unit is verified through one instance of it.
mv "$units/qubes-qrexec-daemon@.service" "$units/qubes-qrexec-daemon@3-work.service"
status=0
for unit in "$units"/*.service; do
  case "$unit" in *@.service) continue ;; esac
  out="$(SYSTEMD_UNIT_PATH="$units:" systemd-analyze verify --man=no "$unit" 2>&1)" || status=1
  # verify exits 0 on some warnings; any output at all is a finding.
  if [ -n "$out" ]; then echo "$out"; status=1; fi
done
for conf in "$root"/usr/lib/tmpfiles.d/*.conf; do
  systemd-tmpfiles --root="$root" --create "$conf" || status=1
done
exit $status
