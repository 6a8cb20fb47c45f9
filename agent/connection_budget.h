// A bound on live connections (qrexec-protocol.md §1.4: 256). The agent has
// two: one for dom0's calls (per-call handler processes, warm handlers and
// fork-server connections take one slot each) and one for local trigger
// clients. With a single shared budget, 256 local clients that connect and
// say nothing made every dom0 -> domain call fail; now local clients only
// compete with each other (and an idle one is dropped after the trigger
// time-out, trigger_server.h). Single-threaded; owned by the Agent and
// borrowed by the components that take slots.
#pragma once

#include <functional>
#include <utility>

#include "base/limits.h"

namespace qrexec::agent {

class ConnectionBudget {
 public:
  explicit ConnectionBudget(int limit = limits::kMaxAgentConnections) : limit_(limit) {}

  // Takes a slot; false when all are in use.
  bool TryAcquire() {
    if (used_ >= limit_) return false;
    ++used_;
    return true;
  }
  void Release() {
    if (used_ > 0) --used_;
    if (on_release_) on_release_();
  }
  // Called after every Release() (e.g. to resume accepting clients).
  void SetOnRelease(std::function<void()> callback) { on_release_ = std::move(callback); }
  bool full() const { return used_ >= limit_; }
  int used() const { return used_; }

 private:
  int limit_;
  int used_ = 0;
  std::function<void()> on_release_;
};

}  // namespace qrexec::agent
