#include "event/loop.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "base/sys.h"
#include "event/heap_trimmer.h"

namespace qrexec::event {
namespace {

using std::chrono::milliseconds;

// Runs the loop until `done` or a generous hang-detecting bound.
template <class Pred>
void RunUntil(Loop& loop, Pred done) {
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done()) {
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "hang";
    ASSERT_TRUE(loop.RunOnce(milliseconds(100)));
  }
}

TEST(Loop, FdWatchReportsReadableDataOnASocketpair) {
  Loop loop;
  auto pair = sys::SocketPair(true);
  ASSERT_TRUE(pair);
  std::string got;
  auto watch = loop.WatchFd(pair->first.get(), Interest::Read(), [&](Ready ready) {
    ASSERT_TRUE(ready.readable);
    char buf[16];
    ssize_t n = ::read(pair->first.get(), buf, sizeof buf);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
  });
  ASSERT_TRUE(watch);
  ASSERT_TRUE(sys::WriteAll(pair->second.get(), "hello"));
  RunUntil(loop, [&] { return got == "hello"; });
}

TEST(Loop, DestroyedWatchNeverRunsItsCallback) {
  Loop loop;
  auto pair = sys::SocketPair(true);
  ASSERT_TRUE(pair);
  int calls = 0;
  {
    auto watch = loop.WatchFd(pair->first.get(), Interest::Read(), [&](Ready) { ++calls; });
    ASSERT_TRUE(watch);
  }
  ASSERT_TRUE(sys::WriteAll(pair->second.get(), "x"));
  ASSERT_TRUE(loop.RunOnce(milliseconds(50)));
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(loop.registration_count(), 0u);
}

TEST(Loop, CallbackMayDestroyAnotherReadyWatchOfTheSameBatch) {
  Loop loop;
  auto a = sys::SocketPair(true);
  auto b = sys::SocketPair(true);
  ASSERT_TRUE(a && b);
  int a_calls = 0;
  int b_calls = 0;
  std::optional<FdWatch> wa;
  std::optional<FdWatch> wb;
  wa = *loop.WatchFd(a->first.get(), Interest::Read(), [&](Ready) {
    ++a_calls;
    wb.reset();
    wa.reset();  // destroying itself from inside its own callback is fine too
  });
  wb = *loop.WatchFd(b->first.get(), Interest::Read(), [&](Ready) {
    ++b_calls;
    wa.reset();
    wb.reset();
  });
  ASSERT_TRUE(sys::WriteAll(a->second.get(), "x"));
  ASSERT_TRUE(sys::WriteAll(b->second.get(), "x"));
  ASSERT_TRUE(loop.RunOnce(milliseconds(1000)));
  EXPECT_EQ(a_calls + b_calls, 1);
  EXPECT_EQ(loop.registration_count(), 0u);
}

TEST(Loop, WriteInterestCanBeToggledAndParkedFdsDoNotSpin) {
  Loop loop;
  auto pair = sys::SocketPair(true);
  ASSERT_TRUE(pair);
  int writable = 0;
  auto watch = loop.WatchFd(pair->first.get(), Interest::None(), [&](Ready r) {
    if (r.writable) ++writable;
  });
  ASSERT_TRUE(watch);
  pair->second.reset();  // hang-up: must not be reported while parked
  auto ran = loop.RunOnce(milliseconds(20));
  ASSERT_TRUE(ran);
  EXPECT_EQ(*ran, 0);
  ASSERT_TRUE(watch->SetInterest(Interest::Write()));
  ASSERT_TRUE(loop.RunOnce(milliseconds(1000)));
  EXPECT_EQ(writable, 1);
  ASSERT_TRUE(watch->SetInterest(Interest::None()));
  ran = loop.RunOnce(milliseconds(20));
  ASSERT_TRUE(ran);
  EXPECT_EQ(*ran, 0);
}

TEST(Loop, RegularFilesAreAlwaysReady) {
  Loop loop;
  char path[] = "/tmp/qrexec-event-test-XXXXXX";
  UniqueFd file(::mkstemp(path));
  ASSERT_TRUE(file.valid());
  ::unlink(path);
  int calls = 0;
  auto watch = loop.WatchFd(file.get(), Interest::Write(), [&](Ready r) {
    EXPECT_TRUE(r.writable);
    ++calls;
  });
  ASSERT_TRUE(watch);
  ASSERT_TRUE(loop.RunOnce(milliseconds(-1)));  // must not block
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(watch->SetInterest(Interest::None()));
  auto ran = loop.RunOnce(milliseconds(10));
  ASSERT_TRUE(ran);
  EXPECT_EQ(*ran, 0);
}

TEST(Loop, OneShotTimerFiresOnceAndPeriodicTimerRepeats) {
  Loop loop;
  int once = 0;
  int periodic = 0;
  auto t1 = loop.AddTimer(milliseconds(5), [&] { ++once; });
  auto t2 = loop.AddTimer(milliseconds(1), [&] { ++periodic; }, milliseconds(2));
  ASSERT_TRUE(t1 && t2);
  RunUntil(loop, [&] { return periodic >= 5 && once >= 1; });
  EXPECT_EQ(once, 1);
  ASSERT_TRUE(t2->Disarm());
}

TEST(Loop, QuitFromATimerEndsRun) {
  Loop loop;
  auto timer = loop.AddTimer(milliseconds(1), [&] { loop.Quit(); });
  ASSERT_TRUE(timer);
  EXPECT_TRUE(loop.Run());
}

TEST(Loop, SignalWatchDeliversBlockedSignalAndRestoresMask) {
  Loop loop;
  int got = 0;
  {
    auto watch = loop.WatchSignal(SIGUSR1, [&](int signo) { got = signo; });
    ASSERT_TRUE(watch);
    ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);
    RunUntil(loop, [&] { return got != 0; });
    EXPECT_EQ(got, SIGUSR1);
  }
  sigset_t current;
  ::sigprocmask(SIG_BLOCK, nullptr, &current);
  EXPECT_EQ(sigismember(&current, SIGUSR1), 0);
}

TEST(Loop, ChildWatchReapsAndReportsTheExitStatus) {
  Loop loop;
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(7);
  std::optional<int> status;
  auto watch = loop.WatchChild(pid, [&](int s) { status = s; });
  ASSERT_TRUE(watch);
  RunUntil(loop, [&] { return status.has_value(); });
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 7);
  EXPECT_LT(::waitpid(pid, nullptr, WNOHANG), 0);  // already reaped
}

TEST(Loop, ChildWatchReportsDeathBySignal) {
  Loop loop;
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::pause();
    _exit(0);
  }
  std::optional<int> status;
  auto watch = loop.WatchChild(pid, [&](int s) { status = s; });
  ASSERT_TRUE(watch);
  ::kill(pid, SIGKILL);
  RunUntil(loop, [&] { return status.has_value(); });
  ASSERT_TRUE(WIFSIGNALED(*status));
  EXPECT_EQ(WTERMSIG(*status), SIGKILL);
}

TEST(Loop, HandlesAreMovable) {
  Loop loop;
  auto pair = sys::SocketPair(true);
  ASSERT_TRUE(pair);
  int calls = 0;
  FdWatch outer;
  {
    auto watch = loop.WatchFd(pair->first.get(), Interest::Read(), [&](Ready) {
      char c;
      if (::read(pair->first.get(), &c, 1) == 1) ++calls;
    });
    ASSERT_TRUE(watch);
    outer = std::move(*watch);
  }
  EXPECT_TRUE(outer.active());
  ASSERT_TRUE(sys::WriteAll(pair->second.get(), "x"));
  RunUntil(loop, [&] { return calls == 1; });
  outer.Reset();
  EXPECT_EQ(loop.registration_count(), 0u);
}

TEST(Loop, HangupOnlyIgnoresDataAndHalfCloseButReportsAFullClose) {
  Loop loop;
  auto pair = sys::SocketPair(true);
  ASSERT_TRUE(pair);
  int calls = 0;
  Ready last;
  auto watch = loop.WatchFd(pair->first.get(), Interest::HangupOnly(), [&](Ready ready) {
    ++calls;
    last = ready;
  });
  ASSERT_TRUE(watch);
  ASSERT_TRUE(sys::WriteAll(pair->second.get(), "unread"));
  ASSERT_EQ(::shutdown(pair->second.get(), SHUT_WR), 0);
  ASSERT_TRUE(loop.RunOnce(milliseconds(50)));
  EXPECT_EQ(calls, 0);
  pair->second.reset();
  RunUntil(loop, [&] { return calls > 0; });
  EXPECT_TRUE(last.hangup);
  EXPECT_FALSE(last.readable);
  // Back to read interest and to parked work as usual.
  ASSERT_TRUE(watch->SetInterest(Interest::Read()));
  EXPECT_TRUE(watch->interest().read);
  ASSERT_TRUE(watch->SetInterest(Interest::None()));
  calls = 0;
  ASSERT_TRUE(loop.RunOnce(milliseconds(20)));
  EXPECT_EQ(calls, 0);
}

TEST(Loop, PostedTasksRunOnTheNextIterationInOrderWithoutSleeping) {
  Loop loop;
  std::string order;
  loop.Post([&] {
    order += "a";
    loop.Post([&] { order += "c"; });
  });
  loop.Post([&] { order += "b"; });
  EXPECT_EQ(order, "");
  auto start = std::chrono::steady_clock::now();
  auto ran = loop.RunOnce(milliseconds(10000));
  ASSERT_TRUE(ran);
  EXPECT_EQ(*ran, 3);
  EXPECT_EQ(order, "abc");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));  // hang bound
}

TEST(Loop, QuitFromAPostedTaskEndsRun) {
  Loop loop;
  int ran = 0;
  loop.Post([&] {
    ++ran;
    loop.Quit();
  });
  ASSERT_TRUE(loop.Run());
  EXPECT_EQ(ran, 1);
}

TEST(Loop, PendingPostedTasksAreDroppedWithTheLoop) {
  int ran = 0;
  {
    Loop loop;
    loop.Post([&] { ++ran; });
  }
  EXPECT_EQ(ran, 0);
}

TEST(Loop, WakerCalledFromAnotherThreadRunsItsCallbackOnTheLoop) {
  Loop loop;
  int calls = 0;
  std::thread::id callback_thread;
  auto waker = loop.AddWaker([&] {
    ++calls;
    callback_thread = std::this_thread::get_id();
  });
  ASSERT_TRUE(waker);
  std::thread other([&] {
    waker->Wake();
    waker->Wake();
  });
  other.join();
  RunUntil(loop, [&] { return calls > 0; });
  EXPECT_EQ(calls, 1);  // two wake-ups before the loop ran: one callback
  EXPECT_EQ(callback_thread, std::this_thread::get_id());
  ASSERT_TRUE(loop.RunOnce(milliseconds(20)));
  EXPECT_EQ(calls, 1);
  std::thread again([&] { waker->Wake(); });
  again.join();
  RunUntil(loop, [&] { return calls == 2; });
  Waker moved = std::move(*waker);
  EXPECT_TRUE(moved.active());
  moved.Wake();
  RunUntil(loop, [&] { return calls == 3; });
  moved.Reset();
  EXPECT_EQ(loop.registration_count(), 0u);
}


TEST(HeapTrimmer, TrimsOnceAfterABurstAndNotWhenIdle) {
  Loop loop;
  HeapTrimmer trimmer(loop, milliseconds(20));
  ASSERT_TRUE(loop.RunOnce(milliseconds(60)).has_value());
  EXPECT_EQ(trimmer.trims(), 0);  // never touched: no trim
  for (int i = 0; i < 100; ++i) trimmer.Touch();
  RunUntil(loop, [&] { return trimmer.trims() != 0; });
  EXPECT_EQ(trimmer.trims(), 1);  // one trim for the whole burst
  ASSERT_TRUE(loop.RunOnce(milliseconds(60)).has_value());
  EXPECT_EQ(trimmer.trims(), 1);  // and none while idle
  trimmer.Touch();
  RunUntil(loop, [&] { return trimmer.trims() != 1; });
  EXPECT_EQ(trimmer.trims(), 2);  // the next burst trims again
}

}  // namespace
}  // namespace qrexec::event
