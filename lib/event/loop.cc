#include "event/loop.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <utility>
#include <vector>

#include "base/check.h"
#include "base/log.h"

namespace qrexec::event {

struct Loop::Entry {
  uint64_t id = 0;
  int fd = -1;
  UniqueFd owned;  // timerfd/signalfd/pidfd; borrowed fds leave this empty
  Interest interest;
  bool in_epoll = false;  // epoll can watch it; false: regular file, always ready
  bool in_set = false;    // currently added to the epoll set (only with interest)
  // Shared so that a callback destroying its own handle does not destroy the
  // std::function while it runs.
  std::shared_ptr<std::function<void(Ready)>> callback;
  // SignalWatch only: restore the blocked state on removal.
  int signo = 0;
  bool signal_was_blocked = false;
};

namespace {

uint32_t EpollMask(Interest interest) {
  uint32_t mask = 0;
  if (interest.read) mask |= EPOLLIN | EPOLLRDHUP;
  if (interest.write) mask |= EPOLLOUT;
  return mask;
}

// Readable or writable interest (what a regular file is always ready for).
bool Any(Interest interest) { return interest.read || interest.write; }
// Any interest at all: the fd belongs in the epoll set.
bool Watched(Interest interest) { return Any(interest) || interest.hangup; }

Ready FromEpoll(uint32_t events) {
  Ready ready;
  ready.readable = (events & EPOLLIN) != 0;
  ready.writable = (events & EPOLLOUT) != 0;
  ready.hangup = (events & (EPOLLHUP | EPOLLRDHUP)) != 0;
  ready.error = (events & EPOLLERR) != 0;
  return ready;
}

}  // namespace

// --- Registration ---

Registration::Registration(Registration&& other) noexcept
    : loop_(std::exchange(other.loop_, nullptr)), id_(std::exchange(other.id_, 0)) {}

Registration& Registration::operator=(Registration&& other) noexcept {
  if (this != &other) {
    Reset();
    loop_ = std::exchange(other.loop_, nullptr);
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

Registration::~Registration() { Reset(); }

void Registration::Reset() {
  if (loop_ != nullptr) {
    loop_->Remove(id_);
    loop_ = nullptr;
    id_ = 0;
  }
}

// --- FdWatch ---

Status FdWatch::SetInterest(Interest interest) {
  QREXEC_CHECK(loop_ != nullptr);
  Loop::Entry* entry = loop_->Find(id_);
  QREXEC_CHECK(entry != nullptr);
  return loop_->ApplyInterest(*entry, interest);
}

Interest FdWatch::interest() const {
  QREXEC_CHECK(loop_ != nullptr);
  return loop_->Find(id_)->interest;
}

int FdWatch::fd() const {
  QREXEC_CHECK(loop_ != nullptr);
  return loop_->Find(id_)->fd;
}

// --- Timer ---

Status Timer::Arm(std::chrono::nanoseconds delay, std::chrono::nanoseconds interval) {
  QREXEC_CHECK(loop_ != nullptr);
  Loop::Entry* entry = loop_->Find(id_);
  QREXEC_CHECK(entry != nullptr);
  // A zero it_value disarms, so a zero delay becomes 1 ns.
  if (delay <= std::chrono::nanoseconds::zero()) delay = std::chrono::nanoseconds(1);
  auto to_timespec = [](std::chrono::nanoseconds ns) {
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(ns.count() / 1000000000);
    ts.tv_nsec = static_cast<long>(ns.count() % 1000000000);
    return ts;
  };
  itimerspec spec{};
  spec.it_value = to_timespec(delay);
  spec.it_interval = to_timespec(interval);
  if (::timerfd_settime(entry->fd, 0, &spec, nullptr) != 0) return ErrnoError("timerfd_settime");
  return Ok();
}

Status Timer::Disarm() {
  QREXEC_CHECK(loop_ != nullptr);
  Loop::Entry* entry = loop_->Find(id_);
  QREXEC_CHECK(entry != nullptr);
  itimerspec spec{};
  if (::timerfd_settime(entry->fd, 0, &spec, nullptr) != 0) return ErrnoError("timerfd_settime");
  return Ok();
}

// --- Loop ---

Loop::Loop() : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) { QREXEC_CHECK(epoll_fd_.valid()); }

Result<std::unique_ptr<Loop>> Loop::Create() {
  UniqueFd probe(::epoll_create1(EPOLL_CLOEXEC));
  if (!probe.valid()) return ErrnoError("epoll_create1");
  return std::make_unique<Loop>();
}

Loop::~Loop() {
  // Handles must not outlive the loop; a leftover one would later touch freed
  // memory, so fail loudly here instead.
  QREXEC_CHECK(entries_.empty());
}

uint64_t Loop::AddEntry(std::unique_ptr<Entry> entry) {
  uint64_t id = next_id_++;
  QREXEC_CHECK(entry->id == id);
  entries_.emplace(id, std::move(entry));
  return id;
}

Loop::Entry* Loop::Find(uint64_t id) {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : it->second.get();
}

void Loop::Remove(uint64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Entry& entry = *it->second;
  if (entry.in_set) {
    ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, entry.fd, nullptr);
  } else if (!entry.in_epoll && Any(entry.interest)) {
    --always_ready_count_;
  }
  if (entry.signo != 0 && !entry.signal_was_blocked) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, entry.signo);
    ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
  }
  entries_.erase(it);
}

Status Loop::ApplyInterest(Entry& entry, Interest interest) {
  if (entry.interest.read == interest.read && entry.interest.write == interest.write &&
      entry.interest.hangup == interest.hangup)
    return Ok();
  if (entry.in_epoll) {
    // An fd with no interest leaves the set entirely: epoll reports HUP/ERR
    // even with an empty mask, which would make a parked fd spin the loop.
    // HangupOnly() stays in the set with exactly that empty mask.
    epoll_event ev{};
    ev.events = EpollMask(interest);
    ev.data.u64 = entry.id;
    int op = !Watched(interest) ? EPOLL_CTL_DEL : entry.in_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (::epoll_ctl(epoll_fd_.get(), op, entry.fd, &ev) != 0) return ErrnoError("epoll_ctl");
    entry.in_set = Watched(interest);
  } else {
    if (Any(entry.interest)) --always_ready_count_;
    if (Any(interest)) ++always_ready_count_;
  }
  entry.interest = interest;
  return Ok();
}

Result<uint64_t> Loop::RegisterFd(int fd, Interest interest, std::function<void(Ready)> callback,
                                  UniqueFd owned) {
  auto entry = std::make_unique<Entry>();
  entry->fd = fd;
  entry->owned = std::move(owned);
  entry->interest = interest;
  entry->callback = std::make_shared<std::function<void(Ready)>>(std::move(callback));
  entry->id = next_id_;
  // Probe with an ADD: EPERM means epoll cannot watch this kind of file.
  epoll_event ev{};
  ev.events = EpollMask(interest);
  ev.data.u64 = entry->id;
  if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) == 0) {
    entry->in_epoll = true;
    entry->in_set = true;
    if (!Watched(interest)) {
      ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
      entry->in_set = false;
    }
  } else if (errno == EPERM) {
    entry->in_epoll = false;
    if (Any(interest)) ++always_ready_count_;
  } else {
    return ErrnoError("epoll_ctl(ADD)");
  }
  return AddEntry(std::move(entry));
}

Result<uint64_t> Loop::RegisterCounterFd(UniqueFd fd, std::function<void()> callback) {
  int raw = fd.get();
  auto cb = std::make_shared<std::function<void()>>(std::move(callback));
  return RegisterFd(
      raw, Interest::Read(),
      [raw, cb](Ready) {
        uint64_t count = 0;  // reading resets the counter
        if (::read(raw, &count, sizeof count) != sizeof count) return;
        (*cb)();
      },
      std::move(fd));
}

Result<FdWatch> Loop::WatchFd(int fd, Interest interest, FdWatch::Callback callback) {
  auto id = RegisterFd(fd, interest, std::move(callback), UniqueFd());
  if (!id) return tl::unexpected(id.error());
  return FdWatch(this, *id);
}

Result<Timer> Loop::AddTimer(Timer::Callback callback) {
  UniqueFd tfd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!tfd.valid()) return ErrnoError("timerfd_create");
  auto id = RegisterCounterFd(std::move(tfd), std::move(callback));
  if (!id) return tl::unexpected(id.error());
  return Timer(this, *id);
}

Result<Timer> Loop::AddTimer(std::chrono::nanoseconds delay, Timer::Callback callback,
                             std::chrono::nanoseconds interval) {
  auto timer = AddTimer(std::move(callback));
  if (!timer) return timer;
  if (auto armed = timer->Arm(delay, interval); !armed) return tl::unexpected(armed.error());
  return timer;
}

Result<SignalWatch> Loop::WatchSignal(int signo, SignalWatch::Callback callback) {
  sigset_t set;
  sigset_t old;
  sigemptyset(&set);
  sigaddset(&set, signo);
  if (::sigprocmask(SIG_BLOCK, &set, &old) != 0) return ErrnoError("sigprocmask");
  bool was_blocked = sigismember(&old, signo) == 1;
  UniqueFd sfd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sfd.valid()) {
    int saved = errno;
    if (!was_blocked) ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
    return ErrnoError("signalfd", saved);
  }
  int raw = sfd.get();
  auto cb = std::make_shared<SignalWatch::Callback>(std::move(callback));
  auto id = RegisterFd(
      raw, Interest::Read(),
      [raw, cb](Ready) {
        signalfd_siginfo info{};
        while (::read(raw, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
          (*cb)(static_cast<int>(info.ssi_signo));
        }
      },
      std::move(sfd));
  if (!id) {
    if (!was_blocked) ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
    return tl::unexpected(id.error());
  }
  Entry* entry = Find(*id);
  entry->signo = signo;
  entry->signal_was_blocked = was_blocked;
  return SignalWatch(this, *id);
}

Result<ChildWatch> Loop::WatchChild(pid_t pid, ChildWatch::Callback callback) {
  int raw = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (raw < 0) {
    int saved = errno;
    if (saved == ESRCH) return MakeError(ErrorKind::kNotFound, "no such process", saved);
    return ErrnoError("pidfd_open", saved);
  }
  UniqueFd pidfd(raw);  // pidfd_open always sets O_CLOEXEC
  auto cb = std::make_shared<ChildWatch::Callback>(std::move(callback));
  auto id_holder = std::make_shared<uint64_t>(0);
  auto id = RegisterFd(
      raw, Interest::Read(),
      [this, pid, cb, id_holder](Ready) {
        int status = 0;
        pid_t r;
        do {
          r = ::waitpid(pid, &status, WNOHANG);
        } while (r < 0 && errno == EINTR);
        if (r == 0) return;  // not yet (spurious wake-up)
        if (Entry* self = Find(*id_holder)) (void)ApplyInterest(*self, Interest::None());
        if (r < 0) {
          LOG_ERROR("waitpid({}) failed; child reaped elsewhere?", pid);
          return;
        }
        (*cb)(status);
      },
      std::move(pidfd));
  if (!id) return tl::unexpected(id.error());
  *id_holder = *id;
  return ChildWatch(this, *id);
}

Result<Waker> Loop::AddWaker(Waker::Callback callback) {
  UniqueFd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!efd.valid()) return ErrnoError("eventfd");
  int raw = efd.get();
  auto id = RegisterCounterFd(std::move(efd), std::move(callback));
  if (!id) return tl::unexpected(id.error());
  return Waker(this, *id, raw);
}

void Waker::Wake() const {
  QREXEC_CHECK(fd_ >= 0);
  uint64_t one = 1;
  // EAGAIN only when the counter is about to overflow: a wake-up is pending.
  (void)!::write(fd_, &one, sizeof one);
}

void Loop::Post(std::function<void()> task) { posted_.push_back(std::move(task)); }

Result<int> Loop::RunOnce(std::chrono::milliseconds timeout) {
  int ran = 0;
  while (!posted_.empty()) {
    auto tasks = std::exchange(posted_, {});
    for (auto& task : tasks) {
      task();
      ++ran;
    }
  }
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  int timeout_ms = timeout.count() < 0 ? -1 : static_cast<int>(timeout.count());
  if (always_ready_count_ > 0 || ran > 0) timeout_ms = 0;
  int n;
  do {
    n = ::epoll_wait(epoll_fd_.get(), events, kMaxEvents, timeout_ms);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoError("epoll_wait");

  // Collect first: callbacks may add or remove registrations.
  std::vector<std::pair<uint64_t, Ready>> batch;
  batch.reserve(static_cast<size_t>(n) + always_ready_count_);
  for (int i = 0; i < n; ++i) {
    uint64_t id = events[i].data.u64;  // packed struct: copy out first
    batch.emplace_back(id, FromEpoll(events[i].events));
  }
  if (always_ready_count_ > 0) {
    for (auto& [id, entry] : entries_) {
      if (!entry->in_epoll && Any(entry->interest)) {
        batch.emplace_back(id, Ready{entry->interest.read, entry->interest.write, false, false});
      }
    }
  }
  for (auto& [id, ready] : batch) {
    Entry* entry = Find(id);
    if (entry == nullptr) continue;  // removed by an earlier callback
    if (!Watched(entry->interest)) continue;
    auto callback = entry->callback;  // keeps the function alive during the call
    (*callback)(ready);
    ++ran;
  }
  return ran;
}

Status Loop::Run() {
  quit_ = false;
  while (!quit_) {
    auto ran = RunOnce(std::chrono::milliseconds(-1));
    if (!ran) return tl::unexpected(ran.error());
  }
  return Ok();
}

}  // namespace qrexec::event
