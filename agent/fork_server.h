// qrexec-fork-server as a component (qrexec-protocol.md §1.6, §2.10): listens
// on a per-user socket; for each connection from the agent it reads one
// request (16-byte qrexec_cmd_info + command without "user:"), checks it,
// and gives the call to a warm handler (warm_handlers.h) that holds the
// connection for the call, or, for MSG_JUST_EXEC or when no warm handler can
// take it, forks a handler (call_handler.h) that inherits the connection;
// either way the agent sees EOF when the call is over. The fork server does
// not read rpc-config. One event loop; a request is read with a short
// deadline so a stuck client cannot stall the others for long.
#pragma once

#include <string>

#include "agent/options.h"
#include "base/result.h"
#include "base/sys.h"
#include "base/unique_fd.h"
#include "proto/messages.h"

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

}  // namespace qrexec::agent
