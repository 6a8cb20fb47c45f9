#include "agent/control_channel.h"

#include <cerrno>

#include "base/limits.h"
#include "base/log.h"
#include "proto/handshake.h"

namespace qrexec::agent {

ControlChannel::ControlChannel(event::Loop& loop, vchan::Transport& transport, Handlers handlers)
    : loop_(loop), transport_(transport), handlers_(std::move(handlers)) {}

ControlChannel::~ControlChannel() = default;

Status ControlChannel::Start() {
  auto pending = transport_.Offer(0, static_cast<int>(limits::kControlPort));
  if (!pending) return tl::unexpected(pending.error());
  pending_ = std::move(*pending);
  auto watch = loop_.WatchFd(pending_->fd(), event::Interest::Read(),
                             [this](event::Ready) { OnOfferReady(); });
  if (!watch) return tl::unexpected(watch.error());
  pending_watch_ = std::move(*watch);
  state_ = State::kOffered;
  return Ok();
}

void ControlChannel::OnOfferReady() {
  auto socket = pending_->Finish(sys::Deadline::After(std::chrono::seconds(5)));
  pending_watch_.Reset();
  pending_.reset();
  if (!socket) {
    // The broker answers an offer nobody joined with ETIMEDOUT after a while
    // (docs/broker-protocol.md): that is not an error, the offer is renewed.
    if (socket.error().sys_errno == ETIMEDOUT)
      LOG_INFO("dom0 did not join the control channel yet; offering it again");
    else
      LOG_ERROR("dom0 did not complete the control connection: {}", socket.error().ToString());
    if (auto restarted = Start(); !restarted) Fail(restarted.error());
    return;
  }
  socket_ = std::move(*socket);
  if (auto status = sys::SetNonBlocking(socket_.get(), true); !status) {
    Fail(status.error());
    return;
  }
  reader_ = proto::FrameReader(proto::kMaxControlFromDaemonBody);
  output_.clear();
  output_offset_ = 0;
  state_ = State::kAwaitingHello;
  auto watch = loop_.WatchFd(socket_.get(), event::Interest::Read(),
                             [this](event::Ready ready) { OnSocketReady(ready); });
  if (!watch) {
    Fail(watch.error());
    return;
  }
  socket_watch_ = std::move(*watch);
  output_.push_back(proto::EncodeHello(proto::kProtocolVersion));
  UpdateInterest();
}

void ControlChannel::OnSocketReady(event::Ready ready) {
  if (ready.writable) {
    FlushOutput();
    if (!socket_.valid()) return;
  }
  if (ready.readable || ready.hangup || ready.error) ReadAvailable();
}

bool ControlChannel::ReadAvailable() {
  std::byte buffer[16384];
  for (;;) {
    auto n = sys::ReadSome(socket_.get(), buffer);
    if (!n) {
      if (n.error().sys_errno == EAGAIN) return true;
      Disconnect("read error");
      return false;
    }
    if (*n == 0) {
      Disconnect("dom0 closed the control channel");
      return false;
    }
    if (auto pushed = reader_.Push(std::span(buffer, *n)); !pushed) {
      Fail(pushed.error());
      return false;
    }
    while (auto message = reader_.Pop()) {
      if (!HandleFrame(std::move(*message))) return false;
    }
  }
}

bool ControlChannel::HandleFrame(proto::Message message) {
  if (state_ == State::kAwaitingHello) {
    auto hello = proto::DecodeHello(message.header, message.body);
    if (!hello) {
      Fail(hello.error());
      return false;
    }
    auto version = proto::NegotiateControlAsAgent(hello->version);
    if (!version) {
      Fail(version.error());
      return false;
    }
    version_ = *version;
    state_ = State::kReady;
    LOG_DEBUG("dom0 connected, protocol version {}", version_);
    if (handlers_.on_connected) handlers_.on_connected();
    return socket_.valid();
  }
  auto decoded = proto::DecodeControlFromDaemon(message.header, message.body, version_);
  if (!decoded) {
    Fail(decoded.error().ToError());
    return false;
  }
  handlers_.on_message(std::move(*decoded));
  return socket_.valid();
}

void ControlChannel::Send(std::span<const std::byte> frame) {
  if (state_ != State::kReady) {
    LOG_DEBUG("no daemon connected; dropping a message");
    return;
  }
  output_.emplace_back(frame.begin(), frame.end());
  UpdateInterest();
}

void ControlChannel::FlushOutput() {
  while (!output_.empty()) {
    auto& front = output_.front();
    auto rest = std::span<const std::byte>(front).subspan(output_offset_);
    auto n = sys::WriteSome(socket_.get(), rest);
    if (!n) {
      if (n.error().sys_errno == EAGAIN) break;
      Disconnect("write error");
      return;
    }
    output_offset_ += *n;
    if (output_offset_ == front.size()) {
      output_.pop_front();
      output_offset_ = 0;
    }
  }
  UpdateInterest();
}

void ControlChannel::UpdateInterest() {
  if (!socket_watch_.active()) return;
  (void)socket_watch_.SetInterest({.read = true, .write = !output_.empty()});
}

void ControlChannel::Disconnect(const char* why) {
  LOG_WARNING("{}; waiting for dom0 to reconnect", why);
  socket_watch_.Reset();
  socket_.reset();
  output_.clear();
  bool was_ready = state_ == State::kReady;
  state_ = State::kOffered;
  if (was_ready && handlers_.on_disconnected) handlers_.on_disconnected();
  if (auto restarted = Start(); !restarted) Fail(restarted.error());
}

void ControlChannel::Fail(const Error& error) {
  socket_watch_.Reset();
  socket_.reset();
  pending_watch_.Reset();
  pending_.reset();
  state_ = State::kOffered;
  handlers_.on_fatal(error);
}

}  // namespace qrexec::agent
