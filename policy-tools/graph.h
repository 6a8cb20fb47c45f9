// The core of qrexec-policy-graph (policy-language.md §5.6): evaluates every
// (service, argument) pair named in the policy for every source and target
// and draws the allowed (and, optionally, asked) calls as a Graphviz digraph.
#pragma once

#include <string>
#include <vector>

#include "policy/policy.h"
#include "policy/system_info.h"

namespace qrexec::policy_tools {

struct GraphOptions {
  bool include_ask = false;
  bool full_output = false;  // labels carry the argument and the printed action; implies asks
  bool skip_labels = false;
  std::vector<std::string> sources;   // empty: every qube
  std::vector<std::string> targets;   // empty: every qube, @dispvm, @dispvm:N, @default
  std::vector<std::string> services;  // SVC or SVC+ARG, evaluated besides the pairs the rules name
};

// The targets every call is tried with: each qube, @dispvm, @dispvm:T for
// each disposable template T, @default.
std::vector<std::string> CallTargets(const policy::SystemInfo& info);

// The dot text ("digraph g {\n...}\n"), duplicate lines dropped.
std::string DrawPolicyGraph(const policy::Policy& policy, const policy::SystemInfo& info,
                            const GraphOptions& options);

}  // namespace qrexec::policy_tools
