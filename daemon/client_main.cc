// qrexec-client: dom0's client of qrexec daemons. See man/qrexec-client.1;
// this file only picks the mode (client_modes.h).
#include <fcntl.h>

#include <cstdio>

#include "base/log.h"
#include "base/names.h"
#include "daemon/client_modes.h"
#include "daemon/client_options.h"

int main(int argc, char** argv) {
  for (int fd = 0; fd <= 2; ++fd)
    if (::fcntl(fd, F_GETFD) < 0) return 125;
  qrexec::log::SetProgramName("qrexec-client");
  auto parsed = qrexec::daemon::ParseClientOptions(argc, argv);
  if (auto* exit = std::get_if<qrexec::daemon::ClientParseExit>(&parsed)) {
    std::fputs(exit->message.c_str(), exit->to_stdout ? stdout : stderr);
    return exit->code;
  }
  const auto& config = std::get<qrexec::daemon::ClientConfig>(parsed);
  bool to_dom0 = qrexec::names::RefersToDom0(config.domain);
  if (to_dom0 && config.local_program) {
    std::fputs("-l is not supported for dom0 targets\n", stderr);
    return 125;  // Qubes' qrexec-client: QREXEC_EXIT_PROBLEM
  }
  if (to_dom0)
    return config.connect ? qrexec::daemon::RunVmToDom0(config)
                          : qrexec::daemon::RunDom0ToDom0(config);
  return config.connect ? qrexec::daemon::RunVmToVm(config) : qrexec::daemon::RunDom0ToVm(config);
}
