// The embedded host's configuration: one TOML file with a [host] table and
// one [[domain]] table per domain (see man/qrexec-host.1 for every key).
//
//   [host]
//   state_dir = "/var/lib/qrexec-host"   # runtime and persistent state
//   policy_dir = "policy.d"              # or a list; relative to this file
//   bin_dir = "/usr/lib/qrexec"          # where qrexec-agent etc. are
//   dom0_services = "dom0-rpc"           # services that run in dom0
//   default_dispvm = "default-dvm"       # dom0's and the domains' default
//   policy_agent = "assume-yes"          # run qrexec-policy-agent for "ask"
//                                        # rules: none, prompt, assume-yes, assume-no
//   broker_max_pending = 128             # waiting channel requests per domain
//   broker_pending_timeout = 30          # seconds a request waits for its peer
//
//   [[domain]]
//   name = "work"
//   class = "AppVM"                       # AppVM TemplateVM DispVM StandaloneVM
//   template = "debian"
//   label = "blue"
//   tags = ["dev"]
//   default_dispvm = "default-dvm"
//   template_for_dispvms = false
//   default_user = "user"
//   autostart = false
//   services = "rpc/work"                 # this domain's own qubes-rpc dir
//   rpc_config = "rpc-config/work"        # its own rpc-config dir
//   root = "/srv/debian-root"             # TemplateVM/StandaloneVM only
//   uuid = "..."                          # default: derived from the name
//
// Every error names the file and line.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace qrexec::host {

enum class DomainClass { kAdminVM, kAppVM, kTemplateVM, kDispVM, kStandaloneVM };

const char* DomainClassName(DomainClass klass);
std::optional<DomainClass> ParseDomainClass(std::string_view text);

struct DomainConfig {
  std::string name;
  DomainClass klass = DomainClass::kAppVM;
  std::string template_name;  // AppVM and DispVM: their template
  std::string label = "red";
  std::vector<std::string> tags;
  std::string default_dispvm;  // empty: none
  bool template_for_dispvms = false;
  std::string default_user = "user";
  bool autostart = false;
  std::string uuid;            // lower-case canonical form
  std::string service_dir;     // absolute, or empty
  std::string rpc_config_dir;  // absolute, or empty
  std::string root;            // system root for TemplateVM/StandaloneVM; empty = the host's
  int line = 0;                // where it was defined
};

struct HostConfig {
  std::string config_path;
  std::string state_dir = "/var/lib/qrexec-host";
  std::vector<std::string> policy_dirs;
  std::string bin_dir;             // empty: beside the running qrexec-host
  std::string dom0_service_dir;    // empty: none
  std::string default_dispvm;      // dom0's default disposable template
  std::string policy_agent = "none";  // none, prompt, assume-yes, assume-no
  // Broker bounds (docs/broker-protocol.md); unset: the broker's defaults.
  std::optional<size_t> broker_max_pending;
  std::optional<std::chrono::seconds> broker_pending_timeout;
  std::vector<DomainConfig> domains;

  const DomainConfig* Find(std::string_view name) const;
};

// Label colours as qubesd reports them ("0xcc0000"); empty for unknown labels.
std::string LabelColor(std::string_view label);
bool IsKnownLabel(std::string_view label);

// A stable UUID derived from a domain name (version-4 layout).
std::string UuidForName(std::string_view name);
bool IsCanonicalUuid(std::string_view text);

// Parses `text` as if read from `path` (relative paths resolve against the
// directory of `path`). Errors are "PATH:LINE: message".
Result<HostConfig> ParseConfig(std::string_view text, const std::string& path);
Result<HostConfig> LoadConfig(const std::string& path);

}  // namespace qrexec::host
