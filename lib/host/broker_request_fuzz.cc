// Fuzzes the broker request decoder: no crash; what decodes re-encodes to the
// same 16 bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "base/check.h"
#include "host/broker.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto bytes = std::as_bytes(std::span(data, size));
  if (auto request = qrexec::host::DecodeBrokerRequest(bytes)) {
    auto again = qrexec::host::EncodeBrokerRequest(*request);
    QREXEC_CHECK(size == again.size() && std::memcmp(again.data(), data, size) == 0);
  }
  return 0;
}
