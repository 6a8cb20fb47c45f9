// One policy rule and the line parsers for both formats
// (policy-language.md §2, §3, §1.5).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "policy/token.h"

namespace qrexec::policy {

// Where a rule came from. `line` is empty for the implicit deny rules that
// !compat-4.0 adds after each legacy SERVICE+ARG file.
struct RuleLocation {
  std::string file;  // full path, e.g. "/etc/qubes/policy.d/30-user.policy"
  std::optional<int> line;

  // "FILE:LINE", or "FILE:None" when there is no line (the reference's text).
  std::string ToString() const;
};

enum class Action { kAllow, kDeny, kAsk };

// "allow", "deny", "ask".
const char* ActionName(Action action);

struct Rule {
  std::optional<std::string> service;   // nullopt: "*" (any service)
  std::optional<std::string> argument;  // nullopt: "*"; else starts with '+'
  Token source;
  Token target;
  Action action = Action::kDeny;

  // Parameters (§3.2). Only the ones valid for `action` are ever set.
  std::optional<Token> redirect;        // target=          (allow, ask)
  std::optional<Token> default_target;  // default_target=  (ask)
  std::optional<std::string> user;      // user=, an empty value counts as none
  bool autostart = true;                // autostart=       (allow, ask)
  bool notify = false;                  // notify=; default yes for deny

  RuleLocation location;

  // The printed form of §3.4: "SERVICE\tARG\tSOURCE\tTARGET\tACTION" with
  // "None" for a * service and "allow[ target=X][ user=U]",
  // "ask[ target=X][ default_target=Y][ user=U]" or "deny".
  std::string ToString() const;
};

// A syntax error in a policy file. Message() is "<file>:<line>: <message>",
// the text of PolicySyntaxError in the reference (line "None" when unknown).
struct SyntaxError {
  std::string file;
  std::optional<int> line;
  std::string message;  // one of the catalogue texts of §4.13

  std::string Message() const;
};

// Checks SERVICE and ARGUMENT columns (§2.2). Returns the bare message on
// failure ("service 'a+b' contains invalid characters: ('+',)", ...).
// On success, fills `service`/`argument` (nullopt for "*").
Result<void> ValidateServiceAndArgument(std::string_view service, std::string_view argument,
                                        std::optional<std::string>* service_out,
                                        std::optional<std::string>* argument_out);

// Parses a new-format rule line that has already been stripped and split into
// fields (at least SERVICE ARGUMENT SOURCE TARGET ACTION). The error is the
// bare message of §4.13 (no file prefix); `location` is copied into the rule.
Result<Rule> ParseRuleFields(const std::vector<std::string_view>& fields,
                             const RuleLocation& location);

// Parses an old-format rule (SOURCE TARGET ACTION [PARAM=VALUE ...], after the
// $/,-rewriting of §1.5) for a fixed service and argument (nullopt = any).
Result<Rule> ParseServiceRuleFields(const std::vector<std::string_view>& fields,
                                    const std::optional<std::string>& service,
                                    const std::optional<std::string>& argument,
                                    const RuleLocation& location);

}  // namespace qrexec::policy
