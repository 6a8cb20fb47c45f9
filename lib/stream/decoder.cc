#include "stream/decoder.h"

#include <fmt/core.h>

#include "base/limits.h"

namespace qrexec::stream {

size_t MaxChunkForVersion(uint32_t version) {
  return version >= 3 ? limits::kMaxDataChunkV3 : limits::kMaxDataChunkV2;
}

Result<uint32_t> NegotiateVersion(uint32_t own_version, uint32_t untrusted_peer_version) {
  uint32_t version = std::min(own_version, untrusted_peer_version);
  if (version < proto::kMinProtocolVersion) {
    return MakeError(ErrorKind::kMalformed,
                     fmt::format("incompatible data-channel protocol version {} (ours {})",
                                 untrusted_peer_version, own_version));
  }
  return version;
}

Result<std::optional<RawFrame>> DecodeFrame(std::span<const std::byte> untrusted,
                                            size_t max_payload) {
  if (untrusted.size() < proto::kHeaderSize) return std::optional<RawFrame>();
  auto header = proto::Header::Decode(untrusted.first<proto::kHeaderSize>());
  if (header.untrusted_len > max_payload) {
    return MakeError(ErrorKind::kMalformed,
                     fmt::format("message type {:#x} too long: {} > {}", header.untrusted_type,
                                 header.untrusted_len, max_payload));
  }
  size_t total = proto::kHeaderSize + header.untrusted_len;
  if (untrusted.size() < total) return std::optional<RawFrame>();
  RawFrame frame;
  frame.untrusted_type = header.untrusted_type;
  frame.payload = untrusted.subspan(proto::kHeaderSize, header.untrusted_len);
  frame.consumed = total;
  return frame;
}

InboundDecoder::InboundDecoder(Role role, uint32_t own_version,
                               std::optional<uint32_t> negotiated_version)
    : role_(role), own_version_(own_version), version_(negotiated_version.value_or(0)) {}

Result<std::optional<InboundEvent>> InboundDecoder::Next(std::span<const std::byte> untrusted,
                                                         size_t* consumed) {
  *consumed = 0;
  if (!hello_done()) {
    auto frame = DecodeFrame(untrusted, proto::kPeerInfoSize);
    if (!frame) return tl::unexpected(frame.error());
    if (!*frame) return std::optional<InboundEvent>();
    if ((*frame)->untrusted_type != static_cast<uint32_t>(proto::MsgType::kHello) ||
        (*frame)->payload.size() != proto::kPeerInfoSize) {
      return MakeError(ErrorKind::kMalformed,
                       fmt::format("expected data-channel HELLO, got type {:#x} len {}",
                                   (*frame)->untrusted_type, (*frame)->payload.size()));
    }
    auto version = NegotiateVersion(own_version_, proto::LoadU32((*frame)->payload.data()));
    if (!version) return tl::unexpected(version.error());
    version_ = *version;
    *consumed = (*frame)->consumed;
    InboundEvent event;
    event.kind = InboundEvent::Kind::kHello;
    event.version = version_;
    return event;
  }
  auto frame = DecodeFrame(untrusted, max_chunk());
  if (!frame) return tl::unexpected(frame.error());
  if (!*frame) return std::optional<InboundEvent>();
  auto event = Classify(**frame);
  if (!event) return tl::unexpected(event.error());
  *consumed = (*frame)->consumed;
  return *event;
}

Result<InboundEvent> InboundDecoder::Classify(const RawFrame& frame) {
  using Kind = InboundEvent::Kind;
  InboundEvent event;
  auto data_or_eof = [&](Channel channel, bool wrong_direction) {
    event.channel = channel;
    event.wrong_direction = wrong_direction;
    event.data = frame.payload;
    // Zero-length STDERR carries no meaning: it is (empty) data, not an EOF.
    event.kind = frame.payload.empty() && channel != Channel::kStderr ? Kind::kEof : Kind::kData;
  };
  switch (static_cast<proto::MsgType>(frame.untrusted_type)) {
    case proto::MsgType::kDataStdin:
      if (role_ == Role::kService) {
        data_or_eof(Channel::kStdin, false);
      } else {
        data_or_eof(Channel::kStdout, true);
      }
      return event;
    case proto::MsgType::kDataStdout:
      if (role_ == Role::kCaller) {
        data_or_eof(Channel::kStdout, false);
      } else {
        data_or_eof(Channel::kStdin, true);
      }
      return event;
    case proto::MsgType::kDataStderr:
      if (role_ == Role::kCaller) {
        data_or_eof(Channel::kStderr, false);
      } else {
        event.kind = Kind::kIgnored;
        event.wrong_direction = true;
      }
      return event;
    case proto::MsgType::kDataExitCode:
      if (role_ == Role::kCaller) {
        event.kind = Kind::kExitCode;
        event.exit_code = frame.payload.size() < 4
                              ? kExitShortExitCode
                              : static_cast<int>(proto::LoadU32(frame.payload.data()));
      } else {
        event.kind = Kind::kIgnored;
        event.wrong_direction = true;
      }
      return event;
    default:
      return MakeError(ErrorKind::kMalformed,
                       fmt::format("unexpected message type {:#x} on the data channel",
                                   frame.untrusted_type));
  }
}

}  // namespace qrexec::stream
