#include "policy_exec_ask.h"

#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/sys.h"

extern char** environ;

namespace qrexec::policy_tools {
namespace {

constexpr size_t kMaxAgentReply = 4096;

// One conversation with the agent for `service`; returns its reply.
Result<std::string> CallAgent(const ExecAgentRoute& route, const std::string& service,
                              const std::string& guivm, const std::string& body,
                              const sys::Deadline& deadline) {
  if (guivm == "dom0" || route.direct_for_all) {
    std::string path =
        route.agent_socket.empty() ? "/etc/qubes-rpc/" + service : route.agent_socket;
    auto fd = sys::UnixConnect(path);
    if (!fd) return tl::unexpected(fd.error());
    std::string request = service + " dom0 name dom0";
    request.push_back('\0');
    request += body;
    if (auto st = sys::WriteAll(fd->get(), request, deadline); !st) return tl::unexpected(st.error());
    ::shutdown(fd->get(), SHUT_WR);
    return sys::ReadToEof(fd->get(), kMaxAgentReply, deadline);
  }
  // qrexec-client -d GUIVM "DEFAULT:QUBESRPC SERVICE dom0", no shell.
  auto in = sys::Pipe();
  auto out = sys::Pipe();
  if (!in || !out) return MakeError(ErrorKind::kInternal, "pipe failed");
  std::string command = "DEFAULT:QUBESRPC " + service + " dom0";
  std::vector<std::string> args = {route.qrexec_client, "-d", guivm, command};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in->first.get(), 0);
  posix_spawn_file_actions_adddup2(&actions, out->second.get(), 1);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  in->first.reset();
  out->second.reset();
  if (rc != 0) return ErrnoError("spawning " + route.qrexec_client, rc);
  Status written = sys::WriteAll(in->second.get(), body, deadline);
  in->second.reset();
  auto reply = sys::ReadToEof(out->first.get(), kMaxAgentReply, deadline);
  if (!reply) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!written) return tl::unexpected(written.error());
  if (!reply) return reply;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return MakeError(ErrorKind::kDisconnected, route.qrexec_client + " failed");
  return reply;
}

}  // namespace

std::string AskRequestJson(const policy::Decision& ask, const policy::SystemInfo& info) {
  nlohmann::json body = {{"source", ask.source},
                         {"service", ask.service},
                         {"argument", ask.argument},
                         {"targets", ask.targets},
                         {"default_target", ask.default_target.value_or("")},
                         {"icons", info.IconsForAsk()}};
  return body.dump(-1, ' ', /*ensure_ascii=*/true);
}

policy::Decision ResolveInteractiveAsk(const policy::Decision& ask,
                                       const policy::SystemInfo& info,
                                       const ExecAgentRoute& route) {
  const policy::Domain* source = info.Find(ask.source);
  if (source == nullptr || !source->guivm) return policy::DenyAsk(ask);
  auto reply = CallAgent(route, "policy.Ask", *source->guivm, AskRequestJson(ask, info),
                         sys::Deadline::Never());
  if (!reply) {
    LOG_ERROR("policy.Ask to {} failed: {}", *source->guivm, reply.error().ToString());
    return policy::DenyAsk(ask);
  }
  return policy::ApplyAgentReply(ask, *reply, info);
}

void SendNotification(const policy::Decision& decision, const policy::SystemInfo& info,
                      const ExecAgentRoute& route) {
  if (!decision.notify || decision.verdict == policy::Verdict::kAsk) return;
  const policy::Domain* source = info.Find(decision.source);
  if (source == nullptr || !source->guivm) return;
  bool allowed = decision.verdict == policy::Verdict::kAllow;
  nlohmann::json body = {{"resolution", allowed ? "allow" : "deny"},
                         {"service", decision.service},
                         {"argument", decision.argument},
                         {"source", decision.source},
                         {"target", allowed ? decision.target : decision.raw_target}};
  auto reply = CallAgent(route, "policy.Notify", *source->guivm, body.dump(-1, ' ', true),
                         sys::Deadline::After(std::chrono::seconds(30)));
  if (!reply) LOG_WARNING("policy.Notify to {} failed: {}", *source->guivm, reply.error().ToString());
}

}  // namespace qrexec::policy_tools
