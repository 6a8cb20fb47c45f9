#include "exec/socket_service.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/escape_filter.h"
#include "base/sys.h"

namespace qrexec::exec {
namespace {

// Removes the temporary symlink and directory however we leave.
class TempLink {
 public:
  ~TempLink() {
    if (!link_.empty()) ::unlink(link_.c_str());
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }
  Result<std::string> Create(const std::string& target) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = (tmp != nullptr && tmp[0] != '\0') ? tmp : "/tmp";
    pattern += "/qrexec-sock.XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) return ErrnoError("mkdtemp");
    dir_ = buf.data();
    std::string link = dir_ + "/s";
    if (::symlink(target.c_str(), link.c_str()) < 0) return ErrnoError("symlink");
    link_ = link;
    return link_;
  }

 private:
  std::string dir_;
  std::string link_;
};

}  // namespace

Result<UniqueFd> ConnectUnixService(const std::string& path) {
  constexpr size_t kSunPathSize = sizeof(sockaddr_un{}.sun_path);
  if (path.size() < kSunPathSize) return sys::UnixConnect(path);
  TempLink link;
  auto short_path = link.Create(path);
  if (!short_path) return tl::unexpected(short_path.error());
  if (short_path->size() >= kSunPathSize)
    return MakeError(ErrorKind::kInternal, "temporary directory path too long for a socket");
  return sys::UnixConnect(*short_path);
}

Result<UniqueFd> ConnectTcpService(const TcpEndpoint& endpoint) {
  struct addrinfo hints {};
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* result = nullptr;
  std::string port = std::to_string(endpoint.port);
  int rc = ::getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &result);
  if (rc != 0)
    return MakeError(ErrorKind::kMalformed, "invalid TCP endpoint " + SanitizeForLog(endpoint.host));
  Error last{ErrorKind::kInternal, "no address", 0};
  for (struct addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd.valid()) {
      last = ErrnoError("socket").value();
      continue;
    }
    int connected;
    do {
      connected = ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen);
    } while (connected < 0 && errno == EINTR);
    if (connected == 0) {
      ::freeaddrinfo(result);
      return fd;
    }
    last = ErrnoError("connect " + SanitizeForLog(endpoint.host) + " port " + port).value();
  }
  ::freeaddrinfo(result);
  return tl::unexpected(last);
}

Status WriteServiceDescriptor(int fd, std::string_view rpc_text) {
  std::string header(rpc_text);
  header.push_back('\0');
  // send(MSG_NOSIGNAL): a service that already closed its socket must not
  // kill us with SIGPIPE.
  size_t done = 0;
  while (done < header.size()) {
    ssize_t n = ::send(fd, header.data() + done, header.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (Status ok = sys::WaitWritable(fd, sys::Deadline::Never()); !ok) return ok;
      continue;
    }
    if (n < 0) return ErrnoError("send service descriptor");
    done += static_cast<size_t>(n);
  }
  return Ok();
}

}  // namespace qrexec::exec
