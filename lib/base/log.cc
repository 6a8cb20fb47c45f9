#include "base/log.h"

#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <string>

namespace qrexec::log {
namespace {

// Process-wide logging settings. These are the one sanctioned piece of global
// state: a log sink has to be reachable from every layer.
struct Settings {
  std::string program = "qrexec";
  Level min_level = std::getenv("QREXEC_DEBUG") ? Level::kDebug : Level::kInfo;
  int fd = 2;
};

Settings& GetSettings() {
  static Settings settings;
  return settings;
}

std::string_view BaseName(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

void SetProgramName(std::string_view name) { GetSettings().program = std::string(BaseName(name)); }
void SetMinLevel(Level level) { GetSettings().min_level = level; }
bool Enabled(Level level) { return level >= GetSettings().min_level; }
void SetLogFd(int fd) { GetSettings().fd = fd; }

long long MonotonicMicros() {
  struct timespec now {};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<long long>(now.tv_sec) * 1000000 + now.tv_nsec / 1000;
}

void Write(Level /*level*/, const char* file, int line, const char* func,
           std::string_view message) {
  int saved_errno = errno;
  struct timeval now {};
  gettimeofday(&now, nullptr);
  struct tm tm_now {};
  localtime_r(&now.tv_sec, &tm_now);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm_now);
  std::string text = fmt::format("{}.{:03d} {}[{}]: {}:{}:{}: {}\n", stamp,
                                 static_cast<int>(now.tv_usec / 1000), GetSettings().program,
                                 getpid(), BaseName(file), line, func, message);
  const char* data = text.data();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(GetSettings().fd, data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data += n;
    left -= static_cast<size_t>(n);
  }
  errno = saved_errno;
}

}  // namespace qrexec::log
