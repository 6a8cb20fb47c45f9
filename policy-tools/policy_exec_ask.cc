#include "policy_exec_ask.h"

#include "base/log.h"

namespace qrexec::policy_tools {

policy::Decision ResolveInteractiveAsk(const policy::Decision& ask,
                                       const policy::SystemInfo& info) {
  const policy::Domain* source = info.Find(ask.source);
  if (source == nullptr || !source->guivm) return policy::DenyAsk(ask);
  LOG_ERROR("policy.Ask to {} is not available in this build; refusing the call",
            *source->guivm);
  return policy::DenyAsk(ask);
}

void SendNotification(const policy::Decision& decision, const policy::SystemInfo& info) {
  if (!decision.notify || decision.verdict == policy::Verdict::kAsk) return;
  const policy::Domain* source = info.Find(decision.source);
  if (source == nullptr || !source->guivm) return;
  LOG_INFO("policy.Notify to {}: resolution={} service={} argument={} source={} target={}",
           *source->guivm, policy::VerdictName(decision.verdict), decision.service,
           decision.argument, decision.source,
           decision.verdict == policy::Verdict::kAllow ? decision.target : decision.raw_target);
}

}  // namespace qrexec::policy_tools
