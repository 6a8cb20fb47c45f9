// Blocking client of a qrexec-daemon socket (qrexec-protocol.md §2.9), for
// qrexec-client: connect to <socket-dir>/qrexec.<domain>, exchange HELLO
// (client protocol 3), send one request, and read the daemon's reply when
// the request asked for a port (connect_port 0).
#pragma once

#include <string>

#include "base/result.h"
#include "base/sys.h"
#include "base/unique_fd.h"
#include "proto/messages.h"

namespace qrexec::daemon {

// kNotFound when no daemon listens there.
Result<UniqueFd> ConnectDaemonSocket(const std::string& socket_dir, const std::string& domain,
                                     const sys::Deadline& deadline);

// Sends an EXEC_CMDLINE / JUST_EXEC request (connect_port 0) and returns the
// reply {daemon's domid, allocated port}.
Result<proto::ExecParams> RequestExec(int fd, const proto::ExecRequest& request,
                                      const sys::Deadline& deadline);
// Sends a SERVICE_CONNECT; with connect_port 0 returns the reply, otherwise
// returns {0, port} without waiting (the daemon does not answer).
Result<proto::ExecParams> RequestServiceConnect(int fd, const proto::ServiceConnect& request,
                                                const sys::Deadline& deadline);

}  // namespace qrexec::daemon
