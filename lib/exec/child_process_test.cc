#include "exec/child_process.h"

#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "base/sys.h"
#include "exec/test_util.h"

namespace qrexec::exec {
namespace {

using testing::ReadAll;
using testing::TempDir;
using testing::WriteFile;
using testing::WriteScript;

SpawnSpec Shell(const std::string& script) {
  SpawnSpec spec;
  spec.path = "/bin/sh";
  spec.argv = {"sh", "-c", script};
  spec.env = {"PATH=/usr/bin:/bin"};
  return spec;
}

TEST(ExitStatus, MapsToQrexecExitCodes) {
  EXPECT_EQ(QrexecExitCode(Exited{0}), 0);
  EXPECT_EQ(QrexecExitCode(Exited{42}), 42);
  EXPECT_EQ(QrexecExitCode(Signaled{SIGKILL}), 128 + SIGKILL);
  EXPECT_EQ(ExitCodeForError(Error{ErrorKind::kNotFound, "", ENOENT}), 127);
  EXPECT_EQ(ExitCodeForError(Error{ErrorKind::kInternal, "", EACCES}), 125);
  EXPECT_EQ(ExitCodeForError(Error{ErrorKind::kMalformed, "", 0}), 125);
  EXPECT_EQ(ExitCodeForError(Error{ErrorKind::kRefused, "", 0}), 125);
}

TEST(ChildProcess, ReportsExitCodes) {
  for (int code : {0, 1, 3, 125, 255}) {
    auto child = ChildProcess::Spawn(Shell("exit " + std::to_string(code)));
    ASSERT_TRUE(child.has_value()) << child.error().ToString();
    EXPECT_GT(child->pid(), 0);
    auto status = child->Wait();
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(*status, ExitStatus(Exited{code}));
    EXPECT_TRUE(child->reaped());
    EXPECT_EQ(child->pid(), 0);
    // Cached.
    EXPECT_EQ(*child->Wait(), ExitStatus(Exited{code}));
  }
}

TEST(ChildProcess, ReportsSignals) {
  auto child = ChildProcess::Spawn(Shell("kill -TERM $$"));
  ASSERT_TRUE(child.has_value());
  auto status = child->Wait();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, ExitStatus(Signaled{SIGTERM}));
  EXPECT_EQ(QrexecExitCode(*status), 128 + SIGTERM);
}

TEST(ChildProcess, MissingProgramIsNotFoundWithoutRacing) {
  SpawnSpec spec;
  spec.path = "/nonexistent/program";
  spec.argv = {spec.path};
  auto child = ChildProcess::Spawn(spec);
  ASSERT_FALSE(child.has_value());
  EXPECT_EQ(child.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(child.error().sys_errno, ENOENT);
  EXPECT_EQ(ExitCodeForError(child.error()), 127);
}

TEST(ChildProcess, NonExecutableProgramIsAProblem) {
  TempDir dir;
  WriteFile(dir / "prog", "#!/bin/sh\nexit 0\n", 0644);
  SpawnSpec spec;
  spec.path = dir / "prog";
  spec.argv = {spec.path};
  auto child = ChildProcess::Spawn(spec);
  if (::geteuid() == 0) {
    // root may execute a file without x bits only if some x bit is set; 0644
    // has none, so this still fails with EACCES.
  }
  ASSERT_FALSE(child.has_value());
  EXPECT_EQ(child.error().sys_errno, EACCES);
  EXPECT_EQ(ExitCodeForError(child.error()), 125);
}

TEST(ChildProcess, PipesCarryStdinStdoutAndStderr) {
  auto child = ChildProcess::Spawn(Shell("read line; echo \"out:$line\"; echo err >&2"));
  ASSERT_TRUE(child.has_value());
  ASSERT_TRUE(sys::WriteAll(child->stdin_fd().get(), "hello\n").has_value());
  child->stdin_fd().reset();
  EXPECT_EQ(ReadAll(child->stdout_fd().get()), "out:hello\n");
  EXPECT_EQ(ReadAll(child->stderr_fd().get()), "err\n");
  EXPECT_EQ(*child->Wait(), ExitStatus(Exited{0}));
}

TEST(ChildProcess, OneSocketCanServeBothDirections) {
  auto pair = sys::SocketPair();
  ASSERT_TRUE(pair.has_value());
  SpawnSpec spec = Shell("read line; echo \"got $line\"");
  spec.stdin_io = Stdio::Fd(pair->second.get());
  spec.stdout_io = Stdio::Fd(pair->second.get());
  spec.stderr_io = Stdio::Null();
  auto child = ChildProcess::Spawn(spec);
  ASSERT_TRUE(child.has_value());
  pair->second.reset();
  EXPECT_FALSE(child->stdin_fd().valid());
  ASSERT_TRUE(sys::WriteAll(pair->first.get(), "x\n").has_value());
  EXPECT_EQ(ReadAll(pair->first.get()), "got x\n");
  EXPECT_EQ(*child->Wait(), ExitStatus(Exited{0}));
}

TEST(ChildProcess, SwappedLowFdsAreInstalledCorrectly) {
  // Give the child our fd 1 as its stdin and our fd 0 as its stdout: the
  // fd map must not clobber one source with another.
  auto in = sys::Pipe();
  auto out = sys::Pipe();
  ASSERT_TRUE(in && out);
  int saved0 = ::dup(0), saved1 = ::dup(1);
  ASSERT_GE(::dup2(out->second.get(), 0), 0);  // fd 0 = write end of `out`
  ASSERT_GE(::dup2(in->first.get(), 1), 0);    // fd 1 = read end of `in`
  SpawnSpec spec = Shell("read x; echo \"[$x]\"");
  spec.stdin_io = Stdio::Fd(1);
  spec.stdout_io = Stdio::Fd(0);
  spec.stderr_io = Stdio::Inherit();
  auto child = ChildProcess::Spawn(spec);
  ::dup2(saved0, 0);
  ::dup2(saved1, 1);
  ::close(saved0);
  ::close(saved1);
  ASSERT_TRUE(child.has_value());
  in->first.reset();
  out->second.reset();
  ASSERT_TRUE(sys::WriteAll(in->second.get(), "swap\n").has_value());
  in->second.reset();
  EXPECT_EQ(ReadAll(out->first.get()), "[swap]\n");
  EXPECT_EQ(*child->Wait(), ExitStatus(Exited{0}));
}

TEST(ChildProcess, GetsExactlyTheGivenEnvironmentAndArgv) {
  SpawnSpec spec;
  spec.path = "/usr/bin/env";
  spec.argv = {"env"};
  spec.env = {"A=1", "B=two words"};
  auto child = ChildProcess::Spawn(spec);
  ASSERT_TRUE(child.has_value());
  EXPECT_EQ(ReadAll(child->stdout_fd().get()), "A=1\nB=two words\n");
  EXPECT_EQ(*child->Wait(), ExitStatus(Exited{0}));
}

TEST(ChildProcess, DoesNotLeakOurDescriptors) {
  auto pipe = sys::Pipe();
  ASSERT_TRUE(pipe.has_value());
  ASSERT_TRUE(sys::SetCloseOnExec(pipe->first.get(), false).has_value());
  auto child = ChildProcess::Spawn(Shell("ls /proc/self/fd"));
  ASSERT_TRUE(child.has_value());
  // 0 1 2 and the fd of the directory listing itself (3).
  EXPECT_EQ(ReadAll(child->stdout_fd().get()), "0\n1\n2\n3\n");
  EXPECT_EQ(*child->Wait(), ExitStatus(Exited{0}));
}

TEST(ChildProcess, StartsInANewSessionWithDefaultSignals) {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction old {};
  ::sigaction(SIGTERM, &ignore, &old);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  auto child = ChildProcess::Spawn(Shell("ps -o sid= -p $$ ; echo $$; kill -TERM $$; sleep 5"));
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGTERM, &old, nullptr);
  ASSERT_TRUE(child.has_value());
  auto status = child->Wait();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, ExitStatus(Signaled{SIGTERM}));
  std::string out = ReadAll(child->stdout_fd().get());
  // With ps available, the session id equals the pid.
  size_t newline = out.find('\n');
  if (newline != std::string::npos && out.find('\n', newline + 1) != std::string::npos) {
    std::string sid = out.substr(0, newline);
    sid.erase(0, sid.find_first_not_of(' '));
    std::string pid = out.substr(newline + 1, out.find('\n', newline + 1) - newline - 1);
    EXPECT_EQ(sid, pid);
  }
}

TEST(ChildProcess, TryWaitAndPidfdFollowTheChild) {
  auto child = ChildProcess::Spawn(Shell("cat >/dev/null"));
  ASSERT_TRUE(child.has_value());
  auto running = child->TryWait();
  ASSERT_TRUE(running.has_value());
  EXPECT_FALSE(running->has_value());
  child->stdin_fd().reset();
  if (child->pidfd() >= 0) {
    struct pollfd pfd {child->pidfd(), POLLIN, 0};
    EXPECT_EQ(::poll(&pfd, 1, 30000), 1);
  }
  std::optional<ExitStatus> done;
  for (int i = 0; i < 3000 && !done; ++i) {
    auto polled = child->TryWait();
    ASSERT_TRUE(polled.has_value());
    done = *polled;
    if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(*done, ExitStatus(Exited{0}));
  EXPECT_TRUE(child->Kill(SIGKILL).has_value());  // no-op once reaped
}

TEST(ChildProcess, DestructorKillsAndReapsAnUnreapedChild) {
  pid_t pid;
  {
    auto child = ChildProcess::Spawn(Shell("sleep 60"));
    ASSERT_TRUE(child.has_value());
    pid = child->pid();
    ChildProcess moved = std::move(*child);
    EXPECT_EQ(child->pid(), 0);
    EXPECT_EQ(moved.pid(), pid);
  }
  // Reaped: waitpid finds no such child.
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(ChildProcess, ReleasedChildIsNeitherKilledNorReaped) {
  pid_t pid;
  UniqueFd pidfd;
  {
    auto child = ChildProcess::Spawn(Shell("exit 9"));
    ASSERT_TRUE(child.has_value());
    pidfd = child->TakePidfd();
    pid = child->Release();
    EXPECT_GT(pid, 0);
    EXPECT_TRUE(child->reaped());
    EXPECT_EQ(child->Release(), 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_EQ(ExitStatusFromWaitStatus(status), ExitStatus(Exited{9}));
}

TEST(ResolveRunAs, AcceptsTheCurrentUser) {
  struct passwd* pw = ::getpwuid(::geteuid());
  ASSERT_NE(pw, nullptr);
  std::string me = pw->pw_name;
  auto run_as = ResolveRunAs(me);
  ASSERT_TRUE(run_as.has_value()) << run_as.error().ToString();
  if (::geteuid() == 0) {
    // Root keeps an identity (HOME, chdir) even for itself.
    ASSERT_TRUE(run_as->has_value());
    EXPECT_EQ((*run_as)->uid, 0u);
    EXPECT_EQ((*run_as)->name, me);
  } else {
    EXPECT_FALSE(run_as->has_value());
    auto other = ResolveRunAs("root");
    ASSERT_FALSE(other.has_value());
    EXPECT_EQ(other.error().kind, ErrorKind::kRefused);
  }
}

TEST(ResolveRunAs, UnknownUserIsRefused) {
  auto run_as = ResolveRunAs("no-such-user-qrexec-test");
  ASSERT_FALSE(run_as.has_value());
  EXPECT_EQ(run_as.error().kind, ErrorKind::kRefused);
  EXPECT_EQ(ExitCodeForError(run_as.error()), 125);
}

TEST(ChildProcess, SwitchesUserWhenRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: switches to nobody";
  auto nobody = ResolveRunAs("nobody");
  ASSERT_TRUE(nobody.has_value()) << nobody.error().ToString();
  ASSERT_TRUE(nobody->has_value());
  SpawnSpec spec = Shell("id -u; id -g; pwd");
  spec.run_as = **nobody;
  spec.working_dir = "/";
  auto child = ChildProcess::Spawn(spec);
  ASSERT_TRUE(child.has_value()) << child.error().ToString();
  std::string expected = std::to_string((*nobody)->uid) + "\n" + std::to_string((*nobody)->gid) + "\n/\n";
  EXPECT_EQ(ReadAll(child->stdout_fd().get()), expected);
  EXPECT_EQ(*child->Wait(), ExitStatus(Exited{0}));
}

}  // namespace
}  // namespace qrexec::exec
