// System info: what the policy knows about qubes (policy-language.md §4.2).
//
// Input is the JSON of qubesd's internal.GetSystemInfo:
//   {"domains": {"<name>": {"internal": str|null, "tags": [...], "type": "AppVM",
//     "template_for_dispvms": bool, "default_dispvm": str|null, "icon": str,
//     "label": str, "guivm": str|null, "relayvm": str|null,
//     "transport_rpc": str|null, "power_state": "Running", "uuid": "<uuid>"}}}
// Keys read leniently (missing = null/false): internal, default_dispvm, guivm,
// relayvm, transport_rpc, icon, label, power_state. Keys the reference reads
// by direct lookup and so must be present: tags, type, template_for_dispvms,
// uuid; a domain without them makes the whole system info invalid (fail
// closed). Map keys starting with "uuid:" in the input are ignored; every
// domain is reachable by "<name>" and by "uuid:<uuid>" through Find().
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/result.h"

namespace qrexec::policy {

struct Domain {
  std::string name;
  std::string type;  // "AdminVM", "AppVM", "DispVM", "RemoteVM", ...
  std::string uuid;  // lower-case canonical, without "uuid:"
  std::vector<std::string> tags;
  bool template_for_dispvms = false;
  bool internal = false;  // truthy "internal" feature (non-empty string or true)
  std::optional<std::string> default_dispvm;
  std::optional<std::string> guivm;
  std::optional<std::string> relayvm;
  std::optional<std::string> transport_rpc;
  std::optional<std::string> power_state;  // only "Running" counts as running
  std::string icon;                        // "" when missing
  std::string label;                       // "" when missing

  bool HasTag(std::string_view tag) const;
  bool IsRunning() const { return power_state && *power_state == "Running"; }
};

class SystemInfo {
 public:
  SystemInfo() = default;

  // Parses the JSON text of internal.GetSystemInfo (kMalformed on error).
  static Result<SystemInfo> FromJson(std::string_view json_text);
  // Reads and parses a JSON file (kNotFound / kMalformed).
  static Result<SystemInfo> FromFile(const std::string& path);

  // Looks a qube up by name or by "uuid:<uuid>"; nullptr when unknown.
  const Domain* Find(std::string_view name_or_uuid) const;
  bool Contains(std::string_view name_or_uuid) const { return Find(name_or_uuid) != nullptr; }

  // Every domain, sorted by name (uuid aliases are not repeated).
  const std::vector<Domain>& domains() const { return domains_; }

  // The "icons" map of a policy.Ask request (§5.4): every qube name to its
  // icon, plus "@dispvm:N" for each disposable template N with the icon's
  // "app" replaced by "disp".
  std::map<std::string, std::string> IconsForAsk() const;

 private:
  void BuildIndex();

  std::vector<Domain> domains_;
  std::unordered_map<std::string, size_t> by_key_;  // name and "uuid:<uuid>"
};

}  // namespace qrexec::policy
