// Per-domain resource limits through cgroups: memory, process count and CPU
// weight. cgroup v2 when the host mounts the unified hierarchy with those
// controllers at /sys/fs/cgroup; otherwise the v1 hierarchies of the
// controllers that are mounted (/sys/fs/cgroup/{memory,pids,cpu}).
//
// Layout: <hierarchy>/<host group>/<domain>, where the host group is one per
// qrexec-host instance (named from its state directory), so two hosts on
// one machine never touch each other's domains.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace qrexec::host {

struct ResourceLimits {
  uint64_t memory_bytes = 0;  // 0: no limit
  uint32_t max_processes = 0;  // 0: no limit
  uint32_t cpu_weight = 100;   // 1-10000, cgroup v2 semantics (100 = normal)
};

class DomainCgroup {
 public:
  DomainCgroup() = default;
  DomainCgroup(DomainCgroup&&) noexcept;
  DomainCgroup& operator=(DomainCgroup&&) noexcept;
  ~DomainCgroup();

  // Creates the domain's cgroups (emptying a stale one left by a crash)
  // and sets the limits. Fails, rather than running a domain without the
  // limits it was configured with, when no hierarchy has the controllers.
  static Result<DomainCgroup> Create(const std::string& host_group, const std::string& domain,
                                     const ResourceLimits& limits, const std::string& root = "/sys/fs/cgroup");

  // cgroup.procs of each hierarchy, for SpawnOptions::cgroup_procs.
  const std::vector<std::string>& procs_files() const { return procs_; }
  bool valid() const { return !dirs_.empty(); }
  // SIGKILLs whatever is left in it and removes it (bounded wait).
  void Remove();

  // Removes <hierarchy>/<host group> and anything left under it.
  static void RemoveHostGroup(const std::string& host_group, const std::string& root = "/sys/fs/cgroup");

 private:
  std::vector<std::string> dirs_;
  std::vector<std::string> procs_;
};

// The host group's name for a state directory ("qrexec-host-<hash>").
std::string HostCgroupName(const std::string& state_dir);

}  // namespace qrexec::host
