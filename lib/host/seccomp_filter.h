// The system-call filter of every domain (a seccomp BPF program that
// bubblewrap installs just before the domain's first process starts).
//
// An allow-by-default filter with a deny list, as Flatpak, Docker and
// Podman use for general-purpose sandboxes (a domain runs arbitrary
// programs, so an allow list would break them). The list and the reasons
// are in docs/threat-model.md; in short, a domain never needs:
//   kernel keyrings   add_key keyctl request_key (not namespaced per domain)
//   kernel/system     kexec_load kexec_file_load init_module finit_module
//                     delete_module reboot swapon swapoff acct syslog
//                     quotactl settimeofday clock_settime clock_adjtime
//                     adjtimex ioperm iopl uselib nfsservctl lookup_dcookie
//                     vhangup
//   attack surface    bpf perf_event_open userfaultfd io_uring_* (frequent
//                     sources of kernel exploits), open_by_handle_at
//                     name_to_handle_at ("shocker"), the TIOCSTI/TIOCLINUX
//                     ioctls (typing into another terminal)
//   rearranging       mount umount2 pivot_root open_tree move_mount fsopen
//                     fsconfig fsmount fspick mount_setattr setns; unshare
//                     and clone with CLONE_NEWUSER unless allowed, clone3
//                     (its flags are behind a pointer: ENOSYS, so libc
//                     falls back to clone, whose flags can be checked)
// Refused calls fail with EPERM (ENOSYS for clone3); the process goes on.
#pragma once

#include "base/result.h"
#include "base/unique_fd.h"

namespace qrexec::host {

struct SeccompOptions {
  // Let the domain create user namespaces (for nested sandboxes such as
  // bwrap or podman inside it). Off by default.
  bool allow_user_namespaces = false;
};

// The compiled filter in a sealed memfd positioned at 0, ready for bwrap's
// --seccomp FD. Includes the native architecture and its 32-bit companions
// (a 32-bit binary's calls are filtered the same way).
Result<UniqueFd> BuildSeccompFilter(const SeccompOptions& options);

}  // namespace qrexec::host
