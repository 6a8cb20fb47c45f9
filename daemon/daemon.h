// Daemon: the broker for one VM (qrexec-protocol.md §1.2, §2.6, §2.8, §2.9,
// §5.1). One single-threaded event loop, no process per call:
//
//   agent trigger --> PolicyQuery (policy.sock, fallback program)
//                 --> deny / failure: MSG_SERVICE_REFUSED{ident}
//                 --> allow, target VM: TargetConnector (target daemon
//                     socket, autostart, disposables), then
//                     MSG_SERVICE_CONNECT{target domid, port, ident}
//                 --> allow, target dom0: port allocated here,
//                     MSG_SERVICE_CONNECT{0, port, ident}, Dom0ServiceRunner
//   local client  --> ClientServer --> port allocation, forwarded to agent
//   agent MSG_CONNECTION_TERMINATED --> port released, waiting client closed;
//                 for a port of another daemon (our caller of a VM call went
//                 away): the lingering TargetConnector kills its disposable,
//                 a client that joined the call (qrexec-client -W) is dropped
//
// Each call logs per-stage timings at debug level, one line per stage:
//   call-timing ident=<ident> stage=<stage> us=<microseconds since trigger>
// with stage in trigger_received, policy_answered, target_connected,
// service_connect_sent, refused.
//
// Owned by main(); everything runs on `loop`. Run Start() once, then the
// loop; the loop quits on a fatal agent protocol violation (exit_code() 1)
// or SIGTERM (0).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "base/result.h"
#include "daemon/agent_channel.h"
#include "daemon/client_server.h"
#include "daemon/daemon_options.h"
#include "daemon/dom0_service.h"
#include "daemon/policy_query.h"
#include "daemon/port_table.h"
#include "daemon/target_connector.h"
#include "event/heap_trimmer.h"
#include "event/loop.h"
#include "vchan/transport.h"

namespace qrexec::daemon {

class Daemon {
 public:
  Daemon(event::Loop& loop, vchan::Transport& transport, DaemonConfig config,
         std::string client_program);
  ~Daemon();

  // Blocking: joins the agent's control channel and handshakes, then
  // creates the client socket. kTimedOut when the agent does not come.
  Status Start(const sys::Deadline& deadline);
  int exit_code() const { return exit_code_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct PendingCall {
    proto::Trigger trigger;
    Clock::time_point started;
    std::unique_ptr<PolicyQuery> policy;
    std::unique_ptr<TargetConnector> connector;
  };

  Status WatchSigterm();
  Status ConnectAgent(const sys::Deadline& connect_deadline,
                      const sys::Deadline& handshake_deadline);
  // Agent side.
  void OnTrigger(proto::Trigger trigger);
  void OnTerminated(const proto::ConnectionTerminated& message);
  void OnAgentClosed(Status status);
  void DropAgent();
  void TryReconnect();
  // Local clients.
  void OnClientRequest(ClientId client, proto::ClientRequest request);
  void OnExecRequest(ClientId client, proto::ExecRequest request);
  void OnClientServiceConnect(ClientId client, proto::ServiceConnect request);
  std::optional<uint32_t> AllocateFor(ClientId client, uint32_t connect_domain);
  void OnClientGone(ClientId client);
  // Calls.
  void OnPolicyAnswer(uint64_t call_id, Result<PolicyAnswer> answer);
  void ConnectToVm(uint64_t call_id, const PolicyAnswer& answer, std::string service,
                   std::string source);
  void RunInDom0(uint64_t call_id, const PolicyAnswer& answer, std::string service,
                 std::string source);
  void OnTargetConnected(uint64_t call_id, Result<proto::ExecParams> params);
  // `ident_field_len`: see proto::ServiceConnect (a client's short field is relayed as sent).
  void SendServiceConnect(const std::string& ident, uint32_t domain, uint32_t port,
                          size_t ident_field_len = proto::kServiceParamsSize);
  void Refuse(uint64_t call_id, const std::string& why);
  void LogStage(const PendingCall& call, const char* stage) const;
  std::map<uint64_t, PendingCall>::iterator FindPending(const std::string& ident);

  event::Loop& loop_;
  vchan::Transport& transport_;
  DaemonConfig config_;
  PortTable ports_;
  Dom0ServiceRunner dom0_;
  std::unique_ptr<AgentChannel> agent_;
  std::unique_ptr<ClientServer> server_;
  std::map<uint64_t, PendingCall> pending_;
  std::map<uint64_t, std::unique_ptr<TargetConnector>> lingering_;  // disposables in use
  std::map<uint32_t, ClientId> port_clients_;  // port -> client waiting for its release
  // (target domid, port) -> the client that joined our caller to a VM call
  // (qrexec-client -c); dropped when our agent reports the caller gone.
  std::map<std::pair<uint32_t, uint32_t>, ClientId> joined_clients_;
  uint64_t next_call_id_ = 1;
  event::Timer restart_timer_;  // drives the reconnection attempts
  event::SignalWatch sigterm_;
  event::HeapTrimmer trimmer_{loop_};  // RSS back to idle after a burst of calls
  int exit_code_ = 0;
};

}  // namespace qrexec::daemon
