// The local side of a stream (engine.h): the sources whose data goes out on
// the vchan and the sinks that take what arrives.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "base/check.h"
#include "base/log.h"
#include "base/sys.h"
#include "stream/engine.h"

namespace qrexec::stream::internal {

Status Engine::OpenSink(size_t index, UniqueFd owned, int raw, bool filter) {
  Sink& sink = sinks_[index];
  sink.filter = filter;
  if (raw < 0) return Ok();  // stays closed: data is dropped
  sink.local.owned = std::move(owned);
  if (auto adopted = sink.local.Adopt(raw); !adopted) return adopted;
  auto watch = loop_.WatchFd(raw, event::Interest::None(),
                             [this, index](event::Ready ready) { OnSink(index, ready); });
  if (!watch) return tl::unexpected(watch.error());
  sink.watch = std::move(*watch);
  sink.closed = false;
  return Ok();
}

Status Engine::OpenSource(size_t index, UniqueFd owned, proto::MsgType type) {
  Source& source = sources_[index];
  source.type = type;
  if (!owned.valid()) return Ok();  // stays at EOF; OnHello sends the EOF
  int raw = owned.get();
  source.local.owned = std::move(owned);
  if (auto adopted = source.local.Adopt(raw); !adopted) return adopted;
  auto watch =
      loop_.WatchFd(raw, event::Interest::None(), [this, index](event::Ready) { OnSource(index); });
  if (!watch) return tl::unexpected(watch.error());
  source.watch = std::move(*watch);
  source.eof = false;
  return Ok();
}

// --- local sources ---

void Engine::OnSource(size_t index) {
  Source& source = sources_[index];
  if (source.eof || !decoder_.hello_done() || tx_.size() >= limit_ || vchan_write_dead_) {
    return Update();
  }
  size_t chunk = decoder_.max_chunk();
  auto space = tx_.Reserve(proto::kHeaderSize + chunk);
  ssize_t n;
  do {
    n = ::read(source.local.fd, space.data() + proto::kHeaderSize, chunk);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    if (role_ == Role::kService && index == 1)
      CopyStderr(space.subspan(proto::kHeaderSize, static_cast<size_t>(n)));
    proto::EncodeHeader(space.first<proto::kHeaderSize>(), source.type, static_cast<uint32_t>(n));
    tx_.Commit(proto::kHeaderSize + chunk, proto::kHeaderSize + static_cast<size_t>(n));
    NoteBuffered();
  } else {
    tx_.Commit(proto::kHeaderSize + chunk, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Update();
    if (n < 0) LOG_DEBUG("local read failed, treating as EOF: {}", std::strerror(errno));
    SourceEof(index);
  }
  FlushVchan();
  Update();
}

void Engine::CopyStderr(std::span<const std::byte> data) {
  if (open_stderr_copy_) {
    stderr_copy_ = std::exchange(open_stderr_copy_, nullptr)();
    if (stderr_copy_.valid() && !sys::SetNonBlocking(stderr_copy_.get(), true))
      stderr_copy_.reset();
  }
  if (!stderr_copy_.valid()) return;
  ssize_t n;
  do {
    n = ::write(stderr_copy_.get(), data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) {
    stderr_copy_.reset();  // the logger is gone (EPIPE): no more copies
    return;
  }
  if (static_cast<size_t>(std::max<ssize_t>(n, 0)) < data.size() && !stderr_copy_dropped_) {
    stderr_copy_dropped_ = true;
    LOG_WARNING("the syslog copy of the service's stderr fell behind; dropping what does not fit");
  }
}

void Engine::SourceEof(size_t index) {
  StopSource(index);
  Queue(sources_[index].type, {});
  if (role_ == Role::kCaller) {
    stdin_eof_sent_ = true;
  } else if (index == 0) {
    stdout_eof_sent_ = true;
    if (exit_on_service_eof_) CloseSink(0, /*discard=*/true);
  } else {
    stderr_eof_sent_ = true;
  }
}

void Engine::StopSource(size_t index) {
  Source& source = sources_[index];
  source.eof = true;
  source.watch.Reset();
  source.local.Close();
}

// --- local sinks ---

void Engine::OnSink(size_t index, event::Ready ready) {
  if (role_ == Role::kService && index == 0 && (ready.hangup || ready.error)) {
    ServiceInputGone();
  } else {
    WriteSink(index);
  }
  // Room in a sink may unblock a stalled message.
  if (rx_stalled_) ProcessRx();
  if (finished_) return;
  FlushVchan();
  Update();
}

namespace {

// One non-blocking write to a local fd (send() without SIGPIPE for sockets),
// retried on EINTR; -1 with errno otherwise.
ssize_t WriteLocal(const LocalFd& local, std::span<const std::byte> data) {
  ssize_t n;
  do {
    n = local.is_socket ? ::send(local.fd, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL)
                        : ::write(local.fd, data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  return n;
}

}  // namespace

size_t Engine::TryWriteDirect(const Sink& sink, std::span<const std::byte> data) {
  ssize_t n = WriteLocal(sink.local, data);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

void Engine::WriteSink(size_t index) {
  Sink& sink = sinks_[index];
  if (sink.closed) return;
  while (!sink.buf.empty()) {
    ssize_t n = WriteLocal(sink.local, sink.buf.data());
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      LOG_DEBUG("local write failed, dropping further output: {}", std::strerror(errno));
      return CloseSink(index, /*discard=*/true);
    }
    sink.buf.Consume(static_cast<size_t>(n));
  }
  if (sink.eof_pending) CloseSink(index, /*discard=*/false);
}

void Engine::ServiceInputGone() {
  if (sinks_[0].closed) return;
  LOG_DEBUG("the service no longer takes input; dropping the rest of it");
  CloseSink(0, /*discard=*/true);
  if (exit_on_client_eof_) EndServiceOutput();
}

void Engine::CloseSink(size_t index, bool discard) {
  Sink& sink = sinks_[index];
  if (discard) sink.buf.Release();
  if (sink.closed) return;
  QREXEC_CHECK(sink.buf.empty());
  sink.closed = true;
  sink.watch.Reset();
  if (sink.local.is_socket && sink.shutdown_on_close) ::shutdown(sink.local.fd, SHUT_WR);
  sink.local.Close();
  sink.buf.Release();
}

}  // namespace qrexec::stream::internal
