// qrexec-agent: see man/qrexec-agent.1 and agent/agent.h.
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
  event::Loop loop;
  agent::Agent agent(loop, **transport, std::get<agent::AgentOptions>(parsed));
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
