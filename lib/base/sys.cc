#include "base/sys.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <sstream>

namespace qrexec::sys {

int Deadline::PollTimeoutMs() const {
  if (!at_) return -1;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*at_ - Clock::now()).count();
  // Round up so that a poll that returns on time sees the deadline expired.
  return static_cast<int>(std::clamp<long long>(left + 1, 0, INT_MAX));
}

Result<FdPair> SocketPair(bool nonblocking) {
  int fds[2];
  int type = SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
  if (::socketpair(AF_UNIX, type, 0, fds) < 0) return ErrnoError("socketpair");
  return FdPair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

Result<FdPair> Pipe(bool nonblocking) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0)) < 0) return ErrnoError("pipe2");
  return FdPair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

Status SetNonBlocking(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return ErrnoError("fcntl(F_GETFL)");
  flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (::fcntl(fd, F_SETFL, flags) < 0) return ErrnoError("fcntl(F_SETFL)");
  return Ok();
}

Status SetCloseOnExec(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFD);
  if (flags < 0) return ErrnoError("fcntl(F_GETFD)");
  flags = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
  if (::fcntl(fd, F_SETFD, flags) < 0) return ErrnoError("fcntl(F_SETFD)");
  return Ok();
}

namespace {

Result<sockaddr_un> MakeUnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return MakeError(ErrorKind::kInternal, "socket path too long: " + path);
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

}  // namespace

Result<UniqueFd> UnixListen(const std::string& path, int backlog, bool nonblocking) {
  auto addr = MakeUnixAddress(path);
  if (!addr) return tl::unexpected(addr.error());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
  if (!fd.valid()) return ErrnoError("socket");
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) < 0)
    return ErrnoError("bind " + path);
  if (::listen(fd.get(), backlog) < 0) return ErrnoError("listen " + path);
  return fd;
}

Result<UniqueFd> UnixConnect(const std::string& path, bool nonblocking) {
  auto addr = MakeUnixAddress(path);
  if (!addr) return tl::unexpected(addr.error());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
  if (!fd.valid()) return ErrnoError("socket");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return fd;
  int err = errno;
  if (err == EAGAIN) return MakeError(ErrorKind::kOverloaded, "backlog full: " + path, err);
  if (err == ECONNREFUSED) return MakeError(ErrorKind::kDisconnected, "connect " + path, err);
  return ErrnoError("connect " + path, err);
}

Result<UniqueFd> Accept(int listen_fd, bool nonblocking) {
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0));
    if (fd >= 0) return UniqueFd(fd);
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN) return MakeError(ErrorKind::kOverloaded, "accept: nothing pending", EAGAIN);
    return ErrnoError("accept");
  }
}

namespace {

Status WaitFor(int fd, short events, const Deadline& deadline) {
  for (;;) {
    pollfd pfd{fd, events, 0};
    int rc = ::poll(&pfd, 1, deadline.PollTimeoutMs());
    if (rc > 0) return Ok();
    if (rc == 0) return MakeError(ErrorKind::kTimedOut, "timed out", ETIMEDOUT);
    if (errno != EINTR) return ErrnoError("poll");
  }
}

}  // namespace

Status WaitReadable(int fd, const Deadline& deadline) { return WaitFor(fd, POLLIN, deadline); }
Status WaitWritable(int fd, const Deadline& deadline) { return WaitFor(fd, POLLOUT, deadline); }

Result<size_t> ReadSome(int fd, std::span<std::byte> buf) {
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return ErrnoError("read");
  }
}

Result<size_t> WriteSome(int fd, std::span<const std::byte> buf) {
  for (;;) {
    ssize_t n = ::write(fd, buf.data(), buf.size());
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return ErrnoError("write");
  }
}

Status ReadExact(int fd, std::span<std::byte> buf, const Deadline& deadline) {
  size_t done = 0;
  while (done < buf.size()) {
    // On a blocking fd a read would ignore the deadline: wait first.
    if (!deadline.is_never())
      if (auto w = WaitReadable(fd, deadline); !w) return w;
    auto n = ReadSome(fd, buf.subspan(done));
    if (!n) {
      if (n.error().sys_errno != EAGAIN) return tl::unexpected(n.error());
      if (auto w = WaitReadable(fd, deadline); !w) return w;
      continue;
    }
    if (*n == 0) return MakeError(ErrorKind::kDisconnected, "unexpected end of file");
    done += *n;
  }
  return Ok();
}

Status WriteAll(int fd, std::span<const std::byte> buf, const Deadline& deadline) {
  size_t done = 0;
  while (done < buf.size()) {
    if (!deadline.is_never())
      if (auto w = WaitWritable(fd, deadline); !w) return w;
    auto n = WriteSome(fd, buf.subspan(done));
    if (!n) {
      if (n.error().sys_errno != EAGAIN) return tl::unexpected(n.error());
      if (auto w = WaitWritable(fd, deadline); !w) return w;
      continue;
    }
    done += *n;
  }
  return Ok();
}

Status WriteAll(int fd, std::string_view text, const Deadline& deadline) {
  return WriteAll(fd, AsBytes(text), deadline);
}

namespace {

// Reads `fd` until EOF, handing each chunk to `take`, which may end the read
// with an error.
template <class Take>
Status ForEachChunkToEof(int fd, const Deadline& deadline, Take take) {
  std::byte chunk[4096];
  for (;;) {
    if (!deadline.is_never())
      if (auto w = WaitReadable(fd, deadline); !w) return w;
    auto n = ReadSome(fd, chunk);
    if (!n) {
      if (n.error().sys_errno != EAGAIN) return tl::unexpected(n.error());
      if (auto w = WaitReadable(fd, deadline); !w) return w;
      continue;
    }
    if (*n == 0) return {};
    if (auto taken = take(std::span<const std::byte>(chunk, *n)); !taken) return taken;
  }
}

}  // namespace

Result<std::string> ReadToEof(int fd, size_t limit, const Deadline& deadline) {
  std::string out;
  auto read = ForEachChunkToEof(fd, deadline, [&](std::span<const std::byte> bytes) -> Status {
    if (out.size() + bytes.size() > limit) return MakeError(ErrorKind::kOverloaded, "input too long");
    out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return {};
  });
  if (!read) return tl::unexpected(read.error());
  return out;
}

std::optional<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return text.str();
}

Status DiscardToEof(int fd, const Deadline& deadline) {
  return ForEachChunkToEof(fd, deadline, [](std::span<const std::byte>) -> Status { return {}; });
}

Status SendWithFd(int sock, std::span<const std::byte> data, int fd_to_send) {
  iovec iov{const_cast<std::byte*>(data.data()), data.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd_to_send >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd_to_send, sizeof(int));
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n >= 0) {
      if (static_cast<size_t>(n) != data.size())
        return MakeError(ErrorKind::kInternal, "sendmsg: short write");
      return Ok();
    }
    if (errno != EINTR) return ErrnoError("sendmsg");
  }
}

Result<std::pair<size_t, UniqueFd>> RecvWithFd(int sock, std::span<std::byte> data) {
  iovec iov{data.data(), data.size()};
  // Room for a few descriptors so that extras can be seen and closed.
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoError("recvmsg");
  UniqueFd received;
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof fd);
      if (!received.valid())
        received.reset(fd);
      else
        ::close(fd);  // more descriptors than the protocol allows
    }
  }
  return std::make_pair(static_cast<size_t>(n), std::move(received));
}

Result<PeerCred> GetPeerCred(int sock) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return ErrnoError("SO_PEERCRED");
  return PeerCred{cred.pid, cred.uid, cred.gid};
}

bool IsStreamSocket(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

void CloseFdsExcept(std::span<const int> keep) {
  // Close [3, max] minus the kept fds, using close_range for each gap.
  int kept[64];
  size_t count = 0;
  for (int fd : keep)
    if (fd >= 3 && count < 64) kept[count++] = fd;
  std::sort(kept, kept + count);
  unsigned int from = 3;
  for (size_t i = 0; i < count; ++i) {
    if (static_cast<unsigned>(kept[i]) > from)
      ::syscall(SYS_close_range, from, static_cast<unsigned>(kept[i]) - 1, 0);
    from = static_cast<unsigned>(kept[i]) + 1;
  }
  ::syscall(SYS_close_range, from, ~0U, 0);
}

}  // namespace qrexec::sys
