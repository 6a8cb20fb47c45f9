// The per-call data handler (qrexec-protocol.md §2.7, §2.11): the process
// that joins the data vchan of one call as its client, starts the service
// and runs the service side of the stream engine until the exit code went
// out. Used by the agent (in a child forked per call) and by the fork server
// (in a child forked per request). Blocking; owns the whole process while it
// runs (it builds its own event loop and transport).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "exec/service.h"
#include "proto/messages.h"

namespace qrexec::agent {

// What the handler must do once connected.
struct CallPlan {
  proto::ExecType type = proto::ExecType::kExecCmdline;
  proto::ExecParams peer;  // data vchan: (connect_domain, connect_port)
  // The planned service, or the qrexec exit value (125/127) to report when
  // the request could not be planned (bad command, bad rpc-config...).
  std::variant<exec::ServicePlan, int> service;
  // The command as received, for a handler that plans the call again
  // (warm_handlers.h).
  std::string command;
};

// Parses `command` (with or without the "user:" prefix: the agent gets it
// with, the fork server without) and plans the service. Failures are logged
// and become the exit value to report (125/127): a bad request still gets a
// handler, so the caller learns the outcome instead of waiting.
CallPlan PlanCall(proto::ExecType type, proto::ExecParams peer, std::string_view command,
                  exec::UserPrefix prefix, const exec::ExecContext& ctx);

// Seconds the handler waits for the caller's side of the data vchan.
inline constexpr int kDataVchanTimeoutSeconds = 120;

// Connects, starts, relays; returns the process exit status: the service's
// exit code (what went out in MSG_DATA_EXIT_CODE), 0 for MSG_JUST_EXEC,
// 125/127 when the service could not start, 1 when the data vchan failed.
int RunCallHandler(const CallPlan& call, const exec::ExecContext& ctx);

// In a child forked from the agent's (or fork server's) loop: unblocks every
// signal, restores the default handlers the loop had changed and closes every
// inherited descriptor above 2 except `keep_fds`.
void ForgetParentLoop(std::span<const int> keep_fds);

// The agent's per-call child: forks; the child resets signal handling,
// closes every inherited descriptor above 2 except `keep_fds`, runs
// RunCallHandler and _exit()s with its result (it never returns into the
// caller's event loop). Returns the child's pid to the parent.
Result<pid_t> ForkCallHandler(const CallPlan& call, const exec::ExecContext& ctx,
                              std::span<const int> keep_fds = {});

}  // namespace qrexec::agent
