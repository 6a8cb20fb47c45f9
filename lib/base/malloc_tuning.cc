#include "base/malloc_tuning.h"

#include <unistd.h>

#include <cstdlib>

extern char** environ;

namespace qrexec::sys {
namespace {

constexpr const char* kTunables = "GLIBC_TUNABLES";

bool SanitizerBuild() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

std::optional<std::string_view> GetEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string_view(value);
}

void RestoreTunables(const std::optional<std::string>& original) {
  if (original)
    ::setenv(kTunables, original->c_str(), 1);
  else
    ::unsetenv(kTunables);
}

}  // namespace

std::optional<std::string> TunablesWithoutMallocCache(std::optional<std::string_view> current) {
  if (!current || current->empty()) return std::string(kNoMallocCacheTunable);
  if (current->find("glibc.malloc.tcache_count=") != std::string_view::npos) return std::nullopt;
  return std::string(*current) + ":" + std::string(kNoMallocCacheTunable);
}

std::string EncodeSavedTunables(std::optional<std::string_view> original) {
  return original ? "+" + std::string(*original) : std::string("-");
}

std::optional<std::string> DecodeSavedTunables(std::string_view saved) {
  if (!saved.starts_with('+')) return std::nullopt;
  return std::string(saved.substr(1));
}

void ReexecWithoutMallocCache(char** argv) {
#if defined(__GLIBC__)
  if (SanitizerBuild()) return;
  if (auto saved = GetEnv(kSavedTunablesVariable)) {
    // The re-executed process: the loader has read the tunables already.
    RestoreTunables(DecodeSavedTunables(*saved));
    ::unsetenv(kSavedTunablesVariable);
    return;
  }
  std::optional<std::string_view> current = GetEnv(kTunables);
  std::optional<std::string> original(current);
  auto tunables = TunablesWithoutMallocCache(current);
  if (!tunables) return;
  ::setenv(kSavedTunablesVariable, EncodeSavedTunables(original).c_str(), 1);
  ::setenv(kTunables, tunables->c_str(), 1);
  // The real path, not /proc/self/exe: the process name (comm, what ps and
  // pidof show) comes from it.
  char path[4096];
  ssize_t len = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (len > 0) {
    path[len] = '\0';
    ::execve(path, argv, environ);
  }
  // No /proc, or the binary was replaced: run as we are.
  RestoreTunables(original);
  ::unsetenv(kSavedTunablesVariable);
#else
  (void)argv;
#endif
}

}  // namespace qrexec::sys
