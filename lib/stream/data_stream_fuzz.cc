// Fuzzes the receive side of a data stream: byte 0 selects the role and our
// own hello version, the rest is what the peer sent, delivered in pieces
// whose sizes come from byte 1 (to exercise partial headers and payloads).
// Every event must be consistent with the role's direction rules; nothing
// may crash or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <span>

#include "base/check.h"
#include "stream/decoder.h"

namespace qs = qrexec::stream;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  qs::Role role = (data[0] & 1) != 0 ? qs::Role::kService : qs::Role::kCaller;
  uint32_t own_version = static_cast<uint32_t>((data[0] >> 1) & 7);  // 0..7
  size_t piece = data[1] == 0 ? SIZE_MAX : data[1];
  auto input = std::as_bytes(std::span<const uint8_t>(data + 2, size - 2));

  qs::InboundDecoder decoder(role, own_version);
  // Simulates the engine's receive buffer: bytes arrive `piece` at a time.
  size_t available = 0;
  size_t start = 0;
  while (start < input.size()) {
    available = std::min(input.size(), available + piece);
    for (;;) {
      size_t consumed = 0;
      auto event = decoder.Next(input.subspan(start, available - start), &consumed);
      if (!event) return 0;  // fatal for the stream: fine
      if (!*event) break;
      QREXEC_CHECK(consumed > 0 && consumed <= available - start);
      const auto& e = **event;
      QREXEC_CHECK(e.data.size() <= decoder.max_chunk());
      if (e.kind == qs::InboundEvent::Kind::kData || e.kind == qs::InboundEvent::Kind::kEof) {
        QREXEC_CHECK((e.channel == qs::Channel::kStdin) == (role == qs::Role::kService));
      }
      if (e.kind == qs::InboundEvent::Kind::kExitCode) QREXEC_CHECK(role == qs::Role::kCaller);
      if (e.kind == qs::InboundEvent::Kind::kHello) {
        QREXEC_CHECK(e.version >= 2 && e.version <= own_version);
      }
      start += consumed;
    }
    if (available == input.size()) break;
  }
  return 0;
}
