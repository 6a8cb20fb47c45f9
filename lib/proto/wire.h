// Raw wire facts of the qrexec protocol (qrexec-protocol.md §2.2-2.4): message
// type numbers, the 8-byte header, and the fixed layouts of message bodies.
//
// Every integer is a little-endian uint32/int32 (Qubes runs on x86-64 and uses
// host order; we encode explicitly so the code is right everywhere). Nothing
// in this header validates anything: decoding into trusted typed values is
// messages.h's job.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace qrexec::proto {

enum class MsgType : uint32_t {
  kDataStdin = 0x190,
  kDataStdout = 0x191,
  kDataStderr = 0x192,
  kDataExitCode = 0x193,
  kExecCmdline = 0x200,
  kJustExec = 0x201,
  kServiceConnect = 0x202,
  kServiceRefused = 0x203,
  kTriggerService = 0x210,  // protocol 2
  kConnectionTerminated = 0x211,
  kTriggerService3 = 0x212,  // protocol 3
  kTriggerService4 = 0x213,  // protocol 4
  kHello = 0x300,
};

inline constexpr uint32_t kProtocolVersion = 4;        // QREXEC_PROTOCOL_VERSION (R4.3+)
inline constexpr uint32_t kClientProtocolVersion = 3;  // daemon client socket
inline constexpr uint32_t kMinProtocolVersion = 2;

inline constexpr size_t kHeaderSize = 8;
inline constexpr size_t kExecParamsSize = 8;        // connect_domain, connect_port
inline constexpr size_t kServiceParamsSize = 32;    // ident
inline constexpr size_t kTriggerParams2Size = 128;  // name[64] target[32] id[32]
inline constexpr size_t kTriggerParams3Size = 96;   // target[64] id[32] + name
inline constexpr size_t kTriggerParams4Size = 160;  // source[64] target[64] id[32] + name
inline constexpr size_t kPeerInfoSize = 4;
inline constexpr size_t kCmdInfoSize = 16;  // fork-server request header

inline uint32_t LoadU32(const std::byte* p) {
  uint8_t b[4];
  std::memcpy(b, p, 4);
  return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
}

inline void StoreU32(std::byte* p, uint32_t v) {
  uint8_t b[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8),
                  static_cast<uint8_t>(v >> 16), static_cast<uint8_t>(v >> 24)};
  std::memcpy(p, b, 4);
}

// The common 8-byte header. `type` stays a raw number until a decoder has
// checked it against what the channel and protocol version allow.
struct Header {
  uint32_t untrusted_type = 0;
  uint32_t untrusted_len = 0;

  static Header Decode(std::span<const std::byte, kHeaderSize> bytes) {
    return Header{LoadU32(bytes.data()), LoadU32(bytes.data() + 4)};
  }
};

inline void EncodeHeader(std::span<std::byte, kHeaderSize> out, MsgType type, uint32_t len) {
  StoreU32(out.data(), static_cast<uint32_t>(type));
  StoreU32(out.data() + 4, len);
}

}  // namespace qrexec::proto
