#include "exec/service.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "base/escape_filter.h"
#include "base/log.h"
#include "base/sys.h"
#include "exec/socket_service.h"

extern char** environ;

namespace qrexec::exec {
namespace {

constexpr std::string_view kWaitForSessionService = "qubes.WaitForSession";

const char* const* BaseEnvironment(const ExecContext& ctx) {
  return ctx.base_environment != nullptr ? ctx.base_environment : environ;
}

pid_t AgentPid(const ExecContext& ctx) { return ctx.agent_pid != 0 ? ctx.agent_pid : ::getpid(); }

std::string_view VariableName(std::string_view entry) {
  size_t eq = entry.find('=');
  return eq == std::string_view::npos ? std::string_view() : entry.substr(0, eq);
}

// `base` without the QREXEC* variables a service must not inherit (§4.6);
// QREXEC_SERVICE_PATH is kept, QREXEC_AGENT_PID is set again by the caller.
std::vector<std::string> FilteredEnvironment(const char* const* base) {
  std::vector<std::string> env;
  for (const char* const* entry = base; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    std::string_view name = VariableName(text);
    if (name.empty()) continue;
    if (name.starts_with("QREXEC") && name != "QREXEC_SERVICE_PATH") continue;
    env.emplace_back(text);
  }
  return env;
}

void SetVariable(std::vector<std::string>& env, std::string_view name, std::string_view value) {
  std::erase_if(env, [&](const std::string& entry) { return VariableName(entry) == name; });
  std::string entry(name);
  entry += '=';
  entry += value;
  env.push_back(std::move(entry));
}

std::string GetVariable(const char* const* base, std::string_view name) {
  for (const char* const* entry = base; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    if (VariableName(text) == name) return std::string(text.substr(name.size() + 1));
  }
  return {};
}

void SetUserVariables(std::vector<std::string>& env, const UserIdentity& user) {
  SetVariable(env, "HOME", user.home);
  SetVariable(env, "USER", user.name);
  SetVariable(env, "LOGNAME", user.name);
  SetVariable(env, "SHELL", user.shell);
}

StartFailure Failure(int exit_code, Error error) { return StartFailure{exit_code, std::move(error)}; }

// Does this service go through the PAM session helper? Only when we switch
// to another user (ResolveRunAs gives an identity only when we are root).
bool UsesPamSession(const ExecContext& ctx, const std::optional<UserIdentity>& run_as) {
  return ctx.pam_session && run_as && run_as->uid != ::geteuid();
}

// The helper runs as we are (root) and switches user itself, after PAM.
SpawnSpec ThroughPamSession(SpawnSpec spec, const PamSessionHelper& helper,
                            const UserIdentity& user, bool shell_command,
                            const std::vector<std::string>& command) {
  spec.path = helper.path;
  spec.argv = PamSessionArgv(helper, user.name, shell_command, command);
  return spec;
}

StartedService SpawnWith(SpawnSpec spec, std::optional<UserIdentity> run_as,
                         const StartOptions& options, bool through_helper = false) {
  if (through_helper) {
    spec.stdin_io = options.stdin_io;
    spec.stdout_io = options.stdout_io;
    spec.stderr_io = options.stderr_io;
    auto child = ChildProcess::Spawn(spec);
    // A missing helper is a broken installation, not a missing service.
    if (!child) return Failure(kExitProblem, child.error());
    return StartedProcess{std::move(*child)};
  }
  if (run_as) {
    SetUserVariables(spec.env, *run_as);
    spec.working_dir = run_as->home;
    spec.run_as = std::move(run_as);
  }
  spec.stdin_io = options.stdin_io;
  spec.stdout_io = options.stdout_io;
  spec.stderr_io = options.stderr_io;
  auto child = ChildProcess::Spawn(spec);
  if (!child) return Failure(ExitCodeForError(child.error()), child.error());
  return StartedProcess{std::move(*child)};
}

StartedService FinishSocket(const ServicePlan& plan, Result<UniqueFd> socket, bool tcp) {
  if (!socket) {
    LOG_ERROR("service {}: {}", SanitizeForLog(plan.command.rpc->descriptor),
              socket.error().ToString());
    return Failure(kExitProblem, socket.error());
  }
  if (!plan.config.skip_service_descriptor) {
    if (Status ok = WriteServiceDescriptor(socket->get(), plan.command.rpc->rpc_text); !ok)
      return Failure(kExitProblem, ok.error());
  }
  return StartedSocket{std::move(*socket), tcp};
}

}  // namespace

bool ServicePlan::NeedsWaitForSession() const {
  return command.is_rpc() && config.wait_for_session && !command.nogui;
}

bool ServicePlan::MayUseForkServer() const {
  return !command.nogui && !config.skip_service_descriptor && !config.exit_on_service_eof &&
         !config.exit_on_client_eof;
}

Result<ServicePlan> PlanService(Command command, const ExecContext& ctx) {
  ServicePlan plan;
  if (command.is_rpc()) {
    const RpcCall& call = *command.rpc;
    if (ctx.load_rpc_config) {
      auto config = LoadRpcConfig(ctx.config_path, call.service_name, call.argument);
      if (!config) {
        LOG_ERROR("rpc-config for {}: {}", SanitizeForLog(call.descriptor),
                  config.error().ToString());
        return tl::unexpected(config.error());
      }
      plan.config = std::move(*config);
    }
    plan.lookup = LookupService(ctx.service_path, call.service_name, call.argument);
  }
  plan.effective_user = plan.config.force_user ? *plan.config.force_user : command.user;
  plan.command = std::move(command);
  return plan;
}

std::vector<std::string> BuildServiceEnvironment(const char* const* base, const RpcCall& call,
                                                 pid_t agent_pid) {
  std::vector<std::string> env = FilteredEnvironment(base);
  SetVariable(env, "QREXEC_SERVICE_FULL_NAME", call.descriptor);
  SetVariable(env, "QREXEC_REMOTE_DOMAIN", call.source);
  if (call.argument) SetVariable(env, "QREXEC_SERVICE_ARGUMENT", *call.argument);
  switch (call.target_type) {
    case TargetType::kNone:
      SetVariable(env, "QREXEC_REQUESTED_TARGET_TYPE", "");
      break;
    case TargetType::kName:
      SetVariable(env, "QREXEC_REQUESTED_TARGET_TYPE", "name");
      SetVariable(env, "QREXEC_REQUESTED_TARGET", call.target);
      break;
    case TargetType::kKeyword:
      SetVariable(env, "QREXEC_REQUESTED_TARGET_TYPE", "keyword");
      SetVariable(env, "QREXEC_REQUESTED_TARGET_KEYWORD", call.target);
      break;
  }
  SetVariable(env, "QREXEC_AGENT_PID", std::to_string(agent_pid));
  return env;
}

std::vector<std::string> PamSessionArgv(const PamSessionHelper& helper, const std::string& user,
                                        bool shell_command,
                                        const std::vector<std::string>& command) {
  std::vector<std::string> argv{helper.path};
  if (!helper.confdir.empty()) argv.push_back("--pam-confdir=" + helper.confdir);
  if (shell_command) argv.emplace_back("--shell-command");
  argv.push_back(user);
  argv.emplace_back("--");
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

std::vector<std::string> BuildServiceArgv(const std::string& path, const RpcCall& call) {
  std::vector<std::string> argv{path};
  if (call.argument && !call.argument->empty()) argv.push_back(*call.argument);
  return argv;
}

StartedService StartService(const ServicePlan& plan, const ExecContext& ctx,
                            const StartOptions& options) {
  const char* const* base = BaseEnvironment(ctx);
  pid_t agent_pid = AgentPid(ctx);

  auto resolve_user = [&]() -> Result<std::optional<UserIdentity>> {
    if (plan.effective_user.empty()) return std::optional<UserIdentity>();
    return ResolveRunAs(plan.effective_user);
  };

  if (!plan.command.is_rpc()) {
    auto run_as = resolve_user();
    if (!run_as) return Failure(kExitProblem, run_as.error());
    std::string shell = *run_as ? (*run_as)->shell : GetVariable(base, "SHELL");
    if (shell.empty()) shell = "/bin/sh";
    SpawnSpec spec;
    spec.path = shell;
    // A command that starts with '-' would be read as shell options: end
    // them with "--" (only then, so every other command is `$SHELL -c CMD`).
    if (plan.command.shell_command.starts_with('-'))
      spec.argv = {shell, "-c", "--", plan.command.shell_command};
    else
      spec.argv = {shell, "-c", plan.command.shell_command};
    for (const char* const* entry = base; entry != nullptr && *entry != nullptr; ++entry)
      if (!VariableName(*entry).empty()) spec.env.emplace_back(*entry);
    SetVariable(spec.env, "QREXEC_AGENT_PID", std::to_string(agent_pid));
    if (UsesPamSession(ctx, *run_as)) {
      spec = ThroughPamSession(std::move(spec), *ctx.pam_session, **run_as, true,
                               {plan.command.shell_command});
      return SpawnWith(std::move(spec), std::nullopt, options, true);
    }
    return SpawnWith(std::move(spec), std::move(*run_as), options);
  }

  const RpcCall& call = *plan.command.rpc;
  if (!plan.lookup)
    return Failure(kExitProblem, Error{ErrorKind::kInternal, "service was not looked up", 0});
  const ServiceLookup& lookup = *plan.lookup;

  if (std::holds_alternative<ServiceNotFound>(lookup)) {
    LOG_ERROR("service {} not found", SanitizeForLog(call.descriptor));
    return Failure(kExitNotFound, Error{ErrorKind::kNotFound, "service not found", 0});
  }
  if (const auto* problem = std::get_if<ServiceProblem>(&lookup)) {
    LOG_ERROR("service {}: {}", SanitizeForLog(call.descriptor), problem->error.ToString());
    return Failure(kExitProblem, problem->error);
  }
  bool is_socket = std::holds_alternative<SocketService>(lookup);
  bool is_tcp = std::holds_alternative<TcpService>(lookup);
  if ((is_socket || is_tcp) && !options.allow_socket_services)
    return Failure(kExitProblem,
                   Error{ErrorKind::kRefused, "socket services are not allowed here", 0});
  if (is_socket)
    return FinishSocket(plan, ConnectUnixService(std::get<SocketService>(lookup).path), false);
  if (is_tcp)
    return FinishSocket(plan, ConnectTcpService(std::get<TcpService>(lookup).endpoint), true);

  const auto& executable = std::get<ExecutableService>(lookup);
  if (plan.config.skip_service_descriptor || plan.config.exit_on_service_eof ||
      plan.config.exit_on_client_eof)
    LOG_WARNING("service {}: socket-service options ignored for an executable service",
                SanitizeForLog(call.descriptor));
  auto run_as = resolve_user();
  if (!run_as) {
    LOG_ERROR("service {}: cannot run as {}: {}", SanitizeForLog(call.descriptor),
              SanitizeForLog(plan.effective_user), run_as.error().ToString());
    return Failure(kExitProblem, run_as.error());
  }
  SpawnSpec spec;
  spec.path = executable.path;
  spec.argv = BuildServiceArgv(executable.path, call);
  spec.env = BuildServiceEnvironment(base, call, agent_pid);
  if (UsesPamSession(ctx, *run_as)) {
    std::vector<std::string> command = spec.argv;  // spec is moved below
    spec = ThroughPamSession(std::move(spec), *ctx.pam_session, **run_as, false, command);
    return SpawnWith(std::move(spec), std::nullopt, options, true);
  }
  return SpawnWith(std::move(spec), std::move(*run_as), options);
}

StartedService ParseAndStartService(std::string_view untrusted_command, UserPrefix user_prefix,
                                    const ExecContext& ctx, const StartOptions& options) {
  auto command = ParseCommand(untrusted_command, user_prefix);
  if (!command) {
    LOG_ERROR("invalid command: {}", command.error().ToString());
    return Failure(kExitProblem, command.error());
  }
  auto plan = PlanService(std::move(*command), ctx);
  if (!plan) return Failure(kExitProblem, plan.error());
  return StartService(*plan, ctx, options);
}

Result<ChildProcess> StartWaitForSession(const ExecContext& ctx, std::string_view user,
                                         std::string_view remote_domain) {
  ServiceLookup lookup = LookupService(ctx.service_path, kWaitForSessionService, std::nullopt);
  if (const auto* problem = std::get_if<ServiceProblem>(&lookup))
    return tl::unexpected(problem->error);
  const auto* executable = std::get_if<ExecutableService>(&lookup);
  if (executable == nullptr)
    return MakeError(ErrorKind::kNotFound, "no executable qubes.WaitForSession service");

  // stdin is a socket so that writing the user name to a service that has
  // already exited gives EPIPE instead of SIGPIPE (send with MSG_NOSIGNAL).
  auto pair = sys::SocketPair();
  if (!pair) return tl::unexpected(pair.error());
  if (::shutdown(pair->first.get(), SHUT_RD) < 0) return ErrnoError("shutdown");

  SpawnSpec spec;
  spec.path = executable->path;
  spec.argv = {executable->path};
  spec.env = FilteredEnvironment(BaseEnvironment(ctx));
  SetVariable(spec.env, "QREXEC_REMOTE_DOMAIN", remote_domain);
  SetVariable(spec.env, "QREXEC_AGENT_PID", std::to_string(AgentPid(ctx)));
  spec.stdin_io = Stdio::Fd(pair->second.get());
  spec.stdout_io = Stdio::Null();
  spec.stderr_io = Stdio::Inherit();
  auto child = ChildProcess::Spawn(spec);
  if (!child) return tl::unexpected(child.error());
  pair->second.reset();

  std::string line(user);
  line += '\n';
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::send(pair->first.get(), line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      // The service does not read its stdin (or exited): nothing to report.
      LOG_DEBUG("qubes.WaitForSession stdin: {}", std::strerror(errno));
      break;
    }
    done += static_cast<size_t>(n);
  }
  return child;
}

Status WaitForSession(const ExecContext& ctx, std::string_view user,
                      std::string_view remote_domain) {
  auto child = StartWaitForSession(ctx, user, remote_domain);
  if (!child) {
    if (child.error().kind == ErrorKind::kNotFound) return Ok();
    return tl::unexpected(child.error());
  }
  auto status = child->Wait();
  if (!status) return tl::unexpected(status.error());
  return Ok();
}

std::string LoggerTag(const RpcCall& call) {
  return SanitizeForLog(call.descriptor + "-" + call.source);
}

Result<ChildProcess> StartLogger(std::string_view tag) {
  for (const char* path : {"/usr/bin/logger", "/bin/logger"}) {
    if (::access(path, X_OK) != 0) continue;
    SpawnSpec spec;
    spec.path = path;
    spec.argv = {"logger", "-t", std::string(tag)};
    spec.env = FilteredEnvironment(environ);
    spec.stdin_io = Stdio::Pipe();
    spec.stdout_io = Stdio::Null();
    spec.stderr_io = Stdio::Null();
    return ChildProcess::Spawn(spec);
  }
  return MakeError(ErrorKind::kNotFound, "no logger program");
}

}  // namespace qrexec::exec
