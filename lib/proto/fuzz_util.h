// Shared bits of the libFuzzer targets of this folder.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "proto/wire.h"

namespace qrexec::proto::fuzz {

// A broken invariant: make libFuzzer report it.
inline void Require(bool cond) {
  if (!cond) std::abort();
}

inline std::span<const std::byte> AsSpan(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const std::byte*>(data), size};
}

// Splits header + body as a framer would hand them over; the body is what
// remains (its size may differ from the header's len: decoders must cope).
inline Header SplitHeader(std::span<const std::byte> in, std::span<const std::byte>* body) {
  *body = in.subspan(kHeaderSize);
  return Header::Decode(in.first<kHeaderSize>());
}

}  // namespace qrexec::proto::fuzz
