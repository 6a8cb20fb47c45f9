// Top level of the service-execution layer: from a parsed Command to a
// running service (qrexec-protocol.md §4). Used by the agent's handler, the
// fork server, and dom0 (daemon child / qrexec-client) for dom0 services.
//
//   auto cmd = ParseCommand(untrusted, UserPrefix::kPresent);     // 125 on error
//   auto plan = PlanService(std::move(*cmd), ctx);                // 125 on error
//   if (plan->NeedsWaitForSession()) ... StartWaitForSession(...)
//   if (plan->MayUseForkServer()) ... hand the command to the fork server
//   StartedService s = StartService(*plan, ctx, options);
//   std::visit(overloaded{[](StartedProcess&) ..., [](StartedSocket&) ...,
//                         [](StartFailure& f) { exit code f.exit_code }}, s);
//
// Two ways to start an executable service (docs/pam.md):
//  * direct (the default of ExecContext, and always when the service runs as
//    the user we are): execve() with exactly the environment below, no
//    shell; legacy (non-RPC, dom0-only) commands as `$SHELL -c CMD`;
//  * through the PAM session helper (ExecContext::pam_session, set by the
//    agent unless --no-pam-session) when we are root and the service's user
//    is another: `qrexec-pam-session USER -- SERVICE [ARG]` opens a PAM
//    session of the `qrexec` service and runs the service from `/bin/sh` as
//    a login shell (legacy commands: `--shell-command`, the user's login
//    shell), as Qubes does.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "exec/child_process.h"
#include "exec/command.h"
#include "exec/exit_status.h"
#include "exec/rpc_config.h"
#include "exec/service_lookup.h"

namespace qrexec::exec {

// The PAM session helper (agent/pam_session.h) and its test-only PAM
// configuration directory (empty: the system's /etc/pam.d).
struct PamSessionHelper {
  std::string path;
  std::string confdir;
};

struct ExecContext {
  SearchPath service_path = SearchPath::ServicesFromEnvironment();
  SearchPath config_path = SearchPath::RpcConfigFromEnvironment();
  // The fork server does not load rpc-config (§2.10).
  bool load_rpc_config = true;
  // QREXEC_AGENT_PID given to services: the process that handles the data
  // (it gets SIGUSR1 from services). 0 = getpid() at StartService() time.
  pid_t agent_pid = 0;
  // Environment the service environment is derived from (NULL-terminated
  // "NAME=value" array); nullptr = this process's `environ`.
  const char* const* base_environment = nullptr;
  // Set: services for a user other than ours start through this helper.
  // Unset: direct exec (dom0, the fork server, --no-pam-session).
  std::optional<PamSessionHelper> pam_session;
};

// A command with its rpc-config loaded and its service looked up.
struct ServicePlan {
  Command command;
  RpcConfig config;
  // The user to run as: force-user if set, else command.user. Empty means
  // "whoever we are" (commands parsed with UserPrefix::kAbsent).
  std::string effective_user;
  // RPC commands only: what the lookup found (may be ServiceNotFound /
  // ServiceProblem: StartService() then fails with 127 / 125).
  std::optional<ServiceLookup> lookup;

  // wait-for-session requested and not a nogui: command.
  bool NeedsWaitForSession() const;
  // §2.10: not nogui:, no skip-service-descriptor, no exit-on-*.
  bool MayUseForkServer() const;
};

// Loads the rpc-config (RPC commands, if ctx.load_rpc_config) and looks the
// service up. Errors (all -> 125): config read/parse errors. A missing
// service is not an error here (see ServicePlan::lookup).
Result<ServicePlan> PlanService(Command command, const ExecContext& ctx);

struct StartOptions {
  // The service's fds 0/1/2 (executables and legacy commands). For socket
  // services these are ignored: the caller uses the returned socket.
  Stdio stdin_io = Stdio::Pipe();
  Stdio stdout_io = Stdio::Pipe();
  Stdio stderr_io = Stdio::Pipe();
  // False for dom0->dom0 calls through qrexec-client (socket/TCP services
  // then fail with 125).
  bool allow_socket_services = true;
};

// An executable service (or legacy command) running as a child.
struct StartedProcess {
  ChildProcess child;
};
// A connected socket/TCP service; the descriptor header has been written
// unless skip-service-descriptor. Used for both directions; there is no
// stderr and the call's exit code is 0.
struct StartedSocket {
  UniqueFd socket;
  bool tcp = false;
};
struct StartFailure {
  int exit_code = kExitProblem;  // 125 or 127
  Error error;
};
using StartedService = std::variant<StartedProcess, StartedSocket, StartFailure>;

// Starts the planned service. Executables: argv/env per §4.6, run as
// plan.effective_user (ResolveRunAs: when root we switch user, chdir to its
// home and set HOME/USER/LOGNAME/SHELL; when not root the user must be us,
// else 125), setsid. Legacy commands: `$SHELL -c CMD` (when root: the run-as
// user's shell from the password database; else $SHELL of the base
// environment; default /bin/sh; `-c --` when CMD starts with '-') with the
// base environment plus QREXEC_AGENT_PID. For executables the socket-only
// options are ignored with a warning. Socket/TCP services: connected by this
// process as it is (no user switch); connection failures are 125.
StartedService StartService(const ServicePlan& plan, const ExecContext& ctx,
                            const StartOptions& options);

// Parse + plan + start in one go, for handlers that need nothing in between.
StartedService ParseAndStartService(std::string_view untrusted_command, UserPrefix user_prefix,
                                    const ExecContext& ctx, const StartOptions& options);

// §4.6: the environment of an executable RPC service: `base` minus every
// variable starting with "QREXEC" except QREXEC_SERVICE_PATH (kept), plus
// QREXEC_SERVICE_FULL_NAME, QREXEC_REMOTE_DOMAIN, QREXEC_SERVICE_ARGUMENT
// (only if a '+' was present), QREXEC_REQUESTED_TARGET_TYPE (empty for
// 2-token commands; "name"/"keyword" with QREXEC_REQUESTED_TARGET /
// QREXEC_REQUESTED_TARGET_KEYWORD for 4-token ones) and
// QREXEC_AGENT_PID=agent_pid.
std::vector<std::string> BuildServiceEnvironment(const char* const* base, const RpcCall& call,
                                                 pid_t agent_pid);
// The helper's argv: HELPER [--pam-confdir=DIR] [--shell-command] USER --
// COMMAND... (`shell_command`: COMMAND is one shell command line).
std::vector<std::string> PamSessionArgv(const PamSessionHelper& helper, const std::string& user,
                                        bool shell_command,
                                        const std::vector<std::string>& command);

// §4.6: [path, ARG] when ARG is non-empty, else [path].
std::vector<std::string> BuildServiceArgv(const std::string& path, const RpcCall& call);

// §4.5: starts `qubes.WaitForSession` from the service path with
// QREXEC_REMOTE_DOMAIN=remote_domain and "<user>\n" written to its stdin
// (stdin, a socket, is then closed; stdout is /dev/null, stderr inherited;
// QREXEC* variables filtered as in §4.6). It runs as we are. kNotFound when there is no such executable service.
Result<ChildProcess> StartWaitForSession(const ExecContext& ctx, std::string_view user,
                                         std::string_view remote_domain);
// Synchronous form (dom0): returns when the process exited, whatever its
// status; Ok without waiting when there is no qubes.WaitForSession.
Status WaitForSession(const ExecContext& ctx, std::string_view user,
                      std::string_view remote_domain);

// §4.6: service stderr is also copied to syslog through `logger -t TAG` with
// TAG = "<SERVICE+ARG>-<SOURCE>" (the descriptor as received, a dash, the
// source; escape-filtered).
std::string LoggerTag(const RpcCall& call);
// Starts `logger -t tag` (/usr/bin/logger, else /bin/logger; no PATH search)
// with a pipe on its stdin (child.stdin_fd(): give it to the service as
// stderr, or copy stderr into it) and /dev/null as stdout/stderr. The base
// environment is `environ` minus QREXEC*. kNotFound when there is no logger.
Result<ChildProcess> StartLogger(std::string_view tag);

}  // namespace qrexec::exec
