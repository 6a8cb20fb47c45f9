// The agent's decoder of daemon control messages: header + body.
#include <variant>

#include "proto/fuzz_util.h"
#include "proto/messages.h"

using namespace qrexec::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kHeaderSize) return 0;
  std::span<const std::byte> body;
  Header header = fuzz::SplitHeader(fuzz::AsSpan(data, size), &body);
  auto decoded = DecodeControlFromDaemon(header, body, 4);
  if (!decoded) {
    fuzz::Require(decoded.error().kind == FailureKind::kFatal);
    return 0;
  }
  qrexec::Result<Bytes> frame = MakeError(qrexec::ErrorKind::kInternal, "");
  if (const auto* exec = std::get_if<ExecRequest>(&*decoded)) frame = EncodeExecRequest(*exec);
  if (const auto* connect = std::get_if<ServiceConnect>(&*decoded))
    frame = EncodeServiceConnect(*connect);
  if (const auto* refused = std::get_if<ServiceRefused>(&*decoded))
    frame = EncodeServiceRefused(refused->ident);
  // Valid messages re-encode to exactly the bytes received.
  fuzz::Require(frame.has_value() && frame->size() == size &&
                std::equal(frame->begin(), frame->end(), reinterpret_cast<const std::byte*>(data)));
  return 0;
}
