// Fuzzes the qubesd request decoder (server side) and the reply decoder
// (client side): no crash, and a decoded request re-encodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "admin/protocol.h"
#include "base/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  if (auto request = qrexec::admin::DecodeRequest(input)) {
    std::string again = qrexec::admin::EncodeRequest(*request);
    QREXEC_CHECK(again == input);
  }
  if (auto reply = qrexec::admin::DecodeReply(input)) {
    if (reply->ok) QREXEC_CHECK(reply->payload.size() + 2 == input.size());
  }
  return 0;
}
