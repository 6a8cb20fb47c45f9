// The interactive part of qrexec-policy-exec: asking the user (policy.Ask)
// and notifying (policy.Notify) through the source's GUI qube.
//
// This file is the seam for the policy agent client: ResolveInteractiveAsk()
// and SendNotification() are the only places that talk to the agent.
#pragma once

#include "policy/evaluate.h"
#include "policy/system_info.h"

namespace qrexec::policy_tools {

// Resolves an ask decision by prompting the user in the source's guivm. A
// source without a guivm gets "denied by the user F:L" (as the reference).
// Until the policy.Ask client exists, a source with a guivm is refused too,
// with a log line saying so (fail closed).
policy::Decision ResolveInteractiveAsk(const policy::Decision& ask,
                                       const policy::SystemInfo& info);

// Sends policy.Notify for the final decision when its notify flag is set
// (allow with notify=yes, or a refusal that notifies). Errors are logged and
// ignored. Currently only logs what would be sent.
void SendNotification(const policy::Decision& decision, const policy::SystemInfo& info);

}  // namespace qrexec::policy_tools
