// A minimal qubesd socket client, just enough to fetch system info
// (internal.GetSystemInfo). lib/admin will hold the general client.
//
// Protocol: connect to the socket, write "<method>+<arg> dom0 name <dest>\0"
// (here "internal.GetSystemInfo+ dom0 name dom0\0"), half-close, read to EOF.
// Reply "0\0<payload>" is success; "2\0<exception type>\0<traceback>\0<msg>\0"
// (or anything else) is an error.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "policy/system_info.h"

namespace qrexec::policy {

inline constexpr const char* kQubesdSocket = "/run/qubesd.sock";
inline constexpr const char* kQubesdSocketEnv = "QREXEC_QUBESD_SOCKET";

// The socket path: `explicit_path` if non-empty, else $QREXEC_QUBESD_SOCKET if
// set, else kQubesdSocket.
std::string QubesdSocketPath(std::string_view explicit_path = "");

// One call; returns the payload after "0\0". Errors: kDisconnected (cannot
// connect), kRefused (qubesd answered an exception; message holds its text),
// kMalformed (unexpected reply), kOverloaded (reply over 64 MiB).
Result<std::string> QubesdCall(const std::string& socket_path, std::string_view method,
                               std::string_view arg = "", std::string_view dest = "dom0");

// internal.GetSystemInfo parsed into a SystemInfo.
Result<SystemInfo> FetchSystemInfo(const std::string& socket_path);

}  // namespace qrexec::policy
