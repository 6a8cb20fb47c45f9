// Pieces shared by evaluate.cc and answer.cc (not a public header).
#pragma once

#include <string>

#include "policy/evaluate.h"

namespace qrexec::policy::internal {

// Turns `d` into a deny with `reason` and `notify`; keeps the request facts
// and the rule.
void Refuse(Decision& d, std::string reason, bool notify);

// A deny for a path that crashes the reference (§4.12): notify off.
void FailClosed(Decision& d, const std::string& what);

// autostart=no check of §4.6 step 5.
bool AutostartAllowed(const SystemInfo& info, const std::string& target);

// Builds d.answer for an allow decision whose d.target is final (§4.8), or
// turns it into a deny (loopback, RemoteVM relay or transport not set, a
// target missing from system info).
void BuildAllowAnswer(Decision& d, const SystemInfo& info);

}  // namespace qrexec::policy::internal
