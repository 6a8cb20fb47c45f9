// The receive side of a data stream as pure functions over byte spans (no
// I/O), so that it can be unit-tested and fuzzed (style.md habit 5).
//
// InboundDecoder turns the peer's raw bytes into typed events for one role:
// first the peer's HELLO, then data messages, each checked against the
// negotiated maximum chunk size and the role's direction rules (§2.7):
//
//   caller  <- STDOUT: data / EOF (len 0) for the local stdout
//           <- STDERR: data for the local stderr (len 0 means nothing)
//           <- EXIT_CODE: the remote status (len < 4 -> 255; first 4 bytes)
//           <- STDIN (wrong direction): logged once, then treated as STDOUT
//   service <- STDIN: data / EOF (len 0) for the child's stdin
//           <- STDOUT (wrong direction): logged once, treated as STDIN
//           <- STDERR, EXIT_CODE (wrong direction): logged, ignored
//   both    <- any other type, or len > max chunk: kMalformed (fatal)
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "base/result.h"
#include "proto/wire.h"
#include "stream/stream.h"

namespace qrexec::stream {

// 4096 for protocol 2, 65536 for 3 and later.
size_t MaxChunkForVersion(uint32_t version);

// min(own, peer); kMalformed when below proto::kMinProtocolVersion.
Result<uint32_t> NegotiateVersion(uint32_t own_version, uint32_t untrusted_peer_version);

// One complete message at the front of a buffer: its (still unvalidated
// against the role) type, its payload, and the bytes it occupies.
struct RawFrame {
  uint32_t untrusted_type = 0;
  std::span<const std::byte> payload;
  size_t consumed = 0;
};

// Decodes one frame from the front of `untrusted`. nullopt: more bytes are
// needed (the header is checked first, so a length above `max_payload` fails
// before any payload arrives).
Result<std::optional<RawFrame>> DecodeFrame(std::span<const std::byte> untrusted,
                                            size_t max_payload);

// Where received data goes.
enum class Channel { kStdin, kStdout, kStderr };

struct InboundEvent {
  enum class Kind {
    kHello,     // the peer's hello; `version` holds the negotiated version
    kData,      // `data` for `channel` (non-empty, or empty STDERR)
    kEof,       // zero-length STDIN/STDOUT: end of `channel`
    kExitCode,  // `exit_code` holds the remote status
    kIgnored,   // a wrong-direction message the role drops
  };
  Kind kind = Kind::kIgnored;
  Channel channel = Channel::kStdout;
  std::span<const std::byte> data;  // points into the decoder's input
  int exit_code = 0;
  uint32_t version = 0;
  bool wrong_direction = false;  // worth one error log
};

class InboundDecoder {
 public:
  // `negotiated_version` set: the hello already happened elsewhere.
  InboundDecoder(Role role, uint32_t own_version,
                 std::optional<uint32_t> negotiated_version = std::nullopt);

  // Decodes the next event from the front of `untrusted`; on success
  // `*consumed` says how many bytes it used (0 with nullopt: need more).
  // Errors are fatal for the stream (kMalformed).
  Result<std::optional<InboundEvent>> Next(std::span<const std::byte> untrusted,
                                           size_t* consumed);

  bool hello_done() const { return version_ != 0; }
  uint32_t version() const { return version_; }
  size_t max_chunk() const { return MaxChunkForVersion(version_); }

 private:
  Result<InboundEvent> Classify(const RawFrame& frame);

  Role role_;
  uint32_t own_version_;
  uint32_t version_ = 0;
};

}  // namespace qrexec::stream
