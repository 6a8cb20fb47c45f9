// The policy.sock request (qrexec-protocol.md §5.2, policy-language.md §5.1).
//
// Request text: ASCII lines "key=value\n", ended by an empty line or by EOF.
// Each line is split at its first '='. Required keys: source,
// intended_target, service_and_arg. Optional: requested_source,
// assume_yes_for_ask and just_evaluate (exactly "yes" or "no").
// Rejected (the server then closes without an answer): a non-ASCII byte or a
// NUL before the end of the request, a line without '=', an unknown key
// (domain_id and process_ident included), a duplicate key, a bad boolean, a
// missing required key, a request over kMaxPolicyRequest bytes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace qrexec::policy {

struct PolicySocketRequest {
  std::string source;
  std::string intended_target;
  std::string service_and_arg;
  std::optional<std::string> requested_source;  // present even when empty
  bool assume_yes_for_ask = false;
  bool just_evaluate = false;
};

// Where the request ends in `buffer`: the offset just past the empty line
// ("\n\n" or a leading "\n"), or nullopt if it has not arrived yet (then read
// more, or parse everything at EOF).
std::optional<size_t> FindPolicyRequestEnd(std::string_view buffer);

// Parses one request. Text after the terminating empty line is ignored.
// Errors are kMalformed with a short reason for the log
// ("duplicate key 'source'", "line without '='", ...).
Result<PolicySocketRequest> ParsePolicySocketRequest(std::string_view untrusted_request);

// The text the C qrexec-daemon sends (§5.2): source=, [requested_source=],
// intended_target=, service_and_arg=, empty line. For tests and clients.
std::string FormatPolicySocketRequest(const PolicySocketRequest& request);

}  // namespace qrexec::policy
