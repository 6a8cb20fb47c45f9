#include "agent/trigger_server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "base/check.h"
#include "base/log.h"

namespace qrexec::agent {

struct TriggerServer::Client {
  // kAbandoned: the client left while dom0 was still deciding. Its fd (and
  // so its "SOCKET<fd>" id) stays reserved until dom0 answers, so that the
  // answer cannot reach a later client that got the same fd number.
  enum class State { kReading, kWaiting, kAbandoned, kConnected };
  UniqueFd fd;
  event::FdWatch watch;
  uint64_t serial = 0;
  State state = State::kReading;
  proto::FrameReader reader{proto::kMaxTriggerSocketBody};
  proto::ExecParams params;  // kConnected only
};

std::string SocketIdent(int fd) { return "SOCKET" + std::to_string(fd); }

std::optional<int> ParseSocketIdent(std::string_view ident) {
  constexpr std::string_view kPrefix = "SOCKET";
  if (ident.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  auto digits = ident.substr(kPrefix.size());
  if (digits.empty() || digits.size() > 9 || (digits.size() > 1 && digits[0] == '0'))
    return std::nullopt;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  int fd = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), fd);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return fd;
}

TriggerServer::TriggerServer(event::Loop& loop, ConnectionBudget& budget,
                             std::chrono::milliseconds request_timeout, Handlers handlers)
    : loop_(loop), budget_(budget), request_timeout_(request_timeout), handlers_(std::move(handlers)) {}

TriggerServer::~TriggerServer() {
  // Client watches go before their fds (member order inside Client does it).
  clients_.clear();
  if (listener_.valid()) ::unlink(path_.c_str());
}

Status TriggerServer::Listen(const std::string& path) {
  mode_t old_mask = ::umask(0);
  auto listener = sys::UnixListen(path, 64, /*nonblocking=*/true);
  ::umask(old_mask);
  if (!listener) return tl::unexpected(listener.error());
  listener_ = std::move(*listener);
  path_ = path;
  auto watch = loop_.WatchFd(listener_.get(), event::Interest::Read(),
                             [this](event::Ready) { OnAcceptable(); });
  if (!watch) return tl::unexpected(watch.error());
  listener_watch_ = std::move(*watch);
  auto timer = loop_.AddTimer([this] { OnRequestTimer(); });
  if (!timer) return tl::unexpected(timer.error());
  request_timer_ = std::move(*timer);
  return Ok();
}

void TriggerServer::ResumeAccepting() {
  if (listener_watch_.active() && !budget_.full())
    (void)listener_watch_.SetInterest(event::Interest::Read());
}

void TriggerServer::OnAcceptable() {
  while (!budget_.full()) {
    auto accepted = sys::Accept(listener_.get(), /*nonblocking=*/true);
    if (!accepted) {
      if (accepted.error().kind != ErrorKind::kOverloaded)
        LOG_ERROR("accept on the trigger socket: {}", accepted.error().ToString());
      return;
    }
    auto client = std::make_unique<Client>();
    client->fd = std::move(*accepted);
    int fd = client->fd.get();
    auto watch = loop_.WatchFd(fd, event::Interest::Read(),
                               [this, fd](event::Ready ready) { OnClientReady(fd, ready); });
    if (!watch) {
      LOG_ERROR("cannot watch a trigger client: {}", watch.error().ToString());
      continue;
    }
    client->watch = std::move(*watch);
    client->serial = next_serial_++;
    QREXEC_CHECK(budget_.TryAcquire());
    due_.push_back({std::chrono::steady_clock::now() + request_timeout_, fd, client->serial});
    if (due_.size() == 1) ArmRequestTimer();
    clients_[fd] = std::move(client);
  }
  LOG_WARNING("too many connections; not accepting trigger clients for now");
  (void)listener_watch_.SetInterest(event::Interest::None());
}

void TriggerServer::OnClientReady(int fd, event::Ready) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  Client& client = *it->second;
  std::byte buffer[8192];
  auto n = sys::ReadSome(fd, buffer);
  if (!n && n.error().sys_errno == EAGAIN) return;
  if (!n || *n == 0) {
    OnHangup(client);
    return;
  }
  if (client.state != Client::State::kReading) {
    LOG_DEBUG("unexpected data from a trigger client; ignored");
    return;
  }
  if (auto pushed = client.reader.Push(std::span(buffer, *n)); !pushed) {
    LOG_ERROR("invalid request on the trigger socket: {}", pushed.error().ToString());
    Close(fd);
    return;
  }
  if (auto message = client.reader.Pop()) OnRequest(client, std::move(*message));
}

void TriggerServer::OnRequest(Client& client, proto::Message message) {
  int fd = client.fd.get();
  auto decoded = proto::DecodeTriggerSocketRequest(message.header, message.body);
  if (!decoded) {
    LOG_ERROR("invalid request on the trigger socket: {}", decoded.error().reason);
    Close(fd);
    return;
  }
  // Forward the request as received, with only the request id replaced.
  auto ident = proto::MakeRawIdent(SocketIdent(fd));
  constexpr size_t kIdentOffset = 128;
  std::memcpy(message.body.data() + kIdentOffset, ident.data(), ident.size());
  proto::Bytes frame(proto::kHeaderSize);
  proto::EncodeHeader(std::span<std::byte, proto::kHeaderSize>(frame.data(), proto::kHeaderSize),
                      proto::MsgType::kTriggerService4, static_cast<uint32_t>(message.body.size()));
  frame.insert(frame.end(), message.body.begin(), message.body.end());
  if (!handlers_.forward(frame)) {
    LOG_WARNING("no connection to dom0; refusing the request");
    Close(fd);
    return;
  }
  client.state = Client::State::kWaiting;
}

void TriggerServer::OnHangup(Client& client) {
  switch (client.state) {
    case Client::State::kWaiting:
      client.state = Client::State::kAbandoned;
      (void)client.watch.SetInterest(event::Interest::None());
      return;
    case Client::State::kConnected:
      handlers_.on_terminated({client.params.connect_domain, client.params.connect_port});
      break;
    case Client::State::kReading:
    case Client::State::kAbandoned:
      break;
  }
  Close(client.fd.get());
}

TriggerServer::Client* TriggerServer::FindWaiting(std::string_view ident) {
  auto fd = ParseSocketIdent(ident);
  if (!fd) return nullptr;
  auto it = clients_.find(*fd);
  if (it == clients_.end()) return nullptr;
  auto state = it->second->state;
  if (state != Client::State::kWaiting && state != Client::State::kAbandoned) return nullptr;
  return it->second.get();
}

bool TriggerServer::Connect(std::string_view ident, const proto::ExecParams& params, UniqueFd offer) {
  Client* client = FindWaiting(ident);
  if (client == nullptr) return false;
  if (client->state == Client::State::kAbandoned) {
    // Nobody will use the channel: release its port at once.
    handlers_.on_terminated({params.connect_domain, params.connect_port});
    Close(client->fd.get());
    return true;
  }
  auto bytes = proto::EncodeExecParams(params);
  // The 8 bytes fit any socket buffer of a fresh connection, so one
  // sendmsg carries them with the offer.
  auto written = offer.valid()
                     ? sys::SendWithFd(client->fd.get(), bytes, offer.get())
                     : sys::WriteAll(client->fd.get(), bytes, sys::Deadline::After(std::chrono::seconds(5)));
  if (!written) {
    LOG_WARNING("cannot answer a trigger client: {}", written.error().ToString());
    handlers_.on_terminated({params.connect_domain, params.connect_port});
    Close(client->fd.get());
    return true;
  }
  client->state = Client::State::kConnected;
  client->params = params;
  return true;
}

void TriggerServer::Refuse(std::string_view ident) {
  if (Client* client = FindWaiting(ident)) Close(client->fd.get());
}

void TriggerServer::RefuseAllWaiting() {
  std::vector<int> waiting;
  for (auto& [fd, client] : clients_) {
    if (client->state != Client::State::kConnected) waiting.push_back(fd);
  }
  for (int fd : waiting) Close(fd);
}

void TriggerServer::ArmRequestTimer() {
  if (due_.empty()) return;
  auto delay = std::max(due_.front().at - std::chrono::steady_clock::now(),
                        std::chrono::steady_clock::duration::zero());
  if (auto armed = request_timer_.Arm(delay); !armed)
    LOG_ERROR("cannot arm the trigger client timer: {}", armed.error().ToString());
}

void TriggerServer::OnRequestTimer() {
  auto now = std::chrono::steady_clock::now();
  size_t dropped = 0;
  while (!due_.empty() && due_.front().at <= now) {
    Due due = due_.front();
    due_.pop_front();
    auto it = clients_.find(due.fd);
    if (it == clients_.end() || it->second->serial != due.serial) continue;
    if (it->second->state != Client::State::kReading) continue;
    ++dropped;
    Close(due.fd);
  }
  if (dropped > 0) LOG_WARNING("dropped {} trigger clients that sent no request in time", dropped);
  ArmRequestTimer();
}

void TriggerServer::Close(int fd) {
  clients_.erase(fd);
  budget_.Release();
}

}  // namespace qrexec::agent
