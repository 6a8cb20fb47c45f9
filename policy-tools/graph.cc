#include "graph.h"

#include <fmt/core.h>

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "policy/evaluate.h"

namespace qrexec::policy_tools {
namespace {

using ServicePair = std::pair<std::string, std::string>;  // service, argument ("+..." )

// Every (service, argument) pair named by a rule (a "*" argument as the call
// without one), plus the --service ones (a bare SVC as the call without one).
// Rules for any service ("*") name no pair: the reference would draw them
// with the label "None" (docs/compatibility.md).
std::vector<ServicePair> ServicePairs(const policy::Policy& policy, const GraphOptions& options) {
  std::set<ServicePair> pairs;
  for (const auto& rule : policy.rules())
    if (rule.service) pairs.emplace(*rule.service, rule.argument.value_or("+"));
  for (const std::string& wanted : options.services)
    pairs.insert(policy::SplitServiceAndArgument(wanted));
  return {pairs.begin(), pairs.end()};
}

// With --service, a pair is drawn when its service, or its service and
// argument, is one of the values given.
bool IsWanted(const ServicePair& pair, const GraphOptions& options) {
  if (options.services.empty()) return true;
  for (const std::string& wanted : options.services)
    if (wanted == pair.first || wanted == pair.first + pair.second) return true;
  return false;
}

// The action column of the rule's printed form: "allow target=X", "ask".
std::string PrintedAction(const policy::Rule& rule) {
  std::string text = rule.ToString();
  size_t pos = 0;
  for (int i = 0; i < 4 && pos != std::string::npos; ++i) {
    pos = text.find('\t', pos);
    if (pos != std::string::npos) ++pos;
  }
  return pos == std::string::npos ? text : text.substr(pos);
}

// The reference's spelling: node attributes spaced ("color = ..."), edge
// attributes not ("label=... color=red").
std::string NodeLine(const std::string& name, const policy::SystemInfo& info) {
  const policy::Domain* domain = name.starts_with("@") ? nullptr : info.Find(name);
  if (domain == nullptr) return fmt::format("  \"{}\" [style = dotted];\n", name);
  std::string color = domain->label;
  if (color.starts_with("0x")) color = "#" + color.substr(2);
  if (color.empty()) return fmt::format("  \"{}\";\n", name);
  return fmt::format("  \"{}\" [color = \"{}\", penwidth = 3];\n", name, color);
}

// Lines come out in the order the reference writes them: for each drawn
// call, its source node, its target node and its edge, each line once.
class Drawer {
 public:
  Drawer(const policy::Policy& policy, const policy::SystemInfo& info, const GraphOptions& options)
      : policy_(policy), info_(info), options_(options) {
    for (const auto& rule : policy.rules()) by_location_.emplace(rule.location.ToString(), &rule);
  }

  std::string Draw() {
    std::vector<std::string> sources = options_.sources;
    if (sources.empty())
      for (const auto& domain : info_.domains()) sources.push_back(domain.name);
    // Every target is evaluated; --target filters on where the call lands.
    const std::vector<std::string> targets = CallTargets(info_);
    out_ = "digraph g {\n";
    for (const ServicePair& pair : ServicePairs(policy_, options_)) {
      if (!IsWanted(pair, options_)) continue;
      for (const auto& source : sources)
        for (const auto& target : targets) DrawCall(pair.first, pair.second, source, target);
    }
    out_ += "}\n";
    return std::move(out_);
  }

 private:
  void DrawCall(const std::string& service, const std::string& argument,
                const std::string& source, const std::string& target) {
    policy::Request request{service, argument, source, target, ""};
    policy::Decision decision = policy::Evaluate(policy_, info_, request);
    if (decision.verdict == policy::Verdict::kDeny) return;
    const bool ask = decision.verdict == policy::Verdict::kAsk;
    if (ask && !options_.include_ask && !options_.full_output) return;
    const policy::Rule* rule = MatchedRule(decision);
    const std::string to = rule && rule->redirect ? rule->redirect->text : target;
    if (!options_.targets.empty() &&
        std::find(options_.targets.begin(), options_.targets.end(), to) == options_.targets.end())
      return;
    std::string label;
    if (!options_.skip_labels) {
      label = service;
      if (options_.full_output && rule && rule->argument) label += *rule->argument;
    }
    if (options_.full_output) label += " " + (rule ? PrintedAction(*rule) : std::string());
    Emit(NodeLine(source, info_));
    Emit(NodeLine(to, info_));
    Emit(fmt::format("  \"{}\" -> \"{}\" [label=\"{}\" color={}];\n", source, to, label,
                     ask ? "orange" : "red"));
  }

  const policy::Rule* MatchedRule(const policy::Decision& decision) const {
    if (!decision.rule) return nullptr;
    auto it = by_location_.find(decision.rule->ToString());
    return it == by_location_.end() ? nullptr : it->second;
  }

  void Emit(std::string line) {
    if (seen_.insert(line).second) out_ += line;
  }

  const policy::Policy& policy_;
  const policy::SystemInfo& info_;
  const GraphOptions& options_;
  std::map<std::string, const policy::Rule*> by_location_;
  std::set<std::string> seen_;
  std::string out_;
};

}  // namespace

std::vector<std::string> CallTargets(const policy::SystemInfo& info) {
  std::vector<std::string> targets;
  for (const auto& domain : info.domains()) targets.push_back(domain.name);
  targets.push_back("@dispvm");
  for (const auto& domain : info.domains())
    if (domain.template_for_dispvms) targets.push_back("@dispvm:" + domain.name);
  targets.push_back("@default");
  return targets;
}

std::string DrawPolicyGraph(const policy::Policy& policy, const policy::SystemInfo& info,
                            const GraphOptions& options) {
  return Drawer(policy, info, options).Draw();
}

}  // namespace qrexec::policy_tools
