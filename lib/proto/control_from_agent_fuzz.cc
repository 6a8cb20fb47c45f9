// The daemon's decoder of agent control messages. First byte: protocol
// version (2, 3 or 4); the rest: header + body.
#include <variant>

#include "proto/fuzz_util.h"
#include "proto/messages.h"

using namespace qrexec::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 + kHeaderSize) return 0;
  const uint32_t version = 2 + data[0] % 3;
  std::span<const std::byte> body;
  Header header = fuzz::SplitHeader(fuzz::AsSpan(data + 1, size - 1), &body);
  auto decoded = DecodeControlFromAgent(header, body, version);
  if (!decoded) {
    // A refusal only comes from a well-framed trigger.
    if (decoded.error().kind == FailureKind::kRefuse)
      fuzz::Require(body.size() == header.untrusted_len);
    return 0;
  }
  if (const auto* trigger = std::get_if<Trigger>(&*decoded)) {
    // Decoded values are fixed points: re-encoding and decoding gives them back.
    auto frame = EncodeTrigger(*trigger);
    fuzz::Require(frame.has_value());
    std::span<const std::byte> again_body;
    Header again = fuzz::SplitHeader(*frame, &again_body);
    auto back = DecodeControlFromAgent(again, again_body, version);
    fuzz::Require(back.has_value() && std::get<Trigger>(*back) == *trigger);
  } else {
    const auto& ct = std::get<ConnectionTerminated>(*decoded);
    fuzz::Require(ct.connect_port >= 513 && ct.connect_port <= 768);
  }
  return 0;
}
