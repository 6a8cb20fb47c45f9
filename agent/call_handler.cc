#include "agent/call_handler.h"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <optional>

#include "base/escape_filter.h"
#include "base/log.h"
#include "base/sys.h"
#include "exec/command.h"
#include "proto/framing.h"
#include "stream/stream.h"
#include "vchan/transport.h"

namespace qrexec::agent {
namespace {

// The stream engine reaps the service itself (pidfd), and a MSG_JUST_EXEC
// process must outlive its handler; exec::ChildProcess would kill and reap
// it on destruction, so it gives the child up instead.
pid_t Detach(exec::ChildProcess child) { return child.Release(); }

Status SendExitCode(int vchan_fd, int code) {
  std::byte body[4];
  proto::StoreU32(body, static_cast<uint32_t>(code));
  return proto::WriteMessage(vchan_fd, proto::MsgType::kDataExitCode, body);
}

// MSG_JUST_EXEC (§2.11): the process gets /dev/null as stdin and stdout; we
// only report whether it started.
int RunJustExec(UniqueFd vchan, const exec::ServicePlan& plan, const exec::ExecContext& ctx) {
  exec::StartOptions options;
  options.stdin_io = exec::Stdio::Null();
  options.stdout_io = exec::Stdio::Null();
  options.stderr_io = exec::Stdio::Inherit();
  // The process's stderr goes to syslog (§4.6) when there is a logger.
  std::optional<exec::ChildProcess> logger;
  if (plan.command.rpc) {
    auto started_logger = exec::StartLogger(exec::LoggerTag(*plan.command.rpc));
    if (started_logger) logger.emplace(std::move(*started_logger));
  }
  if (logger) options.stderr_io = exec::Stdio::Fd(logger->stdin_fd().get());
  auto started = exec::StartService(plan, ctx, options);
  if (logger) {
    logger->stdin_fd().reset();
    Detach(std::move(*logger));
  }
  int code = 0;
  if (auto* failure = std::get_if<exec::StartFailure>(&started)) {
    LOG_ERROR("cannot start the command: {}", SanitizeForLog(failure->error.ToString()));
    code = failure->exit_code;
  } else if (auto* process = std::get_if<exec::StartedProcess>(&started)) {
    Detach(std::move(process->child));
  }
  auto version = stream::Handshake(vchan.get(), proto::kProtocolVersion,
                                   sys::Deadline::AfterSeconds(kDataVchanTimeoutSeconds));
  if (!version) {
    LOG_ERROR("data vchan handshake failed: {}", version.error().ToString());
    return 1;
  }
  if (auto sent = SendExitCode(vchan.get(), code); !sent)
    LOG_ERROR("cannot send the exit code: {}", sent.error().ToString());
  return 0;
}

// Services get a socket as stdin so that they can switch to one socket for
// both directions (SIGUSR1 to QREXEC_AGENT_PID, §2.7); SIGUSR1 stays blocked
// until the stream's signal watch takes it.
void BlockSigusr1() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, nullptr);
}

stream::ServiceConfig ConfigFor(exec::StartedService& started, const exec::ServicePlan& plan,
                                UniqueFd stdin_socket) {
  stream::ServiceConfig config;
  if (auto* socket = std::get_if<exec::StartedSocket>(&started)) {
    config.child_stdin = std::move(socket->socket);
    config.socket_service = true;
    config.exit_on_service_eof = plan.config.exit_on_service_eof;
    config.exit_on_client_eof = plan.config.exit_on_client_eof;
    return config;
  }
  auto& child = std::get<exec::StartedProcess>(started).child;
  config.child_stdin = std::move(stdin_socket);
  config.child_stdout = std::move(child.stdout_fd());
  config.child_stderr = std::move(child.stderr_fd());
  config.child_pid = Detach(std::move(child));
  config.switch_on_sigusr1 = true;
  return config;
}

Result<UniqueFd> ConnectDataVchan(const proto::ExecParams& peer) {
  auto transport = vchan::MakeTransportFromEnv();
  if (!transport) {
    LOG_ERROR("no vchan transport: {}", transport.error().ToString());
    return tl::unexpected(transport.error());
  }
  auto vchan = (*transport)
                   ->Connect(static_cast<int>(peer.connect_domain), static_cast<int>(peer.connect_port),
                             sys::Deadline::AfterSeconds(kDataVchanTimeoutSeconds));
  if (!vchan)
    LOG_ERROR("cannot connect the data vchan to domain {} port {}: {}", peer.connect_domain,
              peer.connect_port, vchan.error().ToString());
  return vchan;
}

// §4.6: the service's stderr also goes to `logger -t SERVICE+ARG-SOURCE`.
// The stream asks for it when the service first writes to stderr; `logger`
// keeps the process so that the call can wait for it.
std::function<UniqueFd()> StderrLogOpener(const exec::RpcCall& rpc,
                                          std::optional<exec::ChildProcess>& logger) {
  return [&logger, tag = exec::LoggerTag(rpc)]() -> UniqueFd {
    auto started = exec::StartLogger(tag);
    if (!started) {
      if (started.error().kind != ErrorKind::kNotFound)
        LOG_WARNING("cannot start logger: {}", started.error().ToString());
      return UniqueFd();
    }
    UniqueFd input = std::move(started->stdin_fd());
    logger.emplace(std::move(*started));
    return input;
  };
}

// The stream has closed the logger's input; give it a moment to pass the
// last lines on (a warm handler must not leave it behind as a zombie).
// After a second it is killed (ChildProcess's destructor).
void AwaitLogger(exec::ChildProcess& logger) {
  constexpr int kLoggerGraceSeconds = 1;
  if (logger.pidfd() >= 0)
    (void)sys::WaitReadable(logger.pidfd(), sys::Deadline::AfterSeconds(kLoggerGraceSeconds));
  (void)logger.TryWait();
}

// A service that could not start: reports the failure (§2.7) and ends our
// direction (the caller sees EOF after EXIT_CODE, as from a closed vchan),
// then reads and drops whatever the caller still sends until it closes.
// Qubes' callers send STDIN right after the hello, without waiting for the
// service to start; closing first would make those writes fail with EPIPE.
// A real caller closes as soon as it has EXIT_CODE; one that does not is cut
// off after kCallerCloseGraceSeconds. Every backend's channel is a socket
// (vchan/transport.h), so the half close works.
int ReportStartFailure(int vchan_fd, int code) {
  constexpr int kCallerCloseGraceSeconds = 2;
  if (auto sent = stream::SendSpawnFailure(vchan_fd, code); !sent) {
    LOG_ERROR("cannot report the failure: {}", sent.error().ToString());
    return code;
  }
  ::shutdown(vchan_fd, SHUT_WR);
  auto closed =
      sys::DiscardToEof(vchan_fd, sys::Deadline::AfterSeconds(kCallerCloseGraceSeconds));
  if (!closed) LOG_DEBUG("caller did not close after the failure: {}", closed.error().ToString());
  return code;
}

// Like Qubes, the data vchan is joined first and the service started only
// then: a call whose caller went away never runs its service.
int RunExecCmdline(UniqueFd vchan, const exec::ServicePlan& plan, const exec::ExecContext& ctx,
                   const std::string& timing_key) {
  auto stdin_pair = sys::SocketPair();
  if (!stdin_pair) {
    LOG_ERROR("{}", stdin_pair.error().ToString());
    return ReportStartFailure(vchan.get(), exec::kExitProblem);
  }
  BlockSigusr1();
  exec::StartOptions options;
  options.stdin_io = exec::Stdio::Fd(stdin_pair->second.get());
  auto started = exec::StartService(plan, ctx, options);
  stdin_pair->second.reset();
  LOG_CALL_STAGE(timing_key, "service_started");
  if (auto* failure = std::get_if<exec::StartFailure>(&started)) {
    LOG_ERROR("cannot start the service: {}", SanitizeForLog(failure->error.ToString()));
    return ReportStartFailure(vchan.get(), failure->exit_code);
  }
  stream::ServiceConfig config = ConfigFor(started, plan, std::move(stdin_pair->first));
  config.vchan = std::move(vchan);
  std::optional<exec::ChildProcess> logger;
  if (plan.command.rpc) config.open_stderr_copy = StderrLogOpener(*plan.command.rpc, logger);
  auto result = stream::RunService(std::move(config));
  if (logger) AwaitLogger(*logger);
  LOG_CALL_STAGE(timing_key, "exit_code_sent");
  if (!result) {
    LOG_ERROR("data stream failed: {}", result.error().ToString());
    return 1;
  }
  return *result;
}

int ReportPlanFailure(UniqueFd vchan, proto::ExecType type, int code) {
  if (type == proto::ExecType::kJustExec) {
    auto version = stream::Handshake(vchan.get(), proto::kProtocolVersion,
                                     sys::Deadline::AfterSeconds(kDataVchanTimeoutSeconds));
    if (version) (void)SendExitCode(vchan.get(), code);
    return code;
  }
  return ReportStartFailure(vchan.get(), code);
}

}  // namespace

int RunCallHandler(const CallPlan& call, const exec::ExecContext& ctx) {
  auto vchan = ConnectDataVchan(call.peer);
  if (!vchan) return 1;
  std::string timing_key = fmt::format("port={}", call.peer.connect_port);
  LOG_CALL_STAGE(timing_key, "vchan_connected");
  if (const int* code = std::get_if<int>(&call.service))
    return ReportPlanFailure(std::move(*vchan), call.type, *code);
  const auto& plan = std::get<exec::ServicePlan>(call.service);
  if (call.type == proto::ExecType::kJustExec) return RunJustExec(std::move(*vchan), plan, ctx);
  return RunExecCmdline(std::move(*vchan), plan, ctx, timing_key);
}

void ForgetParentLoop(std::span<const int> keep_fds) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int signo : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE, SIGUSR1}) ::signal(signo, SIG_DFL);
  sys::CloseFdsExcept(keep_fds);
}

Result<pid_t> ForkCallHandler(const CallPlan& call, const exec::ExecContext& ctx,
                              std::span<const int> keep_fds) {
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork");
  if (pid > 0) return pid;
  ForgetParentLoop(keep_fds);
  ::_exit(RunCallHandler(call, ctx));
}

CallPlan PlanCall(proto::ExecType type, proto::ExecParams peer, std::string_view command,
                  exec::UserPrefix prefix, const exec::ExecContext& ctx) {
  CallPlan call;
  call.type = type;
  call.peer = peer;
  call.command = std::string(command);
  auto parsed = exec::ParseCommand(command, prefix);
  if (!parsed) {
    LOG_ERROR("invalid command: {}", SanitizeForLog(parsed.error().ToString()));
    call.service = exec::kExitProblem;
    return call;
  }
  auto plan = exec::PlanService(std::move(*parsed), ctx);
  if (!plan) {
    LOG_ERROR("cannot prepare the service: {}", SanitizeForLog(plan.error().ToString()));
    call.service = exec::ExitCodeForError(plan.error());
    return call;
  }
  call.service = std::move(*plan);
  return call;
}

}  // namespace qrexec::agent
