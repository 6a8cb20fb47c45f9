// MSG_HELLO version negotiation per channel (qrexec-protocol.md §2.5).
//
// Pure helpers decide the negotiated version from the peer's announced one;
// the blocking helpers exchange the hello messages on a connected fd for
// processes that own one conversation (event-loop code uses the pure ones
// with FrameReader). All failures are kMalformed ("peer broke the protocol"
// or "peer too old"), except I/O failures which keep their kind
// (kDisconnected, kTimedOut, kInternal).
#pragma once

#include <cstdint>

#include "base/result.h"
#include "base/sys.h"
#include "proto/wire.h"

namespace qrexec::proto {

// Daemon side of the control vchan: the agent's hello arrived first.
struct ControlHelloReply {
  uint32_t negotiated = 0;     // min(agent, own); decides which trigger types are legal
  uint32_t reply_version = 0;  // what the daemon sends back: the agent's own version (R4.3 quirk)
};
// kMalformed when min(agent_version, own_version) < 2.
Result<ControlHelloReply> NegotiateControlAsDaemon(uint32_t agent_version,
                                                   uint32_t own_version = kProtocolVersion);

// Agent side of the control vchan, and both sides of a data vchan:
// min(own, peer), kMalformed when < 2.
Result<uint32_t> NegotiateControlAsAgent(uint32_t daemon_version,
                                         uint32_t own_version = kProtocolVersion);
Result<uint32_t> NegotiateData(uint32_t peer_version, uint32_t own_version = kProtocolVersion);

// Daemon client socket, either side: the peer must announce >= 3; the result
// is always kClientProtocolVersion (3).
Result<uint32_t> NegotiateClientSocket(uint32_t peer_version);

// Blocking: writes HELLO{version}.
Status SendHello(int fd, uint32_t version, const sys::Deadline& deadline = sys::Deadline::Never());
// Blocking: reads one message and requires it to be a well-formed HELLO
// (type 0x300, len 4). Returns the peer's raw version, not yet negotiated.
Result<uint32_t> ReceiveHello(int fd, const sys::Deadline& deadline = sys::Deadline::Never());

}  // namespace qrexec::proto
