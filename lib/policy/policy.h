// A loaded policy: the global rule list in priority order plus an index by
// service, so that evaluation looks only at rules that can match.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/rule.h"

namespace qrexec::policy {

// Which rule walk Evaluate() uses. Both give the same decision; kLinear is the
// plain first-match walk over every rule (baseline and cross-check).
enum class MatchPath { kIndexed, kLinear };

class Policy {
 public:
  Policy() = default;
  explicit Policy(std::vector<Rule> rules);

  const std::vector<Rule>& rules() const { return rules_; }
  size_t size() const { return rules_.size(); }

  // Calls fn(const Rule&) for every rule whose SERVICE and ARGUMENT columns
  // match (service, argument), in priority order, until fn returns true
  // ("stop"). Returns true if fn stopped the walk.
  template <class Fn>
  bool ForEachServiceMatch(std::string_view service, std::string_view argument, MatchPath path,
                           Fn&& fn) const {
    if (path == MatchPath::kLinear) {
      for (const Rule& rule : rules_)
        if (ServiceAndArgumentMatch(rule, service, argument) && fn(rule)) return true;
      return false;
    }
    static const std::vector<uint32_t> kEmpty;
    auto it = by_service_.find(std::string(service));
    const std::vector<uint32_t>& exact = it == by_service_.end() ? kEmpty : it->second;
    size_t i = 0, j = 0;
    while (i < exact.size() || j < any_service_.size()) {
      uint32_t next;
      if (j >= any_service_.size() || (i < exact.size() && exact[i] < any_service_[j]))
        next = exact[i++];
      else
        next = any_service_[j++];
      const Rule& rule = rules_[next];
      if (ArgumentMatches(rule, argument) && fn(rule)) return true;
    }
    return false;
  }

  static bool ArgumentMatches(const Rule& rule, std::string_view argument) {
    return !rule.argument || *rule.argument == argument;
  }
  static bool ServiceAndArgumentMatch(const Rule& rule, std::string_view service,
                                      std::string_view argument) {
    return (!rule.service || *rule.service == service) && ArgumentMatches(rule, argument);
  }

 private:
  std::vector<Rule> rules_;
  std::unordered_map<std::string, std::vector<uint32_t>> by_service_;  // exact service
  std::vector<uint32_t> any_service_;                                  // service "*"
};

}  // namespace qrexec::policy
