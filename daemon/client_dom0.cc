// qrexec-client modes whose service runs in dom0 (modes 1 and 2).
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "base/log.h"
#include "daemon/client_modes.h"
#include "daemon/daemon_socket.h"
#include "daemon/detached_child.h"
#include "exec/command.h"
#include "exec/service.h"
#include "stream/stream.h"
#include "vchan/transport.h"

extern char** environ;

namespace qrexec::daemon {
namespace {

// A call from a VM to dom0 (-c, modes 1 and 2) carries "[nogui:]QUBESRPC ..."
// (qrexec-daemon) or "USER:[nogui:]QUBESRPC ..." (qrexec-policy-exec, our
// tools; the user is ignored: dom0 services always run as us). Anything else
// is a legacy shell command given by a dom0 user, run as `$SHELL -c`, as
// Qubes' qrexec-client does.
bool IsRpcBody(std::string_view text) {
  return text.starts_with("QUBESRPC") || text.starts_with("nogui:");
}

Result<exec::Command> ParseDom0Command(const std::string& text) {
  size_t colon = text.find(':');
  bool user_prefixed = !IsRpcBody(text) && colon != std::string::npos &&
                       IsRpcBody(std::string_view(text).substr(colon + 1));
  auto command = exec::ParseCommand(
      text, user_prefixed ? exec::UserPrefix::kPresent : exec::UserPrefix::kAbsent);
  if (!command) return command;
  command->user.clear();
  return command;
}

Result<exec::ServicePlan> PlanDom0Service(const std::string& text, const exec::ExecContext& ctx) {
  auto command = ParseDom0Command(text);
  if (!command) return tl::unexpected(command.error());
  auto plan = exec::PlanService(std::move(*command), ctx);
  if (!plan) return plan;
  if (plan->NeedsWaitForSession()) (void)exec::WaitForSession(ctx, "", plan->command.rpc->source);
  return plan;
}

Result<proto::ExecParams> DataPeer(const ClientConfig& config, const sys::Deadline& deadline) {
  const ConnectRequest& connect = *config.connect;
  if (config.data_port)
    return proto::ExecParams{static_cast<uint32_t>(connect.source_domid), *config.data_port};
  auto fd = ConnectDaemonSocket(config.socket_dir, connect.source_name, deadline);
  if (!fd) return tl::unexpected(fd.error());
  auto reply = RequestServiceConnect(fd->get(), {0, 0, connect.ident}, deadline);
  if (!reply) return reply;
  return proto::ExecParams{static_cast<uint32_t>(connect.source_domid), reply->connect_port};
}

// Waits for our child `pid` to exit unless it was reaped already.
void WaitUntilGone(pid_t pid) {
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

int ServeDom0Call(UniqueFd vchan, const exec::ServicePlan& plan, const exec::ExecContext& ctx) {
  auto version = stream::Handshake(vchan.get());
  if (!version) {
    LOG_ERROR("data vchan handshake: {}", version.error().ToString());
    return 1;
  }
  exec::StartOptions options;
  options.stderr_io = exec::Stdio::Inherit();  // dom0 service stderr goes to our log
  auto started = exec::StartService(plan, ctx, options);
  if (auto* failure = std::get_if<exec::StartFailure>(&started)) {
    LOG_ERROR("cannot start the service: {}", failure->error.ToString());
    (void)stream::SendSpawnFailure(vchan.get(), failure->exit_code, proto::kProtocolVersion,
                                   *version, sys::Deadline::Never(),
                                   stream::FailureStreams::kStderrFirst);
    return failure->exit_code;
  }
  stream::ServiceConfig sc;
  sc.vchan = std::move(vchan);
  sc.negotiated_version = *version;
  if (auto* socket = std::get_if<exec::StartedSocket>(&started)) {
    sc.child_stdin = std::move(socket->socket);
    sc.socket_service = true;
    sc.exit_on_service_eof = plan.config.exit_on_service_eof;
    sc.exit_on_client_eof = plan.config.exit_on_client_eof;
  } else {
    auto& child = std::get<exec::StartedProcess>(started).child;
    sc.child_stdin = std::move(child.stdin_fd());
    sc.child_stdout = std::move(child.stdout_fd());
    sc.child_pid = DetachChild(std::move(child));
  }
  pid_t service_pid = sc.child_pid;
  auto result = stream::RunService(std::move(sc));
  // The daemon counts this helper against the source domain's dom0 services
  // until it exits (dom0_service.h), so it must not exit before its service:
  // when the caller went away early the stream ends with the service still
  // running (its stdin and stdout are closed now).
  if (service_pid > 0) WaitUntilGone(service_pid);
  if (!result) {
    LOG_ERROR("data stream: {}", result.error().ToString());
    return 1;
  }
  return *result;
}

}  // namespace

int RunDom0ToDom0(const ClientConfig& config) {
  if (!config.command.starts_with("DEFAULT:")) {
    LOG_ERROR("a dom0 -> dom0 command must start with DEFAULT:");
    return exec::kExitProblem;
  }
  exec::ExecContext ctx;
  auto plan = PlanDom0Service(config.command, ctx);
  if (!plan) {
    LOG_ERROR("{}", plan.error().ToString());
    return exec::kExitProblem;
  }
  if (!plan->command.is_rpc()) {
    LOG_ERROR("a dom0 -> dom0 command must be DEFAULT:QUBESRPC ...");
    return exec::kExitProblem;
  }
  const auto* executable = std::get_if<exec::ExecutableService>(&*plan->lookup);
  if (!executable) {
    int code = exec::LookupExitCode(*plan->lookup);
    LOG_ERROR("service {} cannot run here (not an executable service)",
              plan->command.rpc->descriptor);
    return code != 0 ? code : exec::kExitProblem;
  }
  auto argv_strings = exec::BuildServiceArgv(executable->path, *plan->command.rpc);
  auto env_strings = exec::BuildServiceEnvironment(environ, *plan->command.rpc, getpid());
  std::vector<char*> argv, envp;
  for (auto& s : argv_strings) argv.push_back(s.data());
  for (auto& s : env_strings) envp.push_back(s.data());
  argv.push_back(nullptr);
  envp.push_back(nullptr);
  ::execve(executable->path.c_str(), argv.data(), envp.data());
  int err = errno;
  LOG_ERROR("exec {}: {}", executable->path, std::strerror(err));
  return err == ENOENT ? exec::kExitNotFound : exec::kExitProblem;
}

int RunVmToDom0(const ClientConfig& config) {
  auto deadline = sys::Deadline::AfterSeconds(config.timeout_seconds);
  exec::ExecContext ctx;
  auto plan = PlanDom0Service(config.command, ctx);
  auto peer = DataPeer(config, deadline);
  if (!peer) {
    LOG_ERROR("cannot get the data port: {}", peer.error().ToString());
    return exec::kExitProblem;
  }
  auto transport = vchan::MakeTransportFromEnv();
  if (!transport) {
    LOG_ERROR("vchan: {}", transport.error().ToString());
    return exec::kExitProblem;
  }
  auto vchan = (*transport)
                   ->Connect(static_cast<int>(peer->connect_domain),
                             static_cast<int>(peer->connect_port), deadline);
  if (!vchan) {
    LOG_ERROR("cannot connect the data vchan: {}", vchan.error().ToString());
    return exec::kExitProblem;
  }
  int code;
  if (!plan) {
    LOG_ERROR("{}", plan.error().ToString());
    code = exec::kExitProblem;
    if (auto version = stream::Handshake(vchan->get()))
      (void)stream::SendSpawnFailure(vchan->get(), code, proto::kProtocolVersion, *version,
                                     sys::Deadline::Never(), stream::FailureStreams::kStderrFirst);
  } else {
    code = ServeDom0Call(std::move(*vchan), *plan, ctx);
  }
  return config.no_exit_code ? 0 : code;
}

}  // namespace qrexec::daemon
