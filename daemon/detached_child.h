// Hands a started service over to the stream engine, which reaps it through
// its pidfd. exec::ChildProcess would kill and reap an unreaped child when
// destroyed, so the object is parked in a never-destroyed holder instead
// (reachable, so leak checkers stay quiet); the short-lived qrexec-client
// process ends right after its stream.
#pragma once

#include <sys/types.h>

#include <memory>
#include <vector>

#include "exec/child_process.h"

namespace qrexec::daemon {

inline pid_t DetachChild(exec::ChildProcess child) {
  static auto* parked = new std::vector<std::unique_ptr<exec::ChildProcess>>();
  parked->push_back(std::make_unique<exec::ChildProcess>(std::move(child)));
  return parked->back()->pid();
}

}  // namespace qrexec::daemon
