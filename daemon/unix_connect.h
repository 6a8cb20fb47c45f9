// Non-blocking connect to a Unix stream socket, for the daemon's loop.
// A Unix connect either completes at once or fails; EAGAIN (the server's
// backlog is full) is returned as kOverloaded, ENOENT as kNotFound,
// ECONNREFUSED (a stale socket file: nobody listens) as kDisconnected.
#pragma once

#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace qrexec::daemon {

Result<UniqueFd> ConnectUnixNonBlocking(const std::string& path);

}  // namespace qrexec::daemon
