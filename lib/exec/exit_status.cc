#include "exec/exit_status.h"

#include <sys/wait.h>

namespace qrexec::exec {

ExitStatus ExitStatusFromWaitStatus(int wait_status) {
  if (WIFSIGNALED(wait_status)) return Signaled{WTERMSIG(wait_status)};
  return Exited{WEXITSTATUS(wait_status)};
}

int QrexecExitCode(const ExitStatus& status) {
  if (const auto* exited = std::get_if<Exited>(&status)) return exited->code;
  return 128 + std::get<Signaled>(status).signo;
}

int ExitCodeForError(const Error& error) {
  return error.kind == ErrorKind::kNotFound ? kExitNotFound : kExitProblem;
}

}  // namespace qrexec::exec
