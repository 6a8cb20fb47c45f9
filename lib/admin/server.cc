#include "admin/server.h"

#include <sys/socket.h>

#include <cerrno>

#include "base/escape_filter.h"
#include "base/log.h"
#include "base/sys.h"

namespace qrexec::admin {

Server::Server(event::Loop& loop) : Server(loop, Options{}) {}
Server::Server(event::Loop& loop, Options options) : loop_(loop), options_(options) {}

// The watches and timers unregister themselves with their connections.
Server::~Server() = default;

void Server::Handle(std::string method, Handler handler) {
  handlers_[std::move(method)] = std::move(handler);
}

Status Server::Listen(const std::string& path) {
  auto fd = sys::UnixListen(path, 64, /*nonblocking=*/true);
  if (!fd) return tl::unexpected(fd.error());
  AddListener(std::move(*fd));
  return Ok();
}

void Server::AddListener(UniqueFd listen_fd) {
  int raw = listen_fd.get();
  (void)sys::SetNonBlocking(raw, true);
  auto watch =
      loop_.WatchFd(raw, event::Interest::Read(), [this, raw](event::Ready) { OnAcceptable(raw); });
  if (!watch) {
    LOG_ERROR("admin socket: cannot watch the listening socket: {}", watch.error().ToString());
    return;
  }
  listeners_.emplace_back(std::move(listen_fd), std::move(*watch));
}

void Server::OnAcceptable(int listen_fd) {
  for (int i = 0; i < 64; ++i) {
    auto fd = sys::Accept(listen_fd, /*nonblocking=*/true);
    if (!fd) {
      if (fd.error().kind != ErrorKind::kOverloaded)
        LOG_WARNING("admin socket: accept: {}", fd.error().ToString());
      return;
    }
    if (connections_.size() >= options_.max_connections) {
      LOG_WARNING("admin socket: too many connections, dropping one");
      continue;  // closes it
    }
    uint64_t id = next_connection_++;
    Connection& connection = connections_[id];
    connection.fd = std::move(*fd);
    auto watch = loop_.WatchFd(connection.fd.get(), event::Interest::Read(),
                               [this, id](event::Ready ready) { OnConnectionEvent(id, ready); });
    auto timer = loop_.AddTimer(options_.read_timeout, [this, id] {
      auto it = connections_.find(id);
      if (it == connections_.end()) return;
      if (!it->second.dispatched) {
        LOG_WARNING("admin socket: client did not finish its request in time");
        Close(id);
      }
    });
    if (!watch || !timer) {
      LOG_ERROR("admin socket: cannot watch a connection: {}",
                (!watch ? watch.error() : timer.error()).ToString());
      connections_.erase(id);  // closes it
      continue;
    }
    connection.watch = std::move(*watch);
    connection.timer = std::move(*timer);
  }
}

void Server::OnConnectionEvent(uint64_t id, event::Ready ready) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  Connection& connection = it->second;
  if (!connection.dispatched) {
    char buf[4096];
    auto got = sys::ReadSome(connection.fd.get(), std::as_writable_bytes(std::span(buf)));
    if (!got) {
      if (got.error().sys_errno == EAGAIN) return;
      Close(id);
      return;
    }
    if (*got == 0) {
      Dispatch(id);
      return;
    }
    connection.input.append(buf, *got);
    if (connection.input.size() > kMaxRequestSize) {
      LOG_WARNING("admin socket: request longer than {} bytes", kMaxRequestSize);
      Close(id);
    }
    return;
  }
  if (connection.output.empty()) {
    // Waiting for a deferred handler; the client hung up?
    if (ready.hangup || ready.error) Close(id);
    return;
  }
  std::span<const char> rest(connection.output.data() + connection.written,
                             connection.output.size() - connection.written);
  ssize_t sent = ::send(connection.fd.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
  if (sent < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    Close(id);
    return;
  }
  connection.written += static_cast<size_t>(sent);
  if (connection.written == connection.output.size()) Close(id);
}

void Server::Dispatch(uint64_t id) {
  Connection& connection = connections_.at(id);
  connection.dispatched = true;
  // Only a full hang-up or an error is reported while the handler works.
  if (auto status = connection.watch.SetInterest(event::Interest::HangupOnly()); !status) {
    LOG_ERROR("admin socket: {}", status.error().ToString());
    Close(id);
    return;
  }
  auto request = DecodeRequest(connection.input);
  connection.input.clear();
  if (!request) {
    LOG_WARNING("admin socket: bad request: {}", request.error().ToString());
    SendReply(id, Reply::Exception(std::string(kProtocolError), request.error().message));
    return;
  }
  if (auto cred = sys::GetPeerCred(connection.fd.get())) request->peer_pid = cred->pid;
  auto handler = handlers_.find(request->method);
  if (handler == handlers_.end()) {
    LOG_INFO("admin socket: unknown method {}", SanitizeForLog(request->method));
    SendReply(id, Reply::Exception(std::string(kPermissionDenied), "unknown method"));
    return;
  }
  std::weak_ptr<int> alive = alive_;
  Respond respond = [this, id, alive](Reply reply) {
    if (alive.expired()) return;
    SendReply(id, reply);
  };
  handler->second(*request, std::move(respond));
}

void Server::SendReply(uint64_t id, const Reply& reply) {
  auto it = connections_.find(id);
  if (it == connections_.end() || !it->second.output.empty()) return;
  Connection& connection = it->second;
  connection.output = EncodeReply(reply);
  connection.timer.Reset();
  auto status = connection.watch.SetInterest(event::Interest::Write());
  auto timer = loop_.AddTimer(options_.write_timeout, [this, id] { Close(id); });
  if (!status || !timer) {
    LOG_ERROR("admin socket: {}", (!status ? status.error() : timer.error()).ToString());
    Close(id);
    return;
  }
  connection.timer = std::move(*timer);
}

void Server::Close(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  connections_.erase(it);  // its watch and timer go with it
}

}  // namespace qrexec::admin
