// Both roles together, back-pressure, the Stream object and the single-socket switch.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/check.h"
#include "base/sys.h"
#include "stream_test_util.h"

namespace qrexec::stream {
namespace {

using namespace std::chrono_literals;
using namespace test_util;

// --- both roles together ---

// A deterministic pseudo-random byte pattern.
std::string Pattern(size_t size, uint32_t seed) {
  std::string out(size, '\0');
  uint32_t x = seed;
  for (size_t i = 0; i < size; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<char>(x >> 24);
  }
  return out;
}

TEST(EndToEnd, SixtyFourMebibytesByteExactBothWaysThroughCat) {
  constexpr size_t kSize = 64u << 20;
  const std::string input = Pattern(kSize, 12345);
  auto vchan = sys::SocketPair();
  ASSERT_TRUE(vchan);
  Child cat = Spawn({"cat"});
  ServiceConfig service = ServiceFor(cat);
  service.vchan = std::move(vchan->second);
  auto service_result =
      std::async(std::launch::async, [&] { return RunService(std::move(service)); });
  LocalIo io;
  CallerConfig caller = MakeCaller(io);
  caller.vchan = std::move(vchan->first);
  auto caller_result = std::async(std::launch::async, [&] { return RunCaller(std::move(caller)); });
  std::thread writer([&] {
    EXPECT_TRUE(sys::WriteAll(io.in_w.get(), input, Soon()));
    io.in_w.reset();
  });
  std::string output = ReadAll(io.out_r.get());
  writer.join();
  ASSERT_EQ(output.size(), input.size());
  EXPECT_TRUE(output == input);
  EXPECT_EQ(Get(caller_result).value_or(-1), 0);
  EXPECT_EQ(Get(service_result).value_or(-1), 0);
}

// --- back-pressure (engine on the test thread, buffered-byte counter) ---

// Runs the loop until nothing happens for a few rounds (the stream stalled).
void RunUntilIdle(event::Loop& loop) {
  int idle = 0;
  for (int round = 0; round < 100000 && idle < 5; ++round) {
    auto ran = loop.RunOnce(20ms);
    ASSERT_TRUE(ran);
    idle = *ran == 0 ? idle + 1 : 0;
  }
  ASSERT_EQ(idle, 5) << "never stalled";
}

TEST(BackPressure, ServiceStopsReadingTheChildWhenThePeerDoesNotRead) {
  event::Loop loop;
  auto vchan = sys::SocketPair();
  ASSERT_TRUE(vchan);
  int peer = vchan->second.get();
  Child child = Spawn({"cat", "/dev/zero"});  // endless output
  pid_t pid = child.pid;
  ServiceConfig config = ServiceFor(child);
  config.vchan = std::move(vchan->first);
  config.buffer_limit = 256 * 1024;
  bool done = false;
  auto stream = Stream::StartService(loop, std::move(config), [&](Result<int>) { done = true; });
  ASSERT_TRUE(stream);
  SendHello(peer, 4);
  RunUntilIdle(loop);
  EXPECT_FALSE(done);
  // limit + one chunk + header of output, plus the small control messages.
  EXPECT_LE((*stream)->peak_buffered_bytes(), 256u * 1024 + 65536 + 64);
  EXPECT_GE((*stream)->buffered_bytes(), 256u * 1024);
  stream->reset();
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

TEST(BackPressure, CallerStopsReadingTheVchanWhenStdoutIsNotRead) {
  event::Loop loop;
  auto vchan = sys::SocketPair(true);
  ASSERT_TRUE(vchan);
  int peer = vchan->second.get();
  LocalIo io;
  CallerConfig config = MakeCaller(io);
  config.vchan = std::move(vchan->first);
  config.buffer_limit = 128 * 1024;
  auto stream = Stream::StartCaller(loop, std::move(config), [](Result<int>) {});
  ASSERT_TRUE(stream);
  SendHello(peer, 4);
  // The peer pushes STDOUT until its socket is full; nobody reads io.out_r.
  std::string msg(8, '\0');
  proto::StoreU32(reinterpret_cast<std::byte*>(msg.data()), kStdout);
  proto::StoreU32(reinterpret_cast<std::byte*>(msg.data() + 4), 65536);
  msg.append(65536, 's');
  size_t pending = 0;  // bytes of `msg` already written
  size_t sent_total = 0;
  int idle = 0;
  for (int round = 0; round < 100000 && idle < 5; ++round) {
    bool progressed = false;
    for (;;) {
      ssize_t n = ::send(peer, msg.data() + pending, msg.size() - pending, MSG_NOSIGNAL);
      if (n <= 0) break;
      progressed = true;
      sent_total += static_cast<size_t>(n);
      pending = (pending + static_cast<size_t>(n)) % msg.size();
    }
    auto ran = loop.RunOnce(20ms);
    ASSERT_TRUE(ran);
    idle = (*ran == 0 && !progressed) ? idle + 1 : 0;
  }
  ASSERT_EQ(idle, 5) << "never stalled";
  size_t peak = (*stream)->peak_buffered_bytes();
  // sink limit + one chunk, plus the receive window (two messages).
  EXPECT_LE(peak, 128u * 1024 + 65536 + 2 * (65536 + 8) + 64);
  EXPECT_GT(sent_total, peak) << "the rest sits in the kernel, not in our buffers";
  stream->reset();
}

TEST(StreamObject, DestroyingAStreamEarlyCancelsItWithoutACallback) {
  event::Loop loop;
  auto vchan = sys::SocketPair();
  ASSERT_TRUE(vchan);
  int peer = vchan->second.get();
  LocalIo io;
  CallerConfig config = MakeCaller(io);
  config.vchan = std::move(vchan->first);
  int calls = 0;
  auto stream = Stream::StartCaller(loop, std::move(config), [&](Result<int>) { ++calls; });
  ASSERT_TRUE(stream);
  EXPECT_EQ((*stream)->role(), Role::kCaller);
  SendHello(peer, 3);
  while ((*stream)->negotiated_version() == 0) ASSERT_TRUE(loop.RunOnce(1000ms));
  EXPECT_EQ((*stream)->negotiated_version(), 3u);
  SendExit(peer, 1);
  stream->reset();  // before the loop saw the exit code
  ASSERT_TRUE(loop.RunOnce(50ms));
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(loop.registration_count(), 0u);
  // Its fds were closed: the peer sees EOF after our hello.
  ExpectHello(peer, 4);
  EXPECT_FALSE(Recv(peer).has_value());
  EXPECT_EQ(ReadAll(io.out_r.get()), "");
}

TEST(StreamObject, DoneCallbackRunsOnceFromTheLoopAndMayDestroyTheStream) {
  event::Loop loop;
  auto vchan = sys::SocketPair();
  ASSERT_TRUE(vchan);
  int peer = vchan->second.get();
  CallerConfig config;
  config.vchan = std::move(vchan->first);
  config.err_fd = -1;
  std::unique_ptr<Stream> stream;
  std::optional<Result<int>> outcome;
  int calls = 0;
  auto started = Stream::StartCaller(loop, std::move(config), [&](Result<int> r) {
    ++calls;
    outcome = std::move(r);
    stream.reset();
  });
  ASSERT_TRUE(started);
  stream = std::move(*started);
  SendHello(peer, 4);
  SendExit(peer, 12);
  for (int i = 0; i < 1000 && !outcome; ++i) ASSERT_TRUE(loop.RunOnce(100ms));
  ASSERT_TRUE(outcome && *outcome);
  EXPECT_EQ(**outcome, 12);
  EXPECT_EQ(stream, nullptr);
  ASSERT_TRUE(loop.RunOnce(10ms));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(loop.registration_count(), 0u);
}

TEST(SingleSocketSwitch, ServiceReadsItsStdinSocketAfterTheSwitch) {
  event::Loop loop;
  auto vchan = sys::SocketPair();
  auto stdin_sock = sys::SocketPair();
  auto stdout_pipe = sys::Pipe();
  ASSERT_TRUE(vchan && stdin_sock && stdout_pipe);
  int peer = vchan->second.get();
  ServiceConfig config;
  config.vchan = std::move(vchan->first);
  config.child_stdin = std::move(stdin_sock->first);
  config.child_stdout = std::move(stdout_pipe->first);
  config.switch_on_sigusr1 = true;
  std::optional<Result<int>> outcome;
  auto stream = Stream::StartService(loop, std::move(config),
                                     [&](Result<int> r) { outcome = std::move(r); });
  ASSERT_TRUE(stream);
  SendHello(peer, 4);
  ExpectHello(peer, 4);
  auto first = Recv(peer);  // no separate stderr
  ASSERT_TRUE(first);
  EXPECT_EQ(first->type, kStderr);
  ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);
  // The old stdout pipe is no longer read; the stdin socket carries output.
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(loop.RunOnce(5ms));
  (void)sys::WriteAll(stdout_pipe->second.get(), "lost");
  ASSERT_TRUE(sys::WriteAll(stdin_sock->second.get(), "via socket"));
  ::shutdown(stdin_sock->second.get(), SHUT_WR);
  Send(peer, kStdin, "to service");
  Send(peer, kStdin, "");
  std::string out;
  bool exit_seen = false;
  std::thread reader([&] {
    for (auto& m : RecvUntilExit(peer)) {
      if (m.type == kStdout) out += m.data;
      if (m.type == kExit) exit_seen = true;
    }
  });
  for (int i = 0; i < 2000 && !outcome; ++i) ASSERT_TRUE(loop.RunOnce(10ms));
  reader.join();
  ASSERT_TRUE(outcome && *outcome);
  EXPECT_EQ(**outcome, 0);
  EXPECT_TRUE(exit_seen);
  EXPECT_EQ(out, "via socket");
  EXPECT_EQ(ReadAll(stdin_sock->second.get()), "to service");
  stream->reset();
}

TEST(SingleSocketSwitch, CallerReadsItsOutputSocketAfterTheSwitchAndRefusesWithoutOne) {
  event::Loop loop;
  auto vchan = sys::SocketPair();
  auto program_stdin = sys::SocketPair();
  auto program_stdout = sys::Pipe();
  ASSERT_TRUE(vchan && program_stdin && program_stdout);
  int peer = vchan->second.get();
  CallerConfig config;
  config.vchan = std::move(vchan->first);
  config.in = std::move(program_stdout->first);
  config.out = std::move(program_stdin->first);
  config.err_fd = -1;
  std::optional<Result<int>> outcome;
  auto stream = Stream::StartCaller(loop, std::move(config),
                                    [&](Result<int> r) { outcome = std::move(r); });
  ASSERT_TRUE(stream);
  SendHello(peer, 4);
  ExpectHello(peer, 4);
  ASSERT_TRUE((*stream)->SwitchToSingleSocket());
  ASSERT_TRUE((*stream)->SwitchToSingleSocket());  // idempotent
  ASSERT_TRUE(sys::WriteAll(program_stdin->second.get(), "from program"));
  ::shutdown(program_stdin->second.get(), SHUT_WR);
  std::vector<Msg> got;
  while (got.empty() || !got.back().data.empty()) {
    ASSERT_TRUE(loop.RunOnce(10ms));
    char probe;
    if (::recv(peer, &probe, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
      auto m = Recv(peer);
      ASSERT_TRUE(m);
      got.push_back(*m);
    }
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].data, "from program");
  SendExit(peer, 0);
  for (int i = 0; i < 1000 && !outcome; ++i) ASSERT_TRUE(loop.RunOnce(10ms));
  ASSERT_TRUE(outcome && *outcome);
  stream->reset();

  // A pipe as output cannot carry input.
  LocalIo io;
  auto vchan2 = sys::SocketPair();
  ASSERT_TRUE(vchan2);
  CallerConfig pipes = MakeCaller(io);
  pipes.vchan = std::move(vchan2->first);
  auto stream2 = Stream::StartCaller(loop, std::move(pipes), [](Result<int>) {});
  ASSERT_TRUE(stream2);
  EXPECT_FALSE((*stream2)->SwitchToSingleSocket());
}

TEST(Helpers, WaitStatusMapping) {
  EXPECT_EQ(WaitStatusToExitCode(3 << 8), 3);       // exited 3
  EXPECT_EQ(WaitStatusToExitCode(SIGKILL), 137);    // killed by SIGKILL
  EXPECT_EQ(CombineWithLocalProgram(0, 4), 4);
  EXPECT_EQ(CombineWithLocalProgram(2, 4), 2);
}

}  // namespace
}  // namespace qrexec::stream
