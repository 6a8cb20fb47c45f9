// Framing of `msg_header` + body streams (qrexec-protocol.md §2.2).
//
// FrameReader is a pure incremental framer for event-loop code: push whatever
// bytes arrived, pop complete messages. The header's len is checked against
// the channel's maximum as soon as the 8 header bytes are present, BEFORE any
// body byte is buffered, so a peer cannot make us allocate more than
// max_body. It does not look at types: the decoders in messages.h do.
//
// ReadMessage / WriteMessage are blocking helpers on top of base/sys.h for
// processes that own one conversation (they work on blocking or
// non-blocking fds).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"
#include "base/sys.h"
#include "proto/messages.h"
#include "proto/wire.h"

namespace qrexec::proto {

// One complete frame: the raw header and exactly header.untrusted_len bytes.
struct Message {
  Header header;
  Bytes body;
};

class FrameReader {
 public:
  // `max_body`: the largest legal body on this channel (see messages.h
  // kMax*Body constants, or the data-chunk limit on a data channel).
  explicit FrameReader(size_t max_body) : max_body_(max_body) {}

  // Consumes all of `bytes`. kMalformed when a header announces more than
  // max_body; the reader is then failed and every later call fails too.
  Status Push(std::span<const std::byte> bytes);

  // The next complete message, if any (FIFO).
  std::optional<Message> Pop();

  // To call when the peer closed: Ok when no partial message is buffered
  // (EOF at a frame boundary), kMalformed for EOF inside a frame. Complete
  // messages not yet popped do not count as partial.
  Status Finish() const;

  // Changes the limit for headers not yet parsed (e.g. after negotiation).
  void set_max_body(size_t max_body) { max_body_ = max_body; }
  size_t max_body() const { return max_body_; }
  // True between a complete header and the end of its body, or with 1-7
  // header bytes buffered.
  bool in_frame() const { return header_fill_ > 0; }
  bool failed() const { return failed_; }

 private:
  size_t max_body_;
  bool failed_ = false;
  std::byte header_buf_[kHeaderSize] = {};
  size_t header_fill_ = 0;  // 0..8; == 8 while a body is being filled
  Message current_;
  std::deque<Message> ready_;
};

// Blocking: reads one message. EOF before its first byte: kDisconnected;
// EOF inside it: kMalformed; len > max_body: kMalformed (before reading the
// body); the deadline covers the whole message: kTimedOut.
Result<Message> ReadMessage(int fd, size_t max_body,
                            const sys::Deadline& deadline = sys::Deadline::Never());

// Blocking: writes header{type, body.size()} + body (one frame, even for an
// empty body). A body above UINT32_MAX is a CHECK failure.
Status WriteMessage(int fd, MsgType type, std::span<const std::byte> body,
                    const sys::Deadline& deadline = sys::Deadline::Never());
// Blocking: writes pre-encoded bytes (an encoder's output) as they are.
Status WriteFrame(int fd, std::span<const std::byte> frame,
                  const sys::Deadline& deadline = sys::Deadline::Never());

}  // namespace qrexec::proto
