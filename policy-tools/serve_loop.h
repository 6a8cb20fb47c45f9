// A small single-threaded epoll loop for the policy daemon and the policy
// agent: RAII fd watches and deferred tasks. (lib/event is the project-wide
// loop; this one only covers what the policy tools need and has no timers.)
//
// A callback may remove any watch, its own included; a removed watch never
// fires again, even later in the same epoll batch.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace qrexec::policy_tools {

class ServeLoop;

// Keeps an fd registered while alive. Movable; the fd itself stays owned by
// the caller and must outlive the watch.
class FdWatch {
 public:
  FdWatch() = default;
  FdWatch(FdWatch&& other) noexcept;
  FdWatch& operator=(FdWatch&& other) noexcept;
  FdWatch(const FdWatch&) = delete;
  FdWatch& operator=(const FdWatch&) = delete;
  ~FdWatch() { Reset(); }

  // Changes the epoll event mask (EPOLLIN, EPOLLOUT...).
  Status SetEvents(uint32_t events);
  void Reset();
  bool active() const { return loop_ != nullptr; }

 private:
  friend class ServeLoop;
  FdWatch(ServeLoop* loop, uint64_t id, int fd) : loop_(loop), id_(id), fd_(fd) {}
  ServeLoop* loop_ = nullptr;
  uint64_t id_ = 0;
  int fd_ = -1;
};

class ServeLoop {
 public:
  using FdCallback = std::function<void(uint32_t events)>;

  static Result<std::unique_ptr<ServeLoop>> Create();
  ServeLoop(const ServeLoop&) = delete;
  ServeLoop& operator=(const ServeLoop&) = delete;

  // Level-triggered watch of `fd` (borrowed).
  Result<FdWatch> Watch(int fd, uint32_t events, FdCallback callback);
  // Runs `task` from the loop after the current batch of events.
  void Post(std::function<void()> task);
  // Runs until Stop(); returns an error only if epoll itself fails.
  Status Run();
  void Stop() { stopping_ = true; }

 private:
  friend class FdWatch;
  explicit ServeLoop(UniqueFd epoll_fd) : epoll_fd_(std::move(epoll_fd)) {}
  void Remove(uint64_t id, int fd);
  Status Modify(uint64_t id, int fd, uint32_t events);
  void RunPosted();

  UniqueFd epoll_fd_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::shared_ptr<FdCallback>> callbacks_;
  std::vector<std::function<void()>> posted_;
  bool stopping_ = false;
};

}  // namespace qrexec::policy_tools
