// Child processes of the host (sandboxes, daemons, the policy daemon): built
// argv/envp before fork, only async-signal-safe calls between fork and exec,
// a pidfd to watch and signal them without pid reuse races.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/sys.h"
#include "base/unique_fd.h"

namespace qrexec::host {

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is the program path
  std::vector<std::string> env;   // the complete environment ("K=V")
  // stdout and stderr go here (appended); empty: inherit ours.
  std::string log_path;
  // stdin: /dev/null unless inherit_stdin.
  bool inherit_stdin = false;
  // setsid() in the child (not attached to our terminal's signals).
  bool new_session = true;
  // Confinement, applied in the child before exec, in this order:
  // 1. the child moves itself into each cgroup whose cgroup.procs file is
  //    listed (while it still has the host's privileges);
  // 2. with join_userns >= 0: it joins that user namespace and becomes uid
  //    and gid 0 there with no supplementary groups (so the program runs as
  //    that namespace's root, as an unprivileged id range on the host).
  std::vector<std::string> cgroup_procs;
  int join_userns = -1;
  // Descriptors passed to the program at the same numbers (their
  // close-on-exec flag is cleared in the child); every other one is closed.
  std::vector<int> keep_fds;
  // The child's soft RLIMIT_NOFILE (never above the hard limit, which is
  // left alone). qrexec-host raises its own soft limit to the hard one; a
  // domain or daemon must not inherit that, so that what one domain can
  // hold stays the usual budget and select()-using programs keep working.
  rlim_t descriptor_soft_limit = 1024;
};

class Child {
 public:
  Child() = default;
  Child(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  Child(Child&&) = default;
  Child& operator=(Child&&) = default;

  bool valid() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Readable once the child has exited.
  int pidfd() const { return pidfd_.get(); }
  // Sends a signal unless the child has been reaped.
  void Signal(int sig) const;
  // Reaps the child if it has exited; returns its wait status.
  std::optional<int> TryReap();
  // Waits until it exits (or the deadline passes) and reaps it.
  Result<int> Wait(const sys::Deadline& deadline);
  // SIGTERM, wait up to `grace`, then SIGKILL and reap.
  void Stop(std::chrono::milliseconds grace);

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
};

Result<Child> Spawn(const SpawnOptions& options);

// Exit code in the shell's convention: status, or 128+signal.
int ExitCodeOf(int wait_status);

// The current environment, minus variables whose names start with any of
// `drop_prefixes`, plus `extra` ("K=V", replacing same-named ones).
std::vector<std::string> MakeEnvironment(const std::vector<std::string>& drop_prefixes,
                                         const std::vector<std::string>& extra);

// The pids of the direct children of `pid` (from /proc).
std::vector<pid_t> ChildrenOf(pid_t pid);
// The parent of `pid` (from /proc/PID/stat); nullopt when it is gone.
std::optional<pid_t> ParentOf(pid_t pid);

// Runs a program to completion (cp, for disposable homes). Returns its exit code.
Result<int> RunProgram(const std::vector<std::string>& argv, const sys::Deadline& deadline);

}  // namespace qrexec::host
