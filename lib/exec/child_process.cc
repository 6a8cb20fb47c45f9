#include "exec/child_process.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "base/c_strings.h"
#include "base/log.h"
#include "base/sys.h"

namespace qrexec::exec {
namespace {

// What the child reports through the CLOEXEC pipe when it cannot exec.
enum class ChildStage : int { kStdio = 1, kUser = 2, kExec = 3 };
struct ChildFailure {
  int stage;
  int err;
};

// Everything the child needs, computed before fork(): only raw pointers and
// ints, so the child never allocates.
struct ChildPlan {
  const char* path;
  char* const* argv;
  char* const* envp;
  int src[3];  // fd to install at 0/1/2, or -1 to leave the slot alone
  int error_fd;
  bool switch_user;
  uid_t uid;
  gid_t gid;
  const gid_t* groups;
  size_t group_count;
  const char* working_dir;
  bool new_session;
};

[[noreturn]] void FailInChild(int error_fd, ChildStage stage, int err) {
  ChildFailure failure{static_cast<int>(stage), err};
  // Best effort: the parent treats a short report like a generic failure.
  ssize_t ignored = ::write(error_fd, &failure, sizeof failure);
  (void)ignored;
  ::_exit(err == ENOENT && stage == ChildStage::kExec ? 127 : 125);
}

// Runs in the child between vfork() and execve(). The child shares the
// parent's memory until execve, so it may only make system calls: no
// allocation, no writes to the parent's objects, raw set*id syscalls (glibc's
// wrappers would signal the parent's threads to change their ids too). It
// starts with every signal blocked (see Spawn), resets the handlers -- a
// parent handler must never run on the shared memory -- and only then
// unblocks.
[[noreturn]] void RunChild(const ChildPlan& plan) {
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &default_action, nullptr);
  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);

  int error_fd = plan.error_fd;
  if (error_fd < 3) {
    int moved = ::fcntl(error_fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0) ::_exit(125);
    error_fd = moved;
  }

  int src[3] = {plan.src[0], plan.src[1], plan.src[2]};
  // Sources sitting in another slot of 0..2 are moved above 2 first so that
  // installing one slot never clobbers the source of another.
  for (int slot = 0; slot < 3; ++slot) {
    if (src[slot] >= 0 && src[slot] < 3 && src[slot] != slot) {
      int moved = ::fcntl(src[slot], F_DUPFD_CLOEXEC, 3);
      if (moved < 0) FailInChild(error_fd, ChildStage::kStdio, errno);
      src[slot] = moved;
    }
  }
  for (int slot = 0; slot < 3; ++slot) {
    if (src[slot] < 0) continue;
    if (src[slot] == slot) {
      if (::fcntl(slot, F_SETFD, 0) < 0) FailInChild(error_fd, ChildStage::kStdio, errno);
    } else if (::dup2(src[slot], slot) < 0) {
      FailInChild(error_fd, ChildStage::kStdio, errno);
    }
  }
  const int keep[1] = {error_fd};
  sys::CloseFdsExcept(keep);

  if (plan.new_session) ::setsid();

  if (plan.switch_user) {
    if (::syscall(SYS_setgroups, plan.group_count, plan.groups) < 0 ||
        ::syscall(SYS_setgid, plan.gid) < 0 || ::syscall(SYS_setuid, plan.uid) < 0)
      FailInChild(error_fd, ChildStage::kUser, errno);
  }
  if (plan.working_dir != nullptr && ::chdir(plan.working_dir) < 0 && plan.switch_user) {
    if (::chdir("/") < 0) {
      // Nothing sensible left to try; the service runs where it is.
    }
  }

  ::execve(plan.path, plan.argv, plan.envp);
  FailInChild(error_fd, ChildStage::kExec, errno);
}

const char* StageName(int stage) {
  switch (static_cast<ChildStage>(stage)) {
    case ChildStage::kStdio:
      return "setting up stdio";
    case ChildStage::kUser:
      return "switching user";
    case ChildStage::kExec:
      return "execve";
  }
  return "starting the child";
}

Result<std::string> CurrentUserName() {
  long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size > 0 ? static_cast<size_t>(size) : 16384);
  while (true) {
    struct passwd pw {};
    struct passwd* found = nullptr;
    int rc = ::getpwuid_r(::geteuid(), &pw, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0) return ErrnoError("getpwuid_r", rc);
    if (found == nullptr)
      return MakeError(ErrorKind::kRefused, "the current uid has no passwd entry");
    return std::string(pw.pw_name);
  }
}

}  // namespace

Result<UserIdentity> LookupUser(const std::string& name) {
  long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size > 0 ? static_cast<size_t>(size) : 16384);
  struct passwd pw {};
  struct passwd* found = nullptr;
  while (true) {
    int rc = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0) return ErrnoError("getpwnam_r", rc);
    break;
  }
  if (found == nullptr) return MakeError(ErrorKind::kNotFound, "no such user");

  UserIdentity ident;
  ident.name = pw.pw_name;
  ident.uid = pw.pw_uid;
  ident.gid = pw.pw_gid;
  ident.home = pw.pw_dir != nullptr ? pw.pw_dir : "/";
  ident.shell = pw.pw_shell != nullptr && pw.pw_shell[0] != '\0' ? pw.pw_shell : "/bin/sh";

  int count = 32;
  while (true) {
    ident.groups.assign(static_cast<size_t>(count), 0);
    int n = count;
    if (::getgrouplist(pw.pw_name, pw.pw_gid, ident.groups.data(), &n) >= 0) {
      ident.groups.resize(static_cast<size_t>(n));
      break;
    }
    if (n <= count || count > 65536) return MakeError(ErrorKind::kInternal, "getgrouplist failed");
    count = n;
  }
  return ident;
}

void WarmUpUserLookup() {
  if (auto name = CurrentUserName()) (void)LookupUser(*name);
}

Result<std::optional<UserIdentity>> ResolveRunAs(const std::string& requested_user) {
  if (::geteuid() == 0) {
    auto ident = LookupUser(requested_user);
    if (!ident) {
      if (ident.error().kind == ErrorKind::kNotFound)
        return MakeError(ErrorKind::kRefused, "unknown user");
      return tl::unexpected(ident.error());
    }
    return std::optional<UserIdentity>(std::move(*ident));
  }
  auto current = CurrentUserName();
  if (!current) return tl::unexpected(current.error());
  if (*current != requested_user)
    return MakeError(ErrorKind::kRefused, "not running as root and the requested user is not the current user");
  return std::optional<UserIdentity>();
}

Result<ChildProcess> ChildProcess::Spawn(const SpawnSpec& spec) {
  if (spec.argv.empty()) return MakeError(ErrorKind::kInternal, "Spawn: empty argv");
  if (spec.run_as && ::geteuid() != 0)
    return MakeError(ErrorKind::kRefused, "cannot switch user when not running as root");

  std::vector<char*> argv = CStringArray(spec.argv);
  std::vector<char*> envp = CStringArray(spec.env);

  ChildProcess child;
  UniqueFd null_fd;
  UniqueFd child_ends[3];
  int src[3] = {-1, -1, -1};
  const Stdio* ios[3] = {&spec.stdin_io, &spec.stdout_io, &spec.stderr_io};
  UniqueFd* parent_ends[3] = {&child.stdin_, &child.stdout_, &child.stderr_};
  for (int slot = 0; slot < 3; ++slot) {
    switch (ios[slot]->kind) {
      case Stdio::Kind::kInherit:
        break;
      case Stdio::Kind::kNull:
        if (!null_fd.valid()) {
          null_fd.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
          if (!null_fd.valid()) return ErrnoError("open /dev/null");
        }
        src[slot] = null_fd.get();
        break;
      case Stdio::Kind::kPipe: {
        auto pipe = sys::Pipe();
        if (!pipe) return tl::unexpected(pipe.error());
        if (slot == 0) {
          child_ends[slot] = std::move(pipe->first);
          *parent_ends[slot] = std::move(pipe->second);
        } else {
          child_ends[slot] = std::move(pipe->second);
          *parent_ends[slot] = std::move(pipe->first);
        }
        src[slot] = child_ends[slot].get();
        break;
      }
      case Stdio::Kind::kFd:
        if (ios[slot]->fd < 0) return MakeError(ErrorKind::kInternal, "Spawn: invalid fd");
        src[slot] = ios[slot]->fd;
        break;
    }
  }

  auto error_pipe = sys::Pipe();
  if (!error_pipe) return tl::unexpected(error_pipe.error());

  ChildPlan plan{};
  plan.path = spec.path.c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  for (int slot = 0; slot < 3; ++slot) plan.src[slot] = src[slot];
  plan.error_fd = error_pipe->second.get();
  plan.switch_user = spec.run_as.has_value();
  if (spec.run_as) {
    plan.uid = spec.run_as->uid;
    plan.gid = spec.run_as->gid;
    plan.groups = spec.run_as->groups.data();
    plan.group_count = spec.run_as->groups.size();
  }
  plan.working_dir = spec.working_dir ? spec.working_dir->c_str() : nullptr;
  plan.new_session = spec.new_session;

  // vfork: no copy of the parent's page tables (fork of a daemon or agent
  // costs 0.2-1 ms; this is on every call's critical path). The parent
  // resumes once the child has exec'd or failed. All signals stay blocked
  // across it so that none is handled on the shared memory (RunChild).
  sigset_t all, previous;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);
  pid_t pid = ::vfork();
  if (pid == 0) RunChild(plan);
  int vfork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (pid < 0) return ErrnoError("vfork", vfork_errno);

  child.pid_ = pid;
  for (UniqueFd& end : child_ends) end.reset();
  null_fd.reset();
  error_pipe->second.reset();

  ChildFailure failure{};
  size_t got = 0;
  while (got < sizeof failure) {
    ssize_t n = ::read(error_pipe->first.get(), reinterpret_cast<char*>(&failure) + got,
                       sizeof failure - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got != 0) {
    // The child failed before or at execve and has _exit()ed: reap it now.
    (void)child.Wait();
    if (got != sizeof failure)
      return MakeError(ErrorKind::kInternal, "child failed before execve");
    ErrorKind kind = failure.stage == static_cast<int>(ChildStage::kExec) && failure.err == ENOENT
                         ? ErrorKind::kNotFound
                         : ErrorKind::kInternal;
    return MakeError(kind, std::string(StageName(failure.stage)) + " " + spec.path, failure.err);
  }

  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) child.pidfd_.reset(pidfd);
  return child;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, 0)),
      pidfd_(std::move(other.pidfd_)),
      stdin_(std::move(other.stdin_)),
      stdout_(std::move(other.stdout_)),
      stderr_(std::move(other.stderr_)),
      status_(std::exchange(other.status_, std::nullopt)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    Destroy();
    pid_ = std::exchange(other.pid_, 0);
    pidfd_ = std::move(other.pidfd_);
    stdin_ = std::move(other.stdin_);
    stdout_ = std::move(other.stdout_);
    stderr_ = std::move(other.stderr_);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

ChildProcess::~ChildProcess() { Destroy(); }

void ChildProcess::Destroy() {
  if (pid_ != 0) {
    ::kill(pid_, SIGKILL);
    (void)Wait();
    pid_ = 0;
  }
  pidfd_.reset();
  stdin_.reset();
  stdout_.reset();
  stderr_.reset();
}

Result<ExitStatus> ChildProcess::Wait() {
  if (status_) return *status_;
  if (pid_ == 0) return MakeError(ErrorKind::kInternal, "Wait on an empty ChildProcess");
  int wait_status = 0;
  while (::waitpid(pid_, &wait_status, 0) < 0) {
    if (errno == EINTR) continue;
    int saved = errno;
    pid_ = 0;  // ECHILD: someone else reaped it; never signal that pid again
    return ErrnoError("waitpid", saved);
  }
  status_ = ExitStatusFromWaitStatus(wait_status);
  pid_ = 0;
  return *status_;
}

Result<std::optional<ExitStatus>> ChildProcess::TryWait() {
  if (status_) return std::optional<ExitStatus>(*status_);
  if (pid_ == 0) return MakeError(ErrorKind::kInternal, "TryWait on an empty ChildProcess");
  int wait_status = 0;
  pid_t rc;
  do {
    rc = ::waitpid(pid_, &wait_status, WNOHANG);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int saved = errno;
    pid_ = 0;
    return ErrnoError("waitpid", saved);
  }
  if (rc == 0) return std::optional<ExitStatus>();
  status_ = ExitStatusFromWaitStatus(wait_status);
  pid_ = 0;
  return std::optional<ExitStatus>(*status_);
}

Status ChildProcess::Kill(int signo) {
  if (pid_ == 0) return Ok();
  if (::kill(pid_, signo) < 0) return ErrnoError("kill");
  return Ok();
}

}  // namespace qrexec::exec
