// qrexec-pam-session: runs one command as another user inside a PAM session
// of the service `qrexec` (docs/pam.md). The agent (root) execs it instead of
// a service when the service's user is not the agent's:
//
//   qrexec-pam-session [--pam-confdir=DIR] USER -- PROGRAM [ARG...]
//       `/bin/sh` as a login shell (argv[0] "-sh") with
//       `-c 'exec "$0" "$@"' PROGRAM ARG...`: profile scripts run, then the
//       program replaces the shell. This is how RPC services start (Qubes
//       uses `/bin/sh -l` too, so users whose shell is nologin still work).
//   qrexec-pam-session [--pam-confdir=DIR] --shell-command USER -- CMD
//       the user's shell from the password database (default /bin/sh) as a
//       login shell with `-c CMD` (legacy, non-RPC commands).
//
// Sequence: pam_start_confdir("qrexec", USER) -> pam_acct_mgmt ->
// initgroups -> pam_setcred(ESTABLISH) -> pam_open_session -> environment
// (ours, then pam_getenvlist, then HOME/SHELL/USER/LOGNAME from the password
// database, PATH if still unset) -> fork. The child does setgid + setuid
// (each checked), chdir to the home ("/" if that fails) and execs. The
// parent moves its fds 0-2 to /dev/null (so the service's EOFs reach the
// caller when the service closes them, not when we exit), forwards
// SIGTERM/SIGINT/SIGHUP/SIGQUIT to the child, waits, then closes the session,
// deletes the credentials and exits with the child's status (128+N for
// signal N). Every failure before the exec is exit 125; a shell that cannot
// be exec'd is 127 (ENOENT) or 125.
//
// Messages go to syslog (LOG_AUTHPRIV), never to fds 0-2: those belong to
// the service, and what PAM says about an account is no business of the
// remote caller.
//
// --pam-confdir is for tests: it makes PAM read its stacks from DIR
// (pam_start_confdir, Linux-PAM >= 1.4). The agent passes it only when its
// own command line (root's) says so, never from anything a peer sent; the
// program is not setuid, so whoever runs it gains no privilege through it.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace qrexec::agent {

inline constexpr const char* kPamServiceName = "qrexec";
inline constexpr int kPamExitProblem = 125;

struct PamSessionOptions {
  std::string user;
  std::optional<std::string> pam_confdir;
  bool shell_command = false;
  // PROGRAM ARG... (program mode) or exactly one CMD (--shell-command).
  std::vector<std::string> command;
};

// nullopt on a usage error (then exit kPamExitProblem).
std::optional<PamSessionOptions> ParsePamSessionArgs(int argc, char** argv);

// The argv of the login shell, as described in the file comment. `shell` is
// the program exec'd; argv[0] is "-" + its base name.
std::vector<std::string> LoginShellArgv(const std::string& shell, const PamSessionOptions& options);

// The whole program after argument parsing; returns the exit status.
int RunPamSession(const PamSessionOptions& options);

}  // namespace qrexec::agent
