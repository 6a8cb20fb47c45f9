#include "vchan/broker_wire.h"

#include "proto/wire.h"

namespace qrexec::vchan {

using proto::LoadU32;
using proto::StoreU32;

std::array<std::byte, kBrokerRequestSize> EncodeBrokerRequest(const BrokerRequest& request) {
  std::array<std::byte, kBrokerRequestSize> out{};
  StoreU32(out.data(), kBrokerMagic);
  StoreU32(out.data() + 4, static_cast<uint32_t>(request.op));
  StoreU32(out.data() + 8, request.remote_domain);
  StoreU32(out.data() + 12, request.port);
  return out;
}

Result<BrokerRequest> DecodeBrokerRequest(
    std::span<const std::byte, kBrokerRequestSize> untrusted_bytes) {
  if (LoadU32(untrusted_bytes.data()) != kBrokerMagic)
    return MakeError(ErrorKind::kMalformed, "broker request: bad magic");
  uint32_t op = LoadU32(untrusted_bytes.data() + 4);
  if (op != static_cast<uint32_t>(BrokerOp::kOffer) &&
      op != static_cast<uint32_t>(BrokerOp::kConnect))
    return MakeError(ErrorKind::kMalformed, "broker request: bad op");
  return BrokerRequest{static_cast<BrokerOp>(op), LoadU32(untrusted_bytes.data() + 8),
                       LoadU32(untrusted_bytes.data() + 12)};
}

std::array<std::byte, kBrokerStatusSize> EncodeBrokerStatus(uint32_t status) {
  std::array<std::byte, kBrokerStatusSize> out{};
  StoreU32(out.data(), status);
  return out;
}

uint32_t DecodeBrokerStatus(std::span<const std::byte, kBrokerStatusSize> untrusted_bytes) {
  return LoadU32(untrusted_bytes.data());
}

}  // namespace qrexec::vchan
