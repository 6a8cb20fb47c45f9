// qrexec-client modes whose target is a VM (modes 3 and 4).
#include <poll.h>
#include <unistd.h>

#include <cerrno>

#include "admin/client.h"
#include "base/log.h"
#include "base/sys.h"
#include "daemon/client_modes.h"
#include "daemon/daemon_socket.h"
#include "daemon/detached_child.h"
#include "exec/exit_status.h"
#include "exec/service.h"
#include "stream/stream.h"
#include "vchan/transport.h"

extern char** environ;

namespace qrexec::daemon {
namespace {

constexpr int kVmToVmFailed = 137;

exec::StartedService StartLocalService(const std::string& command,
                                       const exec::StartOptions& options) {
  exec::ExecContext ctx;
  return exec::ParseAndStartService(command, exec::UserPrefix::kAbsent, ctx, options);
}

exec::StartedService StartShellCommand(const ClientConfig& config, const std::string& command) {
  exec::SpawnSpec spec;
  spec.path = "/bin/bash";
  spec.argv = {"bash", "-c", command};
  for (char** env = environ; *env; ++env) spec.env.emplace_back(*env);
  spec.env.push_back("QREXEC_REMOTE_DOMAIN=" + config.domain);
  spec.stderr_io = exec::Stdio::Inherit();
  spec.new_session = false;
  auto child = exec::ChildProcess::Spawn(spec);
  if (!child) return exec::StartFailure{exec::ExitCodeForError(child.error()), child.error()};
  return exec::StartedProcess{std::move(*child)};
}

// A local program (-l) connected through two pipes; QUBESRPC commands are
// started as services, anything else through `bash -c`.
Result<pid_t> StartLocalProgram(const ClientConfig& config, stream::CallerConfig& caller) {
  std::string command = *config.local_program;
  exec::StartOptions options;
  options.stderr_io = exec::Stdio::Inherit();
  auto started = command.starts_with("QUBESRPC ") ? StartLocalService(command, options)
                                                  : StartShellCommand(config, command);
  if (auto* failure = std::get_if<exec::StartFailure>(&started))
    return tl::unexpected(failure->error);
  if (auto* socket = std::get_if<exec::StartedSocket>(&started)) {
    caller.in = std::move(socket->socket);
    caller.single_socket = true;
    return -1;
  }
  auto& child = std::get<exec::StartedProcess>(started).child;
  caller.in = std::move(child.stdout_fd());
  caller.out = std::move(child.stdin_fd());
  return DetachChild(std::move(child));
}

// Local side of a dom0 -> VM call. kMalformed for --use-stdin-socket misuse.
Status SetUpLocalSide(const ClientConfig& config, stream::CallerConfig& caller) {
  if (config.just_exec) return Ok();
  if (config.local_program) {
    auto pid = StartLocalProgram(config, caller);
    if (!pid) return tl::unexpected(pid.error());
    caller.local_program_pid = *pid;
    return Ok();
  }
  caller.in = UniqueFd(0);
  if (config.use_stdin_socket) {
    caller.single_socket = true;
    return Ok();
  }
  caller.out = UniqueFd(1);
  return Ok();
}

Result<UniqueFd> ServeDataVchan(const proto::ExecParams& peer, const sys::Deadline& deadline) {
  auto transport = vchan::MakeTransportFromEnv();
  if (!transport) return tl::unexpected(transport.error());
  return (*transport)
      ->Serve(static_cast<int>(peer.connect_domain), static_cast<int>(peer.connect_port), deadline);
}

void KillDomain(const ClientConfig& config) {
  auto killed = admin::CallOk(config.qubesd_socket, "admin.vm.Kill", config.domain);
  if (!killed) LOG_WARNING("admin.vm.Kill {}: {}", config.domain, killed.error().ToString());
}

int CallVm(const ClientConfig& config) {
  if (config.use_stdin_socket && !sys::IsStreamSocket(0)) {
    LOG_ERROR("--use-stdin-socket: standard input is not a stream socket");
    return 2;
  }
  auto daemon = ConnectDaemonSocket(config.socket_dir, config.domain, sys::Deadline::Never());
  if (!daemon) {
    LOG_ERROR("cannot connect to the qrexec daemon of {}: {}", config.domain,
              daemon.error().ToString());
    return exec::kExitProblem;
  }
  auto type = config.just_exec ? proto::ExecType::kJustExec : proto::ExecType::kExecCmdline;
  auto peer = RequestExec(daemon->get(), {type, 0, 0, config.command}, sys::Deadline::Never());
  if (!peer) {
    LOG_ERROR("request refused by the daemon: {}", peer.error().ToString());
    return exec::kExitProblem;
  }
  auto vchan = ServeDataVchan(*peer, sys::Deadline::AfterSeconds(config.timeout_seconds));
  if (!vchan) {
    LOG_ERROR("data vchan to {}: {}", config.domain, vchan.error().ToString());
    return exec::kExitProblem;
  }
  daemon->reset();
  stream::CallerConfig caller;
  caller.vchan = std::move(*vchan);
  caller.filter_stdout = config.filter_stdout;
  caller.filter_stderr = config.filter_stderr;
  caller.prefix_data = config.prefix_data.value_or("");
  if (auto st = SetUpLocalSide(config, caller); !st) {
    LOG_ERROR("local program: {}", st.error().ToString());
    return exec::kExitProblem;
  }
  auto result = stream::RunCaller(std::move(caller));
  if (!result) {
    LOG_ERROR("data stream: {}", result.error().ToString());
    return exec::kExitProblem;
  }
  return *result;
}

}  // namespace

int RunDom0ToVm(const ClientConfig& config) {
  int code = CallVm(config);
  if (config.kill_after) KillDomain(config);
  if (code == 2 || code == 1) return code;
  return config.no_exit_code ? 0 : code;
}

// -W: waits until either daemon connection closes. The target daemon closes
// it when its agent reports the call's end; the source daemon when its agent
// reports the caller gone (possibly before the target joined the call).
// Anything either sends meanwhile is read and ignored.
static void WaitForCallEnd(int target_fd, int source_fd) {
  pollfd fds[2] = {{target_fd, POLLIN, 0}, {source_fd, POLLIN, 0}};
  char buffer[4096];
  for (;;) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (const pollfd& p : fds) {
      if (p.revents == 0) continue;
      ssize_t got = ::read(p.fd, buffer, sizeof buffer);
      if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) return;
    }
  }
}

// Connects the target and joins the source's caller to it; 0 once the call
// is set up (and, with -W, over).
static int JoinVmToVm(const ClientConfig& config) {
  const ConnectRequest& connect = *config.connect;
  auto deadline = sys::Deadline::Never();
  auto target = ConnectDaemonSocket(config.socket_dir, config.domain, deadline);
  if (!target) {
    LOG_ERROR("target {}: {}", config.domain, target.error().ToString());
    return kVmToVmFailed;
  }
  auto peer = RequestExec(target->get(),
                          {proto::ExecType::kExecCmdline,
                           static_cast<uint32_t>(connect.source_domid), 0, config.command},
                          deadline);
  if (!peer) {
    LOG_ERROR("target {}: {}", config.domain, peer.error().ToString());
    return kVmToVmFailed;
  }
  auto source =
      ConnectDaemonSocket(config.socket_dir, std::to_string(connect.source_domid), deadline);
  if (!source) {
    LOG_ERROR("source domain {}: {}", connect.source_domid, source.error().ToString());
    return kVmToVmFailed;
  }
  auto sent = RequestServiceConnect(
      source->get(), {peer->connect_domain, peer->connect_port, connect.ident}, deadline);
  if (!sent) {
    LOG_ERROR("source domain {}: {}", connect.source_domid, sent.error().ToString());
    return kVmToVmFailed;
  }
  if (config.wait_connection_end) WaitForCallEnd(target->get(), source->get());
  return 0;
}

int RunVmToVm(const ClientConfig& config) {
  int code = JoinVmToVm(config);
  // -k (a disposable made for this call): gone once the call is over or
  // could not be set up.
  if (config.kill_after) KillDomain(config);
  return code;
}

}  // namespace qrexec::daemon
