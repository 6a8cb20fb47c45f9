// MessageConn: one non-blocking stream socket carrying msg_header frames,
// driven by the daemon's event loop. Used for the agent control channel, the
// daemon's local clients and the connections to other daemons' sockets.
//
// Incoming bytes go through a proto::FrameReader (length checked before any
// body byte is buffered); each complete frame is handed to on_message. The
// owner decodes it with the right lib/proto decoder. Outgoing frames are
// queued and written as the socket accepts them.
//
// Lifetime: the owner holds the MessageConn in a unique_ptr and may destroy
// it from inside any of its callbacks; no callback runs after destruction.
// on_close runs at most once: Ok for EOF at a frame boundary, an error for a
// broken frame, a read/write failure or an overfull send queue. It is never
// called from inside Send() (a write failure is reported on the next loop
// iteration), so Send() may be called anywhere.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "event/loop.h"
#include "proto/framing.h"

namespace qrexec::daemon {

class MessageConn {
 public:
  struct Handlers {
    std::function<void(proto::Message)> on_message;
    std::function<void(Status)> on_close;
  };

  // Takes `fd` (made non-blocking here). `max_body` bounds incoming frames.
  static Result<std::unique_ptr<MessageConn>> Create(event::Loop& loop, UniqueFd fd,
                                                     size_t max_body, Handlers handlers);
  ~MessageConn();
  MessageConn(const MessageConn&) = delete;
  MessageConn& operator=(const MessageConn&) = delete;

  // Queues one complete frame (an encoder's output).
  void Send(std::span<const std::byte> frame);
  int fd() const { return fd_.get(); }
  size_t queued_bytes() const { return out_.size() - out_pos_; }

  // Bound of the send queue; beyond it the connection is failed.
  static constexpr size_t kMaxQueued = 4u << 20;

 private:
  MessageConn(UniqueFd fd, size_t max_body, Handlers handlers);
  void OnReady(event::Ready ready);
  bool ReadAvailable();  // false once closed or destroyed
  void FlushOut();
  void UpdateInterest();
  void Fail(Status status);
  void Close(Status status);

  UniqueFd fd_;
  proto::FrameReader reader_;
  Handlers handlers_;
  event::FdWatch watch_;
  event::Timer deferred_close_;
  std::string out_;
  size_t out_pos_ = 0;
  bool closed_ = false;
  Status pending_error_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace qrexec::daemon
