#include "daemon/daemon_socket.h"

#include <cerrno>

#include "base/limits.h"
#include "proto/framing.h"
#include "proto/handshake.h"

namespace qrexec::daemon {
namespace {

Result<proto::ExecParams> ReadReply(int fd, proto::MsgType type, const sys::Deadline& deadline) {
  auto message = proto::ReadMessage(fd, proto::kExecParamsSize, deadline);
  if (!message) return tl::unexpected(message.error());
  return proto::DecodeClientReply(message->header, message->body, type);
}

}  // namespace

Result<UniqueFd> ConnectDaemonSocket(const std::string& socket_dir, const std::string& domain,
                                     const sys::Deadline& deadline) {
  auto fd = sys::UnixConnect(socket_dir + "/qrexec." + domain);
  if (!fd) {
    if (fd.error().sys_errno == ENOENT || fd.error().sys_errno == ECONNREFUSED)
      return MakeError(ErrorKind::kNotFound, "no qrexec daemon for " + domain);
    return tl::unexpected(fd.error());
  }
  auto version = proto::ReceiveHello(fd->get(), deadline);
  if (!version) return tl::unexpected(version.error());
  if (auto ok = proto::NegotiateClientSocket(*version); !ok) return tl::unexpected(ok.error());
  if (auto st = proto::SendHello(fd->get(), proto::kClientProtocolVersion, deadline); !st)
    return tl::unexpected(st.error());
  return fd;
}

Result<proto::ExecParams> RequestExec(int fd, const proto::ExecRequest& request,
                                      const sys::Deadline& deadline) {
  if (request.command.size() + 1 + proto::kExecParamsSize > limits::kMaxCommandBody)
    return MakeError(ErrorKind::kMalformed, "command too long");
  auto frame = proto::EncodeExecRequest(request);
  if (!frame) return tl::unexpected(frame.error());
  if (auto st = proto::WriteFrame(fd, *frame, deadline); !st) return tl::unexpected(st.error());
  return ReadReply(fd, static_cast<proto::MsgType>(request.type), deadline);
}

Result<proto::ExecParams> RequestServiceConnect(int fd, const proto::ServiceConnect& request,
                                                const sys::Deadline& deadline) {
  auto frame = proto::EncodeServiceConnect(request);
  if (!frame) return tl::unexpected(frame.error());
  if (auto st = proto::WriteFrame(fd, *frame, deadline); !st) return tl::unexpected(st.error());
  if (request.connect_port != 0) return proto::ExecParams{0, request.connect_port};
  return ReadReply(fd, proto::MsgType::kServiceConnect, deadline);
}

}  // namespace qrexec::daemon
