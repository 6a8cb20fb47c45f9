#include "policy/policy.h"

namespace qrexec::policy {

Policy::Policy(std::vector<Rule> rules) : rules_(std::move(rules)) {
  for (uint32_t i = 0; i < rules_.size(); ++i) {
    if (rules_[i].service)
      by_service_[*rules_[i].service].push_back(i);
    else
      any_service_.push_back(i);
  }
}

}  // namespace qrexec::policy
