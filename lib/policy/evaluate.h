// Evaluating a request against a policy (policy-language.md §4) and turning
// the decision into the policy.sock answer text (§4.8, qrexec-protocol §5.2).
//
// Typical flow (policy daemon, policy-exec):
//
//   Request req = MakeRequest(source, intended_target, service_and_arg, requested_source);
//   Decision d = Evaluate(policy, info, req);
//   switch (d.verdict) {
//     case Verdict::kAllow: send d.answer; notify if d.notify; break;
//     case Verdict::kDeny:  send d.answer ("result=deny"); notify if d.notify; break;
//     case Verdict::kAsk:   // prompt the source's guivm with policy.Ask:
//       //   {source: d.source, service: d.service, argument: d.argument,
//       //    targets: d.targets, default_target: d.default_target.value_or(""),
//       //    icons: info.IconsForAsk()}
//       Decision final = ApplyAgentReply(d, reply, info);  // or DenyAsk(d) (no guivm)
//   }
//
// Every path that crashes the Python reference (§4.12) ends in a clean deny
// here, with `internal_failure` set and notify off (the reference's handler
// dies without notifying).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "policy/policy.h"
#include "policy/rule.h"
#include "policy/system_info.h"

namespace qrexec::policy {

struct Request {
  std::string service;   // without the argument
  std::string argument;  // always starts with '+' ("+" when the call has none)
  std::string source;    // calling qube (name or "uuid:<uuid>")
  std::string target;    // intended target exactly as the caller gave it ("" = @default)
  std::string requested_source;  // RemoteVM relaying; "" = not used
};

// Splits "svc+a+b" at the first '+': {"svc", "+a+b"}; "svc" gives {"svc", "+"}.
std::pair<std::string, std::string> SplitServiceAndArgument(std::string_view service_and_arg);

Request MakeRequest(std::string_view source, std::string_view target,
                    std::string_view service_and_arg, std::string_view requested_source = "");

enum class Verdict { kAllow, kDeny, kAsk };

// "allow", "deny", "ask".
const char* VerdictName(Verdict verdict);

struct Decision {
  Verdict verdict = Verdict::kDeny;

  // The rule that decided; empty when the call was refused before a rule was
  // picked (no match, malformed request, policy load failure).
  std::optional<RuleLocation> rule;
  // Deny: the refusal message of §4.13 ("denied by policy F:L", ...). Empty
  // for allow and ask.
  std::string reason;
  // Whether to send policy.Notify to the source's guivm: allow - the rule's
  // notify=; deny - the refusal's flag (§4.8); ask - the rule's notify=, which
  // also applies to a later "denied by the user".
  bool notify = true;
  // True when the reference would have crashed (§4.12); always a deny.
  bool internal_failure = false;

  // The request as evaluated.
  std::string source;                  // source used for matching (requested_source if relayed)
  std::optional<std::string> relay;    // the calling qube when requested_source was used
  std::string service;
  std::string argument;
  std::string raw_target;              // caller's target as given (deny notifications)
  std::string requested_target;        // normalised target (answer's requested_target=)

  // Allow: the final target as spelled ("test-vm2", "dom0", "@dispvm:default-dvm",
  // "uuid:..."); ask: empty.
  std::string target;
  std::optional<std::string> user;     // rule's user=; none prints as DEFAULT
  bool autostart = true;

  // Ask: the choices, sorted (byte order), and the default choice if any.
  std::vector<std::string> targets;
  std::optional<std::string> default_target;

  // Allow: the exact policy.sock answer (no final newline). Deny: "result=deny".
  // Ask: empty until resolved.
  std::string answer;

  // Deny produced while building the allow answer (loopback, RemoteVM relay
  // not set, ...). The just_evaluate mode of ApplyMode() skips that step, as
  // the reference does, and reports such a decision as "result=allow".
  bool refused_by_answer = false;

  // Warnings the reference logs (unknown target, dropped default_target, ...).
  std::vector<std::string> warnings;
};

// First-match evaluation. For allow, the answer is already built (loopback
// check, RemoteVM, @dispvm, dom0 forms). `path` selects the indexed or the
// linear rule walk; both must decide the same.
Decision Evaluate(const Policy& policy, const SystemInfo& info, const Request& request,
                  MatchPath path = MatchPath::kIndexed);

// A deny for a policy that failed to load (LoadPolicy error): rule empty,
// notify on only for kRefused errors (invalid file name, missing directory).
Decision DenyForLoadError(const Error& error, const Request& request);

// Resolves an ask with the user's (or assume-yes) choice: `chosen` must be one
// of ask.targets, else deny "target T is not a valid choice" (notify on).
// Builds the allow answer with the ask rule's user and autostart (no second
// autostart check).
Decision ResolveAsk(const Decision& ask, std::string_view chosen, const SystemInfo& info);

// "denied by the user F:L", notify = the ask rule's notify (also used when the
// source has no guivm to ask).
Decision DenyAsk(const Decision& ask);

// Applies a policy.Ask reply: "allow:<T>" -> ResolveAsk, "deny" -> DenyAsk,
// anything else -> deny "invalid response" (notify on).
Decision ApplyAgentReply(const Decision& ask, std::string_view reply, const SystemInfo& info);

// The non-interactive modes of §4.8. just_evaluate: ask becomes deny (no
// notification), allow answers just "result=allow". assume_yes_for_ask: an
// ask is resolved with the normalised request target as the choice.
// With neither flag an ask is returned unchanged.
Decision ApplyMode(const Decision& decision, const SystemInfo& info, bool just_evaluate,
                   bool assume_yes_for_ask);

// The --explain JSON object of qrexec-policy-exec (one line, Python
// json.dumps style, keys: result, rule, reason, targets, default_target,
// notify, answer). For ask, answer is the text after the user picked the
// default target, or null when there is none.
std::string ExplainJson(const Decision& decision, const SystemInfo& info);

}  // namespace qrexec::policy
