// Command-line parsing of the three VM-side programs (qrexec-protocol.md
// §1.4-1.6). Each parser either returns a filled options struct or tells
// main() which status to exit with, after printing usage or an error to
// stderr. The parsers touch no other global state than getopt's.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "exec/service.h"

namespace qrexec::agent {

inline constexpr const char* kDefaultAgentSocket = "/var/run/qubes/qrexec-agent";
inline constexpr const char* kDefaultForkServerSocketFormat =
    "/var/run/qubes/qrexec-server.%s.sock";
inline constexpr const char* kDefaultPamSessionHelper = "/usr/lib/qubes/qrexec-pam-session";
#ifndef QREXEC_PAM_DEFAULT
#define QREXEC_PAM_DEFAULT 1
#endif

// A parser's verdict when the program must not run: exit with this status.
struct ExitNow {
  int status = 0;
};

template <class T>
using Parsed = std::variant<T, ExitNow>;

// A trigger-socket client must send its whole request this soon after it
// connects, or it is dropped: qrexec-client-vm writes it at once, and an idle
// client holds a slot other callers may be waiting for.
inline constexpr std::chrono::milliseconds kDefaultTriggerTimeout{5000};

// qrexec-agent [-h] [-a PATH] [-s FMT] [-S] [--fork-per-call]
// [--trigger-timeout=SECONDS] [--no-pam-session | --pam-session]
// [--pam-session-helper=PATH] [--pam-confdir=DIR]. Usage and -h exit 2.
struct AgentOptions {
  std::string agent_socket = kDefaultAgentSocket;
  // `%s` is replaced by the user name.
  std::string fork_server_socket_format = kDefaultForkServerSocketFormat;
  bool use_fork_server = true;
  // Off by default: Qubes' agent leaves no process behind once a call is
  // over, and callers (Qubes' socket suite among them) wait for all the
  // agent's children to end. --warm-handlers opts in (warm_handlers.h).
  bool use_warm_handlers = false;
  std::chrono::milliseconds trigger_timeout = kDefaultTriggerTimeout;
  // docs/pam.md: a service for a user other than ours runs in a PAM session
  // through this helper; off (--no-pam-session, or a build without libpam)
  // = direct exec.
  bool use_pam_session = QREXEC_PAM_DEFAULT != 0;
  std::string pam_session_helper = kDefaultPamSessionHelper;
  // Test-only: the PAM configuration directory the helper reads (empty =
  // /etc/pam.d). Comes from root's command line only.
  std::string pam_confdir;
};

// The CallLauncher setting the options ask for (nullopt = direct exec).
std::optional<exec::PamSessionHelper> PamSessionFromOptions(const AgentOptions& options);
Parsed<AgentOptions> ParseAgentArgs(int argc, char** argv);

// Tri-state for the escape filters: unset means "decide from isatty()".
enum class Filter { kDefault, kOn, kOff };

// qrexec-client-vm [options] TARGET SERVICE[+ARG] [LOCAL_PROGRAM [ARGS...]].
// Usage errors exit 2 (a bad --buffer-size 1, as in Qubes), -h exits 0
// with the usage on stdout. --buffer-size=0 keeps the default.
struct ClientVmOptions {
  size_t buffer_size = 65536;
  Filter filter_stdout = Filter::kDefault;
  Filter filter_stderr = Filter::kDefault;
  std::string agent_socket = kDefaultAgentSocket;
  std::optional<std::string> prefix_data;
  bool use_stdin_socket = false;
  std::optional<std::string> source_qube;
  std::string target;                      // as given (the `$` → `@` rewrite happens later)
  std::string service;                     // SERVICE[+ARG], sent as is
  std::vector<std::string> local_program;  // program and its arguments, may be empty
};
Parsed<ClientVmOptions> ParseClientVmArgs(int argc, char** argv);

// qrexec-fork-server [SOCKET_PATH]. More than one argument exits 1.
struct ForkServerOptions {
  std::string socket_path;  // default /var/run/qubes/qrexec-server.$USER.sock
};
Parsed<ForkServerOptions> ParseForkServerArgs(int argc, char** argv);

// Expands the fork-server path format: every `%s` becomes `user` (other
// characters, `%%` included, are copied as they are written).
std::string ForkServerSocketPath(const std::string& format, const std::string& user);

// Are fds 0, 1 and 2 open? The programs refuse to start otherwise (exit 125,
// qrexec-protocol.md §1.1), so that no socket of ours lands on them.
bool StandardFdsOpen();
inline constexpr int kExitStdioClosed = 125;

// The target as sent to dom0: every `$` becomes `@`, cut to 63 bytes.
std::string ConvertTargetName(const std::string& target);

}  // namespace qrexec::agent
