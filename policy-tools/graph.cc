#include "graph.h"

#include <fmt/core.h>

#include <map>
#include <set>
#include <utility>

#include "policy/evaluate.h"

namespace qrexec::policy_tools {
namespace {

using ServicePair = std::pair<std::string, std::string>;  // service, argument ("+..." )

// Every (service, argument) pair named by a rule (a "*" argument as the call
// without one), plus the --service ones (a bare SVC as the call without one).
std::vector<ServicePair> ServicePairs(const policy::Policy& policy, const GraphOptions& options) {
  std::set<ServicePair> pairs;
  for (const auto& rule : policy.rules())
    if (rule.service) pairs.emplace(*rule.service, rule.argument.value_or("+"));
  for (const std::string& wanted : options.services)
    pairs.insert(policy::SplitServiceAndArgument(wanted));
  return {pairs.begin(), pairs.end()};
}

std::vector<std::string> AllTargets(const policy::SystemInfo& info) {
  std::vector<std::string> targets;
  for (const auto& domain : info.domains()) targets.push_back(domain.name);
  targets.push_back("@dispvm");
  for (const auto& domain : info.domains())
    if (domain.template_for_dispvms) targets.push_back("@dispvm:" + domain.name);
  targets.push_back("@default");
  return targets;
}

std::string PrintedAction(const policy::Rule& rule) {
  std::string text = rule.ToString();
  size_t pos = 0;
  for (int i = 0; i < 4 && pos != std::string::npos; ++i) {
    pos = text.find('\t', pos);
    if (pos != std::string::npos) ++pos;
  }
  return pos == std::string::npos ? text : text.substr(pos);
}

std::string NodeLine(const std::string& name, const policy::SystemInfo& info) {
  const policy::Domain* domain = name.starts_with("@") ? nullptr : info.Find(name);
  if (domain == nullptr) return fmt::format("  \"{}\" [style = dotted];\n", name);
  std::string color = domain->label;
  if (color.starts_with("0x")) color = "#" + color.substr(2);
  if (color.empty()) return fmt::format("  \"{}\";\n", name);
  return fmt::format("  \"{}\" [color = \"{}\", penwidth = 3];\n", name, color);
}

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
    std::vector<std::string> targets =
        options_.targets.empty() ? AllTargets(info_) : options_.targets;
    for (const auto& [service, argument] : ServicePairs(policy_, options_))
      for (const auto& source : sources)
        for (const auto& target : targets) AddEdge(service, argument, source, target);
    std::string out = "digraph g {\n";
    for (const auto& node : nodes_) out += NodeLine(node, info_);
    for (const auto& edge : edges_) out += edge;
    out += "}\n";
    return out;
  }

 private:
  void AddEdge(const std::string& service, const std::string& argument, const std::string& source,
               const std::string& target) {
    policy::Request request{service, argument, source, target, ""};
    policy::Decision decision = policy::Evaluate(policy_, info_, request);
    bool ask = decision.verdict == policy::Verdict::kAsk;
    if (decision.verdict == policy::Verdict::kDeny) return;
    if (ask && !options_.include_ask && !options_.full_output) return;
    const policy::Rule* rule = nullptr;
    if (decision.rule) {
      auto it = by_location_.find(decision.rule->ToString());
      if (it != by_location_.end()) rule = it->second;
    }
    std::string to = rule && rule->redirect ? rule->redirect->text : target;
    std::string label = service;
    if (options_.full_output)
      label = fmt::format("{}{} {}", service, argument, rule ? PrintedAction(*rule) : "");
    std::string attrs = fmt::format("color = {}", ask ? "orange" : "red");
    if (!options_.skip_labels) attrs = fmt::format("label = \"{}\", {}", label, attrs);
    std::string line = fmt::format("  \"{}\" -> \"{}\" [{}];\n", source, to, attrs);
    if (seen_.insert(line).second) edges_.push_back(std::move(line));
    nodes_.insert(source);
    nodes_.insert(to);
  }

  const policy::Policy& policy_;
  const policy::SystemInfo& info_;
  const GraphOptions& options_;
  std::map<std::string, const policy::Rule*> by_location_;
  std::set<std::string> nodes_;
  std::set<std::string> seen_;
  std::vector<std::string> edges_;
};

}  // namespace

std::string DrawPolicyGraph(const policy::Policy& policy, const policy::SystemInfo& info,
                            const GraphOptions& options) {
  return Drawer(policy, info, options).Draw();
}

}  // namespace qrexec::policy_tools
