#include "harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "base/sys.h"

extern char** environ;

namespace qrexec::harness {

namespace {
// A test process writes to peers that may die at any moment (a child killed
// by a fault test before it read its input, a daemon killed while the fake
// qubesd answers it): that must be an EPIPE the test can report, never a
// SIGPIPE that kills the whole test binary. Children get the default back
// before exec (Process::Spawn).
const bool kSigpipeIgnored = [] {
  ::signal(SIGPIPE, SIG_IGN);
  return true;
}();
}  // namespace
namespace fs = std::filesystem;

namespace {

sys::Deadline DeadlineIn(milliseconds timeout) { return sys::Deadline::After(timeout); }

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::vector<std::string> BuildEnv(const SpawnOptions& options) {
  std::map<std::string, std::string> env;
  for (char** entry = environ; *entry; ++entry) {
    std::string_view kv(*entry);
    auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  for (const auto& name : options.unset_env) env.erase(name);
  for (const auto& [name, value] : options.env) env[name] = value;
  std::vector<std::string> out;
  for (const auto& [name, value] : env) out.push_back(name + "=" + value);
  return out;
}

std::string ReadUntilEof(int fd, milliseconds timeout) {
  std::string out;
  if (fd < 0) return out;
  auto deadline = DeadlineIn(timeout);
  char buf[65536];
  for (;;) {
    if (!sys::WaitReadable(fd, deadline)) break;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/qrx.XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

void WriteFile(const std::string& path, std::string_view content, mode_t mode) {
  fs::create_directories(fs::path(path).parent_path());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
  }
  ::chmod(path.c_str(), mode);
}

void WriteScript(const std::string& path, std::string_view body) {
  WriteFile(path, "#!/bin/sh\n" + std::string(body), 0755);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::string BinPath(std::string_view name) { return std::string(QREXEC_BIN_DIR) + "/" + std::string(name); }

Result<Process> Process::Spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return MakeError(ErrorKind::kInternal, "empty argv");
  auto make_pipe = [](Stdio mode) -> Result<sys::FdPair> {
    if (mode != Stdio::kPipe) return sys::FdPair{};
    return sys::Pipe();
  };
  auto in = make_pipe(options.stdin_fd >= 0 ? Stdio::kNull : options.stdin_mode);
  auto out = make_pipe(options.stdout_fd >= 0 ? Stdio::kNull : options.stdout_mode);
  auto err = make_pipe(options.stderr_fd >= 0 ? Stdio::kNull : options.stderr_mode);
  if (!in || !out || !err) return MakeError(ErrorKind::kInternal, "pipe failed");
  UniqueFd dev_null(::open("/dev/null", O_RDWR | O_CLOEXEC));

  std::vector<std::string> env_strings = BuildEnv(options);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = options.argv;
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  auto choose = [&](Stdio mode, const UniqueFd& child_end, int inherited, int given) {
    if (given >= 0) return given;
    switch (mode) {
      case Stdio::kPipe: return child_end.get();
      case Stdio::kNull: return dev_null.get();
      case Stdio::kInherit: return inherited;
    }
    return dev_null.get();
  };
  int fd0 = choose(options.stdin_mode, in->first, 0, options.stdin_fd);
  int fd1 = choose(options.stdout_mode, out->second, 1, options.stdout_fd);
  int fd2 = choose(options.stderr_mode, err->second, 2, options.stderr_fd);

  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork");
  if (pid == 0) {
    // Child: only async-signal-safe calls from here on. If the test dies
    // (a ctest time-out kills it), take the spawned binary with it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fds[3] = {::dup(fd0), ::dup(fd1), ::dup(fd2)};
    ::dup2(fds[0], 0);
    ::dup2(fds[1], 1);
    ::dup2(fds[2], 2);
    sys::CloseFdsExcept({});
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    if (!options.cwd.empty() && ::chdir(options.cwd.c_str()) < 0) _exit(126);
    ::execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  Process process;
  process.pid_ = pid;
  if (options.stdin_mode == Stdio::kPipe && options.stdin_fd < 0) process.stdin_ = std::move(in->second);
  if (options.stdout_mode == Stdio::kPipe && options.stdout_fd < 0) process.stdout_ = std::move(out->first);
  if (options.stderr_mode == Stdio::kPipe && options.stderr_fd < 0) process.stderr_ = std::move(err->first);
  return process;
}

Process::Process(Process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      status_(other.status_),
      stdin_(std::move(other.stdin_)),
      stdout_(std::move(other.stdout_)),
      stderr_(std::move(other.stderr_)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = std::exchange(other.pid_, -1);
    status_ = other.status_;
    stdin_ = std::move(other.stdin_);
    stdout_ = std::move(other.stdout_);
    stderr_ = std::move(other.stderr_);
  }
  return *this;
}

Process::~Process() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

Status Process::WriteStdin(std::string_view data) {
  if (!stdin_.valid()) return MakeError(ErrorKind::kInternal, "stdin closed");
  return sys::WriteAll(stdin_.get(), data);
}

std::string Process::ReadStdout(milliseconds timeout) { return ReadUntilEof(stdout_.get(), timeout); }
std::string Process::ReadStderr(milliseconds timeout) { return ReadUntilEof(stderr_.get(), timeout); }

std::optional<int> Process::Wait(milliseconds timeout) {
  if (status_) return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      status_ = DecodeWaitStatus(status);
      return status_;
    }
    if (r < 0 && errno != EINTR) return std::nullopt;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(milliseconds(2));
  }
}

bool Process::Running() { return !Wait(milliseconds(0)).has_value(); }

void Process::Kill(int signo) {
  if (pid_ > 0 && !status_) ::kill(pid_, signo);
}

RunResult RunProgram(const SpawnOptions& options, std::string_view input, milliseconds timeout) {
  RunResult result;
  auto process = Process::Spawn(options);
  if (!process) return result;
  // Feed stdin from a thread so large inputs cannot deadlock against output.
  std::thread feeder([&] {
    if (process->stdin_fd() >= 0) {
      (void)sys::WriteAll(process->stdin_fd(), input);
      process->CloseStdin();
    }
  });
  std::thread err_reader([&] { result.err = process->ReadStderr(timeout); });
  result.out = process->ReadStdout(timeout);
  err_reader.join();
  feeder.join();
  auto code = process->Wait(timeout);
  result.exit_code = code ? *code : -1;
  return result;
}

std::string VchanPath(const std::string& dir, int server, int client, int port) {
  return dir + "/vchan." + std::to_string(server) + "." + std::to_string(client) + "." +
         std::to_string(port) + ".sock";
}

Result<UniqueFd> VchanListen(const std::string& dir, int server, int client, int port) {
  return sys::UnixListen(VchanPath(dir, server, client, port), 1);
}

Result<UniqueFd> VchanAccept(int listen_fd, const std::string& dir, int server, int client, int port,
                             milliseconds timeout) {
  if (auto w = sys::WaitReadable(listen_fd, DeadlineIn(timeout)); !w) return tl::unexpected(w.error());
  auto fd = sys::Accept(listen_fd);
  ::unlink(VchanPath(dir, server, client, port).c_str());
  return fd;
}

Result<UniqueFd> ConnectUnixRetry(const std::string& path, milliseconds timeout) {
  auto deadline = DeadlineIn(timeout);
  for (;;) {
    auto fd = sys::UnixConnect(path);
    if (fd) return fd;
    int e = fd.error().sys_errno;
    if ((e != ENOENT && e != ECONNREFUSED) || deadline.expired()) return fd;
    std::this_thread::sleep_for(milliseconds(5));
  }
}

Result<UniqueFd> VchanConnect(const std::string& dir, int server, int client, int port,
                              milliseconds timeout) {
  return ConnectUnixRetry(VchanPath(dir, server, client, port), timeout);
}

Status SendRaw(int fd, std::string_view bytes) { return sys::WriteAll(fd, bytes); }

Status SendMessage(int fd, uint32_t type, std::string_view body) {
  return SendRaw(fd, U32(type) + U32(static_cast<uint32_t>(body.size())) + std::string(body));
}

Result<std::string> RecvExact(int fd, size_t n, milliseconds timeout) {
  std::string out(n, '\0');
  auto status = sys::ReadExact(fd, std::as_writable_bytes(std::span<char>(out.data(), n)),
                               DeadlineIn(timeout));
  if (!status) return tl::unexpected(status.error());
  return out;
}

Result<RawMessage> RecvMessage(int fd, milliseconds timeout) {
  auto header = RecvExact(fd, 8, timeout);
  if (!header) return tl::unexpected(header.error());
  RawMessage message;
  message.type = ReadU32(*header, 0);
  uint32_t len = ReadU32(*header, 4);
  if (len > (1u << 20)) return MakeError(ErrorKind::kMalformed, "message too long in test");
  auto body = RecvExact(fd, len, timeout);
  if (!body) return tl::unexpected(body.error());
  message.body = std::move(*body);
  return message;
}

bool WaitForEof(int fd, milliseconds timeout) {
  auto deadline = DeadlineIn(timeout);
  char buf[4096];
  for (;;) {
    if (!sys::WaitReadable(fd, deadline)) return false;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) return true;
    if (n < 0 && errno != EINTR && errno != EAGAIN) return true;  // reset counts as closed
  }
}

std::string U32(uint32_t value) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[static_cast<size_t>(i)] = static_cast<char>((value >> (8 * i)) & 0xff);
  return out;
}

uint32_t ReadU32(std::string_view bytes, size_t offset) {
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i)
    value = value << 8 | static_cast<uint8_t>(bytes.at(offset + static_cast<size_t>(i)));
  return value;
}

std::string Fixed(std::string_view text, size_t size) {
  std::string out(text.substr(0, size));
  out.resize(size, '\0');
  return out;
}

std::string HelloBody(uint32_t version) { return U32(version); }

std::string ExecParamsBody(uint32_t connect_domain, uint32_t connect_port, std::string_view cmdline) {
  return U32(connect_domain) + U32(connect_port) + std::string(cmdline) + std::string(1, '\0');
}

std::string Trigger4Body(std::string_view source, std::string_view target, std::string_view request_id,
                         std::string_view service) {
  return Fixed(source, 64) + Fixed(target, 64) + Fixed(request_id, 32) + std::string(service) +
         std::string(1, '\0');
}

Result<uint32_t> Handshake(int fd, uint32_t version, milliseconds timeout) {
  if (auto s = SendMessage(fd, 0x300, HelloBody(version)); !s) return tl::unexpected(s.error());
  auto reply = RecvMessage(fd, timeout);
  if (!reply) return tl::unexpected(reply.error());
  if (reply->type != 0x300 || reply->body.size() != 4)
    return MakeError(ErrorKind::kMalformed, "expected HELLO");
  return ReadU32(reply->body);
}

}  // namespace qrexec::harness
