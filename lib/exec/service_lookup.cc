#include "exec/service_lookup.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <utility>

#include "base/escape_filter.h"
#include "base/limits.h"

namespace qrexec::exec {
namespace {

constexpr std::string_view kDevTcp = "/dev/tcp";

tl::unexpected<Error> Bad(std::string message) {
  return MakeError(ErrorKind::kMalformed, std::move(message));
}

SearchPath FromEnv(const char* variable, const char* fallback) {
  const char* value = std::getenv(variable);
  return SearchPath::Parse(value != nullptr ? value : fallback);
}

// Port: 1..65535, decimal digits, no leading zero.
Result<uint16_t> ParsePort(std::string_view text) {
  if (text.empty() || text.size() > 5 || text[0] == '0') return Bad("invalid TCP port");
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return Bad("invalid TCP port");
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value < 1 || value > 65535) return Bad("TCP port out of range");
  return static_cast<uint16_t>(value);
}

Status CheckNumericHost(const std::string& host) {
  if (host.empty()) return Bad("empty TCP host");
  struct addrinfo hints {};
  hints.ai_flags = AI_NUMERICHOST;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* result = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &result);
  if (rc != 0) return Bad("TCP host is not a numeric address");
  ::freeaddrinfo(result);
  return Ok();
}

}  // namespace

SearchPath SearchPath::Parse(std::string_view colon_separated) {
  SearchPath path;
  size_t start = 0;
  while (start <= colon_separated.size()) {
    size_t colon = colon_separated.find(':', start);
    if (colon == std::string_view::npos) colon = colon_separated.size();
    if (colon > start) path.dirs.emplace_back(colon_separated.substr(start, colon - start));
    start = colon + 1;
  }
  return path;
}

SearchPath SearchPath::ServicesFromEnvironment() {
  return FromEnv("QREXEC_SERVICE_PATH", kDefaultServicePath);
}

SearchPath SearchPath::RpcConfigFromEnvironment() {
  return FromEnv("QUBES_RPC_CONFIG_PATH", kDefaultRpcConfigPath);
}

Result<std::optional<FoundEntry>> FindServiceFile(const SearchPath& path,
                                                  std::string_view service_name,
                                                  const std::optional<std::string>& argument) {
  std::string with_argument(service_name);
  with_argument += '+';
  if (argument) with_argument += *argument;

  std::string names[2] = {with_argument, std::string(service_name)};
  for (const std::string& name : names) {
    // A name that is no valid file name component can never match (and a
    // '/' must never reach another directory: ParseCommand refuses it, this
    // guards direct callers).
    if (name.size() > limits::kMaxServiceNamePartLen ||
        name.find_first_of(std::string_view("/\0", 2)) != std::string::npos)
      continue;
    for (const std::string& dir : path.dirs) {
      FoundEntry entry;
      entry.path = dir + "/" + name;
      if (::lstat(entry.path.c_str(), &entry.lstat_result) == 0)
        return std::optional<FoundEntry>(std::move(entry));
      if (errno != ENOENT)
        return ErrnoError("lstat " + SanitizeForLog(entry.path));
    }
  }
  return std::optional<FoundEntry>();
}

Result<TcpEndpoint> ParseTcpTarget(std::string_view link_target,
                                   const std::optional<std::string>& argument) {
  if (!link_target.starts_with(kDevTcp)) return Bad("not a /dev/tcp target");
  std::string_view rest = link_target.substr(kDevTcp.size());
  bool has_argument = argument && !argument->empty();

  TcpEndpoint endpoint;
  std::string_view port_text;
  if (rest.empty()) {
    // Bare /dev/tcp: HOST+PORT from the argument.
    if (!has_argument) return Bad("/dev/tcp service needs HOST+PORT as argument");
    std::string_view arg = *argument;
    if (arg.find('_') != std::string_view::npos) return Bad("'_' in TCP argument");
    size_t plus = arg.rfind('+');
    if (plus == std::string_view::npos) return Bad("TCP argument without '+'");
    endpoint.host = std::string(arg.substr(0, plus));
    for (char& c : endpoint.host)
      if (c == '+') c = ':';
    port_text = arg.substr(plus + 1);
  } else {
    if (rest[0] != '/') return Bad("invalid /dev/tcp target");
    rest.remove_prefix(1);
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos) {
      if (!has_argument) return Bad("/dev/tcp/HOST service needs the port as argument");
      endpoint.host = std::string(rest);
      port_text = *argument;
    } else {
      if (has_argument) return Bad("/dev/tcp/HOST/PORT service takes no argument");
      endpoint.host = std::string(rest.substr(0, slash));
      port_text = rest.substr(slash + 1);
    }
  }
  if (auto ok = CheckNumericHost(endpoint.host); !ok) return tl::unexpected(ok.error());
  auto port = ParsePort(port_text);
  if (!port) return tl::unexpected(port.error());
  endpoint.port = *port;
  return endpoint;
}

ServiceLookup LookupService(const SearchPath& path, std::string_view service_name,
                            const std::optional<std::string>& argument) {
  auto found = FindServiceFile(path, service_name, argument);
  if (!found) return ServiceProblem{found.error()};
  if (!*found) return ServiceNotFound{};

  const std::string& file = (*found)->path;
  struct stat st = (*found)->lstat_result;
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = ::readlink(file.c_str(), target, sizeof target);
    if (n < 0) return ServiceProblem{ErrnoError("readlink " + SanitizeForLog(file)).value()};
    if (static_cast<size_t>(n) >= sizeof target)
      return ServiceProblem{Error{ErrorKind::kMalformed, "symlink target too long", 0}};
    std::string_view link(target, static_cast<size_t>(n));
    if (link.starts_with(kDevTcp)) {
      auto endpoint = ParseTcpTarget(link, argument);
      if (!endpoint) return ServiceProblem{endpoint.error()};
      return TcpService{file, std::move(*endpoint)};
    }
    if (::stat(file.c_str(), &st) < 0)
      return ServiceProblem{ErrnoError("stat " + SanitizeForLog(file)).value()};
  }
  if (S_ISSOCK(st.st_mode)) return SocketService{file};
  if (S_ISREG(st.st_mode) && ::euidaccess(file.c_str(), X_OK) == 0)
    return ExecutableService{file};
  return ServiceProblem{
      Error{ErrorKind::kMalformed, "service file is not executable: " + SanitizeForLog(file), 0}};
}

int LookupExitCode(const ServiceLookup& lookup) {
  if (std::holds_alternative<ServiceNotFound>(lookup)) return 127;
  if (std::holds_alternative<ServiceProblem>(lookup)) return 125;
  return 0;
}

}  // namespace qrexec::exec
