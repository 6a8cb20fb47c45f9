#include "daemon/daemon_options.h"

#include <fmt/core.h>
#include <getopt.h>

#include <cstdlib>

namespace qrexec::daemon {
namespace {

enum LongOnly { kSocketDir = 256, kPolicySocket, kQubesdSocket };

const option kLongOptions[] = {
    {"help", no_argument, nullptr, 'h'},
    {"quiet", no_argument, nullptr, 'q'},
    {"socket-dir", required_argument, nullptr, kSocketDir},
    {"policy-program", required_argument, nullptr, 'p'},
    {"policy-socket", required_argument, nullptr, kPolicySocket},
    {"qubesd-socket", required_argument, nullptr, kQubesdSocket},
    {"direct", no_argument, nullptr, 'D'},
    {"uuid", required_argument, nullptr, 'u'},
    {nullptr, 0, nullptr, 0},
};

// Like atoi: leading digits count, anything else gives 0 (which is refused).
int ParseDomid(const char* text) { return std::atoi(text); }

void ApplyEnvironment(DaemonConfig& config) {
  if (const char* path = std::getenv("QREXEC_POLICY_SOCKET"); path && *path)
    config.policy_socket = path;
  if (const char* path = std::getenv("QREXEC_QUBESD_SOCKET"); path && *path)
    config.qubesd_socket = path;
  if (const char* dir = std::getenv("QREXEC_LOG_DIR"); dir && *dir) config.log_dir = dir;
  if (std::getenv("QREXEC_STARTUP_NOWAIT")) {
    config.startup_nowait = true;
    config.startup_timeout.reset();
    return;
  }
  if (const char* timeout = std::getenv("QREXEC_STARTUP_TIMEOUT")) {
    int seconds = std::atoi(timeout);
    config.startup_timeout = std::chrono::seconds(seconds > 0 ? seconds : 60);
  }
}

}  // namespace

std::string DaemonUsage(const char* argv0) {
  return fmt::format(
      "usage: {} [options...] DOMAIN_ID DOMAIN_NAME [DEFAULT_USER]\n"
      "Options:\n"
      "  -h, --help                 show this help\n"
      "  -q, --quiet                no progress output while waiting for the agent\n"
      "  --socket-dir=PATH          directory of the client socket (default /var/run/qubes)\n"
      "  -p, --policy-program=PATH  fallback policy program\n"
      "                             (default /usr/bin/qrexec-policy-exec)\n"
      "  --policy-socket=PATH       policy daemon socket (default /run/qubes/policy.sock)\n"
      "  --qubesd-socket=PATH       qubesd socket (default /run/qubesd.sock)\n"
      "  -D, --direct               stay in the foreground and log to stderr\n"
      "  -u, --uuid=UUID            UUID of the domain (required)\n",
      argv0);
}

std::variant<DaemonConfig, ParseExit> ParseDaemonOptions(int argc, char** argv) {
  DaemonConfig config;
  const char* argv0 = argc > 0 ? argv[0] : "qrexec-daemon";
  ApplyEnvironment(config);  // before the options, which take precedence
  optind = 0;                // full re-initialisation (GNU), so tests may parse twice
  opterr = 1;
  // No leading '+': as with Qubes' qrexec-daemon, options may also follow
  // the positionals (GNU getopt permutes them).
  for (;;) {
    int opt = getopt_long(argc, argv, "hqp:Du:", kLongOptions, nullptr);
    if (opt == -1) break;
    switch (opt) {
      case 'q':
        config.quiet = true;
        break;
      case kSocketDir:
        config.socket_dir = optarg;
        break;
      case 'p':
        config.policy_program = optarg;
        break;
      case kPolicySocket:
        config.policy_socket = optarg;
        break;
      case kQubesdSocket:
        config.qubesd_socket = optarg;
        break;
      case 'D':
        config.direct = true;
        break;
      case 'u':
        config.uuid = optarg;
        break;
      case 'h':
      default:
        return ParseExit{1, DaemonUsage(argv0)};
    }
  }
  if (config.uuid.empty())
    return ParseExit{1, "Domain UUID option missing!\n" + DaemonUsage(argv0)};
  int positional = argc - optind;
  if (positional < 2 || positional > 3) return ParseExit{1, DaemonUsage(argv0)};
  config.domid = ParseDomid(argv[optind]);
  if (config.domid <= 0) return ParseExit{1, "domain id=0?\n"};
  config.name = argv[optind + 1];
  if (positional == 3) config.default_user = argv[optind + 2];
  return config;
}

}  // namespace qrexec::daemon
