// qubes-policy-admin: the dom0 service behind policy.List, policy.Get,
// policy.Replace, policy.Remove, policy.GetFiles and policy.include.* (each
// /etc/qubes-rpc/<name> is a symlink to this binary). See policy_admin.h.
//
// Environment: QREXEC_SERVICE_FULL_NAME (required), QREXEC_REMOTE_DOMAIN,
// QREXEC_POLICY_DIR (default /etc/qubes/policy.d), QREXEC_POLICY_ADMIN_LOG
// (default /var/log/qubes/policy-admin.log; not written when it cannot be
// opened). Output: the answer on stdout, exit 0. A refused request writes
// "KIND MESSAGE" on stderr and exits 1; an internal failure writes a pointer
// to the log and exits 2.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <iterator>
#include <string>

#include <fmt/core.h>

#include "policy_admin.h"

namespace qrexec::policy_tools {
namespace {

std::string EnvOr(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

// One "YYYY-MM-DD HH:MM:SS,mmm MESSAGE" line appended to the log.
void LogLine(const std::string& log_file, const std::string& message) {
  FILE* log = std::fopen(log_file.c_str(), "ae");
  if (log == nullptr) return;
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  tm local{};
  ::localtime_r(&now.tv_sec, &local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
  std::fprintf(log, "%s,%03ld %s\n", stamp, now.tv_nsec / 1000000, message.c_str());
  std::fclose(log);
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

int Main() {
  const std::string policy_dir = EnvOr("QREXEC_POLICY_DIR", kAdminPolicyDir);
  const std::string log_file = EnvOr("QREXEC_POLICY_ADMIN_LOG", kAdminLogFile);
  const char* full_name = std::getenv("QREXEC_SERVICE_FULL_NAME");
  if (full_name == nullptr) {
    std::fprintf(stderr, "qubes-policy-admin: QREXEC_SERVICE_FULL_NAME is not set\n");
    return 2;
  }
  const std::string source = EnvOr("QREXEC_REMOTE_DOMAIN", "");
  std::string_view name = full_name;
  std::string_view service = name.substr(0, name.find('+'));
  std::string_view argument = service.size() < name.size() ? name.substr(service.size() + 1) : "";
  std::string payload(std::istreambuf_iterator<char>(std::cin), {});

  PolicyAdmin admin(policy_dir);
  AdminResult result = admin.Handle(service, argument, payload);
  std::string what = fmt::format("{}+{} ({})", service, argument, source);
  if (!result && !result.error().kind.empty()) {
    LogLine(log_file, fmt::format("{}: error: {}", what, result.error().message));
    WriteAll(2, result.error().kind + " " + result.error().message);
    return 1;
  }
  if (!result) {
    LogLine(log_file, fmt::format("{}: internal error: {}", what, result.error().message));
    WriteAll(2, fmt::format("Internal error. See '{}' in dom0 for details.", log_file));
    return 2;
  }
  LogLine(log_file, what);
  return WriteAll(1, *result) ? 0 : 2;
}

}  // namespace
}  // namespace qrexec::policy_tools

int main() { return qrexec::policy_tools::Main(); }
