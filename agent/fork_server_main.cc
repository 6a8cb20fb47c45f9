// qrexec-fork-server: see man/qrexec-fork-server.1 and agent/fork_server.h.
#include <variant>

#include "agent/fork_server.h"
#include "agent/options.h"
#include "base/log.h"
#include "exec/child_process.h"

int main(int argc, char** argv) {
  using namespace qrexec;
  if (!agent::StandardFdsOpen()) return agent::kExitStdioClosed;
  log::SetProgramName("qrexec-fork-server");
  auto parsed = agent::ParseForkServerArgs(argc, argv);
  if (auto* exit_now = std::get_if<agent::ExitNow>(&parsed)) return exit_now->status;
  exec::WarmUpUserLookup();  // each call's handler is a fork of this process
  return agent::RunForkServer(std::get<agent::ForkServerOptions>(parsed));
}
