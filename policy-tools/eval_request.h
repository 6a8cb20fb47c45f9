// The request of the policy.EvalSimple / policy.EvalGUI socket services
// (policy-language.md §5.1, qrexec-protocol.md §5.6), as read until EOF:
//   "policy.EvalSimple+SERVICE[+ARG] CALLER[ ...]\0SOURCE\0TARGET"
// Checks, in order: the invoked name is `expected_service`; the queried
// service is present, non-empty and does not start with '+'; the body is at
// most kMaxEvalBody bytes; SOURCE is 1-31 and TARGET 1-63 bytes of
// [A-Za-z0-9@_.-] (so an extra NUL fails).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "base/limits.h"
#include "base/result.h"

namespace qrexec::policy_tools {

inline constexpr size_t kMaxEvalBody = 96;
inline constexpr size_t kMaxEvalRequest = limits::kMaxServiceNameLen + 1024 + kMaxEvalBody;

struct EvalRequest {
  std::string caller;           // first word after the service ("" if none)
  std::string service_and_arg;  // what to evaluate
  std::string source;
  std::string target;
};

Result<EvalRequest> DecodeEvalRequest(std::string_view expected_service,
                                      std::string_view untrusted_request);

}  // namespace qrexec::policy_tools
