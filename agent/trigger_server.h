// The agent's trigger socket (qrexec-protocol.md §2.10): qrexec-client-vm
// connects, writes one MSG_TRIGGER_SERVICE4 request and waits.
//
// For each client: the request is framed and checked
// (proto::DecodeTriggerSocketRequest); a bad one closes the client. A good
// one is forwarded to dom0 verbatim except for its request id, which becomes
// "SOCKET<fd>" (fd = our descriptor of that client), and the client waits.
// dom0 then answers with MSG_SERVICE_CONNECT (Connect(): the 8 raw bytes of
// exec_params are written to the client, which now holds a live connection;
// its EOF later produces MSG_CONNECTION_TERMINATED) or MSG_SERVICE_REFUSED
// (Refuse(): the client is closed, and reads EOF).
//
// A client that goes away before dom0 answered keeps its descriptor (and so
// its request id) until dom0 answers; a late MSG_SERVICE_CONNECT is then
// reported terminated at once. (The reference closes it at once, so a later
// client that reuses the fd number could receive the answer meant for the
// first.) Each client holds one slot of the trigger clients' own
// ConnectionBudget; while it is full no new client is accepted. A client must
// send its whole request within the request time-out of connecting, or it is
// closed: clients that connect and say nothing cannot hold the slots for
// good.
//
// Runs on the agent's event loop. Owns its clients; destroying the server
// closes every client.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "agent/connection_budget.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "event/loop.h"
#include "proto/framing.h"
#include "proto/messages.h"

namespace qrexec::agent {

class TriggerServer {
 public:
  struct Handlers {
    // Forward one complete frame to dom0. Returns false when no daemon is
    // connected (the client is then refused).
    std::function<bool(std::span<const std::byte> frame)> forward;
    // A connected client went away.
    std::function<void(const proto::ConnectionTerminated&)> on_terminated;
  };

  TriggerServer(event::Loop& loop, ConnectionBudget& budget, std::chrono::milliseconds request_timeout,
                Handlers handlers);
  ~TriggerServer();
  TriggerServer(const TriggerServer&) = delete;
  TriggerServer& operator=(const TriggerServer&) = delete;

  // Creates the socket at `path` (replacing a stale one) with umask 0.
  Status Listen(const std::string& path);

  // MSG_SERVICE_CONNECT for `ident`. False if no waiting client has it.
  // A valid `offer` (the data channel offered for the client, see
  // vchan::Transport::OfferToHandOver) travels with the answer (SCM_RIGHTS).
  bool Connect(std::string_view ident, const proto::ExecParams& params, UniqueFd offer = {});
  // MSG_SERVICE_REFUSED for `ident` (unknown idents are ignored).
  void Refuse(std::string_view ident);
  // dom0 went away: every client still waiting is closed.
  void RefuseAllWaiting();

  // Called when budget slots were released.
  void ResumeAccepting();

  size_t client_count() const { return clients_.size(); }

 private:
  struct Client;

  void OnAcceptable();
  void OnClientReady(int fd, event::Ready ready);
  void OnRequest(Client& client, proto::Message message);
  void OnHangup(Client& client);
  void Close(int fd);
  Client* FindWaiting(std::string_view ident);
  // Closes the clients whose request time-out passed while still reading.
  void OnRequestTimer();
  void ArmRequestTimer();

  event::Loop& loop_;
  ConnectionBudget& budget_;
  std::chrono::milliseconds request_timeout_;
  Handlers handlers_;
  std::string path_;
  UniqueFd listener_;
  event::FdWatch listener_watch_;
  std::map<int, std::unique_ptr<Client>> clients_;  // keyed by fd
  // Clients in accept order with the time their request is due; the same
  // time-out for all keeps this sorted. One timer for all of them.
  struct Due {
    std::chrono::steady_clock::time_point at;
    int fd;
    uint64_t serial;  // tells a client from a later one with the same fd
  };
  std::deque<Due> due_;
  event::Timer request_timer_;
  uint64_t next_serial_ = 1;
};

// "SOCKET<fd>" <-> fd. nullopt for anything else.
std::string SocketIdent(int fd);
std::optional<int> ParseSocketIdent(std::string_view ident);

}  // namespace qrexec::agent
