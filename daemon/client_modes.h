// The four modes of qrexec-client (qrexec-protocol.md §1.3). Each returns the
// process exit code; main() only picks the mode.
#pragma once

#include "daemon/client_options.h"

namespace qrexec::daemon {

// 1. -d dom0 without -c: runs "DEFAULT:QUBESRPC ..." as a dom0 service by
//    execve() in place (executables only). 127 not found, 125 problems.
int RunDom0ToDom0(const ClientConfig& config);
// 2. -d dom0 with -c: a VM -> dom0 call. Gets the data port from the
//    source's daemon (SERVICE_CONNECT; or --data-port from qrexec-daemon),
//    joins the data vchan as client within -w seconds, runs the service side.
//    Exit: the service's exit code (0 with -E).
int RunVmToDom0(const ClientConfig& config);
// 3. -d VM with -c: connect an approved VM -> VM call. 0 or 137.
int RunVmToVm(const ClientConfig& config);
// 4. -d VM without -c: dom0 -> VM command; we are the data vchan server.
//    Exit: remote exit code (0 with -E), 255 when the vchan closed early,
//    125 for qrexec problems (daemon unreachable or refusing, time-out).
int RunDom0ToVm(const ClientConfig& config);

}  // namespace qrexec::daemon
