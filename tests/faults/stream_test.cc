// Streams under stress: a slow reader (memory stays bounded), half-close in
// each direction, and many calls with random payload sizes checked byte for
// byte (qrexec-protocol.md §2.7).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "base/sys.h"
#include "fault_util.h"

namespace qrexec::faults {
namespace {

using Streams = FaultTest;

constexpr long kMaxGrowthKiB = 64 * 1024;

// The service writes 256 MiB; the caller does not read for 2 s, then reads
// in small sips. The memory of qrexec-client-vm and of the callee's call
// handler stays bounded: flow control, not buffering.
TEST_F(Streams, ASlowReaderKeepsTheMemoryOfBothEndsBounded) {
  constexpr long long kBytes = 256LL << 20;
  auto process = Process::Spawn(qubes_->ClientVm("work", {"vault", "demo.Produce+" + std::to_string(kBytes)}));
  ASSERT_TRUE(process);
  process->CloseStdin();
  pid_t service = ReadPidFile(qubes_->root() + "/pids/vault.produce", milliseconds(10000));
  ASSERT_GT(service, 0);
  pid_t handler = ParentPid(service);
  std::vector<pid_t> watched = {process->pid(), handler, qubes_->AgentPid("work"), qubes_->AgentPid("vault")};
  for (pid_t pid : qubes_->Dom0Pids()) watched.push_back(pid);
  std::map<pid_t, long> start, peak;
  for (pid_t pid : watched) start[pid] = peak[pid] = RssKiB(pid);
  auto sample = [&] {
    for (pid_t pid : watched) peak[pid] = std::max(peak[pid], RssKiB(pid));
  };
  // Not reading at all for a while.
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    sample();
  }
  // Sipping: 4 KiB every millisecond for 1 s.
  long long got = 0;
  char buf[1 << 16];
  for (int i = 0; i < 1000; ++i) {
    ssize_t n = ::read(process->stdout_fd(), buf, 4096);
    ASSERT_GT(n, 0);
    got += n;
    std::this_thread::sleep_for(milliseconds(1));
    if (i % 100 == 0) sample();
  }
  // Then the rest at full speed (bounded).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int sips = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    ssize_t n = ::read(process->stdout_fd(), buf, sizeof buf);
    if (n <= 0) break;
    got += n;
    if (++sips % 256 == 0) sample();
  }
  EXPECT_EQ(got, kBytes);
  EXPECT_EQ(process->Wait(milliseconds(10000)).value_or(-1), 0);
  for (pid_t pid : watched) {
    std::printf("pid %d rss start %ld KiB peak %ld KiB\n", pid, start[pid], peak[pid]);
    EXPECT_LT(peak[pid] - start[pid], kMaxGrowthKiB) << "pid " << pid << " grew";
  }
  ExpectIdleAndNoZombies("after the slow reader");
}

// The other direction: the caller writes 256 MiB into a service that does
// not read for 2 s. The caller's writes block; nobody buffers the backlog.
TEST_F(Streams, ASlowServiceKeepsTheMemoryOfBothEndsBounded) {
  constexpr size_t kChunk = 1 << 20, kChunks = 256;
  auto process = Process::Spawn(qubes_->ClientVm("work", {"vault", "demo.SlowSink"}));
  ASSERT_TRUE(process);
  pid_t service = ReadPidFile(qubes_->root() + "/pids/vault.slowsink", milliseconds(10000));
  ASSERT_GT(service, 0);
  pid_t handler = ParentPid(service);
  std::vector<pid_t> watched = {process->pid(), handler, qubes_->AgentPid("work"), qubes_->AgentPid("vault")};
  for (pid_t pid : qubes_->Dom0Pids()) watched.push_back(pid);
  std::map<pid_t, long> start, peak;
  for (pid_t pid : watched) start[pid] = peak[pid] = RssKiB(pid);
  std::atomic<bool> writing{true};
  std::thread sampler([&] {
    while (writing) {
      for (pid_t pid : watched) peak[pid] = std::max(peak[pid], RssKiB(pid));
      std::this_thread::sleep_for(milliseconds(50));
    }
  });
  std::string chunk(kChunk, 'z');
  bool written = true;
  for (size_t i = 0; i < kChunks && written; ++i) written = !!process->WriteStdin(chunk);
  process->CloseStdin();
  std::string out = ReadAll(process->stdout_fd(), milliseconds(60000));
  writing = false;
  sampler.join();
  EXPECT_TRUE(written);
  EXPECT_EQ(out, std::to_string(kChunk * kChunks) + "\n");
  EXPECT_EQ(process->Wait(milliseconds(10000)).value_or(-1), 0);
  for (pid_t pid : watched) {
    std::printf("pid %d rss start %ld KiB peak %ld KiB\n", pid, start[pid], peak[pid]);
    EXPECT_LT(peak[pid] - start[pid], kMaxGrowthKiB) << "pid " << pid << " grew";
  }
  ExpectIdleAndNoZombies("after the slow service");
}

// The caller closes its stdin at once; the service then keeps writing for a
// while (20 x 100000 bytes over ~0.4 s). Both directions arrive intact.
TEST_F(Streams, TheCallerClosingStdinEarlyLetsTheServiceFinishWriting) {
  std::string blob(100000, '\0');
  std::mt19937 rng(7);
  for (auto& c : blob) c = static_cast<char>(rng());
  harness::WriteFile(qubes_->root() + "/blob", blob);
  std::string input = "only this";
  auto result = harness::RunProgram(qubes_->ClientVm("work", {"vault", "demo.HalfIn"}), input, milliseconds(30000));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  std::string expected;
  for (int i = 0; i < 20; ++i) expected += blob;
  EXPECT_EQ(result.out.size(), expected.size());
  EXPECT_TRUE(result.out == expected) << "service output differs";
  // sha256sum of "only this" as seen by the service.
  auto sent = harness::RunProgram({.argv = {"/usr/bin/sha256sum"}}, input);
  EXPECT_EQ(harness::ReadFile(qubes_->root() + "/pids/vault.halfin"), sent.out);
  ExpectIdleAndNoZombies("after half-closing stdin");
}

// The service closes its stdout at once and keeps reading: the caller sees
// stdout EOF while it still writes 8 MiB, and everything arrives.
TEST_F(Streams, TheServiceClosingStdoutEarlyStillGetsAllOfStdin) {
  auto process = Process::Spawn(qubes_->ClientVm("work", {"vault", "demo.HalfOut"}));
  ASSERT_TRUE(process);
  std::string out = ReadAll(process->stdout_fd(), milliseconds(10000));
  EXPECT_EQ(out, "early\n") << "stdout should reach EOF before stdin is closed";
  std::string input(8 << 20, '\0');
  std::mt19937 rng(11);
  for (auto& c : input) c = static_cast<char>(rng());
  for (size_t off = 0; off < input.size(); off += 1 << 20)
    ASSERT_TRUE(process->WriteStdin(std::string_view(input).substr(off, 1 << 20)));
  process->CloseStdin();
  EXPECT_EQ(process->Wait(milliseconds(30000)).value_or(-1), 0);
  auto sent = harness::RunProgram({.argv = {"/usr/bin/sha256sum"}}, input);
  std::string got_path = qubes_->root() + "/pids/vault.halfout";
  EXPECT_TRUE(WaitUntil([&] { return harness::ReadFile(got_path).size() == sent.out.size(); }, milliseconds(5000)));
  EXPECT_EQ(harness::ReadFile(got_path), sent.out);
  ExpectIdleAndNoZombies("after half-closing stdout");
}

// 1,000 echo calls, four at a time, with sizes drawn log-uniformly up to
// 16 MiB (plus the edges), each checked byte for byte.
TEST_F(Streams, AThousandCallsWithRandomSizesUpTo16MiBArriveByteExact) {
  const uint64_t seed = TestSeed();
  constexpr int kCalls = 1000;
  constexpr size_t kMax = 16 << 20;
  std::vector<size_t> sizes = {0, 1, 4095, 4096, 4097, 65535, 65536, 65537, kMax - 1, kMax};
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> exponent(0.0, 24.0);
  while (sizes.size() < kCalls)
    sizes.push_back(std::min(kMax, static_cast<size_t>(std::pow(2.0, exponent(rng)))));
  std::atomic<size_t> next{0};
  std::atomic<int> failures{0};
  std::mutex report;
  auto worker = [&](int id) {
    std::mt19937_64 bytes_rng(seed ^ (0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(id + 1)));
    std::string input;
    for (size_t i = next++; i < sizes.size() && failures < 5; i = next++) {
      input.resize(sizes[i]);
      for (size_t k = 0; k + 8 <= input.size(); k += 8) {
        uint64_t v = bytes_rng();
        std::memcpy(input.data() + k, &v, 8);
      }
      for (size_t k = input.size() & ~size_t{7}; k < input.size(); ++k) input[k] = static_cast<char>(bytes_rng());
      const char* target = i % 2 ? "vault" : "other";
      auto result = harness::RunProgram(qubes_->ClientVm("work", {target, "demo.Echo"}), input, milliseconds(60000));
      if (result.exit_code != 0 || result.out != input) {
        ++failures;
        std::lock_guard lock(report);
        size_t first = 0;
        while (first < std::min(input.size(), result.out.size()) && input[first] == result.out[first]) ++first;
        ADD_FAILURE() << "call " << i << " (" << sizes[i] << " bytes, seed " << seed << "): exit "
                      << result.exit_code << ", got " << result.out.size() << " bytes, first difference at "
                      << first << ": " << result.err;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(worker, t);
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0) << "seed " << seed;
  ExpectIdleAndNoZombies("after 1000 random calls");
}

}  // namespace
}  // namespace qrexec::faults
