// The daemon's decoder of client-socket requests, and the client's decoder
// of the daemon's reply: header + body.
#include <variant>

#include "proto/fuzz_util.h"
#include "proto/messages.h"

using namespace qrexec::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kHeaderSize) return 0;
  std::span<const std::byte> body;
  Header header = fuzz::SplitHeader(fuzz::AsSpan(data, size), &body);
  auto reply = DecodeClientReply(header, body, static_cast<MsgType>(header.untrusted_type));
  if (reply) fuzz::Require(body.size() == kExecParamsSize);
  auto decoded = DecodeClientRequest(header, body);
  if (!decoded) {
    fuzz::Require(decoded.error().kind == FailureKind::kFatal);
    return 0;
  }
  fuzz::Require(body.size() > kExecParamsSize && body.size() <= kMaxClientRequestBody);
  if (const auto* exec = std::get_if<ExecRequest>(&*decoded)) {
    auto frame = EncodeExecRequest(*exec);
    fuzz::Require(frame.has_value() && frame->size() == size);
  }
  return 0;
}
