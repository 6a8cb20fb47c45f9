#include "policy/qubesd_client.h"

#include <sys/socket.h>

#include <cstdlib>

#include "base/sys.h"

namespace qrexec::policy {
namespace {

constexpr size_t kMaxReply = 64u << 20;
constexpr auto kTimeout = std::chrono::seconds(30);

}  // namespace

std::string QubesdSocketPath(std::string_view explicit_path) {
  if (!explicit_path.empty()) return std::string(explicit_path);
  if (const char* env = std::getenv(kQubesdSocketEnv); env != nullptr && *env != '\0') return env;
  return kQubesdSocket;
}

Result<std::string> QubesdCall(const std::string& socket_path, std::string_view method,
                               std::string_view arg, std::string_view dest) {
  auto fd = sys::UnixConnect(socket_path);
  if (!fd) {
    Error e = fd.error();
    e.kind = ErrorKind::kDisconnected;
    e.message = "cannot connect to qubesd at " + socket_path + ": " + e.message;
    return tl::unexpected(e);
  }
  std::string request = std::string(method) + "+" + std::string(arg) + " dom0 name " +
                        std::string(dest);
  request.push_back('\0');
  auto deadline = sys::Deadline::After(kTimeout);
  if (auto status = sys::WriteAll(fd->get(), request, deadline); !status)
    return tl::unexpected(status.error());
  ::shutdown(fd->get(), SHUT_WR);
  auto reply = sys::ReadToEof(fd->get(), kMaxReply, deadline);
  if (!reply) return tl::unexpected(reply.error());
  if (reply->size() >= 2 && (*reply)[0] == '0' && (*reply)[1] == '\0') return reply->substr(2);
  if (reply->size() >= 2 && (*reply)[0] == '2' && (*reply)[1] == '\0') {
    std::string text = reply->substr(2);
    for (char& c : text)
      if (c == '\0') c = ' ';
    return MakeError(ErrorKind::kRefused, "qubesd refused " + std::string(method) + ": " + text);
  }
  return MakeError(ErrorKind::kMalformed, "unexpected reply from qubesd to " + std::string(method));
}

Result<SystemInfo> FetchSystemInfo(const std::string& socket_path) {
  auto payload = QubesdCall(socket_path, "internal.GetSystemInfo");
  if (!payload) return tl::unexpected(payload.error());
  return SystemInfo::FromJson(*payload);
}

}  // namespace qrexec::policy
