// Name rules shared by every component (qrexec-protocol.md §3).
#pragma once

#include <string>
#include <string_view>

namespace qrexec::names {

// Qube names as qubesd defines them: 1-31 chars, first an ASCII letter, then
// [A-Za-z0-9_-]; not "Domain-0", "none" or "default"; not ending in "-dm".
bool IsValidQubeName(std::string_view name);

// Replaces every byte outside [A-Za-z0-9_.-] and `extra_allowed` with '_'
// (the daemon's sanitize_name: names are mangled, not refused).
std::string Sanitize(std::string_view untrusted, std::string_view extra_allowed);

// Request ids (service_params.ident): [0-9A-Za-z_.-] and space only.
bool IsValidRequestIdText(std::string_view text);

// Does this target name refer to dom0? ("dom0", "@adminvm", the zero uuid)
bool RefersToDom0(std::string_view target);

}  // namespace qrexec::names
