#include "host/broker.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "base/limits.h"
#include "base/log.h"

namespace qrexec::host {
Result<BrokerRequest> DecodeBrokerRequest(std::span<const std::byte> untrusted_request) {
  if (untrusted_request.size() != kBrokerRequestSize)
    return MakeError(ErrorKind::kMalformed, "request is not 16 bytes");
  return vchan::DecodeBrokerRequest(untrusted_request.first<kBrokerRequestSize>());
}

Result<UniqueFd> BrokerRequestChannel(const std::string& broker_socket, const BrokerRequest& request,
                                      const sys::Deadline& deadline) {
  auto fd = sys::UnixConnect(broker_socket);
  if (!fd) return tl::unexpected(fd.error());
  auto bytes = EncodeBrokerRequest(request);
  // MSG_NOSIGNAL: the broker may answer (EAGAIN) and close before reading.
  // 16 bytes always fit into a fresh socket's buffer.
  if (::send(fd->get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size()) &&
      errno != EPIPE && errno != ECONNRESET)
    return ErrnoError("send");
  if (auto ready = sys::WaitReadable(fd->get(), deadline); !ready) return tl::unexpected(ready.error());
  std::array<std::byte, kBrokerStatusSize> status_bytes{};
  auto got = sys::RecvWithFd(fd->get(), status_bytes);
  if (!got) return tl::unexpected(got.error());
  if (got->first == 0) return MakeError(ErrorKind::kDisconnected, "broker closed the request");
  if (got->first < status_bytes.size()) {
    auto rest = std::span(status_bytes).subspan(got->first);
    if (auto status = sys::ReadExact(fd->get(), rest, deadline); !status) return tl::unexpected(status.error());
  }
  uint32_t status = vchan::DecodeBrokerStatus(status_bytes);
  if (status != 0) return MakeError(ErrorKind::kRefused, "broker refused the channel", static_cast<int>(status));
  if (!got->second.valid()) return MakeError(ErrorKind::kMalformed, "broker sent no descriptor");
  return std::move(got->second);
}

Broker::Broker(event::Loop& loop) : Broker(loop, Options{}) {}
Broker::Broker(event::Loop& loop, Options options) : loop_(loop), options_(options) {}

Broker::~Broker() {
  // The watches and timers unregister themselves with their entries.
  for (auto& [domain, entry] : domains_) ::unlink(entry.socket_path.c_str());
}

Status Broker::AddDomain(uint32_t domain, const std::string& name, const std::string& socket_path,
                         std::optional<uid_t> root_uid) {
  if (domains_.count(domain) != 0)
    return MakeError(ErrorKind::kInternal, "broker: domain " + std::to_string(domain) + " already added");
  if (!expiry_timer_.active()) {
    auto timer = loop_.AddTimer([this] { OnExpiry(); });
    if (!timer) return tl::unexpected(timer.error());
    expiry_timer_ = std::move(*timer);
  }
  auto fd = sys::UnixListen(socket_path, 128, /*nonblocking=*/true);
  if (!fd) return tl::unexpected(fd.error());
  // Inside a domain any user may open channels (qrexec-client-vm runs as the
  // user), as with vchan in Qubes; on the host the socket lives in a 0700
  // directory. dom0's socket is for the host's own (root) programs only.
  mode_t mode = domain == 0 ? 0600 : 0666;
  if (::chmod(socket_path.c_str(), mode) < 0) return ErrnoError("chmod " + socket_path);
  DomainEntry& entry = domains_[domain];
  entry.name = name;
  entry.socket_path = socket_path;
  entry.root_uid = root_uid;
  entry.listen_fd = std::move(*fd);
  auto watch = loop_.WatchFd(entry.listen_fd.get(), event::Interest::Read(),
                             [this, domain](event::Ready) { OnAcceptable(domain); });
  if (!watch) {
    ::unlink(socket_path.c_str());
    domains_.erase(domain);
    return tl::unexpected(watch.error());
  }
  entry.watch = std::move(*watch);
  return Ok();
}

void Broker::RemoveDomain(uint32_t domain) {
  auto it = domains_.find(domain);
  if (it == domains_.end()) return;
  ::unlink(it->second.socket_path.c_str());
  domains_.erase(it);  // its watch goes with it
  std::vector<uint64_t> from, waiting_for;
  for (const auto& [id, connection] : connections_) {
    if (connection.domain == domain) {
      from.push_back(id);
    } else if (connection.waiting) {
      auto [server, client, port] = connection.key;
      if (server == domain || client == domain) waiting_for.push_back(id);
    }
  }
  for (uint64_t id : from) Drop(id);
  for (uint64_t id : waiting_for) Answer(id, ENOENT);
}

size_t Broker::pending_count(uint32_t domain) const {
  auto it = domains_.find(domain);
  return it == domains_.end() ? 0 : it->second.unread + it->second.waiting;
}

const std::string& Broker::NameOf(uint32_t domain) const {
  static const std::string kUnknown = "(removed)";
  auto it = domains_.find(domain);
  return it == domains_.end() ? kUnknown : it->second.name;
}

void Broker::OnAcceptable(uint32_t domain) {
  for (int i = 0; i < 64; ++i) {
    auto entry = domains_.find(domain);
    if (entry == domains_.end()) return;
    auto fd = sys::Accept(entry->second.listen_fd.get(), /*nonblocking=*/true);
    if (!fd) {
      if (fd.error().kind != ErrorKind::kOverloaded)
        LOG_WARNING("broker: accept for {}: {}", entry->second.name, fd.error().ToString());
      return;
    }
    uint64_t id = next_id_++;
    Connection& connection = connections_[id];
    connection.domain = domain;
    connection.fd = std::move(*fd);
    if (entry->second.root_uid) {
      // The peer's uid as the kernel saw it connect: a host uid in the
      // domain's range, which nothing in the domain can change.
      ucred cred{};
      socklen_t size = sizeof cred;
      bool known = ::getsockopt(connection.fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &size) == 0;
      connection.privileged = known && cred.uid == *entry->second.root_uid;
    }
    if (entry->second.unread >= options_.max_pending_per_domain) {
      WarnFull(entry->second, "connections sending their request");
      connection.unread = false;
      Answer(id, EAGAIN);
      continue;
    }
    ++entry->second.unread;
    auto watch = loop_.WatchFd(connection.fd.get(), event::Interest::Read(),
                               [this, id](event::Ready) { OnReadable(id); });
    if (!watch) {
      LOG_ERROR("broker: cannot watch a connection: {}", watch.error().ToString());
      Drop(id);
      continue;
    }
    connection.watch = std::move(*watch);
    SetDeadline(id, connection, options_.request_timeout);
  }
}

bool Broker::Charge(uint32_t domain) {
  auto entry = domains_.find(domain);
  if (entry == domains_.end()) return false;
  if (entry->second.waiting >= options_.max_pending_per_domain) {
    WarnFull(entry->second, "requests waiting for their peer");
    return false;
  }
  ++entry->second.waiting;
  return true;
}

// Once per episode: a domain hammering its limit must not flood the log.
void Broker::WarnFull(DomainEntry& entry, const char* what) {
  if (entry.warned_full) return;
  entry.warned_full = true;
  LOG_WARNING("broker: {} has {} {}; refusing more (EAGAIN) until some are answered", entry.name,
              options_.max_pending_per_domain, what);
}

void Broker::SetDeadline(uint64_t id, Connection& connection, std::chrono::milliseconds after) {
  deadlines_.erase({connection.deadline, id});
  connection.deadline = sys::Clock::now() + after;
  deadlines_.insert({connection.deadline, id});
  ArmExpiryTimer();
}

void Broker::ArmExpiryTimer() {
  // Re-armed only for an earlier deadline: a timer that fires for a request
  // already gone finds nothing due and arms itself for the next one.
  if (deadlines_.empty() || (expiry_armed_ && deadlines_.begin()->first >= expiry_at_)) return;
  expiry_at_ = deadlines_.begin()->first;
  auto delay = std::max<sys::Clock::duration>(expiry_at_ - sys::Clock::now(), sys::Clock::duration::zero());
  if (auto armed = expiry_timer_.Arm(delay); !armed) {
    LOG_ERROR("broker: cannot arm the expiry timer: {}", armed.error().ToString());
    return;
  }
  expiry_armed_ = true;
}

void Broker::OnExpiry() {
  expiry_armed_ = false;
  auto now = sys::Clock::now();
  size_t expired = 0;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    uint64_t id = deadlines_.begin()->second;
    auto it = connections_.find(id);
    if (it == connections_.end()) {
      deadlines_.erase(deadlines_.begin());
      continue;
    }
    if (it->second.waiting) {
      LOG_DEBUG("broker: a request of {} found no peer in time", NameOf(it->second.domain));
      ++expired;
      Answer(id, ETIMEDOUT);
    } else {
      LOG_WARNING("broker: {} did not send its request in time", NameOf(it->second.domain));
      Drop(id);
    }
  }
  if (expired > 0) LOG_INFO("broker: {} requests found no peer in time (ETIMEDOUT)", expired);
  ArmExpiryTimer();
}

void Broker::OnReadable(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  Connection& connection = it->second;
  if (connection.waiting) {
    // Waiting for the peer: the requester may only hang up. Anything it writes
    // is a protocol violation.
    std::byte byte{};
    auto got = sys::ReadSome(connection.fd.get(), std::span(&byte, 1));
    if (!got && got.error().sys_errno == EAGAIN) return;
    if (got && *got > 0)
      LOG_WARNING("broker: {} wrote after its request; dropping it", NameOf(connection.domain));
    Drop(id);
    return;
  }
  auto rest = std::span(connection.buffer).subspan(connection.have);
  auto got = sys::ReadSome(connection.fd.get(), rest);
  if (!got) {
    if (got.error().sys_errno == EAGAIN) return;
    Drop(id);
    return;
  }
  if (*got == 0) {
    if (connection.have != 0)
      LOG_WARNING("broker: {} sent a short request ({} bytes)", NameOf(connection.domain), connection.have);
    Drop(id);
    return;
  }
  connection.have += *got;
  if (connection.have < kBrokerRequestSize) return;
  NoLongerUnread(connection);
  auto request = DecodeBrokerRequest(connection.buffer);
  if (!request) {
    LOG_WARNING("broker: malformed request from {}: {}", NameOf(connection.domain), request.error().message);
    Drop(id);
    return;
  }
  OnRequest(id, *request);
}

void Broker::OnRequest(uint64_t id, const BrokerRequest& request) {
  Connection& connection = connections_.at(id);
  uint32_t own = connection.domain;  // from the listening socket: the only identity
  uint32_t remote = request.remote_domain;
  uint32_t port = request.port;
  bool control = port == limits::kControlPort;
  bool data = port >= limits::kFirstDataPort && port <= limits::kLastDataPort;
  if (remote == own || !(control || data) || (control && own != 0 && remote != 0)) {
    LOG_INFO("broker: {} asked for an invalid channel (remote {}, port {})", NameOf(own), remote, port);
    Answer(id, EINVAL);
    return;
  }
  if (domains_.count(remote) == 0) {
    Answer(id, ENOENT);
    return;
  }
  bool offer = request.op == BrokerOp::kOffer;
  // Only the domain's root asks for channels: its agent offers the data
  // channels of outgoing calls for their callers and hands them over, so a
  // local user can neither join another's channel nor offer one first.
  if (!connection.privileged) {
    LOG_WARNING("broker: a non-root process of {} tried to {} (remote {}, port {})", NameOf(own),
                offer ? (control ? "offer the control channel" : "offer a channel") : "join a channel",
                remote, port);
    Answer(id, EPERM);
    return;
  }
  Key key = offer ? Key{own, remote, port} : Key{remote, own, port};
  auto& same = offer ? offers_ : connects_;
  auto& other = offer ? connects_ : offers_;
  if (same.count(key) != 0) {
    Answer(id, EADDRINUSE);
    return;
  }
  auto match = other.find(key);
  if (match == other.end()) {
    // dom0's requests wait on behalf of the domain they name.
    uint32_t charged = own == 0 ? remote : own;
    if (!Charge(charged)) {
      Answer(id, EAGAIN);
      return;
    }
    connection.charged = charged;
    connection.waiting = true;
    connection.op = request.op;
    connection.key = key;
    same[key] = id;
    SetDeadline(id, connection, options_.pending_timeout);
    return;
  }
  uint64_t peer = match->second;
  other.erase(match);
  auto pair = sys::SocketPair();
  if (!pair) {
    LOG_ERROR("broker: {}", pair.error().ToString());
    Answer(id, ENOMEM);
    Answer(peer, ENOMEM);
    return;
  }
  ++paired_;
  LOG_DEBUG("broker: channel {} -> {} port {}", NameOf(std::get<0>(key)), NameOf(std::get<1>(key)), port);
  Answer(id, 0, std::move(pair->first));
  Answer(peer, 0, std::move(pair->second));
}

void Broker::Answer(uint64_t id, uint32_t status, UniqueFd channel) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  auto bytes = vchan::EncodeBrokerStatus(status);
  // A fresh connection's send buffer always holds 4 bytes.
  Status sent = Ok();
  if (channel.valid()) {
    sent = sys::SendWithFd(it->second.fd.get(), bytes, channel.get());
  } else if (::send(it->second.fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) !=
             static_cast<ssize_t>(bytes.size())) {
    sent = ErrnoError("send");
  }
  if (!sent) LOG_INFO("broker: answering {}: {}", NameOf(it->second.domain), sent.error().ToString());
  Drop(id);
}

void Broker::NoLongerUnread(Connection& connection) {
  if (!connection.unread) return;
  connection.unread = false;
  auto entry = domains_.find(connection.domain);
  if (entry != domains_.end() && entry->second.unread > 0) {
    --entry->second.unread;
    entry->second.warned_full = false;
  }
}

void Broker::Drop(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  Connection& connection = it->second;
  if (connection.waiting) {
    auto& map = connection.op == BrokerOp::kOffer ? offers_ : connects_;
    auto found = map.find(connection.key);
    if (found != map.end() && found->second == id) map.erase(found);
  }
  NoLongerUnread(connection);
  if (connection.charged != kNotCharged) {
    auto entry = domains_.find(connection.charged);
    if (entry != domains_.end() && entry->second.waiting > 0) {
      --entry->second.waiting;
      entry->second.warned_full = false;
    }
  }
  deadlines_.erase({connection.deadline, id});
  connections_.erase(it);
}

}  // namespace qrexec::host
