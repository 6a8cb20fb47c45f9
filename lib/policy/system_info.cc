#include "policy/system_info.h"

#include <algorithm>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "base/sys.h"

namespace qrexec::policy {
namespace {

using nlohmann::json;

tl::unexpected<Error> Bad(std::string message) {
  return MakeError(ErrorKind::kMalformed, "system info: " + std::move(message));
}

// Lenient optional string: missing or null gives nullopt.
Result<std::optional<std::string>> OptString(const json& obj, const char* key,
                                             const std::string& name) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return Bad(fmt::format("domain {}: '{}' is not a string", name, key));
  return std::optional<std::string>(it->get<std::string>());
}

Result<Domain> ParseDomain(const std::string& name, const json& obj) {
  if (!obj.is_object()) return Bad(fmt::format("domain {} is not an object", name));
  Domain d;
  d.name = name;
  for (const char* key : {"type", "uuid"}) {
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_string())
      return Bad(fmt::format("domain {}: missing string '{}'", name, key));
    (key[0] == 't' ? d.type : d.uuid) = it->get<std::string>();
  }
  auto tags = obj.find("tags");
  if (tags == obj.end() || !tags->is_array())
    return Bad(fmt::format("domain {}: missing list 'tags'", name));
  for (const json& tag : *tags) {
    if (!tag.is_string()) return Bad(fmt::format("domain {}: a tag is not a string", name));
    d.tags.push_back(tag.get<std::string>());
  }
  auto tfd = obj.find("template_for_dispvms");
  if (tfd == obj.end() || !tfd->is_boolean())
    return Bad(fmt::format("domain {}: missing boolean 'template_for_dispvms'", name));
  d.template_for_dispvms = tfd->get<bool>();
  if (auto it = obj.find("internal"); it != obj.end()) {
    if (it->is_string())
      d.internal = !it->get<std::string>().empty();
    else if (it->is_boolean())
      d.internal = it->get<bool>();
    else if (!it->is_null())
      return Bad(fmt::format("domain {}: 'internal' is not a string", name));
  }
  struct {
    const char* key;
    std::optional<std::string>* out;
  } optional_fields[] = {{"default_dispvm", &d.default_dispvm}, {"guivm", &d.guivm},
                         {"relayvm", &d.relayvm},               {"transport_rpc", &d.transport_rpc},
                         {"power_state", &d.power_state}};
  for (auto& field : optional_fields) {
    auto value = OptString(obj, field.key, name);
    if (!value) return tl::unexpected(value.error());
    *field.out = std::move(*value);
  }
  for (const char* key : {"icon", "label"}) {
    auto value = OptString(obj, key, name);
    if (!value) return tl::unexpected(value.error());
    (key[0] == 'i' ? d.icon : d.label) = value->value_or("");
  }
  return d;
}

}  // namespace

bool Domain::HasTag(std::string_view tag) const {
  return std::find(tags.begin(), tags.end(), tag) != tags.end();
}

Result<SystemInfo> SystemInfo::FromJson(std::string_view json_text) {
  json root = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Bad("not valid JSON");
  if (!root.is_object()) return Bad("top level is not an object");
  auto domains = root.find("domains");
  if (domains == root.end() || !domains->is_object()) return Bad("missing 'domains' object");
  SystemInfo info;
  for (auto it = domains->begin(); it != domains->end(); ++it) {
    if (it.key().rfind("uuid:", 0) == 0) continue;  // derived alias keys
    auto domain = ParseDomain(it.key(), it.value());
    if (!domain) return tl::unexpected(domain.error());
    info.domains_.push_back(std::move(*domain));
  }
  std::sort(info.domains_.begin(), info.domains_.end(),
            [](const Domain& a, const Domain& b) { return a.name < b.name; });
  info.BuildIndex();
  return info;
}

Result<SystemInfo> SystemInfo::FromFile(const std::string& path) {
  auto text = sys::ReadWholeFile(path);
  if (!text) return MakeError(ErrorKind::kNotFound, "cannot open system info file " + path);
  return FromJson(*text);
}

void SystemInfo::BuildIndex() {
  by_key_.clear();
  for (size_t i = 0; i < domains_.size(); ++i) by_key_.emplace(domains_[i].name, i);
  for (size_t i = 0; i < domains_.size(); ++i) by_key_.emplace("uuid:" + domains_[i].uuid, i);
}

const Domain* SystemInfo::Find(std::string_view key) const {
  auto it = by_key_.find(std::string(key));
  return it == by_key_.end() ? nullptr : &domains_[it->second];
}

std::map<std::string, std::string> SystemInfo::IconsForAsk() const {
  std::map<std::string, std::string> icons;
  for (const Domain& d : domains_) {
    icons[d.name] = d.icon;
    if (d.template_for_dispvms) {
      std::string icon = d.icon;
      for (size_t pos = icon.find("app"); pos != std::string::npos; pos = icon.find("app", pos + 4))
        icon.replace(pos, 3, "disp");
      icons["@dispvm:" + d.name] = icon;
    }
  }
  return icons;
}

}  // namespace qrexec::policy
