// The interactive part of qrexec-policy-exec: asking the user (policy.Ask)
// and notifying (policy.Notify) through the source's GUI qube
// (qrexec-protocol.md §5.3-5.5, policy-language.md §5.4). Blocking: this
// process handles exactly one call.
//
// The agent is reached directly over its socket when the GUI qube is dom0 (or
// with AgentRoute::direct_for_all): "<service> dom0 name dom0\0" + JSON, then
// a half-close; otherwise through
//   qrexec-client -d GUIVM "DEFAULT:QUBESRPC <service> dom0"
// with the JSON on its stdin and the reply on its stdout.
#pragma once

#include <string>

#include "policy/evaluate.h"
#include "policy/system_info.h"

namespace qrexec::policy_tools {

struct ExecAgentRoute {
  std::string agent_socket;  // empty: /etc/qubes-rpc/<service>
  bool direct_for_all = false;
  std::string qrexec_client = "/usr/bin/qrexec-client";
};

// The policy.Ask request body of §5.4 for an ask decision.
std::string AskRequestJson(const policy::Decision& ask, const policy::SystemInfo& info);

// Resolves an ask decision by prompting the user in the source's guivm. A
// source without a guivm gets "denied by the user F:L" (as the reference); an
// agent that cannot be reached also refuses the call (logged).
policy::Decision ResolveInteractiveAsk(const policy::Decision& ask,
                                       const policy::SystemInfo& info,
                                       const ExecAgentRoute& route);

// Sends policy.Notify for the final decision when its notify flag is set
// (allow with notify=yes, or a refusal that notifies) and the source has a
// guivm. Errors are logged and ignored.
void SendNotification(const policy::Decision& decision, const policy::SystemInfo& info,
                      const ExecAgentRoute& route);

}  // namespace qrexec::policy_tools
