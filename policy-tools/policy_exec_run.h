// The deprecated five-argument form of qrexec-policy-exec
// (qrexec-protocol.md §1.8): DOMID SOURCE TARGET SERVICE+ARG PROCESS_IDENT.
// After an allow it also performs the call: starts the target through qubesd
// (admin.vm.Start; a disposable is first created with
// admin.vm.CreateDisposable), then runs
//   qrexec-client -Ed TARGET -c IDENT,SOURCE,DOMID -- USER:QUBESRPC SERVICE+ARG SOURCE
// (-EWkd for a disposable) and returns its exit code.
#pragma once

#include <string>

#include "policy/evaluate.h"

namespace qrexec::policy_tools {

struct RunOptions {
  std::string qubesd_socket;  // resolved path
  std::string qrexec_client = "/usr/bin/qrexec-client";
};

// `allow` must be an allow decision with its answer built.
int RunAllowedCall(const policy::Decision& allow, const std::string& domid,
                   const std::string& process_ident, const RunOptions& options);

}  // namespace qrexec::policy_tools
