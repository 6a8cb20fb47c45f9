// Command line and environment of qrexec-daemon (qrexec-protocol.md §1.2).
//
// ParseDaemonOptions never exits: it returns either a complete DaemonConfig or
// the exit code and message main() should use (usage errors exit 1, like the
// reference; -h prints usage and exits 1 too).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <variant>

namespace qrexec::daemon {

struct DaemonConfig {
  int domid = 0;
  std::string name;
  std::string default_user = "user";
  std::string uuid;
  std::string socket_dir = "/var/run/qubes";
  std::string policy_program = "/usr/bin/qrexec-policy-exec";
  // Our extensions: --policy-socket / $QREXEC_POLICY_SOCKET and
  // --qubesd-socket / $QREXEC_QUBESD_SOCKET.
  std::string policy_socket = "/run/qubes/policy.sock";
  std::string qubesd_socket = "/run/qubesd.sock";
  std::string log_dir = "/var/log/qubes";
  bool quiet = false;
  bool direct = false;
  // Agent connection timeout: $QREXEC_STARTUP_TIMEOUT (default 60 s);
  // empty with $QREXEC_STARTUP_NOWAIT.
  std::optional<std::chrono::seconds> startup_timeout = std::chrono::seconds(60);
  bool startup_nowait = false;
};

struct ParseExit {
  int code;
  std::string message;  // printed to stderr
};

std::variant<DaemonConfig, ParseExit> ParseDaemonOptions(int argc, char** argv);

std::string DaemonUsage(const char* argv0);

}  // namespace qrexec::daemon
