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
//   uid_base = 1879048192                # domains' host id ranges start here
//   memory = "2G"                        # per-domain limits (defaults; a
//   max_processes = 1024                 # [[domain]] may override each)
//   cpu_weight = 100
//   tmpfs_size = "256M"
//   home_size = "4G"                     # 0: a plain directory, no limit
//   allow_user_namespaces = false
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
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace qrexec::host {

// What one domain may take from the machine, and what it may do inside
// (see docs/threat-model.md). [host] sets the defaults; a [[domain]] table
// may override each key for itself.
struct DomainLimits {
  uint64_t memory_bytes = 2ULL << 30;  // memory: RAM incl. its tmpfs pages
  uint32_t max_processes = 1024;       // max_processes: tasks (threads count)
  uint32_t cpu_weight = 100;           // cpu_weight: 1-10000, 100 = normal share
  uint64_t tmpfs_bytes = 256ULL << 20;  // tmpfs_size: each of /tmp, /run, /var
  uint64_t home_bytes = 4ULL << 30;     // home_size: its home image; 0: a plain directory
  bool allow_user_namespaces = false;   // allow_user_namespaces: nested sandboxes
};

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
  DomainLimits limits;
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
  // uid_base: host id of slot 0 of the domains' id ranges (host/userns.h).
  uint32_t uid_base = 0x70000000;
  DomainLimits limits;  // defaults for every domain
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
