// AgentChannel: the daemon's end of its VM's control vchan (port 512;
// qrexec-protocol.md §2.5, §2.6). The daemon is the vchan client.
//
// Connect() blocks (at start-up, and in short slices while the daemon waits
// for a restarted agent): it joins
// the channel, reads the agent's HELLO, negotiates and echoes the agent's own
// version back (R4.3 behaviour). Afterwards everything runs in the loop:
// each frame from the agent is decoded once by proto::DecodeControlFromAgent
// under the negotiated version. A trigger whose request id or service name is
// invalid is answered here with MSG_SERVICE_REFUSED (raw ident echoed); valid
// triggers and MSG_CONNECTION_TERMINATED go to the handlers.
//
// on_closed runs once: Ok when the agent went away (the daemon reconnects),
// kMalformed with the reason when the agent broke the protocol (the daemon
// exits 1, as the reference). The owner may destroy the channel from any
// handler.
#pragma once

#include <functional>
#include <memory>
#include <span>

#include "base/result.h"
#include "base/sys.h"
#include "daemon/message_conn.h"
#include "event/loop.h"
#include "proto/messages.h"
#include "vchan/transport.h"

namespace qrexec::daemon {

class AgentChannel {
 public:
  struct Handlers {
    std::function<void(proto::Trigger)> on_trigger;
    std::function<void(proto::ConnectionTerminated)> on_terminated;
    std::function<void(Status)> on_closed;
  };

  // `connect_deadline` bounds joining the channel (kTimedOut), and
  // `handshake_deadline` the hello exchange after that.
  static Result<std::unique_ptr<AgentChannel>> Connect(event::Loop& loop,
                                                       vchan::Transport& transport, int domid,
                                                       const sys::Deadline& connect_deadline,
                                                       const sys::Deadline& handshake_deadline,
                                                       Handlers handlers);

  // Queues one encoded frame for the agent.
  void Send(std::span<const std::byte> frame) { conn_->Send(frame); }
  uint32_t version() const { return version_; }

 private:
  AgentChannel(uint32_t version, Handlers handlers)
      : version_(version), handlers_(std::move(handlers)) {}
  void OnMessage(proto::Message message);
  void OnClose(Status status);

  uint32_t version_;
  Handlers handlers_;
  std::unique_ptr<MessageConn> conn_;
};

}  // namespace qrexec::daemon
