#include "legacy_convert.h"

#include <fmt/core.h>

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "graph.h"
#include "policy/evaluate.h"

namespace qrexec::policy_tools {
namespace {

using policy::Action;
using policy::Rule;
using policy::TokenKind;

// The header the Qubes GUI config tools (and salt states that edit their
// files) recognise as theirs. It is a marker, so it must be byte-exact.
constexpr std::string_view kToolHeader =
    "\n# THIS IS AN AUTOMATICALLY GENERATED POLICY FILE.\n"
    "# Any changes made manually may be overwritten by Qubes Configuration Tools.\n";

constexpr std::string_view kUserHeader =
    "\n# The rules below were moved here by qrexec-legacy-convert from the R4.0\n"
    "# policy files in /etc/qubes-rpc/policy, which now carry the suffix .rpmsave.\n"
    "#\n"
    "# Every qubes.Gpg rule is here too. The GUI tool for split GPG\n"
    "# (50-config-splitgpg) only handles rules whose target is a single qube; move\n"
    "# rules there by hand if you want to manage them with it.\n";

// The GUI tools' files, in the order the reference writes them.
const std::vector<std::pair<std::string_view, std::string_view>>& ServiceStems() {
  static const std::vector<std::pair<std::string_view, std::string_view>> kStems = {
      {"qubes.ClipboardPaste", "50-config-clipboard"}, {"qubes.Filecopy", "50-config-filecopy"},
      {"qubes.UpdatesProxy", "50-config-updates"},     {"qubes.OpenInVM", "50-config-openinvm"},
      {"qubes.OpenURL", "50-config-openurl"},          {"qubes.InputKeyboard", "50-config-input"},
      {"qubes.InputMouse", "50-config-input"},         {"qubes.InputTablet", "50-config-input"},
      {"u2f.Authenticate", "50-config-u2f"},           {"u2f.Register", "50-config-u2f"},
      {"policy.RegisterArgument", "50-config-u2f"},
  };
  return kStems;
}

bool IsKeyword(const policy::Token& token) { return token.kind != TokenKind::kLiteral; }

// The literal dom0 spellings the input tool accepts (not uuid:0...).
bool IsDom0Literal(std::string_view text) { return text == "dom0" || text == "@adminvm"; }

// The action as the reference prints it: no notify= or autostart=.
std::string PrintedAction(const Rule& rule) {
  std::string text = rule.ToString();
  size_t pos = 0;
  for (int i = 0; i < 4; ++i) pos = text.find('\t', pos) + 1;
  return text.substr(pos);
}

bool HasDefaultFlags(const Rule& rule) {
  bool default_notify = rule.action == Action::kDeny;
  return rule.notify == default_notify && rule.autostart;
}

bool FitsUpdatesTool(const Rule& rule) {
  if (IsKeyword(rule.source) && rule.source.text != "@type:TemplateVM" &&
      rule.source.text != "@tag:whonix-updatevm")
    return false;
  if (rule.action != Action::kAllow) return false;
  return !IsKeyword(rule.target) || rule.target.text == "@adminvm" ||
         rule.target.text == "@default";
}

// Only calls to @dispvm that end up in a disposable.
bool FitsOpenTool(const Rule& rule) {
  if (rule.target.text != "@dispvm") return false;
  const std::optional<policy::Token>* lands = nullptr;
  if (rule.action == Action::kAsk) lands = &rule.default_target;
  if (rule.action == Action::kAllow) lands = &rule.redirect;
  if (lands == nullptr) return true;  // deny
  return lands->has_value() && (*lands)->text.find("@dispvm") != std::string::npos;
}

bool FitsU2fTool(const Rule& rule) {
  if (IsKeyword(rule.target) && rule.target.text != "@adminvm") return false;
  return !rule.argument;
}

bool FitsInputTool(const Rule& rule) {
  if (!IsDom0Literal(rule.target.text) || IsKeyword(rule.source)) return false;
  if (rule.redirect) return IsDom0Literal(rule.redirect->text);
  if (rule.default_target) return IsDom0Literal(rule.default_target->text);
  return true;
}

bool IsPlainAnyvmDeny(const Rule& rule) {
  return rule.action == Action::kDeny && rule.source.text == "@anyvm" &&
         rule.target.text == "@anyvm" && !rule.argument;
}

using Location = std::pair<std::string, int>;

// The rules only the !compat-4.0 load has, in policy order.
std::vector<const Rule*> LegacyRules(const policy::Policy& with_compat,
                                     const policy::Policy& without_compat) {
  std::set<Location> plain;
  for (const Rule& rule : without_compat.rules())
    if (rule.location.line) plain.emplace(rule.location.file, *rule.location.line);
  std::vector<const Rule*> legacy;
  for (const Rule& rule : with_compat.rules()) {
    if (!rule.location.line || !rule.service) continue;
    if (!plain.count({rule.location.file, *rule.location.line})) legacy.push_back(&rule);
  }
  return legacy;
}

// The legacy rules of one service that must move, per the contract.
std::vector<const Rule*> MissingRules(const std::vector<const Rule*>& legacy,
                                      const policy::Policy& without_compat) {
  const std::string& service = *legacy.front()->service;
  std::vector<std::string> present;
  for (const Rule& rule : without_compat.rules())
    if (rule.service == service) present.push_back(ConvertedRuleText(rule));
  std::vector<const Rule*> missing;
  for (const Rule* rule : legacy) {
    std::string text = ConvertedRuleText(*rule);
    if (std::find(present.begin(), present.end(), text) != present.end()) continue;
    if (IsPlainAnyvmDeny(*rule)) break;
    missing.push_back(rule);
  }
  return missing;
}

// Keeps the first input rule per (service, source); the rest are shadowed.
std::vector<const Rule*> FirstInputRules(const std::vector<const Rule*>& rules) {
  std::set<std::pair<std::string, std::string>> seen;
  std::vector<const Rule*> kept;
  for (const Rule* rule : rules)
    if (seen.emplace(*rule->service, rule->source.text).second) kept.push_back(rule);
  return kept;
}

}  // namespace

std::string ConfigStemFor(std::string_view service) {
  for (const auto& [name, stem] : ServiceStems())
    if (name == service) return std::string(stem);
  return kUserPolicyStem;
}

bool FitsConfigTool(const Rule& rule) {
  if (!rule.service || !HasDefaultFlags(rule)) return false;
  const std::string& service = *rule.service;
  const std::string action = PrintedAction(rule);
  if (service == "qubes.ClipboardPaste") return action == "ask" || action == "deny";
  if (service == "qubes.Filecopy") return action == "ask" || action == "deny" || action == "allow";
  if (service == "qubes.UpdatesProxy") return FitsUpdatesTool(rule);
  if (service == "qubes.OpenInVM" || service == "qubes.OpenURL") return FitsOpenTool(rule);
  if (service == "policy.RegisterArgument") return rule.argument == "+u2f.Authenticate";
  if (service == "u2f.Authenticate" || service == "u2f.Register") return FitsU2fTool(rule);
  if (service == "qubes.InputKeyboard" || service == "qubes.InputMouse" ||
      service == "qubes.InputTablet")
    return FitsInputTool(rule);
  return false;
}

std::string ConvertedRuleText(const Rule& rule) {
  std::string text = rule.ToString();
  if (rule.action == Action::kDeny) {
    if (!rule.notify) text += " notify=no";
    return text;
  }
  if (rule.notify) text += " notify=yes";
  if (!rule.autostart) text += " autostart=no";
  return text;
}

std::vector<ConvertedFile> PlanLegacyConversion(const policy::Policy& with_compat,
                                                const policy::Policy& without_compat) {
  std::vector<const Rule*> legacy = LegacyRules(with_compat, without_compat);
  // Services in the order their first legacy rule comes.
  std::vector<std::string> services;
  std::map<std::string, std::vector<const Rule*>> by_service;
  for (const Rule* rule : legacy) {
    auto& list = by_service[*rule->service];
    if (list.empty()) services.push_back(*rule->service);
    list.push_back(rule);
  }
  std::map<std::string, std::vector<const Rule*>> by_stem;
  for (const std::string& service : services) {
    for (const Rule* rule : MissingRules(by_service[service], without_compat)) {
      std::string stem = FitsConfigTool(*rule) ? ConfigStemFor(service) : kUserPolicyStem;
      by_stem[stem].push_back(rule);
    }
  }
  by_stem[kInputPolicyStem] = FirstInputRules(by_stem[kInputPolicyStem]);

  std::vector<std::string> order = {kUserPolicyStem};
  for (const auto& [service, stem] : ServiceStems())
    if (std::find(order.begin(), order.end(), stem) == order.end()) order.emplace_back(stem);
  std::vector<ConvertedFile> files;
  for (const std::string& stem : order) {
    const auto& rules = by_stem[stem];
    if (rules.empty()) continue;
    ConvertedFile file{stem, {}};
    for (const Rule* rule : rules) file.rules.push_back(ConvertedRuleText(*rule));
    files.push_back(std::move(file));
  }
  return files;
}

std::set<NamedCall> NamedCalls(const policy::Policy& policy) {
  std::set<NamedCall> calls;
  for (const Rule& rule : policy.rules())
    if (rule.service) calls.emplace(*rule.service, rule.argument.value_or("+"));
  return calls;
}

std::set<std::string> CallOutcomes(const policy::Policy& policy, const policy::SystemInfo& info,
                                   const std::set<NamedCall>& calls) {
  const std::vector<std::string> targets = CallTargets(info);
  std::set<std::string> lines;
  for (const auto& [service, argument] : calls) {
    const std::string name = argument == "+" ? service : service + argument;
    for (const auto& domain : info.domains()) {
      for (const std::string& target : targets) {
        policy::Request request{service, argument, domain.name, target, ""};
        policy::Decision decision = policy::Evaluate(policy, info, request);
        std::string outcome;
        const std::string user = decision.user.value_or("DEFAULT");
        if (decision.verdict == policy::Verdict::kAllow) {
          outcome = fmt::format("allow target={} user={}", decision.target, user);
          if (!decision.autostart) outcome += " autostart=no";
          if (decision.notify) outcome += " notify=yes";
        } else if (decision.verdict == policy::Verdict::kAsk) {
          std::string choices;
          for (const std::string& choice : decision.targets)
            choices += (choices.empty() ? "" : ",") + choice;
          outcome = "ask targets=" + choices;
          if (decision.default_target) outcome += " default_target=" + *decision.default_target;
          outcome += " user=" + user;
          if (!decision.autostart) outcome += " autostart=no";
          if (decision.notify) outcome += " notify=yes";
        } else if (!decision.notify) {
          outcome = "deny notify=no";
        } else {
          continue;
        }
        lines.insert(fmt::format("  call {} {} -> {}: {}", name, domain.name, target, outcome));
      }
    }
  }
  return lines;
}

std::string ConvertedFileText(const std::string& stem, const std::vector<std::string>& rules,
                              const std::optional<std::string>& current) {
  std::string text(stem == kUserPolicyStem ? kUserHeader : kToolHeader);
  for (const std::string& rule : rules) text += rule + "\n";
  if (!current || stem == kInputPolicyStem) return text;
  std::string_view rest = *current;
  if (rest.starts_with(kToolHeader)) rest.remove_prefix(kToolHeader.size());
  while (rest.starts_with('\n')) rest.remove_prefix(1);
  return text + std::string(rest);
}

}  // namespace qrexec::policy_tools
