// qrexec-host: the embedded host (one Linux machine as a small Qubes) and its
// command-line client. See man/qrexec-host.1.
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/log.h"
#include "commands.h"

namespace {

constexpr const char* kUsage =
    "usage: qrexec-host [--config FILE] [--state-dir DIR] COMMAND [ARGS...]\n"
    "commands:\n"
    "  up                       run the host in the foreground (root; Ctrl-C stops it)\n"
    "  ls                       list domains: name, class, state, template\n"
    "  start NAME               start a domain\n"
    "  kill NAME                stop a domain and everything in it\n"
    "  run NAME [-u USER] CMD...            run a command in a domain (like qvm-run -p)\n"
    "  call SOURCE TARGET SERVICE[+ARG] [-- LOCAL_PROGRAM...]\n"
    "                           make SOURCE call SERVICE in TARGET (qrexec-client-vm)\n"
    "The configuration is --config, $QREXEC_HOST_CONFIG or /etc/qrexec-host/host.toml.\n";

std::string ExecutableDir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

// Every domain's waiting broker requests, daemons' sockets and calls cost
// this process descriptors, and the usual soft limit (1024) is far below
// what a few domains at their bounds need (docs/broker-protocol.md). The hard
// limit is what the administrator allows; take all of it.
void RaiseDescriptorLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    LOG_WARNING("cannot read the descriptor limit: {}", std::strerror(errno));
    return;
  }
  if (limit.rlim_cur >= limit.rlim_max) return;
  rlim_t soft = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0)
    LOG_WARNING("cannot raise the descriptor limit from {} to {}: {}", soft, limit.rlim_max, std::strerror(errno));
}

}  // namespace

int main(int argc, char** argv) {
  qrexec::log::SetProgramName("qrexec-host");
  RaiseDescriptorLimit();
  qrexec::host_cli::GlobalOptions global;
  global.bin_dir = ExecutableDir();
  if (const char* env = std::getenv("QREXEC_HOST_CONFIG"); env != nullptr && *env != '\0') global.config_path = env;
  if (global.config_path.empty()) global.config_path = "/etc/qrexec-host/host.toml";
  int i = 1;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (arg.rfind(std::string(name) + "=", 0) == 0) return argv[i] + std::strlen(name) + 1;
      if (arg == name && i + 1 < argc) return argv[++i];
      std::fprintf(stderr, "qrexec-host: %s needs a value\n%s", name, kUsage);
      std::exit(2);
    };
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg.rfind("--config", 0) == 0) {
      global.config_path = value("--config");
    } else if (arg.rfind("--state-dir", 0) == 0) {
      global.state_dir = value("--state-dir");
    } else {
      break;
    }
  }
  if (i >= argc) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::string command = argv[i++];
  std::vector<std::string> args(argv + i, argv + argc);
  // "up --config FILE" (options after the command) as the README writes it.
  if (command == "up" || command == "ls") {
    for (size_t k = 0; k < args.size(); ++k) {
      if (args[k] == "--config" && k + 1 < args.size()) {
        global.config_path = args[k + 1];
        args.erase(args.begin() + static_cast<long>(k), args.begin() + static_cast<long>(k) + 2);
        --k;
      } else if (args[k].rfind("--config=", 0) == 0) {
        global.config_path = args[k].substr(9);
        args.erase(args.begin() + static_cast<long>(k));
        --k;
      }
    }
  }
  using namespace qrexec::host_cli;
  if (command == "up") return CmdUp(global, args);
  if (command == "ls") return CmdLs(global, args);
  if (command == "start") return CmdStart(global, args);
  if (command == "kill") return CmdKill(global, args);
  if (command == "run") return CmdRun(global, args);
  if (command == "call") return CmdCall(global, args);
  std::fprintf(stderr, "qrexec-host: unknown command '%s'\n%s", command.c_str(), kUsage);
  return 2;
}
