#include "daemon/client_options.h"

#include <fmt/core.h>
#include <getopt.h>

#include <cerrno>
#include <climits>
#include <cstdlib>

#include "base/limits.h"
#include "base/names.h"

namespace qrexec::daemon {
namespace {

enum LongOnly { kSocketDir = 256, kUseStdinSocket, kDataPort };

const option kLongOptions[] = {
    {"help", no_argument, nullptr, 'h'},
    {"socket-dir", required_argument, nullptr, kSocketDir},
    {"no-exit-code", no_argument, nullptr, 'E'},
    {"prefix-data", required_argument, nullptr, 'p'},
    {"use-stdin-socket", no_argument, nullptr, kUseStdinSocket},
    {"data-port", required_argument, nullptr, kDataPort},
    {nullptr, 0, nullptr, 0},
};

std::string Usage(const char* argv0) {
  return fmt::format(
      "usage: {} [options] -d DOMAIN [-l LOCAL_PROGRAM | -c REQUEST_ID,SRC_NAME,SRC_ID | -e] "
      "USER:COMMAND\n"
      "  -h, --help              show this help\n"
      "  -d DOMAIN               target: name, uuid:UUID, or dom0 / @adminvm\n"
      "  -l LOCAL_PROGRAM        connect a local program instead of our stdin/stdout\n"
      "  -e                      just start the command; do not connect its stdio\n"
      "  -E, --no-exit-code      exit 0 whatever the remote exit code\n"
      "  -c ID,NAME,DOMID        connect an approved VM request (used by policy tools)\n"
      "  -t, -T                  replace unsafe bytes in remote stdout / stderr\n"
      "  -w SECONDS              data connection timeout (default 10, 0 = none)\n"
      "  -W                      with -c: wait until the connection ends\n"
      "  -k                      kill the target domain when the command ends\n"
      "  --socket-dir=PATH       daemon socket directory (default /var/run/qubes)\n"
      "  -p, --prefix-data=DATA  send DATA before our stdin\n"
      "  --use-stdin-socket      fd 0 is a socket used for both directions\n",
      argv0);
}

// A non-negative int as Qubes' qrexec-client reads -w and -c's domain id:
// it must start with an ASCII digit (so "-1" and " 5" are refused), then any
// strtol base-0 form ("010", "0x10") up to INT_MAX with nothing after it.
std::optional<int> ParseCountingNumber(const char* text) {
  if (*text < '0' || *text > '9') return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long value = std::strtol(text, &end, 0);
  if (errno != 0 || *end != '\0' || value > INT_MAX) return std::nullopt;
  return static_cast<int>(value);
}

std::optional<ConnectRequest> ParseConnect(const std::string& text) {
  size_t first = text.find(',');
  if (first == std::string::npos) return std::nullopt;
  size_t second = text.find(',', first + 1);
  if (second == std::string::npos) return std::nullopt;
  auto domid = ParseCountingNumber(text.c_str() + second + 1);
  if (!domid) return std::nullopt;
  ConnectRequest request{text.substr(0, first), text.substr(first + 1, second - first - 1),
                         *domid};
  if (request.ident.size() >= limits::kRequestIdLen) return std::nullopt;
  if (!names::IsValidRequestIdText(request.ident)) return std::nullopt;
  return request;
}

// Checks across options; nullopt when the combination is fine.
std::optional<ClientParseExit> CheckCombination(const ClientConfig& c, const char* argv0) {
  if (int(c.local_program.has_value()) + int(c.just_exec) + int(c.connect.has_value()) > 1)
    return ClientParseExit{1, "only one of -e, -l, -c can be given\n" + Usage(argv0)};
  if (c.local_program && c.use_stdin_socket)
    return ClientParseExit{2, "--use-stdin-socket cannot be combined with -l\n"};
  if (c.connect && (c.connect->source_domid == 0 || names::RefersToDom0(c.connect->source_name)))
    return ClientParseExit{1, "-c: the source cannot be dom0\n"};
  if (c.connect && c.connect->ident.empty() && names::RefersToDom0(c.domain))
    return ClientParseExit{1, "-c: an empty request id is not allowed for dom0\n"};
  if (c.domain.empty()) return ClientParseExit{1, Usage(argv0)};
  return std::nullopt;
}

}  // namespace

std::variant<ClientConfig, ClientParseExit> ParseClientOptions(int argc, char** argv) {
  ClientConfig config;
  const char* argv0 = argc > 0 ? argv[0] : "qrexec-client";
  if (const char* path = std::getenv("QREXEC_QUBESD_SOCKET"); path && *path)
    config.qubesd_socket = path;
  optind = 0;
  // No leading '+': like Qubes' qrexec-client, options may follow the
  // command (GNU getopt permutes), and positionals after the first are
  // ignored.
  for (;;) {
    int opt = getopt_long(argc, argv, "hd:l:ec:tTw:WkEp:", kLongOptions, nullptr);
    if (opt == -1) break;
    switch (opt) {
      case 'h':
        return ClientParseExit{0, Usage(argv0), true};
      case 'd':
        config.domain = optarg;
        break;
      case 'l':
        config.local_program = optarg;
        break;
      case 'e':
        config.just_exec = true;
        break;
      case 'E':
        config.no_exit_code = true;
        break;
      case 'c':
        config.connect = ParseConnect(optarg);
        if (!config.connect) return ClientParseExit{1, "invalid -c argument\n" + Usage(argv0)};
        break;
      case 't':
        config.filter_stdout = true;
        break;
      case 'T':
        config.filter_stderr = true;
        break;
      case 'w':
      {
        auto seconds = ParseCountingNumber(optarg);
        if (!seconds)
          return ClientParseExit{
              1, fmt::format("-w: '{}' is not a number of seconds (starting with an ASCII "
                             "digit)\n",
                             optarg)};
        config.timeout_seconds = *seconds;
        break;
      }
      case 'W':
        config.wait_connection_end = true;
        break;
      case 'k':
        config.kill_after = true;
        break;
      case kSocketDir:
        config.socket_dir = optarg;
        break;
      case 'p':
        if (config.prefix_data) return ClientParseExit{2, "--prefix-data given twice\n"};
        config.prefix_data = optarg;
        break;
      case kUseStdinSocket:
        config.use_stdin_socket = true;
        break;
      case kDataPort:
        config.data_port = static_cast<unsigned>(std::atoi(optarg));
        break;
      default:
        return ClientParseExit{1, Usage(argv0)};
    }
  }
  if (argc - optind < 1) return ClientParseExit{1, Usage(argv0)};
  config.command = argv[optind];
  if (auto bad = CheckCombination(config, argv0)) return *bad;
  return config;
}

}  // namespace qrexec::daemon
