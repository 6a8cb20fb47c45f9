// qrexec-fork-server as a component (qrexec-protocol.md §1.6, §2.10): listens
// on a per-user socket; for each connection from the agent it reads one
// request (16-byte qrexec_cmd_info + command without "user:"), checks it,
// and forks a handler (call_handler.h) that inherits the connection, so the
// agent sees EOF when the call is over. The fork server does not read
// rpc-config. Single-threaded and blocking: one request is read at a time,
// with a short deadline so a stuck client cannot stall the others.
#pragma once

#include <string>

#include "agent/options.h"
#include "base/result.h"
#include "base/sys.h"
#include "proto/messages.h"
#include "base/unique_fd.h"

namespace qrexec::agent {

// Environment variable that keeps the fork server in the foreground (tests,
// supervisors); any non-empty value.
inline constexpr const char* kForkServerForegroundEnv = "QREXEC_FORK_SERVER_FOREGROUND";

// Binds the socket, detaches (unless asked not to) and serves forever.
// Returns the exit status: 0 for the detaching parent, 1 when the socket
// cannot be created.
int RunForkServer(const ForkServerOptions& options);

// Reads one request in the fork server's format (qrexec_cmd_info + command)
// from `fd`, checked, before `deadline`. Warm handlers take their calls in
// the same format.
Result<proto::CmdInfo> ReadForkRequest(int fd, const sys::Deadline& deadline);

// Handles one accepted connection: reads and checks the request and forks
// the handler. Errors are logged; the connection is closed in this process
// either way.
Status ServeForkRequest(UniqueFd connection);

}  // namespace qrexec::agent
