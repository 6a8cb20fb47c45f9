#include "agent/options.h"

#include <fcntl.h>
#include <getopt.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>

namespace qrexec::agent {
namespace {

void PrintAgentUsage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [options]\n"
               "Options:\n"
               "  -h, --help                   show this help\n"
               "  -a, --agent-socket=PATH      trigger socket for qrexec-client-vm\n"
               "                               (default %s)\n"
               "  -s, --fork-server-socket=FMT fork-server socket, %%s is the user name\n"
               "                               (default %s)\n"
               "  -S, --no-fork-server         never use the fork server\n"
               "      --fork-per-call          fork a fresh handler for every call (default;\n"
               "                               every call's processes end with the call)\n"
               "      --warm-handlers          reuse warm handler processes for\n"
               "                               MSG_EXEC_CMDLINE calls (they outlive calls)\n"
               "      --trigger-timeout=SECONDS drop a trigger-socket client that has not sent\n"
               "                               its request by then (default %g; may be a\n"
               "                               fraction)\n"
               "      --no-pam-session         run other users' services directly, without a\n"
               "                               PAM session and login shell%s\n"
               "      --pam-session            run them through the PAM session helper%s\n"
               "      --pam-session-helper=PATH the helper (default %s)\n"
               "      --pam-confdir=DIR        PAM configuration directory for the helper\n"
               "                               (tests; default /etc/pam.d)\n",
               argv0, kDefaultAgentSocket, kDefaultForkServerSocketFormat,
               std::chrono::duration<double>(kDefaultTriggerTimeout).count(),
               QREXEC_PAM_DEFAULT ? "" : " (default)", QREXEC_PAM_DEFAULT ? " (default)" : "",
               kDefaultPamSessionHelper);
}

void PrintClientVmUsage(const char* argv0, FILE* stream = stderr) {
  std::fprintf(stream,
               "usage: %s [options] target_vmname program_ident [local_program [local program "
               "arguments]]\n"
               "Options:\n"
               "  --buffer-size=BUFFER_SIZE        minimum vchan buffer size (default 65536)\n"
               "  -t, --filter-escape-chars-stdout filter non-printable characters on stdout\n"
               "  -T, --filter-escape-chars-stderr filter non-printable characters on stderr\n"
               "  --no-filter-escape-chars-stdout  do not filter stdout\n"
               "  --no-filter-escape-chars-stderr  do not filter stderr\n"
               "  -a, --agent-socket=PATH          agent socket (default %s)\n"
               "  -p, --prefix-data=DATA           send DATA before stdin\n"
               "  --use-stdin-socket               use fd 0 (a socket) for both directions\n"
               "  -s, --source-qube=NAME           requested source qube\n"
               "  -h, --help                       show this help\n",
               argv0, kDefaultAgentSocket);
}

// A buffer size as Qubes' qrexec-client-vm reads it: it must start with an
// ASCII digit, then any strtoul base-0 form ("4096", "0x1000", "010") up to
// INT_MAX with nothing after it. 0 asks for the default size.
bool ParseBufferSize(const char* text, size_t* out) {
  if (*text < '0' || *text > '9') return false;
  errno = 0;
  char* end = nullptr;
  unsigned long value = std::strtoul(text, &end, 0);
  if (errno != 0 || *end != '\0' || value > INT_MAX) return false;
  if (value != 0) *out = static_cast<size_t>(value);
  return true;
}

enum LongOnly : int {
  kBufferSize = 0x100,
  kNoFilterStdout,
  kNoFilterStderr,
  kUseStdinSocket,
  kForkPerCall,
  kWarmHandlers,
  kTriggerTimeout,
  kNoPamSession,
  kPamSession,
  kPamSessionHelper,
  kPamConfdir,
};

// Seconds (a fraction allowed) from 0.001 to 3600, as milliseconds.
bool ParseTimeoutSeconds(const char* text, std::chrono::milliseconds* out) {
  errno = 0;
  char* end = nullptr;
  double seconds = std::strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !(seconds >= 0.001 && seconds <= 3600)) return false;
  *out = std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
  return true;
}

// Handles one option of qrexec-client-vm; returns an exit status to stop.
std::optional<int> ApplyClientVmOption(int opt, const char* argv0, ClientVmOptions& options) {
  switch (opt) {
    case kBufferSize:
      if (!ParseBufferSize(optarg, &options.buffer_size)) {
        std::fprintf(stderr, "%s: invalid buffer size: %s\n", argv0, optarg);
        return 1;  // Qubes' qrexec-client-vm exits 1 here, not 2
      }
      return std::nullopt;
    case 't':
      options.filter_stdout = Filter::kOn;
      return std::nullopt;
    case 'T':
      options.filter_stderr = Filter::kOn;
      return std::nullopt;
    case kNoFilterStdout:
      options.filter_stdout = Filter::kOff;
      return std::nullopt;
    case kNoFilterStderr:
      options.filter_stderr = Filter::kOff;
      return std::nullopt;
    case 'a':
      options.agent_socket = optarg;
      return std::nullopt;
    case 'p':
      if (options.prefix_data) {
        std::fprintf(stderr, "%s: the prefix data can only be given once\n", argv0);
        return 2;
      }
      options.prefix_data = optarg;
      return std::nullopt;
    case kUseStdinSocket:
      if (options.use_stdin_socket) {
        std::fprintf(stderr, "%s: --use-stdin-socket given twice\n", argv0);
        return 2;
      }
      options.use_stdin_socket = true;
      return std::nullopt;
    case 's':
      if (options.source_qube) {
        std::fprintf(stderr, "%s: the source qube can only be given once\n", argv0);
        return 2;
      }
      options.source_qube = optarg;
      return std::nullopt;
    case 'h':
      PrintClientVmUsage(argv0, stdout);  // asked for: stdout, as Qubes does
      return 0;
    default:
      PrintClientVmUsage(argv0);
      return 2;
  }
}

}  // namespace

Parsed<AgentOptions> ParseAgentArgs(int argc, char** argv) {
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"agent-socket", required_argument, nullptr, 'a'},
      {"fork-server-socket", required_argument, nullptr, 's'},
      {"no-fork-server", no_argument, nullptr, 'S'},
      {"fork-per-call", no_argument, nullptr, kForkPerCall},
      {"warm-handlers", no_argument, nullptr, kWarmHandlers},
      {"trigger-timeout", required_argument, nullptr, kTriggerTimeout},
      {"no-pam-session", no_argument, nullptr, kNoPamSession},
      {"pam-session", no_argument, nullptr, kPamSession},
      {"pam-session-helper", required_argument, nullptr, kPamSessionHelper},
      {"pam-confdir", required_argument, nullptr, kPamConfdir},
      {nullptr, 0, nullptr, 0},
  };
  AgentOptions options;
  optind = 0;
  int opt;
  // Options anywhere (GNU permutation), as Qubes' qrexec-agent reads them.
  while ((opt = getopt_long(argc, argv, "ha:s:S", kLong, nullptr)) != -1) {
    switch (opt) {
      case 'a':
        options.agent_socket = optarg;
        break;
      case 's':
        options.fork_server_socket_format = optarg;
        break;
      case 'S':
        options.use_fork_server = false;
        break;
      case kForkPerCall:
        options.use_warm_handlers = false;
        break;
      case kWarmHandlers:
        options.use_warm_handlers = true;
        break;
      case kTriggerTimeout:
        if (!ParseTimeoutSeconds(optarg, &options.trigger_timeout)) {
          std::fprintf(stderr, "%s: invalid trigger time-out: %s\n", argv[0], optarg);
          return ExitNow{2};
        }
        break;
      case kNoPamSession:
        options.use_pam_session = false;
        break;
      case kPamSession:
        options.use_pam_session = true;
        break;
      case kPamSessionHelper:
        options.pam_session_helper = optarg;
        break;
      case kPamConfdir:
        options.pam_confdir = optarg;
        break;
      default:
        PrintAgentUsage(argv[0]);
        return ExitNow{2};
    }
  }
  // Qubes' qrexec-agent takes no positionals and ignores any given; we do
  // too (so service units written for it keep working), with a warning.
  for (int i = optind; i < argc; ++i)
    std::fprintf(stderr, "%s: ignoring stray argument: %s\n", argv[0], argv[i]);
  return options;
}

std::optional<exec::PamSessionHelper> PamSessionFromOptions(const AgentOptions& options) {
  if (!options.use_pam_session) return std::nullopt;
  return exec::PamSessionHelper{options.pam_session_helper, options.pam_confdir};
}

Parsed<ClientVmOptions> ParseClientVmArgs(int argc, char** argv) {
  static const option kLong[] = {
      {"buffer-size", required_argument, nullptr, kBufferSize},
      {"filter-escape-chars-stdout", no_argument, nullptr, 't'},
      {"filter-escape-chars-stderr", no_argument, nullptr, 'T'},
      {"no-filter-escape-chars-stdout", no_argument, nullptr, kNoFilterStdout},
      {"no-filter-escape-chars-stderr", no_argument, nullptr, kNoFilterStderr},
      {"agent-socket", required_argument, nullptr, 'a'},
      {"prefix-data", required_argument, nullptr, 'p'},
      {"use-stdin-socket", no_argument, nullptr, kUseStdinSocket},
      {"source-qube", required_argument, nullptr, 's'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  ClientVmOptions options;
  optind = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "+tTa:p:s:h", kLong, nullptr)) != -1) {
    if (auto status = ApplyClientVmOption(opt, argv[0], options)) return ExitNow{*status};
  }
  if (argc - optind < 2) {
    PrintClientVmUsage(argv[0]);
    return ExitNow{2};
  }
  options.target = argv[optind];
  options.service = argv[optind + 1];
  for (int i = optind + 2; i < argc; ++i) options.local_program.emplace_back(argv[i]);
  if (options.use_stdin_socket && !options.local_program.empty()) {
    std::fprintf(stderr, "%s: --use-stdin-socket cannot be used with a local program\n", argv[0]);
    return ExitNow{2};
  }
  return options;
}

std::string ForkServerSocketPath(const std::string& format, const std::string& user) {
  std::string path;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format.compare(i, 2, "%s") == 0) {
      path += user;
      ++i;
    } else {
      path += format[i];
    }
  }
  return path;
}

bool StandardFdsOpen() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) < 0) return false;
  }
  return true;
}

std::string ConvertTargetName(const std::string& target) {
  std::string converted = target.substr(0, 63);
  for (char& c : converted) {
    if (c == '$') c = '@';
  }
  return converted;
}

}  // namespace qrexec::agent
