// The fork server's decoder of agent requests (qrexec_cmd_info + command).
#include "proto/fuzz_util.h"
#include "proto/messages.h"

using namespace qrexec::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto in = fuzz::AsSpan(data, size);
  if (size >= kCmdInfoSize) {
    auto len = ForkServerCommandLength(in.first<kCmdInfoSize>());
    if (len) fuzz::Require(*len >= 2 && *len <= kMaxForkServerCommand);
  }
  auto decoded = DecodeForkServerRequest(in);
  if (!decoded) return 0;
  auto bytes = EncodeCmdInfo(*decoded);
  fuzz::Require(bytes.has_value() && bytes->size() == size &&
                std::equal(bytes->begin(), bytes->end(), in.begin()));
  return 0;
}
