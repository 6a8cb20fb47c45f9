// FrameReader and the blocking message helpers of framing.h.
#include "proto/framing.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/check.h"

namespace qrexec::proto {

Status FrameReader::Push(std::span<const std::byte> bytes) {
  if (failed_) return MakeError(ErrorKind::kMalformed, "frame reader already failed");
  while (!bytes.empty()) {
    if (header_fill_ < kHeaderSize) {
      size_t take = std::min(kHeaderSize - header_fill_, bytes.size());
      std::memcpy(header_buf_ + header_fill_, bytes.data(), take);
      header_fill_ += take;
      bytes = bytes.subspan(take);
      if (header_fill_ < kHeaderSize) break;
      current_.header = Header::Decode(header_buf_);
      if (current_.header.untrusted_len > max_body_) {
        failed_ = true;
        return MakeError(ErrorKind::kMalformed, "message length above the channel limit");
      }
      current_.body.clear();
      current_.body.reserve(current_.header.untrusted_len);
    }
    size_t want = current_.header.untrusted_len - current_.body.size();
    size_t take = std::min(want, bytes.size());
    current_.body.insert(current_.body.end(), bytes.begin(),
                         bytes.begin() + static_cast<std::ptrdiff_t>(take));
    bytes = bytes.subspan(take);
    if (current_.body.size() == current_.header.untrusted_len) {
      ready_.push_back(std::move(current_));
      current_ = Message{};
      header_fill_ = 0;
    }
  }
  return Ok();
}

std::optional<Message> FrameReader::Pop() {
  if (ready_.empty()) return std::nullopt;
  Message message = std::move(ready_.front());
  ready_.pop_front();
  return message;
}

Status FrameReader::Finish() const {
  if (failed_) return MakeError(ErrorKind::kMalformed, "frame reader already failed");
  if (in_frame()) return MakeError(ErrorKind::kMalformed, "end of file inside a message");
  return Ok();
}

namespace {

// Reads exactly buf.size() bytes; *got counts what arrived (to tell EOF at a
// boundary from EOF inside a message).
Status ReadFully(int fd, std::span<std::byte> buf, size_t* got, const sys::Deadline& deadline) {
  *got = 0;
  while (*got < buf.size()) {
    // Poll first so that the deadline also holds on a blocking fd.
    if (auto w = sys::WaitReadable(fd, deadline); !w) return w;
    auto n = sys::ReadSome(fd, buf.subspan(*got));
    if (!n) {
      if (n.error().sys_errno != EAGAIN) return tl::unexpected(n.error());
      if (auto w = sys::WaitReadable(fd, deadline); !w) return w;
      continue;
    }
    if (*n == 0) return MakeError(ErrorKind::kDisconnected, "end of file");
    *got += *n;
  }
  return Ok();
}

}  // namespace

Result<Message> ReadMessage(int fd, size_t max_body, const sys::Deadline& deadline) {
  std::byte header_bytes[kHeaderSize];
  size_t got = 0;
  if (auto st = ReadFully(fd, header_bytes, &got, deadline); !st) {
    if (st.error().kind == ErrorKind::kDisconnected && got > 0)
      return MakeError(ErrorKind::kMalformed, "end of file inside a message header");
    return tl::unexpected(st.error());
  }
  Message message;
  message.header = Header::Decode(header_bytes);
  if (message.header.untrusted_len > max_body)
    return MakeError(ErrorKind::kMalformed, "message length above the channel limit");
  message.body.resize(message.header.untrusted_len);
  if (auto st = ReadFully(fd, message.body, &got, deadline); !st) {
    if (st.error().kind == ErrorKind::kDisconnected)
      return MakeError(ErrorKind::kMalformed, "end of file inside a message body");
    return tl::unexpected(st.error());
  }
  return message;
}

Status WriteMessage(int fd, MsgType type, std::span<const std::byte> body,
                    const sys::Deadline& deadline) {
  QREXEC_CHECK(body.size() <= UINT32_MAX);
  Bytes frame(kHeaderSize + body.size());
  EncodeHeader(std::span<std::byte, kHeaderSize>(frame.data(), kHeaderSize), type,
               static_cast<uint32_t>(body.size()));
  if (!body.empty()) std::memcpy(frame.data() + kHeaderSize, body.data(), body.size());
  return sys::WriteAll(fd, frame, deadline);
}

Status WriteFrame(int fd, std::span<const std::byte> frame, const sys::Deadline& deadline) {
  return sys::WriteAll(fd, frame, deadline);
}

}  // namespace qrexec::proto
