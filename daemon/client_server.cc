#include "daemon/client_server.h"

#include <sys/stat.h>
#include <unistd.h>

#include "base/limits.h"
#include "base/log.h"
#include "base/sys.h"
#include "proto/handshake.h"

namespace qrexec::daemon {
namespace {

// A request body is at most 65535 bytes; the hello is 4.
constexpr size_t kMaxClientBody = proto::kMaxClientRequestBody;

}  // namespace

Result<std::unique_ptr<ClientServer>> ClientServer::Create(event::Loop& loop, Identity identity,
                                                           Handlers handlers) {
  std::unique_ptr<ClientServer> self(
      new ClientServer(loop, std::move(identity), std::move(handlers)));
  if (auto st = self->Listen(); !st) return tl::unexpected(st.error());
  ClientServer* raw = self.get();
  auto watch = loop.WatchFd(raw->listen_fd_.get(), event::Interest::Read(),
                            [raw](event::Ready) { raw->OnAcceptable(); });
  if (!watch) return tl::unexpected(watch.error());
  raw->listen_watch_ = std::move(*watch);
  return self;
}

ClientServer::~ClientServer() {
  listen_watch_.Reset();
  clients_.clear();
  RemovePaths();
}

Status ClientServer::Listen() {
  const std::string base = "qrexec." + std::to_string(identity_.domid);
  const std::string dir = identity_.socket_dir + "/";
  RemovePaths();
  // The name and uuid links come first: whoever sees qrexec.<domid> appear
  // (clients, tests, the daemonizing parent) may use any of the three names
  // at once. Until the socket exists a link dangles, which a client sees as
  // the same ENOENT as a missing daemon.
  for (const std::string& link : {"qrexec." + identity_.name, "qrexec.uuid:" + identity_.uuid}) {
    if (::symlink(base.c_str(), (dir + link).c_str()) < 0)
      return ErrnoError("symlink " + dir + link);
  }
  mode_t old_umask = ::umask(0);  // world-connectable; the directory protects it
  auto fd = sys::UnixListen(dir + base, 64, true);
  ::umask(old_umask);
  if (!fd) return tl::unexpected(fd.error());
  listen_fd_ = std::move(*fd);
  return Ok();
}

void ClientServer::RemovePaths() {
  const std::string dir = identity_.socket_dir + "/";
  ::unlink((dir + "qrexec." + std::to_string(identity_.domid)).c_str());
  ::unlink((dir + "qrexec." + identity_.name).c_str());
  ::unlink((dir + "qrexec.uuid:" + identity_.uuid).c_str());
}

void ClientServer::OnAcceptable() {
  auto fd = sys::Accept(listen_fd_.get(), true);
  if (!fd) {
    if (fd.error().kind != ErrorKind::kOverloaded) LOG_ERROR("accept: {}", fd.error().ToString());
    return;
  }
  if (clients_.size() >= static_cast<size_t>(limits::kMaxClients)) {
    LOG_WARNING("too many clients ({}), refusing a new one", clients_.size());
    return;
  }
  ClientId id = next_id_++;
  auto conn = MessageConn::Create(loop_, std::move(*fd), kMaxClientBody,
                                  {[this, id](proto::Message m) { OnMessage(id, std::move(m)); },
                                   [this, id](Status st) { OnClose(id, std::move(st)); }});
  if (!conn) {
    LOG_ERROR("client setup: {}", conn.error().ToString());
    return;
  }
  (*conn)->Send(proto::EncodeHello(proto::kClientProtocolVersion));
  clients_[id].conn = std::move(*conn);
}

void ClientServer::OnMessage(ClientId id, proto::Message message) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  Client& client = it->second;
  switch (client.state) {
    case State::kWaitHello: {
      auto hello = proto::DecodeHello(message.header, message.body);
      if (!hello || !proto::NegotiateClientSocket(hello->version)) {
        LOG_WARNING("client {}: bad or too old hello, dropping it", id);
        clients_.erase(it);
        return;
      }
      client.state = State::kWaitRequest;
      return;
    }
    case State::kWaitRequest: {
      auto request = proto::DecodeClientRequest(message.header, message.body);
      if (!request) {
        LOG_WARNING("client {}: invalid request ({}), dropping it", id, request.error().reason);
        clients_.erase(it);
        return;
      }
      client.state = State::kRunning;
      handlers_.on_request(id, std::move(*request));
      return;
    }
    case State::kRunning:
      LOG_WARNING("client {}: unexpected data after its request, dropping it", id);
      clients_.erase(it);
      handlers_.on_gone(id);
      return;
  }
}

void ClientServer::OnClose(ClientId id, Status status) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  if (!status) LOG_DEBUG("client {}: {}", id, status.error().ToString());
  bool had_request = it->second.state == State::kRunning;
  clients_.erase(it);
  if (had_request) handlers_.on_gone(id);
}

void ClientServer::Reply(ClientId id, std::span<const std::byte> frame) {
  auto it = clients_.find(id);
  if (it != clients_.end()) it->second.conn->Send(frame);
}

void ClientServer::Drop(ClientId id) { clients_.erase(id); }

}  // namespace qrexec::daemon
