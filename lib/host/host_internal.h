// Private to lib/host: the runtime record of one domain.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "host/cgroup.h"
#include "host/host.h"
#include "host/sandbox.h"
#include "host/userns.h"

namespace qrexec::host {

// The domain user's uid and gid inside every domain (SandboxPasswd).
inline constexpr uid_t kSandboxUserUid = 1000;

// Descriptors a sandbox needs only until bwrap has started.
struct SandboxHandles {
  UniqueFd userns;   // the domain's user namespace
  UniqueFd seccomp;  // its compiled filter
  UniqueFd passwd;   // its /etc/passwd, /etc/group and /etc/shadow (sealed memfds)
  UniqueFd group;
  UniqueFd shadow;
};

// Creates a directory of the host's own (state, run, logs...) with `mode`,
// or accepts an existing one only if it is a real directory owned by us and
// writable by nobody else; refuses anything else with a clear error.
Status MakeHostDir(const std::string& path, mode_t mode);
// Replaces `path` with `text` (a new file, not following a symlink at path).
Status WriteTextFile(const std::string& path, const std::string& text);
// Refuses a state directory that someone else could replace: a relative
// path, or one below a directory owned by another user or writable by
// others without the sticky bit.
Status CheckStateDir(const std::string& state_dir);

struct Host::Domain {
  DomainConfig config;
  uint32_t id = 0;
  uint32_t id_slot = 0;  // its host id range (userns.h); 0 while unassigned
  // First so that it goes last: removing it kills what is left in it.
  DomainCgroup cgroup;
  PowerState state = PowerState::kHalted;
  bool dynamic = false;     // created by CreateDisposable: destroyed when it stops
  std::string scratch_dir;  // a disposable's storage, removed when it stops
  // A dynamic disposable: the domain whose call it was made for (empty: made
  // by dom0). It is destroyed when that domain stops (lifecycle.cc).
  std::string made_for;
  Child sandbox;
  Child daemon;
  // Declared after the children: unregistered before their pidfds close.
  event::FdWatch sandbox_watch;  // sandbox.pidfd()
  event::FdWatch daemon_watch;   // daemon.pidfd()
  event::Timer ready_timer;
  sys::Clock::time_point start_deadline;
  std::vector<StartDone> waiters;

  bool disposable() const { return config.klass == DomainClass::kDispVM; }
};

}  // namespace qrexec::host
