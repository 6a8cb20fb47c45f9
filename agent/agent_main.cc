// qrexec-agent: see man/qrexec-agent.1 and agent/agent.h.
#include <unistd.h>

#include <variant>

#include "agent/agent.h"
#include "agent/options.h"
#include "base/log.h"
#include "event/loop.h"
#include "exec/child_process.h"
#include "stream/stream.h"
#include "vchan/transport.h"

int main(int argc, char** argv) {
  using namespace qrexec;
  if (!agent::StandardFdsOpen()) return agent::kExitStdioClosed;
  log::SetProgramName("qrexec-agent");
  auto parsed = agent::ParseAgentArgs(argc, argv);
  if (auto* exit_now = std::get_if<agent::ExitNow>(&parsed)) return exit_now->status;
  stream::InstallSigpipeGuard();
  exec::WarmUpUserLookup();  // each per-call handler is a fork of this process
  auto transport = vchan::MakeTransportFromEnv();
  if (!transport) {
    LOG_ERROR("cannot set up vchan: {}", transport.error().ToString());
    return 1;
  }
  const auto& options = std::get<agent::AgentOptions>(parsed);
  // Not fatal: the agent's own user's services do not need the helper; the
  // others fail with 125 until it is installed (or --no-pam-session).
  if (options.use_pam_session && ::getuid() == 0 &&
      ::access(options.pam_session_helper.c_str(), X_OK) != 0)
    LOG_WARNING("PAM session helper {} is missing: services for other users will fail "
                "(--no-pam-session runs them directly)",
                options.pam_session_helper);
  event::Loop loop;
  agent::Agent agent(loop, **transport, options);
  if (auto started = agent.Start(); !started) {
    LOG_ERROR("cannot start: {}", started.error().ToString());
    return 1;
  }
  if (auto ran = loop.Run(); !ran) {
    LOG_ERROR("event loop failed: {}", ran.error().ToString());
    return 1;
  }
  return agent.exit_status().value_or(0);
}
