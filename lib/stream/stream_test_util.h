// Shared helpers of the stream engine tests: a "peer" is the test speaking
// raw data-channel messages on the other end of the vchan.
#pragma once

#include "stream/stream.h"

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

namespace qrexec::stream::test_util {

using namespace std::chrono_literals;

inline constexpr uint32_t kStdin = 0x190;
inline constexpr uint32_t kStdout = 0x191;
inline constexpr uint32_t kStderr = 0x192;
inline constexpr uint32_t kExit = 0x193;
inline constexpr uint32_t kHello = 0x300;

inline sys::Deadline Soon() { return sys::Deadline::After(60s); }

struct Msg {
  uint32_t type = 0;
  std::string data;
};

inline void Send(int fd, uint32_t type, std::string_view payload) {
  std::string out(8, '\0');
  proto::StoreU32(reinterpret_cast<std::byte*>(out.data()), type);
  proto::StoreU32(reinterpret_cast<std::byte*>(out.data() + 4),
                  static_cast<uint32_t>(payload.size()));
  out.append(payload);
  ASSERT_TRUE(sys::WriteAll(fd, out, Soon()));
}

inline std::string U32(uint32_t v) {
  std::string s(4, '\0');
  proto::StoreU32(reinterpret_cast<std::byte*>(s.data()), v);
  return s;
}

inline void SendHello(int fd, uint32_t version) { Send(fd, kHello, U32(version)); }
inline void SendExit(int fd, int code) { Send(fd, kExit, U32(static_cast<uint32_t>(code))); }

inline std::optional<Msg> Recv(int fd) {
  std::byte header[8];
  if (!sys::ReadExact(fd, header, Soon())) return std::nullopt;
  Msg msg;
  msg.type = proto::LoadU32(header);
  msg.data.resize(proto::LoadU32(header + 4));
  if (!sys::ReadExact(fd, std::as_writable_bytes(std::span(msg.data)), Soon())) {
    return std::nullopt;
  }
  return msg;
}

// Reads the peer's hello and checks it.
inline void ExpectHello(int fd, uint32_t version) {
  auto hello = Recv(fd);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->type, kHello);
  EXPECT_EQ(hello->data, U32(version));
}

// The usual start of a test peer: the engine's HELLO{4}, then ours.
inline void ExchangeHellos(int fd) {
  ExpectHello(fd, 4);
  SendHello(fd, 4);
}

// Everything up to and including the exit code (or EOF).
inline std::vector<Msg> RecvUntilExit(int fd) {
  std::vector<Msg> all;
  while (auto msg = Recv(fd)) {
    all.push_back(*msg);
    if (msg->type == kExit) break;
  }
  return all;
}

inline std::string ReadAll(int fd) {
  auto text = sys::ReadToEof(fd, 512u << 20, Soon());
  EXPECT_TRUE(text);
  return text ? *text : std::string();
}

// A child process with pipes for stdin, stdout and stderr.
struct Child {
  pid_t pid = -1;
  UniqueFd in;   // write end
  UniqueFd out;  // read end
  UniqueFd err;  // read end
};

inline Child Spawn(std::vector<std::string> args, bool with_stderr = true) {
  auto in = sys::Pipe();
  auto out = sys::Pipe();
  auto err = sys::Pipe();
  QREXEC_CHECK(in && out && err);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  QREXEC_CHECK(pid >= 0);
  if (pid == 0) {
    ::dup2(in->first.get(), 0);
    ::dup2(out->second.get(), 1);
    if (with_stderr) ::dup2(err->second.get(), 2);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execvp(argv[0], argv.data());
    _exit(127);
  }
  return Child{pid, std::move(in->second), std::move(out->first), std::move(err->first)};
}

// An engine (either role) on its own thread; the test plays the peer on the
// other end of `peer`.
struct EngineRun {
  UniqueFd peer;
  std::future<Result<int>> result;
};

template <class Config, class Runner>
EngineRun StartEngineThread(Config config, Runner runner) {
  auto pair = sys::SocketPair();
  QREXEC_CHECK(pair.has_value());
  config.vchan = std::move(pair->first);
  EngineRun run;
  run.peer = std::move(pair->second);
  run.result = std::async(std::launch::async, [c = std::move(config), runner]() mutable {
    return runner(std::move(c));
  });
  return run;
}

inline EngineRun StartCallerThread(CallerConfig config) {
  return StartEngineThread(std::move(config), [](CallerConfig c) { return RunCaller(std::move(c)); });
}

inline EngineRun StartServiceThread(ServiceConfig config) {
  return StartEngineThread(std::move(config), [](ServiceConfig c) { return RunService(std::move(c)); });
}

inline Result<int> Get(std::future<Result<int>>& f) {
  if (f.wait_for(60s) != std::future_status::ready) {
    ADD_FAILURE() << "engine hangs";
    std::abort();
  }
  return f.get();
}

// Local stdio of a caller: pipes whose other ends the test holds.
struct LocalIo {
  UniqueFd in_w;   // test writes the caller's stdin here
  UniqueFd out_r;  // test reads the caller's stdout here
  UniqueFd err_r;  // test reads the caller's stderr here
  UniqueFd err_w;  // borrowed by the caller as err_fd; test closes it after
};

inline CallerConfig MakeCaller(LocalIo& io, bool with_stdin = true) {
  CallerConfig config;
  if (with_stdin) {
    auto in = sys::Pipe();
    QREXEC_CHECK(in.has_value());
    config.in = std::move(in->first);
    io.in_w = std::move(in->second);
  }
  auto out = sys::Pipe();
  auto err = sys::Pipe();
  QREXEC_CHECK(out && err);
  config.out = std::move(out->second);
  io.out_r = std::move(out->first);
  io.err_r = std::move(err->first);
  io.err_w = std::move(err->second);
  config.err_fd = io.err_w.get();
  return config;
}

// The service side's config for a spawned child (takes its pipes).
inline ServiceConfig ServiceFor(Child& child) {
  ServiceConfig config;
  config.child_stdin = std::move(child.in);
  config.child_stdout = std::move(child.out);
  config.child_stderr = std::move(child.err);
  config.child_pid = child.pid;
  return config;
}

}  // namespace qrexec::stream::test_util
