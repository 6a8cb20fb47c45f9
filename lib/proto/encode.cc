// Encoders of messages.h: exact layouts, fixed fields zero-padded.
#include <algorithm>
#include <cstring>

#include "base/check.h"
#include "base/names.h"
#include "proto/messages.h"

namespace qrexec::proto {
namespace {

// A frame with a zeroed body of `body_len` bytes.
Bytes NewFrame(MsgType type, size_t body_len) {
  QREXEC_CHECK(body_len <= UINT32_MAX);
  Bytes out(kHeaderSize + body_len, std::byte{0});
  EncodeHeader(std::span<std::byte, kHeaderSize>(out.data(), kHeaderSize), type,
               static_cast<uint32_t>(body_len));
  return out;
}

void PutText(std::byte* dst, std::string_view text) {
  if (!text.empty()) std::memcpy(dst, text.data(), text.size());
}

void PutExecParams(std::byte* dst, const ExecParams& params) {
  StoreU32(dst, params.connect_domain);
  StoreU32(dst + 4, params.connect_port);
}

bool HasNul(std::string_view text) { return text.find('\0') != std::string_view::npos; }

// A string for a char[field_size] with room for its NUL.
bool FitsField(std::string_view text, size_t field_size) {
  return text.size() < field_size && !HasNul(text);
}

bool IsEncodableIdent(std::string_view ident) {
  return ident.size() < kServiceParamsSize && names::IsValidRequestIdText(ident);
}

tl::unexpected<Error> Bad(std::string message) {
  return MakeError(ErrorKind::kMalformed, std::move(message));
}

}  // namespace

RawIdent MakeRawIdent(std::string_view text) {
  RawIdent raw{};
  std::memcpy(raw.data(), text.data(), std::min(text.size(), raw.size()));
  return raw;
}

Bytes EncodeHello(uint32_t version) {
  Bytes out = NewFrame(MsgType::kHello, kPeerInfoSize);
  StoreU32(out.data() + kHeaderSize, version);
  return out;
}

Bytes EncodeExecParams(const ExecParams& params) {
  Bytes out(kExecParamsSize);
  PutExecParams(out.data(), params);
  return out;
}

Bytes EncodeClientReply(MsgType type, const ExecParams& params) {
  Bytes out = NewFrame(type, kExecParamsSize);
  PutExecParams(out.data() + kHeaderSize, params);
  return out;
}

Result<Bytes> EncodeExecRequest(const ExecRequest& request) {
  if (HasNul(request.command)) return Bad("command contains a NUL byte");
  size_t body_len = kExecParamsSize + request.command.size() + 1;
  if (body_len > kMaxControlFromDaemonBody) return Bad("command too long");
  Bytes out = NewFrame(static_cast<MsgType>(request.type), body_len);
  PutExecParams(out.data() + kHeaderSize, {request.connect_domain, request.connect_port});
  PutText(out.data() + kHeaderSize + kExecParamsSize, request.command);
  return out;
}

Result<Bytes> EncodeServiceConnect(const ServiceConnect& message) {
  if (!IsEncodableIdent(message.ident)) return Bad("invalid request id");
  if (message.ident_field_len <= message.ident.size() ||
      message.ident_field_len > kServiceParamsSize)
    return Bad("request id field length does not fit the request id");
  Bytes out = NewFrame(MsgType::kServiceConnect, kExecParamsSize + message.ident_field_len);
  PutExecParams(out.data() + kHeaderSize, {message.connect_domain, message.connect_port});
  PutText(out.data() + kHeaderSize + kExecParamsSize, message.ident);
  return out;
}

Result<Bytes> EncodeServiceRefused(std::string_view ident) {
  if (!IsEncodableIdent(ident)) return Bad("invalid request id");
  return EncodeServiceRefusedRaw(MakeRawIdent(ident));
}

Bytes EncodeServiceRefusedRaw(const RawIdent& raw_ident) {
  Bytes out = NewFrame(MsgType::kServiceRefused, kServiceParamsSize);
  std::memcpy(out.data() + kHeaderSize, raw_ident.data(), raw_ident.size());
  return out;
}

Result<Bytes> EncodeTrigger(const Trigger& t) {
  if (!IsEncodableIdent(t.request_id)) return Bad("invalid request id");
  if (t.type == MsgType::kTriggerService) {
    if (!FitsField(t.service, 64) || !FitsField(t.target, 32) || !t.requested_source.empty())
      return Bad("trigger field does not fit the v2 layout");
    Bytes out = NewFrame(t.type, kTriggerParams2Size);
    std::byte* body = out.data() + kHeaderSize;
    PutText(body, t.service);
    PutText(body + 64, t.target);
    PutText(body + 96, t.request_id);
    return out;
  }
  const bool v4 = t.type == MsgType::kTriggerService4;
  if (!v4 && t.type != MsgType::kTriggerService3) return Bad("not a trigger type");
  if (!v4 && !t.requested_source.empty()) return Bad("requested source needs MSG_TRIGGER_SERVICE4");
  if (!FitsField(t.requested_source, 64) || !FitsField(t.target, 64) || HasNul(t.service) ||
      t.service.size() + 1 > limits::kMaxServiceNameLen)
    return Bad("trigger field does not fit");
  const size_t fixed = v4 ? kTriggerParams4Size : kTriggerParams3Size;
  Bytes out = NewFrame(t.type, fixed + t.service.size() + 1);
  std::byte* body = out.data() + kHeaderSize;
  size_t off = 0;
  if (v4) {
    PutText(body, t.requested_source);
    off = 64;
  }
  PutText(body + off, t.target);
  PutText(body + off + 64, t.request_id);
  PutText(body + fixed, t.service);
  return out;
}

Bytes EncodeConnectionTerminated(const ConnectionTerminated& message) {
  Bytes out = NewFrame(MsgType::kConnectionTerminated, kExecParamsSize);
  PutExecParams(out.data() + kHeaderSize, {message.connect_domain, message.connect_port});
  return out;
}

Result<Bytes> EncodeCmdInfo(const CmdInfo& info) {
  if (info.command.empty() || HasNul(info.command)) return Bad("bad fork-server command");
  const size_t len = info.command.size() + 1;
  if (len > kMaxForkServerCommand) return Bad("fork-server command too long");
  Bytes out(kCmdInfoSize + len, std::byte{0});
  StoreU32(out.data(), static_cast<uint32_t>(info.type));
  StoreU32(out.data() + 4, info.connect_domain);
  StoreU32(out.data() + 8, info.connect_port);
  StoreU32(out.data() + 12, static_cast<uint32_t>(len));
  PutText(out.data() + kCmdInfoSize, info.command);
  return out;
}

}  // namespace qrexec::proto
