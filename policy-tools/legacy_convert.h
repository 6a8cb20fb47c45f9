// The planning half of qrexec-legacy-convert: which rules of the R4.0
// per-service files (/etc/qubes-rpc/policy/SERVICE[+ARG]) move into which
// new-format file, and the text those files get. No I/O here; the program
// (legacy_convert_main.cc) loads the policy, writes, checks and restores.
//
// Contract (the reference tool's selection):
//  - A legacy rule is one that the policy has with !compat-4.0 and lacks
//    without it; the implicit denies !compat-4.0 adds after SERVICE+ARG files
//    have no line and are never moved.
//  - Per service, legacy rules whose text a new-format rule of that service
//    already has are skipped; the rest are cut at the first
//    "@anyvm @anyvm deny" without argument (it and everything after stay
//    behind: the R4.0 files ended with that line, and moving it would shadow
//    the default policy).
//  - A rule goes to its service's 50-config-* file when the GUI config tool
//    can show it (FitsConfigTool), else to 30-user. In 50-config-input only
//    the first rule per (service, source) is kept: later ones are shadowed by
//    it (same source, target dom0), and moving them to 30-user would put them
//    in front of it.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "policy/policy.h"
#include "policy/system_info.h"

namespace qrexec::policy_tools {

inline constexpr const char* kUserPolicyStem = "30-user";
inline constexpr const char* kInputPolicyStem = "50-config-input";

struct ConvertedFile {
  std::string stem;                // "30-user", "50-config-filecopy", ...
  std::vector<std::string> rules;  // rule lines, in writing order
};

// The files to write, in the reference's order (30-user first, then the
// 50-config-* files); files with no rules are left out.
std::vector<ConvertedFile> PlanLegacyConversion(const policy::Policy& with_compat,
                                                const policy::Policy& without_compat);

// The 50-config-* stem the GUI tool keeps `service` in, or 30-user.
std::string ConfigStemFor(std::string_view service);

// Whether the GUI config tool for the rule's service supports the rule.
bool FitsConfigTool(const policy::Rule& rule);

// The rule as written: Rule::ToString() plus notify= and autostart= when not
// their defaults (the reference drops them; docs/compatibility.md).
std::string ConvertedRuleText(const policy::Rule& rule);

// The new text of file `stem`: its header, `rules`, then the current text
// (nullopt: the file does not exist) without the config tools' header. The
// input file is the exception: it is replaced, not prepended to.
std::string ConvertedFileText(const std::string& stem, const std::vector<std::string>& rules,
                              const std::optional<std::string>& current);

// (service, argument) of every call a rule names ("+" for a rule without
// argument or with "*"), as the graph walks them.
using NamedCall = std::pair<std::string, std::string>;
std::set<NamedCall> NamedCalls(const policy::Policy& policy);

// A finer check than the graph (which labels an edge with the matching
// rule's argument, not the call's, so it cannot see a SERVICE+ARG call that
// now falls through to the SERVICE rules because the implicit denies were not
// moved): one line per call of `calls` x every source x CallTargets() whose
// outcome is not a notified deny, e.g.
//   "  call u2f.Authenticate+123 work -> personal: allow target=personal user=DEFAULT"
std::set<std::string> CallOutcomes(const policy::Policy& policy, const policy::SystemInfo& info,
                                   const std::set<NamedCall>& calls);

}  // namespace qrexec::policy_tools
