#include "host/config.h"

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/core.h>
#include <toml++/toml.h>

#include "base/names.h"

namespace qrexec::host {
namespace {

struct LabelInfo {
  const char* name;
  const char* color;
};
constexpr std::array<LabelInfo, 8> kLabels = {{{"red", "0xcc0000"},
                                               {"orange", "0xf57900"},
                                               {"yellow", "0xedd400"},
                                               {"green", "0x73d216"},
                                               {"gray", "0x555753"},
                                               {"blue", "0x3465a4"},
                                               {"purple", "0x75507b"},
                                               {"black", "0x000000"}}};

uint64_t Fnv1a(std::string_view text, uint64_t seed) {
  uint64_t hash = seed;
  for (char c : text) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

class Parser {
 public:
  Parser(const std::string& path) : path_(path) {
    base_dir_ = std::filesystem::path(path).parent_path().string();
    if (base_dir_.empty()) base_dir_ = ".";
  }

  tl::unexpected<Error> Fail(int line, const std::string& message) const {
    return MakeError(ErrorKind::kMalformed, fmt::format("{}:{}: {}", path_, line, message));
  }
  static int LineOf(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

  std::string Resolve(std::string_view value) const {
    std::filesystem::path p(value);
    if (p.is_absolute()) return p.lexically_normal().string();
    return (std::filesystem::path(base_dir_) / p).lexically_normal().string();
  }

  Result<std::string> GetString(const toml::node& node, std::string_view key) const {
    auto value = node.value<std::string>();
    if (!node.is_string() || !value) return Fail(LineOf(node), fmt::format("'{}' must be a string", key));
    return *value;
  }
  Result<bool> GetBool(const toml::node& node, std::string_view key) const {
    if (!node.is_boolean()) return Fail(LineOf(node), fmt::format("'{}' must be true or false", key));
    return *node.value<bool>();
  }
  Result<int64_t> GetInteger(const toml::node& node, std::string_view key, int64_t min, int64_t max) const {
    auto value = node.value<int64_t>();
    if (!node.is_integer() || !value || *value < min || *value > max)
      return Fail(LineOf(node), fmt::format("'{}' must be a whole number from {} to {}", key, min, max));
    return *value;
  }
  Result<std::vector<std::string>> GetStrings(const toml::node& node, std::string_view key) const {
    std::vector<std::string> out;
    if (node.is_string()) {
      out.push_back(*node.value<std::string>());
      return out;
    }
    const toml::array* array = node.as_array();
    if (array == nullptr) return Fail(LineOf(node), fmt::format("'{}' must be a string or a list of strings", key));
    for (const toml::node& item : *array) {
      if (!item.is_string()) return Fail(LineOf(item), fmt::format("'{}' must hold strings only", key));
      out.push_back(*item.value<std::string>());
    }
    return out;
  }

  // "2G", "512M", "64K" (binary units) or a plain number of bytes.
  Result<uint64_t> GetSize(const toml::node& node, std::string_view key) const {
    if (node.is_integer() && *node.value<int64_t>() > 0) return static_cast<uint64_t>(*node.value<int64_t>());
    auto text = node.value<std::string>();
    auto fail = [&] { return Fail(LineOf(node), fmt::format("'{}' must be a size such as \"512M\" or \"2G\"", key)); };
    if (!node.is_string() || !text || text->empty() || text->size() > 20) return fail();
    uint64_t shift = 0;
    std::string digits = *text;
    switch (digits.back()) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      case 'T': shift = 40; break;
      default: break;
    }
    if (shift != 0) digits.pop_back();
    if (digits.empty() || digits.size() > 12 || digits.find_first_not_of("0123456789") != std::string::npos) return fail();
    uint64_t value = std::stoull(digits) << shift;
    if (value == 0) return fail();
    return value;
  }
  // A limit key of [host] or [[domain]]; nullopt when `k` is not one.
  std::optional<Status> ParseLimit(std::string_view k, const toml::node& node, DomainLimits& limits) const {
    auto take = [](auto result, auto& out) -> Status {
      if (!result) return tl::unexpected(result.error());
      out = static_cast<std::remove_reference_t<decltype(out)>>(*result);
      return Ok();
    };
    if (k == "memory") return take(GetSize(node, k), limits.memory_bytes);
    if (k == "tmpfs_size") return take(GetSize(node, k), limits.tmpfs_bytes);
    if (k == "home_size") {
      if (node.is_integer() && *node.value<int64_t>() == 0) {
        limits.home_bytes = 0;
        return Ok();
      }
      Status status = take(GetSize(node, k), limits.home_bytes);
      if (status && limits.home_bytes < (16ULL << 20))
        return Fail(LineOf(node), "'home_size' must be at least 16M (or 0 for no image)");
      return status;
    }
    if (k == "max_processes") return take(GetInteger(node, k, 16, 4194304), limits.max_processes);
    if (k == "cpu_weight") return take(GetInteger(node, k, 1, 10000), limits.cpu_weight);
    if (k == "allow_user_namespaces") return take(GetBool(node, k), limits.allow_user_namespaces);
    return std::nullopt;
  }

  Status ParseHost(const toml::table& table, HostConfig& config) const {
    for (const auto& [key, node] : table) {
      std::string_view k = key.str();
      if (auto limit = ParseLimit(k, node, config.limits)) {
        if (!*limit) return *limit;
      } else if (k == "uid_base") {
        auto v = GetInteger(node, k, 65536, 0xf0000000LL);
        if (!v) return tl::unexpected(v.error());
        config.uid_base = static_cast<uint32_t>(*v);
      } else if (k == "state_dir") {
        auto v = GetString(node, k);
        if (!v) return tl::unexpected(v.error());
        config.state_dir = Resolve(*v);
      } else if (k == "policy_dir") {
        auto v = GetStrings(node, k);
        if (!v) return tl::unexpected(v.error());
        config.policy_dirs.clear();
        for (const auto& dir : *v) config.policy_dirs.push_back(Resolve(dir));
      } else if (k == "bin_dir") {
        auto v = GetString(node, k);
        if (!v) return tl::unexpected(v.error());
        config.bin_dir = Resolve(*v);
      } else if (k == "dom0_services") {
        auto v = GetString(node, k);
        if (!v) return tl::unexpected(v.error());
        config.dom0_service_dir = Resolve(*v);
      } else if (k == "default_dispvm") {
        auto v = GetString(node, k);
        if (!v) return tl::unexpected(v.error());
        config.default_dispvm = *v;
      } else if (k == "policy_agent") {
        auto v = GetString(node, k);
        if (!v) return tl::unexpected(v.error());
        if (*v != "none" && *v != "prompt" && *v != "assume-yes" && *v != "assume-no")
          return Fail(LineOf(node), fmt::format("policy_agent '{}' is not none, prompt, assume-yes or assume-no", *v));
        config.policy_agent = *v;
      } else if (k == "broker_max_pending") {
        auto v = GetInteger(node, k, 1, 65536);
        if (!v) return tl::unexpected(v.error());
        config.broker_max_pending = static_cast<size_t>(*v);
      } else if (k == "broker_pending_timeout") {
        auto v = GetInteger(node, k, 1, 3600);
        if (!v) return tl::unexpected(v.error());
        config.broker_pending_timeout = std::chrono::seconds(*v);
      } else {
        return Fail(LineOf(node), fmt::format("unknown key '{}' in [host]", k));
      }
    }
    return Ok();
  }

  Result<DomainConfig> ParseDomain(const toml::table& table, const HostConfig& config) const {
    DomainConfig domain;
    domain.line = LineOf(table);
    domain.default_dispvm = config.default_dispvm;
    domain.limits = config.limits;
    bool has_name = false;
    bool has_default_dispvm = false;
    for (const auto& entry : table) {
      std::string_view k = entry.first.str();
      const toml::node& node = entry.second;
      Status status = Ok();
      auto str = [&](std::string& out, bool path) -> Status {
        auto v = GetString(node, k);
        if (!v) return tl::unexpected(v.error());
        out = path ? Resolve(*v) : *v;
        return Ok();
      };
      if (auto limit = ParseLimit(k, node, domain.limits)) {
        status = *limit;
      } else if (k == "name") {
        status = str(domain.name, false);
        has_name = true;
        if (status && !names::IsValidQubeName(domain.name))
          return Fail(LineOf(node), fmt::format("invalid domain name '{}'", domain.name));
        if (status && domain.name == "dom0") return Fail(LineOf(node), "'dom0' is the host itself");
      } else if (k == "class") {
        std::string text;
        status = str(text, false);
        auto klass = ParseDomainClass(text);
        if (status && (!klass || *klass == DomainClass::kAdminVM))
          return Fail(LineOf(node), fmt::format("unknown class '{}' (AppVM, TemplateVM, DispVM, StandaloneVM)", text));
        if (klass) domain.klass = *klass;
      } else if (k == "template") {
        status = str(domain.template_name, false);
      } else if (k == "label") {
        status = str(domain.label, false);
        if (status && !IsKnownLabel(domain.label))
          return Fail(LineOf(node), fmt::format("unknown label '{}'", domain.label));
      } else if (k == "tags") {
        auto v = GetStrings(node, k);
        if (!v) return tl::unexpected(v.error());
        domain.tags = *v;
      } else if (k == "default_dispvm") {
        status = str(domain.default_dispvm, false);
        has_default_dispvm = true;
      } else if (k == "template_for_dispvms") {
        auto v = GetBool(node, k);
        if (!v) return tl::unexpected(v.error());
        domain.template_for_dispvms = *v;
      } else if (k == "default_user") {
        status = str(domain.default_user, false);
      } else if (k == "autostart") {
        auto v = GetBool(node, k);
        if (!v) return tl::unexpected(v.error());
        domain.autostart = *v;
      } else if (k == "services") {
        status = str(domain.service_dir, true);
      } else if (k == "rpc_config") {
        status = str(domain.rpc_config_dir, true);
      } else if (k == "root") {
        status = str(domain.root, true);
      } else if (k == "uuid") {
        status = str(domain.uuid, false);
        if (status && !IsCanonicalUuid(domain.uuid))
          return Fail(LineOf(node), fmt::format("'{}' is not a lower-case canonical UUID", domain.uuid));
      } else {
        return Fail(LineOf(node), fmt::format("unknown key '{}' in [[domain]]", k));
      }
      if (!status) return tl::unexpected(status.error());
    }
    (void)has_default_dispvm;
    if (!has_name) return Fail(domain.line, "domain without a name");
    if (domain.uuid.empty()) domain.uuid = UuidForName(domain.name);
    return domain;
  }

  Status Check(HostConfig& config) const {
    std::set<std::string> seen;
    std::set<std::string> uuids;
    for (const auto& domain : config.domains) {
      if (!seen.insert(domain.name).second)
        return Fail(domain.line, fmt::format("duplicate domain name '{}'", domain.name));
      if (!uuids.insert(domain.uuid).second)
        return Fail(domain.line, fmt::format("duplicate uuid '{}'", domain.uuid));
    }
    for (const auto& domain : config.domains) {
      bool needs_template = domain.klass == DomainClass::kAppVM || domain.klass == DomainClass::kDispVM;
      if (!needs_template && !domain.template_name.empty())
        return Fail(domain.line, fmt::format("a {} has no template", DomainClassName(domain.klass)));
      if (!domain.template_name.empty()) {
        const DomainConfig* tmpl = config.Find(domain.template_name);
        if (tmpl == nullptr)
          return Fail(domain.line, fmt::format("unknown template '{}'", domain.template_name));
        if (domain.klass == DomainClass::kAppVM && tmpl->klass != DomainClass::kTemplateVM)
          return Fail(domain.line, fmt::format("template '{}' is not a TemplateVM", domain.template_name));
        if (domain.klass == DomainClass::kDispVM &&
            (tmpl->klass != DomainClass::kAppVM || !tmpl->template_for_dispvms))
          return Fail(domain.line,
                      fmt::format("'{}' is not an AppVM with template_for_dispvms", domain.template_name));
      } else if (domain.klass == DomainClass::kDispVM) {
        return Fail(domain.line, "a DispVM needs a template");
      }
      if (!domain.root.empty() && domain.klass != DomainClass::kTemplateVM &&
          domain.klass != DomainClass::kStandaloneVM)
        return Fail(domain.line, "only a TemplateVM or StandaloneVM has its own root");
      if (domain.template_for_dispvms && domain.klass != DomainClass::kAppVM)
        return Fail(domain.line, "only an AppVM can be a disposable template");
      if (!domain.default_dispvm.empty()) {
        const DomainConfig* dvm = config.Find(domain.default_dispvm);
        if (dvm == nullptr || !dvm->template_for_dispvms)
          return Fail(domain.line,
                      fmt::format("default_dispvm '{}' is not a domain with template_for_dispvms", domain.default_dispvm));
      }
      if (!names::IsValidQubeName(domain.default_user) && domain.default_user != "root")
        return Fail(domain.line, fmt::format("invalid default_user '{}'", domain.default_user));
    }
    if (!config.default_dispvm.empty()) {
      const DomainConfig* dvm = config.Find(config.default_dispvm);
      if (dvm == nullptr || !dvm->template_for_dispvms)
        return Fail(1, fmt::format("[host] default_dispvm '{}' is not a domain with template_for_dispvms",
                                   config.default_dispvm));
    }
    return Ok();
  }

  Result<HostConfig> Parse(std::string_view text) const {
    toml::table root;
    try {
      root = toml::parse(text, path_);
    } catch (const toml::parse_error& error) {
      return Fail(static_cast<int>(error.source().begin.line), std::string(error.description()));
    }
    HostConfig config;
    config.config_path = path_;
    config.policy_dirs = {Resolve("policy.d")};
    // [host] first: domains take their default_dispvm from it.
    if (const toml::node* host = root.get("host")) {
      const toml::table* table = host->as_table();
      if (table == nullptr) return Fail(LineOf(*host), "'host' must be a table");
      if (auto status = ParseHost(*table, config); !status) return tl::unexpected(status.error());
    }
    for (const auto& [key, node] : root) {
      std::string_view k = key.str();
      if (k == "host") continue;
      if (k != "domain") return Fail(LineOf(node), fmt::format("unknown top-level key '{}'", k));
      const toml::array* array = node.as_array();
      if (array == nullptr || !array->is_array_of_tables())
        return Fail(LineOf(node), "domains are written as [[domain]] tables");
      for (const toml::node& item : *array) {
        auto domain = ParseDomain(*item.as_table(), config);
        if (!domain) return tl::unexpected(domain.error());
        config.domains.push_back(std::move(*domain));
      }
    }
    if (auto status = Check(config); !status) return tl::unexpected(status.error());
    return config;
  }

 private:
  std::string path_;
  std::string base_dir_;
};

}  // namespace

const char* DomainClassName(DomainClass klass) {
  switch (klass) {
    case DomainClass::kAdminVM: return "AdminVM";
    case DomainClass::kAppVM: return "AppVM";
    case DomainClass::kTemplateVM: return "TemplateVM";
    case DomainClass::kDispVM: return "DispVM";
    case DomainClass::kStandaloneVM: return "StandaloneVM";
  }
  return "AppVM";
}

std::optional<DomainClass> ParseDomainClass(std::string_view text) {
  for (auto klass : {DomainClass::kAdminVM, DomainClass::kAppVM, DomainClass::kTemplateVM, DomainClass::kDispVM,
                     DomainClass::kStandaloneVM})
    if (text == DomainClassName(klass)) return klass;
  return std::nullopt;
}

const DomainConfig* HostConfig::Find(std::string_view name) const {
  for (const auto& domain : domains)
    if (domain.name == name) return &domain;
  return nullptr;
}

std::string LabelColor(std::string_view label) {
  for (const auto& info : kLabels)
    if (label == info.name) return info.color;
  return {};
}

bool IsKnownLabel(std::string_view label) { return !LabelColor(label).empty(); }

std::string UuidForName(std::string_view name) {
  uint64_t hi = Fnv1a(name, 0xcbf29ce484222325ULL);
  uint64_t lo = Fnv1a(name, hi ^ 0x9e3779b97f4a7c15ULL);
  hi = (hi & ~0xf000ULL) | 0x4000ULL;                             // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;      // variant 10
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff, hi & 0xffff,
                     lo >> 48, lo & 0xffffffffffffULL);
}

bool IsCanonicalUuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

Result<HostConfig> ParseConfig(std::string_view text, const std::string& path) { return Parser(path).Parse(text); }

Result<HostConfig> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return MakeError(ErrorKind::kNotFound, fmt::format("{}: cannot read the configuration", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string absolute = std::filesystem::absolute(path).lexically_normal().string();
  return ParseConfig(buffer.str(), absolute);
}

}  // namespace qrexec::host
