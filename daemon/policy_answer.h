// PolicyAnswer: the daemon's reading of a policy response (qrexec-protocol.md
// §5.2, "daemon-side validation"). The same text comes from policy.sock and
// from the fallback program's stdout. Pure; fuzzed by policy_answer_fuzz.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace qrexec::daemon {

struct PolicyAnswer {
  bool allow = false;
  // Set for allow only:
  std::string user;
  std::string target;
  std::optional<std::string> target_uuid;
  bool autostart = false;
  std::string requested_target;
  std::optional<std::string> service;        // RemoteVM transport service
  std::optional<std::string> policy_source;  // approved requested source
};

// kMalformed for anything the reference refuses: NUL, a line without '=',
// a repeated known key, a bad result/autostart value, allow without one of
// user/target/requested_target/autostart, deny with any of them. Unknown
// keys are ignored (debug-logged).
Result<PolicyAnswer> ParsePolicyAnswer(std::string_view untrusted_text);

}  // namespace qrexec::daemon
