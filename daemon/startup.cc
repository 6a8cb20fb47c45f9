#include "daemon/startup.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/log.h"
#include "base/sys.h"

namespace qrexec::daemon {
namespace {

[[noreturn]] void WaitForChild(const DaemonConfig& config, UniqueFd report) {
  auto deadline = config.startup_timeout ? sys::Deadline::After(*config.startup_timeout)
                                         : sys::Deadline::Never();
  if (!config.quiet) std::fprintf(stderr, "Waiting for VM's qrexec agent.");
  for (;;) {
    if (deadline.expired()) {
      if (!config.quiet)
        std::fprintf(stderr, "Cannot connect to '%s' qrexec agent for %lld seconds, giving up\n",
                     config.name.c_str(), static_cast<long long>(config.startup_timeout->count()));
      std::_Exit(3);
    }
    pollfd pfd{report.get(), POLLIN, 0};
    int rc = ::poll(&pfd, 1, 1000);
    if (rc == 0) {
      if (!config.quiet) std::fprintf(stderr, ".");
      continue;
    }
    if (rc < 0) continue;
    unsigned char status = 1;
    ssize_t n = ::read(report.get(), &status, 1);
    if (!config.quiet) std::fprintf(stderr, n == 1 && status == 0 ? "connected\n" : "\n");
    std::_Exit(n == 1 ? status : 1);
  }
}

void RedirectLog(const DaemonConfig& config) {
  ::umask(007);
  std::string path = config.log_dir + "/qrexec." + config.name + ".log";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0660);
  if (fd < 0) return;  // keep the inherited stderr
  ::dup2(fd, 1);
  ::dup2(fd, 2);
  ::close(fd);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd >= 0) {
    ::dup2(null_fd, 0);
    ::close(null_fd);
  }
}

}  // namespace

UniqueFd DaemonizeIfAsked(const DaemonConfig& config) {
  if (config.direct) return UniqueFd();
  auto pipe = sys::Pipe();
  if (!pipe) {
    LOG_ERROR("pipe: {}", pipe.error().ToString());
    std::_Exit(1);
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    LOG_ERROR("fork failed");
    std::_Exit(1);
  }
  if (pid > 0) {
    if (config.startup_nowait) std::_Exit(0);
    pipe->second.reset();
    WaitForChild(config, std::move(pipe->first));
  }
  pipe->first.reset();
  RedirectLog(config);
  ::setsid();
  if (config.startup_nowait) return UniqueFd();
  return std::move(pipe->second);
}

void ReportStartup(UniqueFd& report_fd, int status) {
  if (!report_fd.valid()) return;
  unsigned char byte = static_cast<unsigned char>(status);
  (void)!::write(report_fd.get(), &byte, 1);
  report_fd.reset();
}

}  // namespace qrexec::daemon
