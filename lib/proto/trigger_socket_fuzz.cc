// The agent's decoder of qrexec-client-vm requests: header + body.
#include "proto/fuzz_util.h"
#include "proto/messages.h"

using namespace qrexec::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kHeaderSize) return 0;
  std::span<const std::byte> body;
  Header header = fuzz::SplitHeader(fuzz::AsSpan(data, size), &body);
  auto decoded = DecodeTriggerSocketRequest(header, body);
  if (!decoded) return 0;
  fuzz::Require(decoded->type == MsgType::kTriggerService4 && decoded->request_id.empty());
  fuzz::Require(!decoded->service.empty() && decoded->service.front() != '+');
  // What the agent forwards (with its own id) must pass the daemon's checks.
  Trigger forwarded = *decoded;
  forwarded.request_id = "SOCKET12";
  auto frame = EncodeTrigger(forwarded);
  fuzz::Require(frame.has_value());
  std::span<const std::byte> again_body;
  Header again = fuzz::SplitHeader(*frame, &again_body);
  auto at_daemon = DecodeControlFromAgent(again, again_body, 4);
  fuzz::Require(at_daemon.has_value());
  return 0;
}
