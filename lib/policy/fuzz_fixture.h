// A tiny system and policy shared by the policy fuzz targets.
#pragma once

#include "base/check.h"
#include "policy/evaluate.h"
#include "policy/loader.h"
#include "policy/system_info.h"

namespace qrexec::policy::fuzz {

inline const SystemInfo& Info() {
  static const SystemInfo info = [] {
    auto parsed = SystemInfo::FromJson(R"({"domains": {
      "dom0": {"tags": ["t0"], "type": "AdminVM", "template_for_dispvms": false,
               "default_dispvm": "dvm", "icon": "adminvm-black", "power_state": "Running",
               "uuid": "00000000-0000-0000-0000-000000000000"},
      "vm1": {"tags": ["t1", "t2"], "type": "AppVM", "template_for_dispvms": false,
              "default_dispvm": "dvm", "icon": "appvm-red", "power_state": "Running",
              "uuid": "c9024a97-9b15-46cc-8341-38d75d5d421b"},
      "vm2": {"tags": ["t2"], "type": "AppVM", "template_for_dispvms": false,
              "default_dispvm": null, "icon": "appvm-red", "power_state": "Halted",
              "uuid": "b3eb69d0-f9d9-4c3c-ad5c-454500303ea4", "internal": "1"},
      "dvm": {"tags": ["t3"], "type": "AppVM", "template_for_dispvms": true,
              "default_dispvm": "dvm", "icon": "appvm-red", "power_state": "Halted",
              "uuid": "f3e538bd-4427-4697-bed7-45ef3270df21"},
      "remote": {"tags": [], "type": "RemoteVM", "template_for_dispvms": false,
                 "relayvm": "vm1", "transport_rpc": "x.Proxy", "power_state": "Running",
                 "uuid": "3d225b39-88e9-4696-8978-b27c1360e041"}}})");
    QREXEC_CHECK(parsed.has_value());
    return *parsed;
  }();
  return info;
}

// Exercises every evaluation path for one request.
inline void EvaluateAll(const Policy& policy, const Request& request) {
  Decision indexed = Evaluate(policy, Info(), request, MatchPath::kIndexed);
  Decision linear = Evaluate(policy, Info(), request, MatchPath::kLinear);
  QREXEC_CHECK(indexed.answer == linear.answer && indexed.reason == linear.reason);
  (void)ExplainJson(indexed, Info());
  (void)ApplyMode(indexed, Info(), false, true);
  (void)ApplyMode(indexed, Info(), true, false);
  if (indexed.verdict == Verdict::kAsk && !indexed.targets.empty())
    (void)ApplyAgentReply(indexed, "allow:" + indexed.targets.back(), Info());
}

}  // namespace qrexec::policy::fuzz
