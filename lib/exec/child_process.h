// ChildProcess: a spawned process that owns its pid (and pidfd) and the
// parent ends of its stdio pipes (style.md habits 12, 13).
//
// Spawn() builds argv/envp/fd actions before fork(); between fork and execve
// the child only calls async-signal-safe functions (dup2, fcntl, close_range,
// sigprocmask/sigaction, setgroups/setgid/setuid, setsid, chdir, execve,
// write, _exit). If anything fails in the child, errno is written to a CLOEXEC
// pipe and the child _exit()s; Spawn() reads that pipe, reaps the child and
// returns the error (kNotFound for ENOENT -> 127, otherwise kInternal -> 125),
// so there is no race between "exec failed" and "service exited 127".
//
// The process that owns ChildProcess objects must not set SIGCHLD to SIG_IGN
// (the kernel would reap the children and Wait() would fail with ECHILD).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "exec/exit_status.h"

namespace qrexec::exec {

// What one of the child's fds 0/1/2 is connected to.
struct Stdio {
  enum class Kind {
    kInherit,  // the parent's fd of the same number, as is
    kNull,     // /dev/null (read-write)
    kPipe,     // a new pipe; the parent end is in ChildProcess
    kFd,       // a caller-provided fd (borrowed; the caller keeps it open
               // until Spawn() returns). The same fd may be given for several
               // slots, e.g. one socket as stdin and stdout.
  };
  Kind kind = Kind::kInherit;
  int fd = -1;  // kFd only

  static Stdio Inherit() { return {Kind::kInherit, -1}; }
  static Stdio Null() { return {Kind::kNull, -1}; }
  static Stdio Pipe() { return {Kind::kPipe, -1}; }
  static Stdio Fd(int borrowed_fd) { return {Kind::kFd, borrowed_fd}; }
};

// A user to switch to, resolved before fork (getpwnam/getgrouplist).
struct UserIdentity {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::string home;
  std::string shell;
};

// Looks `name` up in the password database (kNotFound if unknown).
Result<UserIdentity> LookupUser(const std::string& name);

// The identity to run a service as, given the requested user name (§4.4):
//  * we are root: the requested user (also when it is root itself: the
//    service still gets its HOME/USER/... and starts in its home). An
//    unknown user is kRefused.
//  * we are not root: the requested user must be the current user (else
//    kRefused); returns std::nullopt.
// Every error is kRefused or kInternal, so ExitCodeForError() gives 125.
Result<std::optional<UserIdentity>> ResolveRunAs(const std::string& requested_user);

// Looks the current user up once, ignoring the result. The first lookup in a
// process loads the name-service modules (nsswitch.conf: files, systemd,
// ...), about half a millisecond; a long-lived process that forks one child
// per call (the agent, the fork server) calls this at start-up so that every
// child inherits the loaded modules instead of loading them again.
void WarmUpUserLookup();

struct SpawnSpec {
  std::string path;                // execve() path (no PATH search)
  std::vector<std::string> argv;   // argv[0] included; must be non-empty
  std::vector<std::string> env;    // complete environment, "NAME=value"
  Stdio stdin_io = Stdio::Pipe();
  Stdio stdout_io = Stdio::Pipe();
  Stdio stderr_io = Stdio::Pipe();
  // Switch to this user in the child (setgroups, setgid, setuid). Only
  // meaningful when we are root; Spawn() fails (kRefused) otherwise.
  std::optional<UserIdentity> run_as;
  // chdir() in the child; a failure is ignored (the service then runs in "/"
  // when run_as is set, else in the inherited directory).
  std::optional<std::string> working_dir;
  // setsid() in the child (detach from our session and process group).
  bool new_session = true;
};

class ChildProcess {
 public:
  // Starts the process. See the file comment for the failure contract.
  static Result<ChildProcess> Spawn(const SpawnSpec& spec);

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // An unreaped child is sent SIGKILL and reaped (blocking).
  ~ChildProcess();

  // 0 once reaped, released or moved from: such a pid is never signalled.
  pid_t pid() const { return pid_; }
  bool reaped() const { return pid_ == 0; }
  // pidfd (pidfd_open) for event loops: readable when the child exits.
  // -1 when the kernel has no pidfd_open. Borrowed; stays open after the
  // child is reaped, until this object is destroyed (so an event-loop watch
  // on it can be removed safely).
  int pidfd() const { return pidfd_.get(); }

  // Parent ends of the pipes requested with Stdio::Pipe() (invalid
  // otherwise). stdin is the write end; stdout/stderr are read ends. Take
  // them (std::move) to hand them to an event loop; they are CLOEXEC and
  // blocking. Writing to stdin after the child exited raises SIGPIPE unless
  // the process ignores it (the agent and daemon do).
  UniqueFd& stdin_fd() { return stdin_; }
  UniqueFd& stdout_fd() { return stdout_; }
  UniqueFd& stderr_fd() { return stderr_; }

  // Gives the child up: returns its pid (0 if already reaped); from now on
  // this object neither signals nor reaps it, and the caller is responsible
  // for reaping (e.g. a stream engine that watches the pid, or a process
  // that _exit()s and leaves the child to init). Take the pipes and the
  // pidfd first if they are needed; they stay with this object otherwise.
  [[nodiscard]] pid_t Release() { return std::exchange(pid_, 0); }
  // Moves the pidfd out (invalid if none); the child stays owned.
  UniqueFd TakePidfd() { return std::move(pidfd_); }

  // Blocks until the child exits and reaps it. Calling it again after the
  // child has been reaped returns the cached status.
  Result<ExitStatus> Wait();
  // Non-blocking: std::nullopt while the child runs.
  Result<std::optional<ExitStatus>> TryWait();
  // kill(); a no-op success once reaped.
  Status Kill(int signo);

 private:
  ChildProcess() = default;
  void Destroy();

  pid_t pid_ = 0;
  UniqueFd pidfd_;
  UniqueFd stdin_;
  UniqueFd stdout_;
  UniqueFd stderr_;
  std::optional<ExitStatus> status_;
};

}  // namespace qrexec::exec
