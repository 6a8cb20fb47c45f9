// The agent's end of the control vchan (qrexec-protocol.md §2.1, §2.5, §2.6):
// the agent is the vchan server with dom0 (remote 0, port 512) as the peer.
//
// Lifecycle: Start() offers the channel; once dom0 joins, HELLO{4} is sent at
// once and the daemon's hello is awaited. After that every frame is decoded
// with proto::DecodeControlFromDaemon and handed to Handlers::on_message. If
// dom0 goes away (EOF or an I/O error) the channel calls on_disconnected and
// offers itself again. A message that breaks the protocol (bad hello,
// oversized frame, anything DecodeControlFromDaemon rejects) calls on_fatal:
// the agent then exits 1, as the reference does.
//
// Outgoing frames are queued and written when the socket is writable, so a
// slow daemon never blocks the agent's loop. Frames sent while no daemon is
// connected are dropped (the daemon that comes back knows nothing of them).
//
// Runs on the agent's single event loop; callbacks run from that loop and
// may destroy nothing but what they own.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <span>

#include "base/result.h"
#include "base/unique_fd.h"
#include "event/loop.h"
#include "proto/framing.h"
#include "proto/messages.h"
#include "vchan/transport.h"

namespace qrexec::agent {

class ControlChannel {
 public:
  struct Handlers {
    std::function<void()> on_connected;  // hellos exchanged
    std::function<void(proto::DaemonControlMessage)> on_message;
    std::function<void()> on_disconnected;  // dom0 left; already re-offering
    std::function<void(const Error&)> on_fatal;
  };

  // `loop` and `transport` are borrowed and must outlive this object.
  ControlChannel(event::Loop& loop, vchan::Transport& transport, Handlers handlers);
  ~ControlChannel();
  ControlChannel(const ControlChannel&) = delete;
  ControlChannel& operator=(const ControlChannel&) = delete;

  // Offers the channel. Fails when the transport cannot offer it.
  Status Start();

  // True after the daemon's hello arrived, until it disconnects.
  bool connected() const { return state_ == State::kReady; }

  // Queues one complete frame for the daemon; dropped when not connected.
  void Send(std::span<const std::byte> frame);

 private:
  enum class State { kOffered, kAwaitingHello, kReady };

  void OnOfferReady();
  void OnSocketReady(event::Ready ready);
  bool ReadAvailable();  // false when the channel was torn down
  bool HandleFrame(proto::Message message);
  void FlushOutput();
  void UpdateInterest();
  void Disconnect(const char* why);
  void Fail(const Error& error);

  event::Loop& loop_;
  vchan::Transport& transport_;
  Handlers handlers_;
  State state_ = State::kOffered;
  std::unique_ptr<vchan::PendingServer> pending_;
  event::FdWatch pending_watch_;
  UniqueFd socket_;
  event::FdWatch socket_watch_;
  proto::FrameReader reader_{proto::kMaxControlFromDaemonBody};
  std::deque<proto::Bytes> output_;
  size_t output_offset_ = 0;  // bytes of output_.front() already written
  uint32_t version_ = 0;
};

}  // namespace qrexec::agent
