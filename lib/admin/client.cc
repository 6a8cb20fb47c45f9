#include "admin/client.h"

#include <sys/socket.h>

namespace qrexec::admin {

Result<Reply> Call(const std::string& socket_path, const Request& request,
                   const sys::Deadline& deadline) {
  auto fd = sys::UnixConnect(socket_path);
  if (!fd) return tl::unexpected(fd.error());
  if (auto status = sys::WriteAll(fd->get(), EncodeRequest(request), deadline); !status)
    return tl::unexpected(status.error());
  if (::shutdown(fd->get(), SHUT_WR) < 0) return ErrnoError("shutdown");
  auto untrusted_reply = sys::ReadToEof(fd->get(), kMaxReplySize, deadline);
  if (!untrusted_reply) return tl::unexpected(untrusted_reply.error());
  return DecodeReply(*untrusted_reply);
}

Result<std::string> CallOk(const std::string& socket_path, const std::string& method,
                           const std::string& dest, const std::string& payload,
                           const sys::Deadline& deadline) {
  Request request;
  size_t plus = method.find('+');
  request.method = method.substr(0, plus);
  if (plus != std::string::npos) request.argument = method.substr(plus + 1);
  request.dest = dest;
  if (!dest.empty() && dest[0] == '@') {
    request.dest_type = DestType::kKeyword;
    request.dest = dest.substr(1);
  }
  request.payload = payload;
  auto reply = Call(socket_path, request, deadline);
  if (!reply) return tl::unexpected(reply.error());
  if (!reply->ok) {
    auto kind = reply->exception_type == kNotFoundError ? ErrorKind::kNotFound : ErrorKind::kRefused;
    std::string text = reply->exception_type;
    if (!reply->message.empty()) text += ": " + reply->message;
    return MakeError(kind, text);
  }
  return std::move(reply->payload);
}

}  // namespace qrexec::admin
