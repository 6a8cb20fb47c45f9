#include "agent/pam_session.h"

#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <security/pam_appl.h>
#include <signal.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "base/c_strings.h"

extern char** environ;

namespace qrexec::agent {
namespace {

constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";
constexpr const char* kProgramShell = "/bin/sh";
constexpr int kForwardedSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};

struct Account {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
  std::string shell;
};

std::optional<Account> LookUp(const std::string& user) {
  errno = 0;
  const passwd* pw = ::getpwnam(user.c_str());
  if (pw == nullptr) return std::nullopt;
  Account account{pw->pw_name, pw->pw_uid, pw->pw_gid, pw->pw_dir ? pw->pw_dir : "",
                  pw->pw_shell ? pw->pw_shell : ""};
  if (account.shell.empty()) account.shell = kProgramShell;
  return account;
}

// Non-interactive: there is nobody to answer a prompt. Messages are logged.
int Converse(int count, const pam_message** messages, pam_response** responses, void*) {
  if (count <= 0 || count > PAM_MAX_NUM_MSG) return PAM_CONV_ERR;
  for (int i = 0; i < count; ++i) {
    int style = messages[i]->msg_style;
    if (style == PAM_PROMPT_ECHO_OFF || style == PAM_PROMPT_ECHO_ON) return PAM_CONV_ERR;
  }
  auto* replies = static_cast<pam_response*>(std::calloc(count, sizeof(pam_response)));
  if (replies == nullptr) return PAM_BUF_ERR;
  for (int i = 0; i < count; ++i)
    syslog(messages[i]->msg_style == PAM_ERROR_MSG ? LOG_ERR : LOG_INFO, "PAM: %s",
           messages[i]->msg != nullptr ? messages[i]->msg : "");
  *responses = replies;  // PAM frees them
  return PAM_SUCCESS;
}

std::string_view Name(std::string_view entry) {
  size_t eq = entry.find('=');
  return eq == std::string_view::npos ? std::string_view() : entry.substr(0, eq);
}

void Set(std::vector<std::string>& env, std::string_view entry) {
  std::string_view name = Name(entry);
  if (name.empty()) return;
  std::erase_if(env, [&](const std::string& e) { return Name(e) == name; });
  env.emplace_back(entry);
}

void Set(std::vector<std::string>& env, std::string_view name, const std::string& value) {
  Set(env, std::string(name) + "=" + value);
}

// Ours, then what the PAM modules set, then the account's own variables.
std::vector<std::string> SessionEnvironment(pam_handle_t* pam, const Account& account) {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) Set(env, *entry);
  if (char** list = ::pam_getenvlist(pam)) {
    for (char** entry = list; *entry != nullptr; ++entry) {
      Set(env, *entry);
      std::free(*entry);
    }
    std::free(list);
  }
  Set(env, "HOME", account.home);
  Set(env, "SHELL", account.shell);
  Set(env, "USER", account.name);
  Set(env, "LOGNAME", account.name);
  if (std::none_of(env.begin(), env.end(), [](const std::string& e) { return Name(e) == "PATH"; }))
    Set(env, "PATH", kDefaultPath);
  return env;
}

// The child: become the user and exec. Every step is checked: a service
// must never run with the wrong identity.
[[noreturn]] void BecomeUserAndExec(const Account& account, const std::string& shell,
                                    std::vector<std::string>& argv, std::vector<std::string>& env,
                                    const sigset_t& old_mask) {
  if (::setgid(account.gid) != 0 || ::setuid(account.uid) != 0 || ::getuid() != account.uid ||
      ::geteuid() != account.uid || ::getgid() != account.gid) {
    syslog(LOG_ERR, "cannot switch to %s: %s", account.name.c_str(), std::strerror(errno));
    ::_exit(kPamExitProblem);
  }
  if (::chdir(account.home.c_str()) != 0 && ::chdir("/") != 0) ::_exit(kPamExitProblem);
  ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  auto args = CStringArray(argv);
  auto envp = CStringArray(env);
  ::execve(shell.c_str(), args.data(), envp.data());
  int err = errno;
  syslog(LOG_ERR, "cannot exec %s: %s", shell.c_str(), std::strerror(err));
  ::_exit(err == ENOENT ? 127 : kPamExitProblem);
}

// Our fds 0-2 are the service's: let go of them so that its EOFs are seen.
void ReleaseStdio() {
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) return;
  for (int fd = 0; fd <= 2; ++fd) ::dup2(null, fd);
  if (null > 2) ::close(null);
}

// Waits for `child`, forwarding the termination signals (blocked in `mask`
// together with SIGCHLD) to it. Returns its exit status as a qrexec code.
int WaitForwarding(pid_t child, const sigset_t& mask) {
  for (;;) {
    int status = 0;
    pid_t done = ::waitpid(child, &status, WNOHANG);
    if (done == child) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      continue;
    }
    if (done < 0 && errno != EINTR) return kPamExitProblem;
    siginfo_t info{};
    int signo = ::sigwaitinfo(&mask, &info);
    if (signo > 0 && signo != SIGCHLD) ::kill(child, signo);
  }
}

// A session opened for `account`; the destructor closes what was opened.
class Session {
 public:
  explicit Session(pam_handle_t* pam) : pam_(pam) {}
  ~Session() {
    if (opened_) Check(::pam_close_session(pam_, PAM_SILENT), "pam_close_session");
    if (credentials_) Check(::pam_setcred(pam_, PAM_DELETE_CRED | PAM_SILENT), "pam_setcred");
    ::pam_end(pam_, last_);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  bool Open(const Account& account) {
    int acct = ::pam_acct_mgmt(pam_, PAM_SILENT);
    // An expired password asks for a new one; nobody is here to give it,
    // and dom0's policy, not a password, decides whether the call may run.
    if (acct == PAM_NEW_AUTHTOK_REQD)
      syslog(LOG_NOTICE, "password of %s has expired; running anyway", account.name.c_str());
    else if (!Check(acct, "pam_acct_mgmt"))
      return false;
    // Groups first: pam_setcred may add more (pam_group), and the child
    // keeps ours across setuid.
    if (::initgroups(account.name.c_str(), account.gid) != 0) {
      syslog(LOG_ERR, "initgroups %s: %s", account.name.c_str(), std::strerror(errno));
      return false;
    }
    if (!Check(::pam_setcred(pam_, PAM_ESTABLISH_CRED | PAM_SILENT), "pam_setcred")) return false;
    credentials_ = true;
    if (!Check(::pam_open_session(pam_, PAM_SILENT), "pam_open_session")) return false;
    opened_ = true;
    return true;
  }
  pam_handle_t* handle() const { return pam_; }

 private:
  bool Check(int rc, const char* what) {
    last_ = rc;
    if (rc == PAM_SUCCESS) return true;
    syslog(LOG_ERR, "%s: %s", what, ::pam_strerror(pam_, rc));
    return false;
  }

  pam_handle_t* pam_;
  int last_ = PAM_SUCCESS;
  bool credentials_ = false;
  bool opened_ = false;
};

int RunInSession(Session& session, const Account& account, const PamSessionOptions& options) {
  std::string shell = options.shell_command ? account.shell : kProgramShell;
  std::vector<std::string> argv = LoginShellArgv(shell, options);
  std::vector<std::string> env = SessionEnvironment(session.handle(), account);

  sigset_t mask, old_mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  for (int signo : kForwardedSignals) sigaddset(&mask, signo);
  ::sigprocmask(SIG_BLOCK, &mask, &old_mask);
  pid_t child = ::fork();
  if (child < 0) {
    syslog(LOG_ERR, "fork: %s", std::strerror(errno));
    return kPamExitProblem;
  }
  if (child == 0) BecomeUserAndExec(account, shell, argv, env, old_mask);
  ReleaseStdio();
  return WaitForwarding(child, mask);
}

}  // namespace

std::optional<PamSessionOptions> ParsePamSessionArgs(int argc, char** argv) {
  enum { kConfdir = 0x100, kShellCommand };
  static const option kLong[] = {
      {"pam-confdir", required_argument, nullptr, kConfdir},
      {"shell-command", no_argument, nullptr, kShellCommand},
      {nullptr, 0, nullptr, 0},
  };
  PamSessionOptions options;
  optind = 0;
  opterr = 0;
  int opt;
  // "+": stop at the first non-option (USER); everything after "--" is the
  // command, whatever it looks like.
  while ((opt = getopt_long(argc, argv, "+", kLong, nullptr)) != -1) {
    if (opt == kConfdir)
      options.pam_confdir = optarg;
    else if (opt == kShellCommand)
      options.shell_command = true;
    else
      return std::nullopt;
  }
  if (argc - optind < 3 || std::strcmp(argv[optind + 1], "--") != 0) return std::nullopt;
  options.user = argv[optind];
  if (options.user.empty()) return std::nullopt;
  for (int i = optind + 2; i < argc; ++i) options.command.emplace_back(argv[i]);
  if (options.shell_command && options.command.size() != 1) return std::nullopt;
  return options;
}

std::vector<std::string> LoginShellArgv(const std::string& shell,
                                        const PamSessionOptions& options) {
  size_t slash = shell.rfind('/');
  std::string argv0 = "-" + (slash == std::string::npos ? shell : shell.substr(slash + 1));
  if (options.shell_command) {
    const std::string& command = options.command.front();
    // A command starting with '-' would be read as shell options.
    if (command.starts_with('-')) return {argv0, "-c", "--", command};
    return {argv0, "-c", command};
  }
  std::vector<std::string> argv{argv0, "-c", "exec \"$0\" \"$@\""};
  argv.insert(argv.end(), options.command.begin(), options.command.end());
  return argv;
}

int RunPamSession(const PamSessionOptions& options) {
  ::openlog("qrexec-pam-session", LOG_PID, LOG_AUTHPRIV);
  // An inherited SIG_IGN would make the kernel reap the service, and we
  // could not learn its status.
  ::signal(SIGCHLD, SIG_DFL);
  auto account = LookUp(options.user);
  if (!account) {
    syslog(LOG_ERR, "no such user: %s", options.user.c_str());
    return kPamExitProblem;
  }
  pam_conv conversation{Converse, nullptr};
  pam_handle_t* pam = nullptr;
  const char* confdir = options.pam_confdir ? options.pam_confdir->c_str() : nullptr;
  int rc =
      ::pam_start_confdir(kPamServiceName, account->name.c_str(), &conversation, confdir, &pam);
  if (rc != PAM_SUCCESS) {
    syslog(LOG_ERR, "pam_start: %s", ::pam_strerror(pam, rc));
    return kPamExitProblem;
  }
  Session session(pam);
  if (!session.Open(*account)) return kPamExitProblem;
  return RunInSession(session, *account, options);
}

}  // namespace qrexec::agent
