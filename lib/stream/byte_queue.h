// ByteQueue: a FIFO of bytes for the stream engine's buffers. Appends at the
// back (optionally by reading straight into reserved space, so received
// data is copied once), consumes at the front, and compacts lazily (only
// when the live bytes are no more than the consumed prefix, so each byte is
// moved at most once on average).
// Internal to lib/stream.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <span>
#include <memory>

#include "base/check.h"
#include "proto/wire.h"

namespace qrexec::stream::internal {

class ByteQueue {
 public:
  size_t size() const { return tail_ - head_; }
  bool empty() const { return size() == 0; }
  std::span<const std::byte> data() const { return {buf_.get() + head_, size()}; }

  void Append(std::span<const std::byte> bytes) {
    auto space = Reserve(bytes.size());
    if (!bytes.empty()) std::memcpy(space.data(), bytes.data(), bytes.size());
  }
  // Reserves `n` bytes at the back; follow with Commit(n, used) before any
  // other call. The returned span stays valid until then. The bytes are not
  // initialised: a read() fills them (no memset per 64 KiB chunk).
  std::span<std::byte> Reserve(size_t n) {
    MakeRoom(n);
    std::span<std::byte> space(buf_.get() + tail_, n);
    tail_ += n;
    return space;
  }
  void Commit(size_t reserved, size_t used) {
    QREXEC_CHECK(used <= reserved && reserved <= size());
    tail_ -= reserved - used;
  }
  void Consume(size_t n) {
    QREXEC_CHECK(n <= size());
    head_ += n;
    if (head_ == tail_) head_ = tail_ = 0;
  }
  void Clear() { head_ = tail_ = 0; }
  // Frees the memory too (for a direction that is finished).
  void Release() {
    Clear();
    buf_.reset();
    capacity_ = 0;
  }

 private:
  // Ensures `n` free bytes after tail_: slides the live bytes to the front
  // when that makes room, otherwise grows (at least doubling).
  void MakeRoom(size_t n) {
    if (capacity_ - tail_ >= n) return;
    size_t live = size();
    if (head_ > 0 && capacity_ - live >= n && head_ >= live) {
      std::memmove(buf_.get(), buf_.get() + head_, live);
    } else {
      size_t capacity = std::max(capacity_ * 2, live + n);
      auto bigger = std::make_unique_for_overwrite<std::byte[]>(capacity);
      if (live > 0) std::memcpy(bigger.get(), buf_.get() + head_, live);
      buf_ = std::move(bigger);
      capacity_ = capacity;
    }
    head_ = 0;
    tail_ = live;
  }

  std::unique_ptr<std::byte[]> buf_;
  size_t capacity_ = 0;
  size_t head_ = 0;
  size_t tail_ = 0;
};

// Appends header + payload.
inline void AppendMessage(ByteQueue& out, proto::MsgType type,
                          std::span<const std::byte> payload) {
  std::byte header[proto::kHeaderSize];
  proto::EncodeHeader(header, type, static_cast<uint32_t>(payload.size()));
  out.Append(header);
  out.Append(payload);
}

}  // namespace qrexec::stream::internal
