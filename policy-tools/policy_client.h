// Calling the policy admin API from a tool (qubes-policy and friends): in
// dom0 through `qrexec-client -d dom0 DEFAULT:QUBESRPC policy.X+ARG dom0`, in
// a VM through `qrexec-client-vm dom0 policy.X+ARG`. qrexec-client is looked
// for beside the running binary first (the build tree), then in /usr/bin;
// where there is none, the VM client is used.
#pragma once

#include <string>
#include <string_view>

namespace qrexec::policy_tools {

struct AdminCall {
  int exit_code = -1;  // the service's exit status (-1: could not run)
  std::string out;
  std::string err;
  // The reference's exception class named at the start of `err` (empty when
  // the failure was not a refused request) and the message after it.
  std::string error_kind;
  std::string error_message;
};

// Runs policy.[include.]METHOD+ARGUMENT in dom0 with `payload` as input.
AdminCall CallPolicyAdmin(std::string_view method, bool include, std::string_view argument,
                          std::string_view payload);

}  // namespace qrexec::policy_tools
