#include "host/seccomp_filter.h"

#include "host/sealed_memfd.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include <fmt/format.h>

namespace qrexec::host {
namespace {

constexpr const char* kDenied[] = {
    // kernel keyrings
    "add_key", "keyctl", "request_key",
    // the kernel and the machine
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon",
    "swapoff", "acct", "syslog", "quotactl", "quotactl_fd", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex", "ioperm", "iopl", "uselib", "nfsservctl", "lookup_dcookie", "vhangup", "create_module",
    "get_kernel_syms", "query_module",
    // large attack surface
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "open_by_handle_at", "name_to_handle_at",
    // rearranging the sandbox
    "mount", "umount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr", "setns",
};

struct CtxDeleter {
  void operator()(scmp_filter_ctx ctx) const { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

Status Check(int rc, const char* what) {
  if (rc < 0) return MakeError(ErrorKind::kInternal, fmt::format("seccomp {}: {}", what, ::strerror(-rc)));
  return Ok();
}

// An argument comparison, built without libseccomp's SCMP_A* macros (C
// compound literals, which C++ compilers warn about).
scmp_arg_cmp MaskedEquals(unsigned arg, uint64_t mask, uint64_t value) {
  scmp_arg_cmp cmp{};
  cmp.arg = arg;
  cmp.op = SCMP_CMP_MASKED_EQ;
  cmp.datum_a = mask;
  cmp.datum_b = value;
  return cmp;
}

Status AddRules(scmp_filter_ctx ctx, const SeccompOptions& options) {
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  for (const char* name : kDenied) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if (auto status = Check(seccomp_rule_add(ctx, eperm, nr, 0), name); !status) return status;
  }
  for (unsigned long request : {static_cast<unsigned long>(TIOCSTI), static_cast<unsigned long>(TIOCLINUX)}) {
    if (auto status = Check(seccomp_rule_add(ctx, eperm, SCMP_SYS(ioctl), 1,
                                             MaskedEquals(1, 0xffffffffu, request)),
                            "ioctl");
        !status)
      return status;
  }
  if (options.allow_user_namespaces) return Ok();
  for (int nr : {SCMP_SYS(unshare), SCMP_SYS(clone)}) {
    // unshare(flags) and clone(flags, ...): flags are the first argument
    // on every architecture we build for.
    if (auto status = Check(seccomp_rule_add(ctx, eperm, nr, 1,
                                             MaskedEquals(0, CLONE_NEWUSER, CLONE_NEWUSER)),
                            "unshare/clone");
        !status)
      return status;
  }
  return Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0), "clone3");
}

}  // namespace

Result<UniqueFd> BuildSeccompFilter(const SeccompOptions& options) {
  Ctx ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) return MakeError(ErrorKind::kInternal, "seccomp_init failed");
  // bwrap sets no_new_privs itself; a filter that sets it too is harmless.
  for (uint32_t arch : {SCMP_ARCH_X86, SCMP_ARCH_X32}) {
    if (seccomp_arch_native() != SCMP_ARCH_X86_64) break;
    int rc = seccomp_arch_add(ctx.get(), arch);
    if (rc < 0 && rc != -EEXIST) return tl::unexpected(Check(rc, "arch_add").error());
  }
  if (auto status = AddRules(ctx.get(), options); !status) return tl::unexpected(status.error());
  auto fd = NewSealableMemfd("qrexec-seccomp");
  if (!fd) return fd;
  if (auto status = Check(seccomp_export_bpf(ctx.get(), fd->get()), "export"); !status)
    return tl::unexpected(status.error());
  if (auto status = SealForReading(fd->get()); !status) return tl::unexpected(status.error());
  return fd;
}

}  // namespace qrexec::host
