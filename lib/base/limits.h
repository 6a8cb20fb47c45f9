// Named limits of the qrexec protocol and of this implementation. Each one is
// enforced where data enters (style.md habit 7); see qrexec-protocol.md §3.
#pragma once

#include <cstddef>
#include <cstdint>

namespace qrexec::limits {

inline constexpr uint32_t kControlPort = 512;          // VCHAN_BASE_PORT
inline constexpr uint32_t kFirstDataPort = 513;        // VCHAN_BASE_DATA_PORT
inline constexpr uint32_t kDataPortCount = 256;
inline constexpr uint32_t kLastDataPort = kFirstDataPort + kDataPortCount - 1;  // 768

inline constexpr size_t kMaxServiceNameLen = 65000;    // service+arg incl. NUL on v3/v4
inline constexpr size_t kMaxServiceNamePartLen = 255;  // NAME before '+' (NAME_MAX)
inline constexpr size_t kMaxCommandBody = 65535;       // MAX_QREXEC_CMD_LEN (client -> daemon)
inline constexpr size_t kMaxDataChunkV2 = 4096;
inline constexpr size_t kMaxDataChunkV3 = 65536;
inline constexpr size_t kMaxPolicyResponse = 4095;
inline constexpr size_t kMaxPolicyRequest = 65536 + 1024;
inline constexpr size_t kMaxQubeNameLen = 31;
inline constexpr size_t kTargetFieldLen = 64;          // v3/v4 target/source fields
inline constexpr size_t kRequestIdLen = 32;

inline constexpr int kMaxClients = 256;                // daemon clients
inline constexpr int kMaxPendingPolicy = 256;          // pending policy requests
inline constexpr int kMaxAgentConnections = 256;
inline constexpr int kMaxWaitingForSession = 256;

// Buffered bytes per direction of a data stream before we stop reading the
// source (back-pressure).
inline constexpr size_t kStreamBufferLimit = 1 << 20;

}  // namespace qrexec::limits
