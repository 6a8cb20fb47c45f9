// What the agent does with MSG_EXEC_CMDLINE / MSG_JUST_EXEC from dom0
// (qrexec-protocol.md §2.6, §2.10, §4.3-4.5):
//
//  1. parse the command and plan the service (rpc-config, lookup); a failure
//     still gets a handler, which reports 125/127 on the data vchan so the
//     caller does not wait for a time-out;
//  2. if the config asks for wait-for-session (and not nogui:), queue the
//     call until qubes.WaitForSession exits (one such process at a time,
//     shared by every queued call; at most 256 queued calls);
//  3. hand the call to the fork server of the effective user when allowed
//     (ServicePlan::MayUseForkServer, and the agent was not started with
//     -S) and its socket accepts; otherwise, for MSG_EXEC_CMDLINE, to a warm
//     handler (warm_handlers.h; only when started with --warm-handlers); and
//     otherwise fork a handler process (call_handler.h).
//
// Every running call holds one ConnectionBudget slot. When it ends (the
// handler process exited, or the fork-server connection reached EOF) the
// launcher reports MSG_CONNECTION_TERMINATED{connect_domain, connect_port}
// through Handlers::on_terminated. A call that finds the budget full is
// dropped with an error log and reported terminated at once.
//
// Runs on the agent's event loop; owns its child watches, fork-server
// connections and the session waiter.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "agent/call_handler.h"
#include "agent/connection_budget.h"
#include "agent/warm_handlers.h"
#include "event/loop.h"
#include "exec/service.h"
#include "proto/messages.h"

namespace qrexec::agent {

class CallLauncher {
 public:
  struct Settings {
    bool use_fork_server = true;
    std::string fork_server_socket_format;  // "%s" = user name
    bool use_warm_handlers = true;
    // Services for other users start through this helper (docs/pam.md);
    // nullopt = direct exec.
    std::optional<exec::PamSessionHelper> pam_session;
  };
  struct Handlers {
    std::function<void(const proto::ConnectionTerminated&)> on_terminated;
  };

  CallLauncher(event::Loop& loop, ConnectionBudget& budget, Settings settings, Handlers handlers);
  ~CallLauncher();
  CallLauncher(const CallLauncher&) = delete;
  CallLauncher& operator=(const CallLauncher&) = delete;

  void Launch(const proto::ExecRequest& request);

  size_t running_count() const { return running_.size(); }
  size_t waiting_count() const { return waiting_.size(); }
  size_t warm_handler_count() const { return warm_.size(); }

 private:
  struct Running;

  CallPlan Plan(const proto::ExecRequest& request) const;
  void Dispatch(CallPlan call);
  bool TryForkServer(const CallPlan& call);
  // Connects to the user's fork server and writes the request.
  std::optional<UniqueFd> HandToForkServer(const CallPlan& call,
                                           const exec::ServicePlan& plan) const;
  void OnForkServerReadable(uint64_t id);
  bool TryWarmHandler(const CallPlan& call);
  void ForkHandler(const CallPlan& call);
  void StartWaiting(CallPlan call);
  void OnSessionReady();
  void Finish(uint64_t id);
  void ReportTerminated(const proto::ExecParams& peer);

  event::Loop& loop_;
  ConnectionBudget& budget_;
  Settings settings_;
  Handlers handlers_;
  exec::ExecContext ctx_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Running>> running_;
  // wait-for-session
  std::deque<CallPlan> waiting_;
  std::unique_ptr<exec::ChildProcess> session_waiter_;
  event::FdWatch session_watch_;
  // Last: destroyed first, while running_ and ctx_ still exist.
  WarmHandlers warm_;
};

}  // namespace qrexec::agent
