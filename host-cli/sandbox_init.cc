// qrexec-sandbox-init COMMAND [ARG...]: the first program in every domain.
//
// bubblewrap, run as root in the domain's user namespace, drops the
// capabilities outside the domain's set but leaves the bounding set full.
// This program clears the bounding set down to the capabilities it holds
// (minus CAP_SETPCAP, which it needs only for this and which bwrap grants it
// for that reason) and drops CAP_SETPCAP. Then:
// - as PID 1 of the domain's PID namespace (bwrap --as-pid-1), it is the
//   domain's init: it runs COMMAND as its child, reaps every orphan, passes
//   on the termination signals it gets, and exits as COMMAND does. So no
//   process in the domain, its init included, keeps a full bounding set.
// - otherwise it execs COMMAND.
// Linked statically: it must run with any template's libraries.
#include <linux/capability.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace {

bool Capget(__user_cap_data_struct (&data)[2]) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  return ::syscall(SYS_capget, &header, data) == 0;
}

bool Capset(__user_cap_data_struct (&data)[2]) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  return ::syscall(SYS_capset, &header, data) == 0;
}

bool Holds(const __user_cap_data_struct (&data)[2], int cap) {
  return (data[cap / 32].permitted & (1u << (cap % 32))) != 0;
}

int Fail(const char* what) {
  std::fprintf(stderr, "qrexec-sandbox-init: %s: %s\n", what, std::strerror(errno));
  return 127;
}

// The signals the init passes on to COMMAND; the others it never gets
// (the kernel drops signals to a PID namespace's init that it does not
// handle, SIGKILL and SIGSTOP from inside among them).
constexpr int kPassedOn[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

// Exit status in the shell's convention.
int ExitCodeOf(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

// Runs COMMAND as a child and reaps until it exits. Signals are taken
// synchronously: blocked (which also keeps the kernel from dropping them)
// and read with sigwaitinfo.
int RunAsInit(char** command) {
  sigset_t taken;
  sigemptyset(&taken);
  sigaddset(&taken, SIGCHLD);
  for (int sig : kPassedOn) sigaddset(&taken, sig);
  sigset_t previous;
  if (::sigprocmask(SIG_BLOCK, &taken, &previous) < 0) return Fail("sigprocmask");
  pid_t child = ::fork();
  if (child < 0) return Fail("fork");
  if (child == 0) {
    ::sigprocmask(SIG_SETMASK, &previous, nullptr);
    ::execvp(command[0], command);
    Fail(command[0]);
    ::_exit(127);
  }
  while (true) {
    siginfo_t info{};
    int sig = ::sigwaitinfo(&taken, &info);
    if (sig < 0) continue;  // EINTR
    if (sig != SIGCHLD) {
      ::kill(child, sig);
      continue;
    }
    int status = 0;
    pid_t reaped;
    while ((reaped = ::waitpid(-1, &status, WNOHANG)) > 0) {
      if (reaped == child) return ExitCodeOf(status);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: qrexec-sandbox-init COMMAND [ARG...]\n");
    return 2;
  }
  __user_cap_data_struct caps[2] = {};
  if (!Capget(caps)) return Fail("capget");
  for (int cap = 0; cap < 64; ++cap) {
    if (Holds(caps, cap) && cap != CAP_SETPCAP) continue;
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) return Fail("dropping the bounding set");
  }
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, CAP_SETPCAP, 0, 0);
  constexpr unsigned kSetpcap = 1u << CAP_SETPCAP;  // capability 8: the low half
  caps[0].effective &= ~kSetpcap;
  caps[0].permitted &= ~kSetpcap;
  caps[0].inheritable &= ~kSetpcap;
  if (!Capset(caps)) return Fail("capset");
  if (::getpid() == 1) return RunAsInit(argv + 1);
  ::execvp(argv[1], argv + 1);
  return Fail(argv[1]);
}
