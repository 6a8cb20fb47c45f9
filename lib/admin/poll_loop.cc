#include "admin/poll_loop.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <vector>

namespace qrexec::admin {

PollLoop::Id PollLoop::Watch(int fd, short events, FdCallback callback) {
  Id id = next_id_++;
  watches_.emplace(id, WatchEntry{fd, events, std::move(callback)});
  return id;
}

void PollLoop::SetEvents(Id id, short events) {
  auto it = watches_.find(id);
  if (it != watches_.end()) it->second.events = events;
}

void PollLoop::Unwatch(Id id) { watches_.erase(id); }

PollLoop::Id PollLoop::After(std::chrono::milliseconds delay, TimerCallback callback) {
  Id id = next_id_++;
  timers_.emplace(id, TimerEntry{sys::Clock::now() + delay, std::move(callback)});
  return id;
}

void PollLoop::CancelTimer(Id id) { timers_.erase(id); }

Status PollLoop::RunOnce(std::optional<std::chrono::milliseconds> max_wait) {
  auto now = sys::Clock::now();
  long long timeout_ms = max_wait ? max_wait->count() : -1;
  for (const auto& [id, timer] : timers_) {
    long long left =
        std::chrono::duration_cast<std::chrono::milliseconds>(timer.at - now).count() + 1;
    left = std::max(0LL, left);
    if (timeout_ms < 0 || left < timeout_ms) timeout_ms = left;
  }
  std::vector<pollfd> fds;
  std::vector<Id> ids;
  fds.reserve(watches_.size());
  for (const auto& [id, watch] : watches_) {
    fds.push_back(pollfd{watch.fd, watch.events, 0});
    ids.push_back(id);
  }
  int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::min<long long>(timeout_ms, INT_MAX)));
  if (n < 0 && errno != EINTR) return ErrnoError("poll");
  for (size_t i = 0; n > 0 && i < fds.size(); ++i) {
    if (fds[i].revents == 0) continue;
    auto it = watches_.find(ids[i]);
    // Removed, or replaced by a watch on another fd, during this iteration.
    if (it == watches_.end() || it->second.fd != fds[i].fd) continue;
    FdCallback callback = it->second.callback;  // may erase itself
    callback(fds[i].revents);
  }
  now = sys::Clock::now();
  std::vector<Id> due;
  for (const auto& [id, timer] : timers_)
    if (timer.at <= now) due.push_back(id);
  for (Id id : due) {
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;
    TimerCallback callback = std::move(it->second.callback);
    timers_.erase(it);
    callback();
  }
  return Ok();
}

Status PollLoop::Run(const std::function<bool()>& done) {
  stopped_ = false;
  while (!stopped_) {
    if (auto status = RunOnce(); !status) return status;
    if (done && done()) break;
  }
  return Ok();
}

}  // namespace qrexec::admin
