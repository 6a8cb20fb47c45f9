#include "agent/client_vm.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/c_strings.h"
#include "base/log.h"
#include "stream/stream.h"
#include "vchan/transport.h"

extern char** environ;

namespace qrexec::agent {

Result<std::optional<AgentVerdict>> ReadAgentVerdict(int agent_fd) {
  std::byte buffer[proto::kExecParamsSize];
  size_t got = 0;
  UniqueFd offer;
  while (got < sizeof buffer) {
    auto n = sys::RecvWithFd(agent_fd, std::span(buffer).subspan(got));
    if (!n) return tl::unexpected(n.error());
    if (n->second.valid()) {
      if (offer.valid()) return MakeError(ErrorKind::kMalformed, "two offers from the agent");
      offer = std::move(n->second);
    }
    if (n->first == 0) {
      if (got == 0) return std::optional<AgentVerdict>();
      return MakeError(ErrorKind::kMalformed, "short answer from the agent");
    }
    got += n->first;
  }
  return std::optional(
      AgentVerdict{proto::DecodeExecParams(std::span<const std::byte, 8>(buffer, 8)), std::move(offer)});
}

Result<std::unique_ptr<vchan::PendingServer>> OfferDataChannel(vchan::Transport& transport,
                                                               AgentVerdict& verdict) {
  if (verdict.offer.valid()) return transport.AdoptOffer(std::move(verdict.offer));
  return transport.Offer(static_cast<int>(verdict.params.connect_domain),
                         static_cast<int>(verdict.params.connect_port));
}

namespace {

bool ResolveFilter(Filter filter, int fd, bool default_allowed) {
  if (filter == Filter::kDefault) return default_allowed && ::isatty(fd) == 1;
  return filter == Filter::kOn;
}

Result<UniqueFd> DupCloexec(int fd) {
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return ErrnoError("dup");
  return UniqueFd(copy);
}

// Everything the child needs, prepared before fork().
struct LocalExecPlan {
  std::string path;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::vector<UniqueFd> saved;  // SAVED_FD_* copies (CLOEXEC until the child clears it)
};

Result<LocalExecPlan> PlanLocalExec(const std::vector<std::string>& argv) {
  LocalExecPlan plan;
  plan.path = argv[0];
  plan.argv = argv;
  auto slash = plan.path.rfind('/');
  if (slash != std::string::npos) plan.argv[0] = plan.path.substr(slash + 1);
  int saved_count = std::getenv("PASS_LOCAL_STDERR") != nullptr ? 3 : 2;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    if (entry.starts_with("SAVED_FD_") || entry.starts_with("QREXEC_AGENT_PID=")) continue;
    plan.env.emplace_back(entry);
  }
  for (int fd = 0; fd < saved_count; ++fd) {
    auto copy = DupCloexec(fd);
    if (!copy) return tl::unexpected(copy.error());
    plan.env.push_back("SAVED_FD_" + std::to_string(fd) + "=" + std::to_string(copy->get()));
    plan.saved.push_back(std::move(*copy));
  }
  plan.env.push_back("QREXEC_AGENT_PID=" + std::to_string(::getpid()));
  return plan;
}

[[noreturn]] void ExecLocalChild(LocalExecPlan& plan, char** argv, char** envp, int in, int out,
                                 int error_pipe) {
  if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0) {
    int err = errno;
    (void)!::write(error_pipe, &err, sizeof err);
    ::_exit(kLocalProgramFailedStatus);
  }
  for (auto& fd : plan.saved) ::fcntl(fd.get(), F_SETFD, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(plan.path.c_str(), argv, envp);
  int err = errno;
  (void)!::write(error_pipe, &err, sizeof err);
  ::_exit(kLocalProgramFailedStatus);
}

}  // namespace

Result<LocalProgram> StartLocalProgram(const std::vector<std::string>& argv) {
  auto plan = PlanLocalExec(argv);
  if (!plan) return tl::unexpected(plan.error());
  auto stdin_pair = sys::SocketPair();
  auto stdout_pair = sys::SocketPair();
  auto error_pipe = sys::Pipe();
  if (!stdin_pair || !stdout_pair || !error_pipe) return ErrnoError("socketpair");
  auto c_argv = CStringArray(plan->argv);
  auto c_env = CStringArray(plan->env);
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork");
  if (pid == 0) {
    ExecLocalChild(*plan, c_argv.data(), c_env.data(), stdin_pair->second.get(),
                   stdout_pair->second.get(), error_pipe->second.get());
  }
  error_pipe->second.reset();
  int child_errno = 0;
  auto got = sys::ReadExact(error_pipe->first.get(), sys::AsWritableBytes(child_errno));
  // A program that cannot start does not abandon the call (as in Qubes): the
  // child exits kLocalProgramFailedStatus unreaped, so the stream sees its
  // EOF and its status like any program's.
  if (got) LOG_ERROR("cannot execute {}: {}", argv[0], std::strerror(child_errno));
  return LocalProgram{pid, std::move(stdin_pair->first), std::move(stdout_pair->first)};
}

Result<proto::Bytes> BuildTriggerRequest(const ClientVmOptions& options) {
  proto::Trigger trigger;
  trigger.type = proto::MsgType::kTriggerService4;
  trigger.requested_source = options.source_qube.value_or("").substr(0, 63);
  trigger.target = ConvertTargetName(options.target);
  trigger.request_id = "SOCKET";
  trigger.service = options.service;
  return proto::EncodeTrigger(trigger);
}

namespace {

// Asks the agent; returns its verdict, or an exit status to stop with.
std::variant<AgentVerdict, int> RequestCall(const ClientVmOptions& options, int agent_fd) {
  auto request = BuildTriggerRequest(options);
  if (!request) {
    // Only a service name over limits::kMaxServiceNameLen gets here; Qubes'
    // agent refuses such a request, and so exits its client: 126.
    LOG_ERROR("invalid request: {}", request.error().ToString());
    std::fputs("Request refused\n", stderr);
    return kClientExitRefused;
  }
  if (auto sent = sys::WriteAll(agent_fd, *request); !sent) {
    LOG_ERROR("cannot send the request to the agent: {}", sent.error().ToString());
    return kClientExitLocalError;
  }
  auto verdict = ReadAgentVerdict(agent_fd);
  if (!verdict) {
    LOG_ERROR("cannot read the answer of the agent: {}", verdict.error().ToString());
    return kClientExitLocalError;
  }
  if (!*verdict) {
    std::fputs("Request refused\n", stderr);
    return kClientExitRefused;
  }
  return std::move(**verdict);
}

// Fills the local side of the caller config (stdio, stdin socket or program).
Status SetUpLocalSide(const ClientVmOptions& options, stream::CallerConfig& config) {
  bool has_program = !options.local_program.empty();
  config.filter_stdout = ResolveFilter(options.filter_stdout, 1, !has_program);
  config.filter_stderr = ResolveFilter(options.filter_stderr, 2, true);
  config.prefix_data = options.prefix_data.value_or("");
  if (options.use_stdin_socket) {
    config.in = UniqueFd(0);
    config.single_socket = true;
    return Ok();
  }
  if (!has_program) {
    config.in = UniqueFd(0);
    config.out = UniqueFd(1);
    return Ok();
  }
  // The program may signal SIGUSR1 (QREXEC_AGENT_PID) as soon as it runs;
  // keep it pending until the stream's signal watch takes it.
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, nullptr);
  config.switch_on_sigusr1 = true;
  auto program = StartLocalProgram(options.local_program);
  if (!program) return tl::unexpected(program.error());
  config.in = std::move(program->from_program);
  config.out = std::move(program->to_program);
  config.local_program_pid = program->pid;
  return Ok();
}

int KillLocalProgram(pid_t pid, int status) {
  if (pid > 0) {
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
  }
  return status;
}

}  // namespace

int RunClientVm(const ClientVmOptions& options) {
  if (options.use_stdin_socket && !sys::IsStreamSocket(0)) {
    LOG_ERROR("--use-stdin-socket: standard input is not a stream socket");
    return kClientExitUsage;
  }
  auto agent = sys::UnixConnect(options.agent_socket);
  if (!agent) {
    LOG_ERROR("cannot connect to the agent at {}: {}", options.agent_socket,
              agent.error().ToString());
    return kClientExitLocalError;
  }
  auto answer = RequestCall(options, agent->get());
  if (const int* status = std::get_if<int>(&answer)) return *status;
  auto& verdict = std::get<AgentVerdict>(answer);
  auto transport = vchan::MakeTransportFromEnv();
  if (!transport) {
    LOG_ERROR("no vchan transport: {}", transport.error().ToString());
    return kClientExitLocalError;
  }
  auto pending = OfferDataChannel(**transport, verdict);
  if (!pending) {
    LOG_ERROR("cannot offer the data vchan: {}", pending.error().ToString());
    return kClientExitLocalError;
  }
  stream::CallerConfig config;
  if (auto local = SetUpLocalSide(options, config); !local) {
    LOG_ERROR("{}", local.error().ToString());
    return kClientExitLocalError;
  }
  auto vchan = (*pending)->Finish(sys::Deadline::AfterSeconds(kClientVchanTimeoutSeconds));
  if (!vchan) {
    LOG_ERROR("data vchan connection failed: {}", vchan.error().ToString());
    return KillLocalProgram(config.local_program_pid, kClientExitLocalError);
  }
  config.vchan = std::move(*vchan);
  auto result = stream::RunCaller(std::move(config));
  if (!result) {
    LOG_ERROR("{}", result.error().ToString());
    return kClientExitLocalError;
  }
  return *result;
}

}  // namespace qrexec::agent
