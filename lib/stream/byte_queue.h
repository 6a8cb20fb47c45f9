// ByteQueue: a FIFO of bytes for the stream engine's buffers. Appends at the
// back (optionally by reading straight into reserved space, so received
// data is copied once), consumes at the front, and compacts lazily.
// Internal to lib/stream.
#pragma once

#include <cstddef>
#include <cstring>
#include <span>
#include <vector>

#include "base/check.h"
#include "proto/wire.h"

namespace qrexec::stream::internal {

class ByteQueue {
 public:
  size_t size() const { return data_.size() - head_; }
  bool empty() const { return size() == 0; }
  std::span<const std::byte> data() const {
    return std::span<const std::byte>(data_).subspan(head_);
  }

  void Append(std::span<const std::byte> bytes) {
    data_.insert(data_.end(), bytes.begin(), bytes.end());
  }
  // Reserves `n` bytes at the back; follow with Commit(n, used) before any
  // other call. The returned span stays valid until then.
  std::span<std::byte> Reserve(size_t n) {
    size_t old = data_.size();
    data_.resize(old + n);
    return std::span<std::byte>(data_).subspan(old, n);
  }
  void Commit(size_t reserved, size_t used) {
    QREXEC_CHECK(used <= reserved && reserved <= data_.size() - head_);
    data_.resize(data_.size() - (reserved - used));
  }
  void Consume(size_t n) {
    QREXEC_CHECK(n <= size());
    head_ += n;
    if (head_ == data_.size()) {
      Clear();
    } else if (head_ >= kCompactThreshold && head_ * 2 >= data_.size()) {
      data_.erase(data_.begin(), data_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  void Clear() {
    data_.clear();
    head_ = 0;
  }
  // Frees the memory too (for a direction that is finished).
  void Release() {
    Clear();
    data_.shrink_to_fit();
  }

 private:
  static constexpr size_t kCompactThreshold = 64 * 1024;
  std::vector<std::byte> data_;
  size_t head_ = 0;
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
