// ClientServer: the daemon's local socket <socket-dir>/qrexec.<domid> with the
// symlinks qrexec.<name> and qrexec.uuid:<uuid> (qrexec-protocol.md §1.2),
// and the client-socket protocol of §2.9 up to the decoded request.
//
// Per client: the server sends HELLO{3} at once, requires the client's
// HELLO (>= 3), then exactly one request, decoded by
// proto::DecodeClientRequest and handed to on_request. The client then
// stays connected ("running") until the daemon drops it (Drop(), normally
// when its port is released) or it goes away (on_gone). Anything a client
// sends in the running state, or any protocol error, drops that client only.
// At most limits::kMaxClients clients; more are closed at once.
//
// Runs on the daemon's loop; the owner may call Drop()/Reply() from the
// handlers. Destroying the server closes every client and removes the
// socket and its symlinks.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "daemon/message_conn.h"
#include "event/loop.h"
#include "proto/messages.h"

namespace qrexec::daemon {

using ClientId = uint64_t;

class ClientServer {
 public:
  struct Handlers {
    std::function<void(ClientId, proto::ClientRequest)> on_request;
    std::function<void(ClientId)> on_gone;  // only for clients that sent a request
  };
  struct Identity {
    std::string socket_dir;
    int domid = 0;
    std::string name;
    std::string uuid;
  };

  static Result<std::unique_ptr<ClientServer>> Create(event::Loop& loop, Identity identity,
                                                      Handlers handlers);
  ~ClientServer();
  ClientServer(const ClientServer&) = delete;
  ClientServer& operator=(const ClientServer&) = delete;

  void Reply(ClientId id, std::span<const std::byte> frame);
  // Closes the client's connection (no on_gone).
  void Drop(ClientId id);
  size_t client_count() const { return clients_.size(); }

 private:
  enum class State { kWaitHello, kWaitRequest, kRunning };
  struct Client {
    State state = State::kWaitHello;
    std::unique_ptr<MessageConn> conn;
  };

  ClientServer(event::Loop& loop, Identity identity, Handlers handlers)
      : loop_(loop), identity_(std::move(identity)), handlers_(std::move(handlers)) {}
  Status Listen();
  void RemovePaths();
  void OnAcceptable();
  void OnMessage(ClientId id, proto::Message message);
  void OnClose(ClientId id, Status status);

  event::Loop& loop_;
  Identity identity_;
  Handlers handlers_;
  UniqueFd listen_fd_;
  event::FdWatch listen_watch_;
  std::map<ClientId, Client> clients_;
  ClientId next_id_ = 1;
};

}  // namespace qrexec::daemon
