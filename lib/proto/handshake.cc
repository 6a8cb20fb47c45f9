// Hello negotiation (handshake.h).
#include "proto/handshake.h"

#include <algorithm>

#include "proto/framing.h"
#include "proto/messages.h"

namespace qrexec::proto {
namespace {

Result<uint32_t> AtLeast(uint32_t negotiated, uint32_t minimum) {
  if (negotiated < minimum)
    return MakeError(ErrorKind::kMalformed, "peer protocol version " + std::to_string(negotiated) +
                                                " is below the supported minimum " +
                                                std::to_string(minimum));
  return negotiated;
}

}  // namespace

Result<ControlHelloReply> NegotiateControlAsDaemon(uint32_t agent_version, uint32_t own_version) {
  auto negotiated = AtLeast(std::min(agent_version, own_version), kMinProtocolVersion);
  if (!negotiated) return tl::unexpected(negotiated.error());
  return ControlHelloReply{*negotiated, agent_version};
}

Result<uint32_t> NegotiateControlAsAgent(uint32_t daemon_version, uint32_t own_version) {
  return AtLeast(std::min(daemon_version, own_version), kMinProtocolVersion);
}

Result<uint32_t> NegotiateData(uint32_t peer_version, uint32_t own_version) {
  return AtLeast(std::min(peer_version, own_version), kMinProtocolVersion);
}

Result<uint32_t> NegotiateClientSocket(uint32_t peer_version) {
  auto ok = AtLeast(peer_version, kClientProtocolVersion);
  if (!ok) return tl::unexpected(ok.error());
  return kClientProtocolVersion;
}

Status SendHello(int fd, uint32_t version, const sys::Deadline& deadline) {
  return WriteFrame(fd, EncodeHello(version), deadline);
}

Result<uint32_t> ReceiveHello(int fd, const sys::Deadline& deadline) {
  auto message = ReadMessage(fd, kPeerInfoSize, deadline);
  if (!message) return tl::unexpected(message.error());
  auto hello = DecodeHello(message->header, message->body);
  if (!hello) return tl::unexpected(hello.error());
  return hello->version;
}

}  // namespace qrexec::proto
