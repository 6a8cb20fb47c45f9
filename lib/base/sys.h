// Thin wrappers over the system calls the project uses (style.md habit 2).
//
// Every wrapper retries EINTR where that is correct, never retries close(),
// creates descriptors with CLOEXEC, and returns owned types. Blocking helpers
// (ReadExact, WriteAll) are for small control exchanges in processes that own
// one conversation; event-loop code uses non-blocking fds instead.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "base/result.h"
#include "base/unique_fd.h"

namespace qrexec::sys {

using Clock = std::chrono::steady_clock;

// A point in time after which a blocking operation gives up; an empty
// Deadline waits forever.
class Deadline {
 public:
  static Deadline Never() { return Deadline(); }
  static Deadline After(std::chrono::milliseconds timeout) { return Deadline(Clock::now() + timeout); }
  // Seconds as given on command lines: 0 means "no timeout" (Qubes' -w 0).
  static Deadline AfterSeconds(int seconds) {
    return seconds <= 0 ? Never() : After(std::chrono::seconds(seconds));
  }
  bool expired() const { return at_ && Clock::now() >= *at_; }
  bool is_never() const { return !at_; }
  // Milliseconds left, clamped to [0, INT_MAX]; -1 when there is no deadline
  // (the convention of poll()).
  int PollTimeoutMs() const;

 private:
  Deadline() = default;
  explicit Deadline(Clock::time_point at) : at_(at) {}
  std::optional<Clock::time_point> at_;
};

struct FdPair {
  UniqueFd first;
  UniqueFd second;
};

// SOCK_STREAM socketpair (CLOEXEC; NONBLOCK if asked).
Result<FdPair> SocketPair(bool nonblocking = false);
// pipe2(O_CLOEXEC): first = read end, second = write end.
Result<FdPair> Pipe(bool nonblocking = false);

Status SetNonBlocking(int fd, bool on);
Status SetCloseOnExec(int fd, bool on);

// Creates, binds and listens on a Unix stream socket at `path` (an existing
// socket file there is replaced). Paths longer than sun_path are refused.
Result<UniqueFd> UnixListen(const std::string& path, int backlog = 64, bool nonblocking = false);
// Connects to a Unix stream socket. A Unix connect completes at once or
// fails, also on a non-blocking socket (for event loops): ENOENT (no socket
// file) is kNotFound, ECONNREFUSED (a stale file: nobody listens) is
// kDisconnected, EAGAIN (the server's backlog is full) is kOverloaded;
// sys_errno keeps the errno.
Result<UniqueFd> UnixConnect(const std::string& path, bool nonblocking = false);
// accept4 with CLOEXEC (and NONBLOCK if asked). kNotFound-free: EAGAIN is
// reported as kOverloaded so loop code can stop accepting.
Result<UniqueFd> Accept(int listen_fd, bool nonblocking = false);

// Waits until `fd` is readable (POLLIN/POLLHUP/POLLERR) or the deadline passes.
Status WaitReadable(int fd, const Deadline& deadline);
Status WaitWritable(int fd, const Deadline& deadline);

// Blocking I/O on a (possibly non-blocking) fd, polling as needed.
// ReadExact: kDisconnected on EOF before `buf.size()` bytes.
Status ReadExact(int fd, std::span<std::byte> buf, const Deadline& deadline = Deadline::Never());
Status WriteAll(int fd, std::span<const std::byte> buf, const Deadline& deadline = Deadline::Never());
Status WriteAll(int fd, std::string_view text, const Deadline& deadline = Deadline::Never());
// Reads until EOF; more than `limit` bytes is kOverloaded.
Result<std::string> ReadToEof(int fd, size_t limit, const Deadline& deadline = Deadline::Never());
// The whole content of the file at `path`; nullopt when it cannot be opened
// or read. For trusted local files of bounded size (policy files, system
// info); untrusted input goes through ReadToEof with a limit.
std::optional<std::string> ReadWholeFile(const std::string& path);
// Reads and drops everything until EOF (or the deadline: kTimedOut).
Status DiscardToEof(int fd, const Deadline& deadline);

// One read()/write() retried on EINTR. Returns bytes moved (0 = EOF for read);
// EAGAIN is reported as an error with sys_errno == EAGAIN.
Result<size_t> ReadSome(int fd, std::span<std::byte> buf);
Result<size_t> WriteSome(int fd, std::span<const std::byte> buf);

// SCM_RIGHTS: sends `data` (at least one byte) together with one descriptor.
Status SendWithFd(int sock, std::span<const std::byte> data, int fd_to_send);
// Receives up to data.size() bytes and at most one descriptor; any extra
// descriptors are closed at once. Returns {bytes, fd or invalid}.
Result<std::pair<size_t, UniqueFd>> RecvWithFd(int sock, std::span<std::byte> data);

// Credentials of the peer of a connected Unix socket.
struct PeerCred {
  pid_t pid;
  uid_t uid;
  gid_t gid;
};
Result<PeerCred> GetPeerCred(int sock);

// Is `fd` a SOCK_STREAM socket? (for --use-stdin-socket)
bool IsStreamSocket(int fd);

// Closes every fd >= 3 except those listed (for the child side of a fork;
// async-signal-safe: uses close_range or a raw loop, no allocation).
void CloseFdsExcept(std::span<const int> keep);

template <class T>
std::span<const std::byte> AsBytes(const T& value) {
  return std::as_bytes(std::span<const T, 1>(&value, 1));
}
template <class T>
std::span<std::byte> AsWritableBytes(T& value) {
  return std::as_writable_bytes(std::span<T, 1>(&value, 1));
}
inline std::span<const std::byte> AsBytes(std::string_view text) {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

}  // namespace qrexec::sys
