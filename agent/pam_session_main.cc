// qrexec-pam-session: see man/qrexec-pam-session.1 and agent/pam_session.h.
#include <cstdio>

#include "agent/pam_session.h"

int main(int argc, char** argv) {
  using namespace qrexec::agent;
  auto options = ParsePamSessionArgs(argc, argv);
  if (!options) {
    std::fprintf(stderr,
                 "usage: %s [--pam-confdir=DIR] USER -- PROGRAM [ARG...]\n"
                 "       %s [--pam-confdir=DIR] --shell-command USER -- COMMAND\n",
                 argv[0], argv[0]);
    return kPamExitProblem;
  }
  return RunPamSession(*options);
}
