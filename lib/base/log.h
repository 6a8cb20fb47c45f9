// Logging in the Qubes format:
//   YYYY-MM-DD HH:MM:SS.mmm <program>[<pid>]: <file>:<line>:<func>: <message>
// written to stderr (or the fd given to SetLogFd) with one write() per line,
// so lines from several processes sharing a log file do not interleave.
//
// Peer-supplied text must go through the escape filter before it is logged
// (QSB-087): use the `{}` placeholders with SanitizeForLog(...) for such text.
#pragma once

#include <string_view>

#include <fmt/core.h>

namespace qrexec::log {

enum class Level { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Program name shown in every line; call once from main().
void SetProgramName(std::string_view name);
// Minimum level written; default Info, or Debug when $QREXEC_DEBUG is set.
void SetMinLevel(Level level);
bool Enabled(Level level);
// Where lines go; default 2 (stderr). Borrowed: the caller keeps it open.
void SetLogFd(int fd);

void Write(Level level, const char* file, int line, const char* func, std::string_view message);

// Microseconds of CLOCK_MONOTONIC: one clock for every process on the
// machine (bubblewrap domains too), so the call-timing lines (LOG_CALL_STAGE)
// of the daemons and the agents line up on one time axis.
long long MonotonicMicros();

}  // namespace qrexec::log

#define QREXEC_LOG(level, ...)                                                      \
  do {                                                                              \
    if (::qrexec::log::Enabled(level))                                              \
      ::qrexec::log::Write(level, __FILE__, __LINE__, __func__, fmt::format(__VA_ARGS__)); \
  } while (0)

#define LOG_DEBUG(...) QREXEC_LOG(::qrexec::log::Level::kDebug, __VA_ARGS__)
#define LOG_INFO(...) QREXEC_LOG(::qrexec::log::Level::kInfo, __VA_ARGS__)
#define LOG_WARNING(...) QREXEC_LOG(::qrexec::log::Level::kWarning, __VA_ARGS__)
#define LOG_ERROR(...) QREXEC_LOG(::qrexec::log::Level::kError, __VA_ARGS__)

// One stage of one call, for `make bench`'s per-stage timing (debug level):
//   call-timing <KEY> stage=<STAGE> mono_us=<MonotonicMicros()>
// KEY identifies the call on this side (the daemon's request id, the agent's
// data port), e.g. LOG_CALL_STAGE("port=513", "service_started").
#define LOG_CALL_STAGE(key, stage) \
  LOG_DEBUG("call-timing {} stage={} mono_us={}", key, stage, ::qrexec::log::MonotonicMicros())
