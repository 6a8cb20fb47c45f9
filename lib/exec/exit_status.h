// Typed exit status of a child and the one place where it, or a failure to
// start a service, becomes the qrexec exit value (style.md habit 12).
#pragma once

#include <variant>

#include "base/result.h"

namespace qrexec::exec {

// qrexec exit values for calls that did not run a service to completion.
inline constexpr int kExitProblem = 125;   // bad command, config error, exec failure, ...
inline constexpr int kExitRefused = 126;   // policy refused the call
inline constexpr int kExitNotFound = 127;  // no such service / ENOENT on exec

struct Exited {
  int code = 0;
  bool operator==(const Exited&) const = default;
};
struct Signaled {
  int signo = 0;
  bool operator==(const Signaled&) const = default;
};
using ExitStatus = std::variant<Exited, Signaled>;

// From a waitpid()/waitid() status.
ExitStatus ExitStatusFromWaitStatus(int wait_status);

// The value sent in MSG_DATA_EXIT_CODE / returned by a handler process:
// Exited -> code, Signaled -> 128 + signo.
int QrexecExitCode(const ExitStatus& status);

// Failure to start a service (any Result error from this library) -> the
// qrexec exit value: kNotFound -> 127 (no such service, exec ENOENT),
// everything else (kMalformed, kRefused user mismatch, kInternal, ...) -> 125.
int ExitCodeForError(const Error& error);

}  // namespace qrexec::exec
