// The broker request wire format (docs/broker-protocol.md), shared by the
// domain side (this library's broker backend) and the host side (lib/host),
// so both encode and check it in one place.
//
// A request is 16 bytes of little-endian uint32s: magic, op, remote_domain,
// port. The answer is a 4-byte little-endian status (0 = ok, else an errno
// value) and, on success, one descriptor in SCM_RIGHTS sent with it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "base/result.h"

namespace qrexec::vchan {

inline constexpr uint32_t kBrokerMagic = 0x51425231;  // "QBR1"
inline constexpr size_t kBrokerRequestSize = 16;
inline constexpr size_t kBrokerStatusSize = 4;

enum class BrokerOp : uint32_t {
  kOffer = 1,    // vchan server
  kConnect = 2,  // vchan client
};

struct BrokerRequest {
  BrokerOp op = BrokerOp::kOffer;
  uint32_t remote_domain = 0;
  uint32_t port = 0;
  bool operator==(const BrokerRequest&) const = default;
};

std::array<std::byte, kBrokerRequestSize> EncodeBrokerRequest(const BrokerRequest& request);
// kMalformed for a bad magic or op. Does not check the domain or port
// (policy of the host).
Result<BrokerRequest> DecodeBrokerRequest(
    std::span<const std::byte, kBrokerRequestSize> untrusted_bytes);

std::array<std::byte, kBrokerStatusSize> EncodeBrokerStatus(uint32_t status);
uint32_t DecodeBrokerStatus(std::span<const std::byte, kBrokerStatusSize> untrusted_bytes);

}  // namespace qrexec::vchan
