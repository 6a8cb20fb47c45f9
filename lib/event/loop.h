// qrexec::event — one single-threaded epoll loop per process (style.md
// habits 10 and 11).
//
// main() (or a per-call child process) constructs one Loop and passes a
// reference to every component that needs it; there is no global loop. Every
// registration returns an RAII handle: destroying the handle unregisters it,
// and a callback never runs after its handle is gone, even when the handle is
// destroyed from inside another callback of the same epoll batch. Handles are
// movable and must not outlive the Loop.
//
// Threading: a Loop and all its handles belong to the thread that runs it.
// Callbacks must not throw (no exception crosses the loop).
//
// Descriptors given to the loop are borrowed: the caller keeps them open for
// the lifetime of the handle and closes them only after destroying it. A
// given descriptor may carry at most one FdWatch at a time (epoll keys on the
// descriptor); to watch two directions of one socket use one FdWatch with
// both interests, or dup() the socket.
//
// Regular files and /dev/null cannot be watched by epoll (EPERM). FdWatch
// accepts them anyway and treats them as always ready: while such a watch has
// any interest set, RunOnce() does not sleep and reports it readable/writable
// on every iteration.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace qrexec::event {

class Loop;

// Readiness reported to an FdWatch callback.
struct Ready {
  bool readable = false;  // EPOLLIN (or a regular file)
  bool writable = false;  // EPOLLOUT (or a regular file)
  bool hangup = false;    // EPOLLHUP/EPOLLRDHUP: the peer closed (reading will see EOF)
  bool error = false;     // EPOLLERR: the next read/write reports the error
};

// Interest of an FdWatch. Hang-up and error are always reported while any
// interest is set; with no interest at all the fd is parked (no callbacks).
//
// `hangup` alone (HangupOnly()) keeps the fd in the epoll set with an empty
// mask: only a full hang-up (EPOLLHUP, both directions closed) or an error
// is reported, never readability nor a half-close. For a connection that
// waits for something else (a deferred answer) but must notice that its
// client went away; the callback should then close it, as a hung-up fd stays
// ready. It has no effect on regular files (they never hang up).
struct Interest {
  bool read = false;
  bool write = false;
  bool hangup = false;
  static Interest Read() { return {true, false}; }
  static Interest Write() { return {false, true}; }
  static Interest Both() { return {true, true}; }
  static Interest None() { return {false, false}; }
  static Interest HangupOnly() { return {false, false, true}; }
};

// Common base of all handles: a registration id in a Loop. Moving transfers
// the registration; a moved-from or default-constructed handle is inert.
class Registration {
 public:
  Registration() = default;
  Registration(Registration&& other) noexcept;
  Registration& operator=(Registration&& other) noexcept;
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;
  ~Registration();

  bool active() const { return loop_ != nullptr; }
  // Unregisters now (same as destruction). Idempotent.
  void Reset();

 protected:
  Registration(Loop* loop, uint64_t id) : loop_(loop), id_(id) {}
  Loop* loop_ = nullptr;
  uint64_t id_ = 0;
};

// Watches one borrowed fd. The callback gets the readiness; level-triggered,
// so a callback that does not consume the data is called again on the next
// iteration — lower the interest instead of spinning.
class FdWatch : public Registration {
 public:
  using Callback = std::function<void(Ready)>;
  FdWatch() = default;
  // Changes the interest (cheap when unchanged). Failure is an Internal
  // error from epoll_ctl.
  Status SetInterest(Interest interest);
  Interest interest() const;
  int fd() const;

 private:
  friend class Loop;
  using Registration::Registration;
};

// A timerfd (CLOCK_MONOTONIC). Created disarmed unless the Loop factory is
// given a delay. The callback runs once per expiry batch.
class Timer : public Registration {
 public:
  using Callback = std::function<void()>;
  Timer() = default;
  // One-shot after `delay` (interval zero) or periodic with `interval`
  // after the first `delay`. A zero delay fires on the next iteration.
  Status Arm(std::chrono::nanoseconds delay,
             std::chrono::nanoseconds interval = std::chrono::nanoseconds::zero());
  Status Disarm();

 private:
  friend class Loop;
  using Registration::Registration;
};

// A signalfd for one signal. Creating it blocks that signal for the calling
// thread (sigprocmask); destroying it restores the previous blocked state of
// that signal. NOTE for spawners: blocked signals are inherited by children
// across exec, so child setup must reset the signal mask (lib/exec does).
class SignalWatch : public Registration {
 public:
  using Callback = std::function<void(int signo)>;
  SignalWatch() = default;

 private:
  friend class Loop;
  using Registration::Registration;
};

// Watches a child process through pidfd_open(). When the child exits the
// loop reaps it (waitpid on that pid only) and calls the callback once with
// the raw wait status (use WIFEXITED/WEXITSTATUS...). After that the handle
// stays active but never fires again. Destroying the handle before the exit
// does not reap or kill the child.
class ChildWatch : public Registration {
 public:
  using Callback = std::function<void(int wait_status)>;
  ChildWatch() = default;

 private:
  friend class Loop;
  using Registration::Registration;
};

// Lets another thread wake the loop (an eventfd). Wake() is the only member
// that may be called from another thread, and only while the handle exists
// (the owner joins its thread before destroying it). The callback runs on the
// loop thread, once for any number of Wake() calls since it last ran.
class Waker : public Registration {
 public:
  using Callback = std::function<void()>;
  Waker() = default;
  // Thread-safe; async-signal-safe too (one write(2)).
  void Wake() const;

 private:
  friend class Loop;
  Waker(Loop* loop, uint64_t id, int fd) : Registration(loop, id), fd_(fd) {}
  int fd_ = -1;
};

class Loop {
 public:
  // Aborts (CHECK) if epoll_create1 fails; use Create() to get an error.
  Loop();
  static Result<std::unique_ptr<Loop>> Create();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Registers `fd` (borrowed) with the given interest.
  Result<FdWatch> WatchFd(int fd, Interest interest, FdWatch::Callback callback);
  // A timer; armed one-shot after `delay` if given.
  Result<Timer> AddTimer(Timer::Callback callback);
  Result<Timer> AddTimer(std::chrono::nanoseconds delay, Timer::Callback callback,
                         std::chrono::nanoseconds interval = std::chrono::nanoseconds::zero());
  // Blocks `signo` and delivers it through the loop. One watch per signal.
  Result<SignalWatch> WatchSignal(int signo, SignalWatch::Callback callback);
  // `pid` must be our child and not yet reaped. kNotFound if it is gone.
  Result<ChildWatch> WatchChild(pid_t pid, ChildWatch::Callback callback);
  // A cross-thread wake-up (see Waker).
  Result<Waker> AddWaker(Waker::Callback callback);

  // Runs `task` once on the loop thread at the start of the next iteration
  // (the next RunOnce(), which then does not sleep), after the current batch
  // of events. Tasks posted by a task run in the same iteration, in order.
  // Fire-and-forget: a task cannot be cancelled, so it must not capture
  // anything that may be destroyed before the next iteration. Tasks still
  // pending when the Loop is destroyed are dropped without running.
  void Post(std::function<void()> task);

  // Runs until Quit() (a Quit() from before this call is forgotten).
  // Returns an error only when epoll_wait itself fails.
  Status Run();
  // Runs the posted tasks, then waits at most `timeout` (negative = forever,
  // zero = poll; zero as well when a task ran) for events, dispatches them,
  // and returns how many callbacks and tasks ran.
  Result<int> RunOnce(std::chrono::milliseconds timeout);
  // Makes Run() return after the current iteration. Callable from callbacks.
  void Quit() { quit_ = true; }
  bool quitting() const { return quit_; }

  // Number of live registrations (for tests).
  size_t registration_count() const { return entries_.size(); }

 private:
  friend class Registration;
  friend class FdWatch;
  friend class Timer;
  struct Entry;
  uint64_t AddEntry(std::unique_ptr<Entry> entry);
  void Remove(uint64_t id);
  Entry* Find(uint64_t id);
  Status ApplyInterest(Entry& entry, Interest interest);
  Result<uint64_t> RegisterFd(int fd, Interest interest, std::function<void(Ready)> callback,
                              UniqueFd owned);
  // An owned timerfd or eventfd: reads its 8-byte counter, then calls back.
  Result<uint64_t> RegisterCounterFd(UniqueFd fd, std::function<void()> callback);

  UniqueFd epoll_fd_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Entry>> entries_;
  size_t always_ready_count_ = 0;  // entries on regular files with interest
  std::vector<std::function<void()>> posted_;
  bool quit_ = false;
};

}  // namespace qrexec::event
