// qrexec-client-vm: see man/qrexec-client-vm.1 and agent/client_vm.h.
#include <variant>

#include "agent/client_vm.h"
#include "agent/options.h"
#include "base/log.h"
#include "stream/stream.h"

int main(int argc, char** argv) {
  using namespace qrexec;
  if (!agent::StandardFdsOpen()) return agent::kExitStdioClosed;
  log::SetProgramName("qrexec-client-vm");
  auto parsed = agent::ParseClientVmArgs(argc, argv);
  if (auto* exit_now = std::get_if<agent::ExitNow>(&parsed)) return exit_now->status;
  stream::InstallSigpipeGuard();
  return agent::RunClientVm(std::get<agent::ClientVmOptions>(parsed));
}
