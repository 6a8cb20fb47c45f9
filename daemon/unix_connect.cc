#include "daemon/unix_connect.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

namespace qrexec::daemon {

Result<UniqueFd> ConnectUnixNonBlocking(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return MakeError(ErrorKind::kInternal, "socket path too long: " + path);
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return ErrnoError("socket");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return fd;
  int err = errno;
  switch (err) {
    case EAGAIN:
      return MakeError(ErrorKind::kOverloaded, "backlog full: " + path, err);
    case ENOENT:
      return MakeError(ErrorKind::kNotFound, "connect " + path, err);
    case ECONNREFUSED:
      return MakeError(ErrorKind::kDisconnected, "connect " + path, err);
    default:
      return ErrnoError("connect " + path, err);
  }
}

}  // namespace qrexec::daemon
