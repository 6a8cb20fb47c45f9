// A small single-threaded poll(2) loop: fd watches and one-shot timers.
// Used by the admin server and by qrexec-host (until lib/event is in place;
// the interface is deliberately small so that the switch is mechanical).
//
// Callbacks may add and remove watches and timers, including their own.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>

#include "base/result.h"
#include "base/sys.h"

namespace qrexec::admin {

class PollLoop {
 public:
  using Id = uint64_t;
  using FdCallback = std::function<void(short revents)>;
  using TimerCallback = std::function<void()>;

  // Watches a borrowed fd (the caller keeps it open until Unwatch).
  Id Watch(int fd, short events, FdCallback callback);
  void SetEvents(Id id, short events);
  void Unwatch(Id id);
  bool watching(Id id) const { return watches_.count(id) != 0; }

  Id After(std::chrono::milliseconds delay, TimerCallback callback);
  void CancelTimer(Id id);

  // Waits at most `max_wait` (forever if empty, but never past the next
  // timer), then runs the callbacks that are due.
  Status RunOnce(std::optional<std::chrono::milliseconds> max_wait = std::nullopt);
  // Runs until Stop() or until `done()` is true after an iteration.
  Status Run(const std::function<bool()>& done = {});
  void Stop() { stopped_ = true; }

 private:
  struct WatchEntry {
    int fd;
    short events;
    FdCallback callback;
  };
  struct TimerEntry {
    sys::Clock::time_point at;
    TimerCallback callback;
  };
  Id next_id_ = 1;
  bool stopped_ = false;
  std::map<Id, WatchEntry> watches_;
  std::map<Id, TimerEntry> timers_;
};

}  // namespace qrexec::admin
