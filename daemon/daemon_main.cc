// qrexec-daemon: the dom0 broker of one VM. See man/qrexec-daemon.1 and
// daemon.h; this file only wires the pieces together.
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/log.h"
#include "base/malloc_tuning.h"
#include "daemon/daemon.h"
#include "daemon/daemon_options.h"
#include "daemon/startup.h"
#include "event/loop.h"
#include "vchan/transport.h"

namespace {

using qrexec::daemon::DaemonConfig;

bool StdioOpen() {
  for (int fd = 0; fd <= 2; ++fd)
    if (::fcntl(fd, F_GETFD) < 0) return false;
  return true;
}

void OnSigpipe(int) {}

// Writers get EPIPE instead of dying; unlike SIG_IGN, a handler is reset by
// execve, so spawned programs start with the default disposition.
void GuardSigpipe() {
  struct sigaction action {};
  action.sa_handler = OnSigpipe;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGPIPE, &action, nullptr);
}

// qrexec-client sits beside us in the build tree; installed, it is
// /usr/bin/qrexec-client. $QREXEC_CLIENT_PROGRAM overrides both.
std::string ClientProgram() {
  if (const char* path = std::getenv("QREXEC_CLIENT_PROGRAM"); path && *path) return path;
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    std::string dir(self, static_cast<size_t>(n));
    dir.resize(dir.rfind('/') + 1);
    if (::access((dir + "qrexec-client").c_str(), X_OK) == 0) return dir + "qrexec-client";
  }
  return "/usr/bin/qrexec-client";
}

int Run(const DaemonConfig& config) {
  qrexec::UniqueFd report = qrexec::daemon::DaemonizeIfAsked(config);
  GuardSigpipe();
  auto transport = qrexec::vchan::MakeTransportFromEnv();
  if (!transport) {
    LOG_ERROR("vchan: {}", transport.error().ToString());
    qrexec::daemon::ReportStartup(report, 3);
    return 3;
  }
  qrexec::event::Loop loop;
  qrexec::daemon::Daemon daemon(loop, **transport, config, ClientProgram());
  auto deadline = config.startup_timeout ? qrexec::sys::Deadline::After(*config.startup_timeout)
                                         : qrexec::sys::Deadline::Never();
  if (auto st = daemon.Start(deadline); !st) {
    bool timed_out = st.error().kind == qrexec::ErrorKind::kTimedOut;
    LOG_ERROR("cannot start: {}", st.error().ToString());
    qrexec::daemon::ReportStartup(report, timed_out ? 3 : 1);
    return timed_out ? 3 : 1;
  }
  (void)::chdir(config.socket_dir.c_str());
  LOG_INFO("connected to the agent of {} (domain {})", config.name, config.domid);
  qrexec::daemon::ReportStartup(report, 0);
  if (auto st = loop.Run(); !st) {
    LOG_ERROR("event loop: {}", st.error().ToString());
    return 1;
  }
  return daemon.exit_code();
}

}  // namespace

int main(int argc, char** argv) {
  if (!StdioOpen()) return 125;
  qrexec::sys::ReexecWithoutMallocCache(argv);  // may not return (see malloc_tuning.h)
  qrexec::log::SetProgramName("qrexec-daemon");
  auto parsed = qrexec::daemon::ParseDaemonOptions(argc, argv);
  if (auto* exit = std::get_if<qrexec::daemon::ParseExit>(&parsed)) {
    std::fputs(exit->message.c_str(), stderr);
    return exit->code;
  }
  return Run(std::get<DaemonConfig>(parsed));
}
