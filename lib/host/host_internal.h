// Private to lib/host: the runtime record of one domain.
#pragma once

#include <string>
#include <vector>

#include "host/host.h"

namespace qrexec::host {

struct Host::Domain {
  DomainConfig config;
  uint32_t id = 0;
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
