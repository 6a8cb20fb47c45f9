// Start-up of qrexec-daemon as qubesd runs it (qrexec-protocol.md §1.2):
// unless --direct, the process forks; the foreground parent waits for the
// child's report on a pipe (printing a dot per second unless --quiet) and
// exits 0 (connected), 3 (the agent did not come within the start-up
// timeout) or 1 (the child failed); with $QREXEC_STARTUP_NOWAIT it exits 0
// at once. The child logs to <log-dir>/qrexec.<name>.log, calls setsid()
// and carries on.
#pragma once

#include "base/unique_fd.h"
#include "daemon/daemon_options.h"

namespace qrexec::daemon {

// In the foreground parent this never returns (it exits). In the child (or
// with --direct) it returns the pipe end to report on (invalid with
// --direct or NOWAIT).
UniqueFd DaemonizeIfAsked(const DaemonConfig& config);

// Tells the waiting parent that start-up succeeded (status 0) or failed
// (status 1, or 3 for a time-out). No-op on an invalid fd.
void ReportStartup(UniqueFd& report_fd, int status);

}  // namespace qrexec::daemon
