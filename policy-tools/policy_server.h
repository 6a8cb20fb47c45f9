// PolicyServer: the sockets of qrexec-policy-daemon (policy-language.md
// §5.1, qrexec-protocol.md §5.2-5.6) on one event::Loop.
//
// * policy.sock: one "key=value" request per connection, answered with the
//   engine's exact text, then closed. A malformed request is logged
//   ("error parsing policy request: ...") and closed without an answer.
// * policy.EvalSimple / policy.EvalGUI: socket services; "result=allow\n" or
//   "result=deny\n", nothing at all for a bad request.
// * An "ask" talks to the policy agent through an AgentCall; the connection
//   waits, everything else goes on. Notifications are fire-and-forget.
// All sockets are non-blocking; the number of connections (with a separate,
// smaller share for the evaluation services, which qubes reach) and of
// pending asks and notifications is bounded, and a request that has not
// arrived within `request_timeout` is dropped.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "agent_call.h"
#include "base/result.h"
#include "event/heap_trimmer.h"
#include "event/loop.h"
#include "policy/evaluate.h"
#include "policy/socket_request.h"
#include "policy_store.h"

namespace qrexec::policy_tools {

struct ServerOptions {
  std::string socket_path = "/var/run/qubes/policy.sock";
  std::string eval_socket_path = "/etc/qubes-rpc/policy.EvalSimple";
  std::string gui_socket_path = "/etc/qubes-rpc/policy.EvalGUI";
  AgentRoute agent;
  // A request that has not arrived completely by then is dropped.
  std::chrono::milliseconds request_timeout{10000};
};

class PolicyServer {
 public:
  enum class Kind { kPolicySocket, kEvalSimple, kEvalGui };

  // Binds the three sockets (mode 0660).
  static Result<std::unique_ptr<PolicyServer>> Create(event::Loop& loop, PolicyStore& store,
                                                      ServerOptions options);
  ~PolicyServer();
  PolicyServer(const PolicyServer&) = delete;
  PolicyServer& operator=(const PolicyServer&) = delete;

 private:
  struct Connection;
  struct Listener;

  PolicyServer(event::Loop& loop, PolicyStore& store, ServerOptions options);
  Status Listen(Kind kind, const std::string& path);
  Status StartSweeper();
  void SweepSlowRequests();
  void OnAccept(Listener& listener);
  void OnReadable(uint64_t id);
  void OnRequestComplete(uint64_t id);
  void HandlePolicyRequest(uint64_t id, const policy::PolicySocketRequest& request);
  void HandleEvalRequest(uint64_t id);
  void Decide(uint64_t id, const policy::PolicySocketRequest& request, const Snapshot& snapshot);
  void StartAsk(uint64_t id, const policy::Decision& ask, const Snapshot& snapshot);
  void WatchForHangup(uint64_t id, uint64_t call_id);
  void Conclude(uint64_t id, const policy::Decision& decision,
                std::shared_ptr<const policy::SystemInfo> info, bool just_evaluate);
  void Notify(const policy::Decision& decision, const policy::SystemInfo& info);
  void Reply(uint64_t id, std::string answer);
  void OnWritable(uint64_t id);
  void Close(uint64_t id);
  Connection* Find(uint64_t id);

  event::Loop& loop_;
  PolicyStore& store_;
  ServerOptions options_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;
  event::HeapTrimmer trimmer_{loop_};  // RSS back to idle after a burst
  std::map<uint64_t, std::unique_ptr<AgentCall>> agent_calls_;
  size_t eval_connections_ = 0;
  event::Timer sweep_timer_;  // every second: drops requests older than request_timeout
  uint64_t next_id_ = 1;
  size_t pending_asks_ = 0;
};

}  // namespace qrexec::policy_tools
