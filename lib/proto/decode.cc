// Decoders of messages.h. Every check the header promises happens here, once.
#include <algorithm>
#include <cstring>
#include <optional>

#include "base/names.h"
#include "proto/messages.h"

namespace qrexec::proto {
namespace {

tl::unexpected<DecodeFailure> Fatal(std::string reason) {
  return tl::unexpected(DecodeFailure{FailureKind::kFatal, std::move(reason), {}});
}

tl::unexpected<DecodeFailure> Refuse(std::string reason, const RawIdent& raw) {
  return tl::unexpected(DecodeFailure{FailureKind::kRefuse, std::move(reason), raw});
}

bool IsDataPort(uint32_t port) {
  return port >= limits::kFirstDataPort && port <= limits::kLastDataPort;
}

std::string_view AsChars(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// A fixed char[N] field: the last byte is treated as NUL (the reference
// forces it), the value ends at the first NUL.
std::string_view FixedField(std::span<const std::byte> field) {
  std::string_view text = AsChars(field.first(field.size() - 1));
  return text.substr(0, text.find('\0'));
}

RawIdent ReadRawIdent(std::span<const std::byte> field) {
  RawIdent raw{};
  std::memcpy(raw.data(), field.data(), raw.size());
  return raw;
}

// validate_request_id: a NUL inside the field, only NULs after it, only
// [0-9A-Za-z_.- ] before it.
std::optional<std::string> ValidRequestId(const RawIdent& raw) {
  std::string_view all(raw.data(), raw.size());
  size_t nul = all.find('\0');
  if (nul == std::string_view::npos) return std::nullopt;
  if (all.find_first_not_of('\0', nul) != std::string_view::npos) return std::nullopt;
  std::string_view text = all.substr(0, nul);
  if (!names::IsValidRequestIdText(text)) return std::nullopt;
  return std::string(text);
}

// A variable-length NUL-terminated string filling the rest of a body:
// exactly one NUL, at the last byte. Returns the text without it.
std::optional<std::string_view> TerminatedTail(std::span<const std::byte> tail) {
  if (tail.empty()) return std::nullopt;
  std::string_view text = AsChars(tail);
  if (text.back() != '\0') return std::nullopt;
  text.remove_suffix(1);
  if (text.find('\0') != std::string_view::npos) return std::nullopt;
  return text;
}

Status CheckServiceName(std::string_view name) {
  if (name.empty()) return MakeError(ErrorKind::kMalformed, "empty service name");
  if (name.front() == '+') return MakeError(ErrorKind::kMalformed, "service name starts with '+'");
  return Ok();
}

Decoded<Trigger> DecodeTriggerV2(std::span<const std::byte> body) {
  if (body.size() != kTriggerParams2Size) return Fatal("MSG_TRIGGER_SERVICE: bad length");
  RawIdent raw = ReadRawIdent(body.subspan(96, 32));
  auto id = ValidRequestId(raw);
  if (!id) return Refuse("invalid request id", raw);
  std::string_view service = FixedField(body.subspan(0, 64));
  if (auto ok = CheckServiceName(service); !ok) return Refuse(ok.error().message, raw);
  Trigger t;
  t.type = MsgType::kTriggerService;
  t.target = names::Sanitize(FixedField(body.subspan(64, 32)), "@:");
  t.request_id = std::move(*id);
  t.service = names::Sanitize(service, "+");
  return t;
}

// v3 (0x212) and v4 (0x213). `check_id` is false on the trigger socket,
// where the agent replaces the id anyway.
Decoded<Trigger> DecodeTriggerV34(MsgType type, std::span<const std::byte> body, bool check_id) {
  const bool v4 = type == MsgType::kTriggerService4;
  const size_t fixed = v4 ? kTriggerParams4Size : kTriggerParams3Size;
  if (body.size() <= fixed || body.size() - fixed > limits::kMaxServiceNameLen)
    return Fatal(v4 ? "MSG_TRIGGER_SERVICE4: bad length" : "MSG_TRIGGER_SERVICE3: bad length");
  size_t off = 0;
  Trigger t;
  t.type = type;
  if (v4) {
    t.requested_source = names::Sanitize(FixedField(body.subspan(0, 64)), "@:");
    off = 64;
  }
  t.target = names::Sanitize(FixedField(body.subspan(off, 64)), "@:");
  RawIdent raw = ReadRawIdent(body.subspan(off + 64, 32));
  if (check_id) {
    auto id = ValidRequestId(raw);
    if (!id) return Refuse("invalid request id", raw);
    t.request_id = std::move(*id);
  }
  auto service = TerminatedTail(body.subspan(fixed));
  if (!service) return Refuse("service name not NUL-terminated or with an inner NUL", raw);
  if (auto ok = CheckServiceName(*service); !ok) return Refuse(ok.error().message, raw);
  t.service = names::Sanitize(*service, "+");
  return t;
}

ExecParams ReadExecParams(std::span<const std::byte> body) {
  return ExecParams{LoadU32(body.data()), LoadU32(body.data() + 4)};
}

// exec_params + NUL-terminated command without inner NUL.
Decoded<ExecRequest> DecodeExecBody(MsgType type, std::span<const std::byte> body,
                                    size_t max_body) {
  if (body.size() <= kExecParamsSize || body.size() > max_body)
    return Fatal("exec request: bad length");
  auto command = TerminatedTail(body.subspan(kExecParamsSize));
  if (!command) return Fatal("exec request: command not NUL-terminated or with an inner NUL");
  ExecParams params = ReadExecParams(body);
  return ExecRequest{static_cast<ExecType>(type), params.connect_domain, params.connect_port,
                     std::string(*command)};
}

// exec_params + an ident field of 1..32 bytes. A short field is padded with
// NULs for the checks, so it must still hold the ident's NUL itself.
Decoded<ServiceConnect> DecodeServiceConnectBody(std::span<const std::byte> body) {
  if (body.size() <= kExecParamsSize || body.size() > kExecParamsSize + kServiceParamsSize)
    return Fatal("MSG_SERVICE_CONNECT: bad length");
  std::span<const std::byte> field = body.subspan(kExecParamsSize);
  RawIdent raw{};
  std::memcpy(raw.data(), field.data(), field.size());
  if (std::memchr(raw.data(), '\0', field.size()) == nullptr)
    return Fatal("MSG_SERVICE_CONNECT: request id not NUL-terminated");
  auto ident = ValidRequestId(raw);
  if (!ident) return Fatal("MSG_SERVICE_CONNECT: invalid request id");
  ExecParams params = ReadExecParams(body);
  return ServiceConnect{params.connect_domain, params.connect_port, std::move(*ident),
                        field.size()};
}

bool BodyMatches(const Header& header, std::span<const std::byte> body) {
  return body.size() == header.untrusted_len;
}

}  // namespace

Error DecodeFailure::ToError() const {
  return Error{kind == FailureKind::kFatal ? ErrorKind::kMalformed : ErrorKind::kRefused, reason,
               0};
}

Decoded<AgentControlMessage> DecodeControlFromAgent(const Header& untrusted_header,
                                                    std::span<const std::byte> untrusted_body,
                                                    uint32_t version) {
  if (!BodyMatches(untrusted_header, untrusted_body))
    return Fatal("body size does not match header");
  const uint32_t type = untrusted_header.untrusted_type;
  auto is = [type](MsgType t) { return type == static_cast<uint32_t>(t); };
  if (is(MsgType::kConnectionTerminated)) {
    if (untrusted_body.size() != kExecParamsSize)
      return Fatal("MSG_CONNECTION_TERMINATED: bad length");
    ExecParams params = ReadExecParams(untrusted_body);
    if (!IsDataPort(params.connect_port))
      return Fatal("MSG_CONNECTION_TERMINATED: port out of range");
    return ConnectionTerminated{params.connect_domain, params.connect_port};
  }
  const bool v2 = version <= 2;
  const bool v4 = version >= 4;
  Decoded<Trigger> trigger = Fatal("unexpected message type from agent");
  if (is(MsgType::kTriggerService) && v2) {
    trigger = DecodeTriggerV2(untrusted_body);
  } else if (is(MsgType::kTriggerService3) && !v2) {
    trigger = DecodeTriggerV34(MsgType::kTriggerService3, untrusted_body, true);
  } else if (is(MsgType::kTriggerService4) && v4) {
    trigger = DecodeTriggerV34(MsgType::kTriggerService4, untrusted_body, true);
  }
  if (!trigger) return tl::unexpected(std::move(trigger.error()));
  return std::move(*trigger);
}

Decoded<DaemonControlMessage> DecodeControlFromDaemon(const Header& untrusted_header,
                                                      std::span<const std::byte> untrusted_body,
                                                      uint32_t /*version*/) {
  if (!BodyMatches(untrusted_header, untrusted_body))
    return Fatal("body size does not match header");
  switch (static_cast<MsgType>(untrusted_header.untrusted_type)) {
    case MsgType::kExecCmdline:
    case MsgType::kJustExec: {
      auto request = DecodeExecBody(static_cast<MsgType>(untrusted_header.untrusted_type),
                                    untrusted_body, kMaxControlFromDaemonBody);
      if (!request) return tl::unexpected(std::move(request.error()));
      return std::move(*request);
    }
    case MsgType::kServiceConnect: {
      auto connect = DecodeServiceConnectBody(untrusted_body);
      if (!connect) return tl::unexpected(std::move(connect.error()));
      return std::move(*connect);
    }
    case MsgType::kServiceRefused: {
      if (untrusted_body.size() != kServiceParamsSize)
        return Fatal("MSG_SERVICE_REFUSED: bad length");
      auto ident = ValidRequestId(ReadRawIdent(untrusted_body));
      if (!ident) return Fatal("MSG_SERVICE_REFUSED: invalid request id");
      return ServiceRefused{std::move(*ident)};
    }
    default:
      return Fatal("unexpected message type from daemon");
  }
}

Decoded<ClientRequest> DecodeClientRequest(const Header& untrusted_header,
                                           std::span<const std::byte> untrusted_body) {
  if (!BodyMatches(untrusted_header, untrusted_body))
    return Fatal("body size does not match header");
  const auto type = static_cast<MsgType>(untrusted_header.untrusted_type);
  if (type == MsgType::kExecCmdline || type == MsgType::kJustExec) {
    auto request = DecodeExecBody(type, untrusted_body, kMaxClientRequestBody);
    if (!request) return tl::unexpected(std::move(request.error()));
    if (request->connect_port != 0 && !IsDataPort(request->connect_port))
      return Fatal("exec request: port out of range");
    return std::move(*request);
  }
  if (type == MsgType::kServiceConnect) {
    auto connect = DecodeServiceConnectBody(untrusted_body);
    if (!connect) return tl::unexpected(std::move(connect.error()));
    if (connect->connect_port != 0 && !IsDataPort(connect->connect_port))
      return Fatal("MSG_SERVICE_CONNECT: port out of range");
    return std::move(*connect);
  }
  return Fatal("unexpected message type from client");
}

Result<ExecParams> DecodeClientReply(const Header& untrusted_header,
                                     std::span<const std::byte> untrusted_body,
                                     MsgType request_type) {
  if (!BodyMatches(untrusted_header, untrusted_body))
    return MakeError(ErrorKind::kMalformed, "body size does not match header");
  if (untrusted_header.untrusted_type != static_cast<uint32_t>(request_type))
    return MakeError(ErrorKind::kMalformed, "daemon reply of an unexpected type");
  if (untrusted_body.size() != kExecParamsSize)
    return MakeError(ErrorKind::kMalformed, "daemon reply of a bad length");
  return ReadExecParams(untrusted_body);
}

Decoded<Trigger> DecodeTriggerSocketRequest(const Header& untrusted_header,
                                            std::span<const std::byte> untrusted_body) {
  if (!BodyMatches(untrusted_header, untrusted_body))
    return Fatal("body size does not match header");
  if (untrusted_header.untrusted_type != static_cast<uint32_t>(MsgType::kTriggerService4))
    return Fatal("trigger socket: unexpected message type");
  return DecodeTriggerV34(MsgType::kTriggerService4, untrusted_body, false);
}

Result<size_t> ForkServerCommandLength(std::span<const std::byte, kCmdInfoSize> untrusted_header) {
  uint32_t len = LoadU32(untrusted_header.data() + 12);
  if (len < 2 || len > kMaxForkServerCommand)
    return MakeError(ErrorKind::kMalformed, "fork-server request: bad command length");
  return size_t{len};
}

Decoded<CmdInfo> DecodeForkServerRequest(std::span<const std::byte> untrusted_bytes) {
  if (untrusted_bytes.size() < kCmdInfoSize) return Fatal("fork-server request: truncated");
  auto len = ForkServerCommandLength(untrusted_bytes.first<kCmdInfoSize>());
  if (!len) return Fatal(len.error().message);
  if (untrusted_bytes.size() - kCmdInfoSize != *len)
    return Fatal("fork-server request: size mismatch");
  uint32_t type = LoadU32(untrusted_bytes.data());
  if (type != static_cast<uint32_t>(MsgType::kExecCmdline) &&
      type != static_cast<uint32_t>(MsgType::kJustExec))
    return Fatal("fork-server request: bad type");
  auto command = TerminatedTail(untrusted_bytes.subspan(kCmdInfoSize));
  if (!command || command->empty()) return Fatal("fork-server request: bad command");
  return CmdInfo{static_cast<ExecType>(type), LoadU32(untrusted_bytes.data() + 4),
                 LoadU32(untrusted_bytes.data() + 8), std::string(*command)};
}

Result<Hello> DecodeHello(const Header& untrusted_header,
                          std::span<const std::byte> untrusted_body) {
  if (!BodyMatches(untrusted_header, untrusted_body))
    return MakeError(ErrorKind::kMalformed, "body size does not match header");
  if (untrusted_header.untrusted_type != static_cast<uint32_t>(MsgType::kHello))
    return MakeError(ErrorKind::kMalformed, "expected MSG_HELLO");
  if (untrusted_body.size() != kPeerInfoSize)
    return MakeError(ErrorKind::kMalformed, "MSG_HELLO: bad length");
  return Hello{LoadU32(untrusted_body.data())};
}

ExecParams DecodeExecParams(std::span<const std::byte, kExecParamsSize> untrusted_bytes) {
  return ReadExecParams(untrusted_bytes);
}

}  // namespace qrexec::proto
