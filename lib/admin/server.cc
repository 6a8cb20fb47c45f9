#include "admin/server.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "base/escape_filter.h"
#include "base/log.h"

namespace qrexec::admin {

Server::Server(PollLoop& loop) : Server(loop, Options{}) {}
Server::Server(PollLoop& loop, Options options) : loop_(loop), options_(options) {}

Server::~Server() {
  for (auto& [fd, watch] : listeners_) loop_.Unwatch(watch);
  for (auto& [id, connection] : connections_) {
    loop_.Unwatch(connection.watch);
    loop_.CancelTimer(connection.timer);
  }
}

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
  PollLoop::Id watch = loop_.Watch(raw, POLLIN, [this, raw](short) { OnAcceptable(raw); });
  listeners_.emplace_back(std::move(listen_fd), watch);
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
    connection.watch = loop_.Watch(connection.fd.get(), POLLIN,
                                   [this, id](short revents) { OnConnectionEvent(id, revents); });
    connection.timer = loop_.After(options_.read_timeout, [this, id] {
      auto it = connections_.find(id);
      if (it == connections_.end()) return;
      it->second.timer = 0;
      if (!it->second.dispatched) {
        LOG_WARNING("admin socket: client did not finish its request in time");
        Close(id);
      }
    });
  }
}

void Server::OnConnectionEvent(uint64_t id, short revents) {
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
    if (revents & (POLLHUP | POLLERR)) Close(id);
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
  loop_.SetEvents(connection.watch, 0);  // POLLHUP/POLLERR still arrive
  auto request = DecodeRequest(connection.input);
  connection.input.clear();
  if (!request) {
    LOG_WARNING("admin socket: bad request: {}", request.error().ToString());
    SendReply(id, Reply::Exception(std::string(kProtocolError), request.error().message));
    return;
  }
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
  loop_.SetEvents(connection.watch, POLLOUT);
  loop_.CancelTimer(connection.timer);
  connection.timer = loop_.After(options_.write_timeout, [this, id] {
    auto found = connections_.find(id);
    if (found == connections_.end()) return;
    found->second.timer = 0;
    Close(id);
  });
}

void Server::Close(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  loop_.Unwatch(it->second.watch);
  if (it->second.timer != 0) loop_.CancelTimer(it->second.timer);
  connections_.erase(it);
}

}  // namespace qrexec::admin
