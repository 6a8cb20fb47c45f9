// The pure part of qrexec-policy-agent (policy-language.md §5.4): decoding a
// policy.Ask / policy.Notify request and formatting the prompt, and reading a
// user's answer. No I/O here, so the tests can drive it directly.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace qrexec::policy_tools {

// One agent request as read from the socket: "SERVICE SOURCE[ ...]\0" + JSON.
struct AgentRequest {
  std::string service;  // "policy.Ask" or "policy.Notify" (text before '+'/' ')
  std::string caller;   // second header word ("dom0" for local calls)
  std::string untrusted_json;
};
Result<AgentRequest> DecodeAgentRequest(std::string_view untrusted_bytes);

struct AskRequest {
  std::string source;
  std::string service;
  std::string argument;
  std::vector<std::string> targets;  // as sent
  std::string default_target;        // "" = none
  std::map<std::string, std::string> icons;
};
// Checks the JSON shape (every field of the right type, targets non-empty).
Result<AskRequest> DecodeAsk(std::string_view untrusted_json);

struct NotifyRequest {
  std::string resolution;  // allow / deny / fail
  std::string service;
  std::string argument;
  std::string source;
  std::string target;
};
Result<NotifyRequest> DecodeNotify(std::string_view untrusted_json);

// "Disposable VM (N)" for "@dispvm:N", the name otherwise.
std::string DisplayName(std::string_view target);
// The targets in prompt order (sorted by display name).
std::vector<std::string> PromptOrder(const AskRequest& ask);
// The prompt text (escape-filtered), ending with the question line.
std::string FormatPrompt(const AskRequest& ask);
// The answer for one line the user typed: "allow:<target>" or "deny", or
// nullopt when the line is not understood (ask again). Accepts a number from
// the list, a target name, an empty line for the default, n/no/deny.
std::optional<std::string> InterpretAnswer(const AskRequest& ask, std::string_view line);
// One line describing a notification (escape-filtered, ends with '\n').
std::string FormatNotify(const NotifyRequest& notify);

}  // namespace qrexec::policy_tools
