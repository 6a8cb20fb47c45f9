#include "host/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <iterator>
#include <sstream>

extern char** environ;

namespace qrexec::host {
namespace {

int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// In the child after fork: async-signal-safe calls only. Returns 0 or the
// errno of the step that failed (the child then reports it and exits).
int EnterConfinement(const SpawnOptions& options, const std::vector<const char*>& cgroup_procs) {
  rlimit descriptors{};
  if (::getrlimit(RLIMIT_NOFILE, &descriptors) < 0) return errno;
  descriptors.rlim_cur = std::min(options.descriptor_soft_limit, descriptors.rlim_max);
  if (::setrlimit(RLIMIT_NOFILE, &descriptors) < 0) return errno;
  for (const char* procs : cgroup_procs) {
    int fd = ::open(procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    // "0" names the writing process itself, in cgroup v1 and v2.
    bool written = ::write(fd, "0", 1) == 1;
    int err = errno;
    ::close(fd);
    if (!written) return err;
  }
  if (options.join_userns < 0) return 0;
  if (::setns(options.join_userns, CLONE_NEWUSER) < 0) return errno;
  if (::syscall(SYS_setgroups, 0, nullptr) < 0) return errno;
  if (::syscall(SYS_setresgid, 0, 0, 0) < 0) return errno;
  if (::syscall(SYS_setresuid, 0, 0, 0) < 0) return errno;
  return 0;
}

}  // namespace

void Child::Signal(int sig) const {
  if (pid_ <= 0) return;
  if (pidfd_.valid()) {
    ::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0);
  } else {
    ::kill(pid_, sig);
  }
}

std::optional<int> Child::TryReap() {
  if (pid_ <= 0) return std::nullopt;
  int status = 0;
  pid_t got = ::waitpid(pid_, &status, WNOHANG);
  if (got == pid_ || (got < 0 && errno == ECHILD)) {
    bool reaped_here = got == pid_;
    pid_ = -1;
    pidfd_.reset();
    return reaped_here ? status : 0;
  }
  return std::nullopt;
}

Result<int> Child::Wait(const sys::Deadline& deadline) {
  while (true) {
    if (auto status = TryReap()) return *status;
    if (deadline.expired()) return MakeError(ErrorKind::kTimedOut, "child did not exit in time");
    if (pidfd_.valid()) {
      pollfd p{pidfd_.get(), POLLIN, 0};
      int timeout = deadline.PollTimeoutMs();
      ::poll(&p, 1, timeout < 0 || timeout > 100 ? 100 : timeout);
    } else {
      ::usleep(10000);
    }
  }
}

void Child::Stop(std::chrono::milliseconds grace) {
  if (!valid()) return;
  Signal(SIGTERM);
  if (Wait(sys::Deadline::After(grace))) return;
  Signal(SIGKILL);
  (void)Wait(sys::Deadline::After(std::chrono::seconds(10)));
}

Result<Child> Spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return MakeError(ErrorKind::kInternal, "spawn: empty argv");
  std::vector<char*> argv, envp;
  for (const auto& arg : options.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  for (const auto& var : options.env) envp.push_back(const_cast<char*>(var.c_str()));
  envp.push_back(nullptr);
  UniqueFd log_fd, null_fd;
  if (!options.log_path.empty()) {
    log_fd.reset(::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
    if (!log_fd.valid()) return ErrnoError("open " + options.log_path);
  }
  if (!options.inherit_stdin) {
    null_fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!null_fd.valid()) return ErrnoError("open /dev/null");
  }
  std::vector<const char*> cgroup_procs;
  for (const auto& path : options.cgroup_procs) cgroup_procs.push_back(path.c_str());
  std::vector<int> keep_fds = options.keep_fds;
  keep_fds.reserve(keep_fds.size() + 1);
  // Reports exec failure (errno) to the parent; closes on successful exec.
  auto status_pipe = sys::Pipe();
  if (!status_pipe) return tl::unexpected(status_pipe.error());
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork");
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGCHLD, SIGHUP}) sigaction(sig, &dfl, nullptr);
    if (options.new_session) ::setsid();
    if (null_fd.valid()) ::dup2(null_fd.get(), 0);
    if (log_fd.valid()) {
      ::dup2(log_fd.get(), 1);
      ::dup2(log_fd.get(), 2);
    }
    int err = EnterConfinement(options, cgroup_procs);
    if (err == 0) {
      std::vector<int>& keep = keep_fds;  // reserved before fork: no allocation here
      keep.push_back(status_pipe->second.get());
      sys::CloseFdsExcept(keep);
      for (int fd : options.keep_fds) ::fcntl(fd, F_SETFD, 0);
      ::execve(argv[0], argv.data(), envp.data());
      err = errno;
    }
    (void)!::write(status_pipe->second.get(), &err, sizeof err);
    ::_exit(127);
  }
  status_pipe->second.reset();
  UniqueFd pidfd(PidfdOpen(pid));
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(status_pipe->first.get(), &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  if (n == sizeof child_errno) {
    int status;
    ::waitpid(pid, &status, 0);
    return ErrnoError("exec " + options.argv[0], child_errno);
  }
  return Child(pid, std::move(pidfd));
}

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 255;
}

std::vector<std::string> MakeEnvironment(const std::vector<std::string>& drop_prefixes,
                                         const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  auto name_of = [](const std::string& var) { return var.substr(0, var.find('=')); };
  for (char** p = environ; p != nullptr && *p != nullptr; ++p) {
    std::string var(*p);
    bool drop = false;
    for (const auto& prefix : drop_prefixes)
      if (var.compare(0, prefix.size(), prefix) == 0) drop = true;
    for (const auto& add : extra)
      if (name_of(add) == name_of(var)) drop = true;
    if (!drop) env.push_back(std::move(var));
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  pid_t child;
  while (in >> child) out.push_back(child);
  return out;
}

std::optional<pid_t> ParentOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // "PID (COMM) STATE PPID ...": COMM may hold any character, ')' too.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(stat.substr(close + 1));
  std::string state;
  pid_t parent = 0;
  if (!(rest >> state >> parent)) return std::nullopt;
  return parent;
}

Result<int> RunProgram(const std::vector<std::string>& argv, const sys::Deadline& deadline) {
  SpawnOptions options;
  options.argv = argv;
  options.env = {"PATH=/usr/bin:/bin", "LC_ALL=C"};
  auto child = Spawn(options);
  if (!child) return tl::unexpected(child.error());
  auto status = child->Wait(deadline);
  if (!status) {
    child->Signal(SIGKILL);
    (void)child->Wait(sys::Deadline::Never());
    return tl::unexpected(status.error());
  }
  return ExitCodeOf(*status);
}

}  // namespace qrexec::host
