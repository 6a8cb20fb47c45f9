// Connecting to socket and TCP services (qrexec-protocol.md §4.2).
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"
#include "exec/service_lookup.h"

namespace qrexec::exec {

// Connects an AF_UNIX stream socket to `path`. Paths longer than sun_path are
// reached through a symlink in a fresh temporary directory (mkdtemp under
// $TMPDIR or /tmp), removed again after connect(). Blocking connect; the
// returned fd is CLOEXEC and blocking.
Result<UniqueFd> ConnectUnixService(const std::string& path);

// Connects a TCP socket to a numeric endpoint (blocking connect; CLOEXEC,
// blocking).
Result<UniqueFd> ConnectTcpService(const TcpEndpoint& endpoint);

// Writes the service descriptor header: `rpc_text` (the command text after
// "QUBESRPC ") followed by one NUL byte. fd must be a socket (send with
// MSG_NOSIGNAL: no SIGPIPE if the service already closed it).
Status WriteServiceDescriptor(int fd, std::string_view rpc_text);

}  // namespace qrexec::exec
