#include "serve_loop.h"

#include <sys/epoll.h>

#include <cerrno>
#include <utility>

namespace qrexec::policy_tools {

FdWatch::FdWatch(FdWatch&& other) noexcept
    : loop_(std::exchange(other.loop_, nullptr)), id_(other.id_), fd_(other.fd_) {}

FdWatch& FdWatch::operator=(FdWatch&& other) noexcept {
  if (this != &other) {
    Reset();
    loop_ = std::exchange(other.loop_, nullptr);
    id_ = other.id_;
    fd_ = other.fd_;
  }
  return *this;
}

Status FdWatch::SetEvents(uint32_t events) {
  if (loop_ == nullptr) return MakeError(ErrorKind::kInternal, "inactive watch");
  return loop_->Modify(id_, fd_, events);
}

void FdWatch::Reset() {
  if (loop_ != nullptr) std::exchange(loop_, nullptr)->Remove(id_, fd_);
}

Result<std::unique_ptr<ServeLoop>> ServeLoop::Create() {
  UniqueFd fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!fd.valid()) return ErrnoError("epoll_create1");
  return std::unique_ptr<ServeLoop>(new ServeLoop(std::move(fd)));
}

Result<FdWatch> ServeLoop::Watch(int fd, uint32_t events, FdCallback callback) {
  uint64_t id = next_id_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return ErrnoError("epoll_ctl(ADD)");
  callbacks_.emplace(id, std::make_shared<FdCallback>(std::move(callback)));
  return FdWatch(this, id, fd);
}

Status ServeLoop::Modify(uint64_t id, int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, fd, &ev) < 0) return ErrnoError("epoll_ctl(MOD)");
  return Ok();
}

void ServeLoop::Remove(uint64_t id, int fd) {
  // The fd may already be closed by its owner; then the kernel dropped it.
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
  callbacks_.erase(id);
}

void ServeLoop::Post(std::function<void()> task) { posted_.push_back(std::move(task)); }

void ServeLoop::RunPosted() {
  while (!posted_.empty()) {
    auto tasks = std::exchange(posted_, {});
    for (auto& task : tasks) task();
  }
}

Status ServeLoop::Run() {
  constexpr int kBatch = 64;
  epoll_event events[kBatch];
  stopping_ = false;
  while (!stopping_) {
    RunPosted();
    if (stopping_) break;
    int n = ::epoll_wait(epoll_fd_.get(), events, kBatch, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      // epoll_event is packed: copy the fields before taking references.
      const uint64_t id = events[i].data.u64;
      const uint32_t ready = events[i].events;
      auto it = callbacks_.find(id);
      if (it == callbacks_.end()) continue;  // removed earlier in this batch
      auto callback = it->second;            // keeps it alive while it runs
      (*callback)(ready);
    }
  }
  return Ok();
}

}  // namespace qrexec::policy_tools
