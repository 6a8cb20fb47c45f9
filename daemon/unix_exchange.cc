#include "daemon/unix_exchange.h"

#include <sys/socket.h>

#include <cerrno>

#include "base/sys.h"

namespace qrexec::daemon {
namespace {

constexpr int kMaxConnectAttempts = 200;  // x 5 ms: about a second of full backlog
constexpr auto kConnectRetry = std::chrono::milliseconds(5);

}  // namespace

Result<std::unique_ptr<UnixExchange>> UnixExchange::Start(event::Loop& loop, Options options,
                                                          Callback callback) {
  std::unique_ptr<UnixExchange> self(
      new UnixExchange(loop, std::move(options), std::move(callback)));
  UnixExchange* raw = self.get();
  auto timer = loop.AddTimer(std::chrono::nanoseconds(0), [raw] { raw->TryConnect(); });
  if (!timer) return tl::unexpected(timer.error());
  raw->timer_ = std::move(*timer);
  if (raw->options_.timeout) {
    auto deadline = loop.AddTimer(*raw->options_.timeout, [raw] {
      raw->Finish(MakeError(ErrorKind::kTimedOut, "no answer from " + raw->options_.path));
    });
    if (!deadline) return tl::unexpected(deadline.error());
    raw->deadline_ = std::move(*deadline);
  }
  return self;
}

UnixExchange::UnixExchange(event::Loop& loop, Options options, Callback callback)
    : loop_(loop), options_(std::move(options)), callback_(std::move(callback)) {}

void UnixExchange::TryConnect() {
  auto fd = sys::UnixConnect(options_.path, /*nonblocking=*/true);
  if (!fd) {
    if (fd.error().kind == ErrorKind::kOverloaded && ++connect_attempts_ < kMaxConnectAttempts) {
      (void)timer_.Arm(kConnectRetry);
      return;
    }
    Finish(tl::unexpected(fd.error()));
    return;
  }
  fd_ = std::move(*fd);
  auto watch = loop_.WatchFd(fd_.get(), event::Interest::Write(),
                             [this](event::Ready ready) { OnReady(ready); });
  if (!watch) {
    Finish(tl::unexpected(watch.error()));
    return;
  }
  watch_ = std::move(*watch);
}

void UnixExchange::OnReady(event::Ready ready) {
  if (written_ < options_.request.size()) {
    if (ready.writable || ready.error || ready.hangup) WriteSome();
    return;
  }
  if (ready.readable || ready.hangup || ready.error) ReadSome();
}

void UnixExchange::WriteSome() {
  auto rest = std::as_bytes(
      std::span(options_.request.data() + written_, options_.request.size() - written_));
  auto wrote = sys::WriteSome(fd_.get(), rest);
  if (!wrote) {
    if (wrote.error().sys_errno != EAGAIN) Finish(tl::unexpected(wrote.error()));
    return;
  }
  written_ += *wrote;
  if (written_ < options_.request.size()) return;
  if (options_.half_close) ::shutdown(fd_.get(), SHUT_WR);
  (void)watch_.SetInterest(event::Interest::Read());
}

void UnixExchange::ReadSome() {
  char buf[4096];
  auto got = sys::ReadSome(fd_.get(), std::as_writable_bytes(std::span(buf)));
  if (!got) {
    if (got.error().sys_errno != EAGAIN) Finish(tl::unexpected(got.error()));
    return;
  }
  if (*got == 0) {
    Finish(std::move(answer_));
    return;
  }
  answer_.append(buf, *got);
  if (answer_.size() > options_.reply_limit)
    Finish(MakeError(ErrorKind::kOverloaded, "answer too long from " + options_.path));
}

void UnixExchange::Finish(Result<std::string> result) {
  if (done_) return;
  done_ = true;
  watch_.Reset();
  timer_.Reset();
  deadline_.Reset();
  fd_.reset();
  auto callback = std::move(callback_);
  callback(std::move(result));  // may destroy *this: nothing after this line
}

}  // namespace qrexec::daemon
