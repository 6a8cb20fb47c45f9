// Shared pieces of the dom0-side black-box tests: fake Unix servers (policy
// daemon, qubesd, other daemons' sockets) and small message helpers. Built on
// tests/harness.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "harness.h"

namespace qrexec::dom0test {

using namespace harness;  // NOLINT: test code

inline constexpr uint32_t kHello = 0x300;
inline constexpr uint32_t kExecCmdline = 0x200;
inline constexpr uint32_t kJustExec = 0x201;
inline constexpr uint32_t kServiceConnect = 0x202;
inline constexpr uint32_t kServiceRefused = 0x203;
inline constexpr uint32_t kTrigger3 = 0x212;
inline constexpr uint32_t kTrigger4 = 0x213;
inline constexpr uint32_t kConnectionTerminated = 0x211;
inline constexpr uint32_t kStdin = 0x190;
inline constexpr uint32_t kStdout = 0x191;
inline constexpr uint32_t kStderr = 0x192;
inline constexpr uint32_t kExitCode = 0x193;

// A Unix socket server on a thread that serves `answers.size()` connections
// in turn: it reads each request (until a blank line, or until EOF), records
// it, runs `before_answer(i)`, writes answers[i] and closes.
class FakeServer {
 public:
  enum class ReadUntil { kBlankLine, kEof };
  FakeServer(std::string path, std::vector<std::string> answers, ReadUntil until,
             std::function<void(size_t)> before_answer = {});
  ~FakeServer();
  // The requests received so far (waits up to the time-out for `count`).
  std::vector<std::string> Requests(size_t count, milliseconds timeout = kDefaultTimeout);

 private:
  void Serve();
  std::string path_;
  std::vector<std::string> answers_;
  ReadUntil until_;
  std::function<void(size_t)> before_answer_;
  UniqueFd listen_fd_;
  std::mutex mutex_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

// Listens on a Unix socket path (replacing a stale file).
UniqueFd ListenUnix(const std::string& path);
// Accepts one connection within the time-out (invalid fd on time-out).
UniqueFd AcceptOne(int listen_fd, milliseconds timeout = kDefaultTimeout);

// Plays a daemon socket's server side: sends HELLO{3} and expects the
// client's HELLO{3}. Returns false (with a gtest failure) otherwise.
bool ServeDaemonHello(int fd);

// exec_params + command + NUL.
std::string CmdBody(uint32_t domain, uint32_t port, std::string_view command);
// A 32-byte ident field.
std::string Ident(std::string_view ident);

// The message with its type, for readable EXPECT_EQ on failures.
struct Msg {
  uint32_t type = 0;
  std::string body;
  bool operator==(const Msg&) const = default;
};
std::ostream& operator<<(std::ostream& out, const Msg& msg);
Msg Recv(int fd, milliseconds timeout = kDefaultTimeout);
// Concatenates the bodies of `type` messages (a data stream: STDIN, STDOUT
// or STDERR) up to that stream's empty EOF message. Any other message first
// is a gtest failure and ends the read.
std::string StreamUntilEof(int fd, uint32_t type);
// True when nothing becomes readable on `fd` within `quiet` (harness
// RecvMessage time-outs do not apply to blocking fds, so tests that expect
// silence poll first).
bool SilentFor(int fd, milliseconds quiet);

}  // namespace qrexec::dom0test
