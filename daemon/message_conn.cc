#include "daemon/message_conn.h"

#include <cerrno>

#include "base/log.h"
#include "base/sys.h"

namespace qrexec::daemon {

namespace {
constexpr size_t kKeptQueueCapacity = 16 * 1024;
// On the stack: every page the kernel writes into stays in the process's
// RSS for good, so a burst that fills a large buffer once leaves its mark.
// Frames longer than this are assembled over several reads.
constexpr size_t kReadChunk = 16 * 1024;
}  // namespace

Result<std::unique_ptr<MessageConn>> MessageConn::Create(event::Loop& loop, UniqueFd fd,
                                                         size_t max_body, Handlers handlers) {
  if (auto st = sys::SetNonBlocking(fd.get(), true); !st) return tl::unexpected(st.error());
  std::unique_ptr<MessageConn> conn(new MessageConn(std::move(fd), max_body, std::move(handlers)));
  MessageConn* raw = conn.get();
  auto watch = loop.WatchFd(raw->fd_.get(), event::Interest::Read(),
                            [raw](event::Ready ready) { raw->OnReady(ready); });
  if (!watch) return tl::unexpected(watch.error());
  raw->watch_ = std::move(*watch);
  auto timer = loop.AddTimer([raw] { raw->Close(raw->pending_error_); });
  if (!timer) return tl::unexpected(timer.error());
  raw->deferred_close_ = std::move(*timer);
  return conn;
}

MessageConn::MessageConn(UniqueFd fd, size_t max_body, Handlers handlers)
    : fd_(std::move(fd)), reader_(max_body), handlers_(std::move(handlers)) {}

MessageConn::~MessageConn() { *alive_ = false; }

void MessageConn::Send(std::span<const std::byte> frame) {
  if (closed_) return;
  if (queued_bytes() + frame.size() > kMaxQueued) {
    Fail(MakeError(ErrorKind::kOverloaded, "send queue full"));
    return;
  }
  out_.append(reinterpret_cast<const char*>(frame.data()), frame.size());
  FlushOut();
  UpdateInterest();
}

void MessageConn::OnReady(event::Ready ready) {
  if (closed_) return;
  if (ready.writable || ready.error) {
    FlushOut();
    if (closed_) return;
  }
  if (ready.readable || ready.hangup || ready.error) {
    if (!ReadAvailable()) return;
  }
  UpdateInterest();
}

// Reads what is there, then dispatches complete frames one by one, stopping
// as soon as a handler destroyed us or closed us.
bool MessageConn::ReadAvailable() {
  std::byte buf[kReadChunk];
  auto alive = alive_;
  auto got = sys::ReadSome(fd_.get(), buf);
  if (!got) {
    if (got.error().sys_errno == EAGAIN) return true;
    Close(tl::unexpected(got.error()));
    return false;
  }
  if (*got == 0) {
    Status end = reader_.Finish();
    Close(end ? Status() : end);
    return false;
  }
  if (auto st = reader_.Push(std::span(buf, *got)); !st) {
    Close(st);
    return false;
  }
  while (*alive && !closed_) {
    auto message = reader_.Pop();
    if (!message) break;
    handlers_.on_message(std::move(*message));
  }
  return *alive && !closed_;
}

void MessageConn::FlushOut() {
  while (out_pos_ < out_.size() && !closed_) {
    auto bytes = std::as_bytes(std::span(out_.data() + out_pos_, out_.size() - out_pos_));
    auto wrote = sys::WriteSome(fd_.get(), bytes);
    if (!wrote) {
      if (wrote.error().sys_errno != EAGAIN) Fail(tl::unexpected(wrote.error()));
      return;
    }
    out_pos_ += *wrote;
  }
  if (out_pos_ == out_.size()) {
    // A burst (1,000 calls answered at once) may have grown the queue; give
    // that memory back once it drained instead of keeping the high-water mark.
    if (out_.capacity() > kKeptQueueCapacity) std::string().swap(out_);
    out_.clear();
    out_pos_ = 0;
  }
}

void MessageConn::UpdateInterest() {
  if (closed_ || !watch_.active()) return;
  (void)watch_.SetInterest(event::Interest{true, queued_bytes() > 0});
}

void MessageConn::Fail(Status status) {
  if (closed_ || !pending_error_) return;
  pending_error_ = std::move(status);
  (void)deferred_close_.Arm(std::chrono::nanoseconds(0));
}

void MessageConn::Close(Status status) {
  if (closed_) return;
  closed_ = true;
  watch_.Reset();
  deferred_close_.Reset();
  auto on_close = std::move(handlers_.on_close);  // the handler may destroy *this
  if (on_close) on_close(std::move(status));
}

}  // namespace qrexec::daemon
