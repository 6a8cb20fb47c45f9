// Test harness for black-box and integration tests: temporary directories,
// spawning our real binaries with a chosen environment, and a fake peer that
// speaks raw qrexec messages over the socket backend of vchan (Qubes'
// vchan-socket convention), the way Qubes' own socket tests do.
//
// Everything here is blocking with explicit time-outs so a broken binary
// fails a test instead of hanging it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace qrexec::harness {

using std::chrono::milliseconds;
inline constexpr milliseconds kDefaultTimeout{10000};

// A fresh directory under $TMPDIR (or /tmp), removed recursively on
// destruction. Paths are kept short so Unix socket paths fit in sun_path.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// Writes `content` to `path` (creating parent directories) with `mode`.
void WriteFile(const std::string& path, std::string_view content, mode_t mode = 0644);
// Writes an executable /bin/sh script (the "#!/bin/sh\n" line is added).
void WriteScript(const std::string& path, std::string_view body);
std::string ReadFile(const std::string& path);
bool PathExists(const std::string& path);

// Absolute path of one of our binaries in build/bin.
std::string BinPath(std::string_view name);

// How a spawned process's stdio is connected.
enum class Stdio {
  kPipe,     // a pipe the test reads/writes through Process
  kNull,     // /dev/null
  kInherit,  // the test's own fd (useful for stderr while debugging)
};

struct SpawnOptions {
  std::vector<std::string> argv;             // argv[0] is the program path
  std::map<std::string, std::string> env;    // added to / overriding the test's env
  std::vector<std::string> unset_env;        // removed from the test's env
  Stdio stdin_mode = Stdio::kPipe;
  Stdio stdout_mode = Stdio::kPipe;
  Stdio stderr_mode = Stdio::kPipe;
  // When valid, used as the child's fd 0 (and stdin_mode is ignored).
  int stdin_fd = -1;
  // When valid, used as the child's fd 1 (and stdout_mode is ignored).
  int stdout_fd = -1;
  // When valid, used as the child's fd 2 (and stderr_mode is ignored).
  int stderr_fd = -1;
  std::string cwd;
};

// A running child process. The destructor kills (SIGKILL) and reaps it if the
// test did not wait for it.
class Process {
 public:
  static Result<Process> Spawn(const SpawnOptions& options);
  Process(Process&&) noexcept;
  Process& operator=(Process&&) noexcept;
  ~Process();

  pid_t pid() const { return pid_; }
  int stdin_fd() const { return stdin_.get(); }
  int stdout_fd() const { return stdout_.get(); }
  int stderr_fd() const { return stderr_.get(); }

  Status WriteStdin(std::string_view data);
  void CloseStdin() { stdin_.reset(); }
  // Reads stdout (or stderr) until EOF or the time-out.
  std::string ReadStdout(milliseconds timeout = kDefaultTimeout);
  std::string ReadStderr(milliseconds timeout = kDefaultTimeout);

  // Waits for exit; returns the exit code, 128+signal for a signal, or
  // nullopt on time-out (the process is left running).
  std::optional<int> Wait(milliseconds timeout = kDefaultTimeout);
  // Is it still running (not yet reaped)?
  bool Running();
  void Kill(int signo);

 private:
  Process() = default;
  pid_t pid_ = -1;
  std::optional<int> status_;
  UniqueFd stdin_, stdout_, stderr_;
};

// Runs a command to completion and captures everything.
struct RunResult {
  int exit_code = -1;  // 128+signal for signals; -1 on time-out
  std::string out;
  std::string err;
};
RunResult RunProgram(const SpawnOptions& options, std::string_view input = {},
              milliseconds timeout = kDefaultTimeout);

// --- the fake vchan peer (socket backend) ---

// The socket file of vchan (server, client, port) under `dir`.
std::string VchanPath(const std::string& dir, int server, int client, int port);
// Plays the vchan server: binds the socket file and listens.
Result<UniqueFd> VchanListen(const std::string& dir, int server, int client, int port);
// Accepts the client's connection (then unlinks the socket file).
Result<UniqueFd> VchanAccept(int listen_fd, const std::string& dir, int server, int client,
                             int port, milliseconds timeout = kDefaultTimeout);
// Plays the vchan client: connects, retrying until the server exists.
Result<UniqueFd> VchanConnect(const std::string& dir, int server, int client, int port,
                              milliseconds timeout = kDefaultTimeout);
// Connects to a Unix socket, retrying until it exists.
Result<UniqueFd> ConnectUnixRetry(const std::string& path, milliseconds timeout = kDefaultTimeout);

// --- raw messages ---

struct RawMessage {
  uint32_t type = 0;
  std::string body;
};

Status SendRaw(int fd, std::string_view bytes);
Status SendMessage(int fd, uint32_t type, std::string_view body);
// Reads one header + body. kDisconnected on a clean EOF before any byte.
Result<RawMessage> RecvMessage(int fd, milliseconds timeout = kDefaultTimeout);
// Reads exactly n bytes.
Result<std::string> RecvExact(int fd, size_t n, milliseconds timeout = kDefaultTimeout);
// Returns true if the peer closed (EOF) within the time-out.
bool WaitForEof(int fd, milliseconds timeout = kDefaultTimeout);

// Little-endian packing helpers for building bodies by hand.
std::string U32(uint32_t value);
uint32_t ReadU32(std::string_view bytes, size_t offset = 0);
// `text` zero-padded (or truncated) to exactly `size` bytes.
std::string Fixed(std::string_view text, size_t size);

// Message bodies used everywhere.
std::string HelloBody(uint32_t version);
std::string ExecParamsBody(uint32_t connect_domain, uint32_t connect_port, std::string_view cmdline);
std::string Trigger4Body(std::string_view source, std::string_view target,
                         std::string_view request_id, std::string_view service);

// Exchanges HELLO: sends ours first, then expects the peer's. Returns the
// peer's version.
Result<uint32_t> Handshake(int fd, uint32_t version, milliseconds timeout = kDefaultTimeout);

}  // namespace qrexec::harness
