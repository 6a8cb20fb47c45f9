// Service lookup (qrexec-protocol.md §4.1) and TCP target rules (§4.2).
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/result.h"

namespace qrexec::exec {

inline constexpr char kDefaultServicePath[] =
    "/run/qubes-rpc:/usr/local/etc/qubes-rpc:/etc/qubes-rpc";
inline constexpr char kDefaultRpcConfigPath[] =
    "/run/qubes/rpc-config:/usr/local/etc/qubes/rpc-config:/etc/qubes/rpc-config";

// An ordered list of directories (a colon-separated path; empty components
// are skipped).
struct SearchPath {
  std::vector<std::string> dirs;

  static SearchPath Parse(std::string_view colon_separated);
  // $QREXEC_SERVICE_PATH if set (even if empty), else kDefaultServicePath.
  static SearchPath ServicesFromEnvironment();
  // $QUBES_RPC_CONFIG_PATH if set, else kDefaultRpcConfigPath.
  static SearchPath RpcConfigFromEnvironment();
};

// The first existing directory entry for a service name, in the order of
// §4.1: "NAME+ARG" in every directory (with no argument: "NAME+"), then
// "NAME" in every directory. A "NAME+ARG" longer than 255 bytes cannot be a
// file name and that pass is skipped (so are names containing '/' or NUL).
// Entries are checked with lstat().
struct FoundEntry {
  std::string path;
  struct stat lstat_result;
};
// std::nullopt: nothing found. Error (kInternal with sys_errno): lstat()
// failed with something other than ENOENT (the lookup stops: 125).
Result<std::optional<FoundEntry>> FindServiceFile(const SearchPath& path,
                                                  std::string_view service_name,
                                                  const std::optional<std::string>& argument);

// Numeric TCP endpoint of a /dev/tcp service.
struct TcpEndpoint {
  std::string host;  // numeric IPv4/IPv6 ('+' of the argument form already ':')
  uint16_t port = 0;
  bool operator==(const TcpEndpoint&) const = default;
};

// Applies the §4.2 rules to a symlink target that begins with "/dev/tcp":
//   "/dev/tcp/HOST/PORT": the argument must be absent or empty;
//   "/dev/tcp/HOST":      the port is the argument;
//   "/dev/tcp":           the argument is HOST+PORT, split at the last '+';
//                         '+' in HOST becomes ':' (IPv6); '_' is rejected.
// HOST must be numeric (getaddrinfo AI_NUMERICHOST); PORT is 1..65535 in
// decimal without leading zeros. Anything else (including "/dev/tcpX" or more
// path components) is kMalformed.
Result<TcpEndpoint> ParseTcpTarget(std::string_view link_target,
                                   const std::optional<std::string>& argument);

// What a lookup found.
struct ExecutableService {
  std::string path;
};
struct SocketService {
  std::string path;
};
struct TcpService {
  std::string path;  // the symlink in the service directory
  TcpEndpoint endpoint;
};
struct ServiceNotFound {};  // -> 127
struct ServiceProblem {     // -> 125
  Error error;
};
using ServiceLookup =
    std::variant<ExecutableService, SocketService, TcpService, ServiceNotFound, ServiceProblem>;

// Full lookup for a service: FindServiceFile(), then the type of the entry:
// symlink whose target begins with "/dev/tcp" -> TcpService (or
// ServiceProblem if the target/argument break the rules); other symlinks are
// followed (stat; a dangling link is a ServiceProblem); a Unix socket ->
// SocketService; a regular file executable by us (euidaccess X_OK) ->
// ExecutableService; anything else -> ServiceProblem.
ServiceLookup LookupService(const SearchPath& path, std::string_view service_name,
                            const std::optional<std::string>& argument);

// The qrexec exit value for a failed lookup (127 or 125); 0 for the found kinds.
int LookupExitCode(const ServiceLookup& lookup);

}  // namespace qrexec::exec
