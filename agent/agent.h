// qrexec-agent as a component (qrexec-protocol.md §1.4, §2.6, §2.10): the
// control channel to dom0, the trigger socket for qrexec-client-vm and the
// launcher of calls, wired together on one event loop.
//
// Message handling (one short handler per message type):
//  * MSG_EXEC_CMDLINE / MSG_JUST_EXEC -> CallLauncher::Launch;
//  * MSG_SERVICE_CONNECT -> the waiting trigger client "SOCKET<fd>" gets the
//    8-byte exec_params; an unknown ident is reported terminated at once so
//    the daemon frees the port;
//  * MSG_SERVICE_REFUSED -> that trigger client is closed.
// Anything DecodeControlFromDaemon rejects stops the agent with status 1.
// SIGTERM (and SIGINT) stop it with status 0. When dom0 disconnects, waiting
// trigger clients are refused and the control channel is offered again;
// running calls go on.
#pragma once

#include <memory>
#include <optional>

#include "agent/call_launcher.h"
#include "agent/connection_budget.h"
#include "agent/control_channel.h"
#include "agent/options.h"
#include "agent/trigger_server.h"
#include "event/loop.h"
#include "vchan/transport.h"

namespace qrexec::agent {

class Agent {
 public:
  // `loop` and `transport` are borrowed and outlive the agent.
  Agent(event::Loop& loop, vchan::Transport& transport, const AgentOptions& options);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Listens on the trigger socket, offers the control channel, installs the
  // signal watches. Errors mean the agent cannot run (exit 1).
  Status Start();

  // Set once the loop should stop: the process exit status.
  std::optional<int> exit_status() const { return exit_status_; }

 private:
  void OnConnected();
  void OnMessage(proto::DaemonControlMessage message);
  void OnServiceConnect(const proto::ServiceConnect& message);
  void OnFatal(const Error& error);
  void SendTerminated(const proto::ConnectionTerminated& message);
  void Stop(int status);

  event::Loop& loop_;
  vchan::Transport& transport_;
  AgentOptions options_;
  // Separate budgets (connection_budget.h): local clients, idle or not,
  // cannot take the slots dom0's calls need, nor the other way round.
  ConnectionBudget trigger_budget_;
  ConnectionBudget call_budget_;
  ControlChannel control_;
  TriggerServer triggers_;
  CallLauncher launcher_;
  event::SignalWatch sigterm_;
  event::SignalWatch sigint_;
  bool notified_ready_ = false;
  std::optional<int> exit_status_;
};

// Sends "READY=1" to $NOTIFY_SOCKET (systemd Type=notify); no-op when unset.
void NotifyReady();

}  // namespace qrexec::agent
