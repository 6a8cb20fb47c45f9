#include "host/cgroup.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>

namespace qrexec::host {
namespace fs = std::filesystem;

namespace {

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

Status WriteValue(const std::string& path, const std::string& value) {
  std::ofstream out(path);
  out << value;
  out.flush();
  if (!out) return MakeError(ErrorKind::kInternal, fmt::format("cannot write '{}' to {}", value, path));
  return Ok();
}

std::vector<pid_t> ProcsOf(const std::string& dir) {
  std::vector<pid_t> pids;
  std::ifstream in(dir + "/cgroup.procs");
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  return pids;
}

// Kills every process in `dir` and removes it, children first; waits up to
// two seconds for the kernel to let go of exiting processes.
void Destroy(const std::string& dir) {
  if (!Exists(dir)) return;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_directory(ec)) Destroy(entry.path().string());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (true) {
    if (Exists(dir + "/cgroup.kill")) {
      (void)WriteValue(dir + "/cgroup.kill", "1");
    } else {
      for (pid_t pid : ProcsOf(dir)) ::kill(pid, SIGKILL);
    }
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

struct Hierarchy {
  std::string path;
  bool v2;
  std::vector<std::string> controllers;  // v1: the one it carries
};

std::vector<Hierarchy> FindHierarchies(const std::string& root) {
  if (Exists(root + "/cgroup.controllers")) {
    std::ifstream in(root + "/cgroup.controllers");
    std::vector<std::string> have;
    for (std::string c; in >> c;)
      if (c == "memory" || c == "pids" || c == "cpu") have.push_back(c);
    return {Hierarchy{root, true, have}};
  }
  std::vector<Hierarchy> out;
  for (const char* controller : {"memory", "pids", "cpu"}) {
    std::string path = root + "/" + controller;
    if (Exists(path + "/cgroup.procs")) out.push_back(Hierarchy{path, false, {controller}});
  }
  return out;
}

bool Has(const std::vector<Hierarchy>& hierarchies, const std::string& controller) {
  for (const auto& h : hierarchies)
    for (const auto& c : h.controllers)
      if (c == controller) return true;
  return false;
}

Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) < 0 && errno != EEXIST) return ErrnoError("mkdir " + path);
  return Ok();
}

Status ApplyLimits(const Hierarchy& h, const std::string& dir, const ResourceLimits& limits) {
  for (const auto& c : h.controllers) {
    Status status = Ok();
    if (c == "memory" && limits.memory_bytes != 0) {
      std::string bytes = std::to_string(limits.memory_bytes);
      status = WriteValue(dir + (h.v2 ? "/memory.max" : "/memory.limit_in_bytes"), bytes);
      // No swap beyond the limit, so the limit bounds what a domain takes.
      if (status && h.v2 && Exists(dir + "/memory.swap.max")) status = WriteValue(dir + "/memory.swap.max", "0");
      if (status && !h.v2 && Exists(dir + "/memory.memsw.limit_in_bytes"))
        status = WriteValue(dir + "/memory.memsw.limit_in_bytes", bytes);
    } else if (c == "pids" && limits.max_processes != 0) {
      status = WriteValue(dir + "/pids.max", std::to_string(limits.max_processes));
    } else if (c == "cpu") {
      status = h.v2 ? WriteValue(dir + "/cpu.weight", std::to_string(limits.cpu_weight))
                    : WriteValue(dir + "/cpu.shares", std::to_string(std::max<uint64_t>(2, limits.cpu_weight * 1024ULL / 100)));
    }
    if (!status) return status;
  }
  return Ok();
}

}  // namespace

std::string HostCgroupName(const std::string& state_dir) {
  uint64_t hash = 14695981039346656037ULL;  // FNV-1a
  for (unsigned char c : state_dir) hash = (hash ^ c) * 1099511628211ULL;
  return fmt::format("qrexec-host-{:016x}", hash);
}

DomainCgroup::DomainCgroup(DomainCgroup&& other) noexcept
    : dirs_(std::move(other.dirs_)), procs_(std::move(other.procs_)) {
  other.dirs_.clear();
  other.procs_.clear();
}

DomainCgroup& DomainCgroup::operator=(DomainCgroup&& other) noexcept {
  if (this != &other) {
    Remove();
    dirs_ = std::move(other.dirs_);
    procs_ = std::move(other.procs_);
    other.dirs_.clear();
    other.procs_.clear();
  }
  return *this;
}

DomainCgroup::~DomainCgroup() { Remove(); }

Result<DomainCgroup> DomainCgroup::Create(const std::string& host_group, const std::string& domain,
                                          const ResourceLimits& limits, const std::string& root) {
  auto hierarchies = FindHierarchies(root);
  for (const char* needed : {"memory", "pids"}) {
    bool wanted = std::string(needed) == "memory" ? limits.memory_bytes != 0 : limits.max_processes != 0;
    if (wanted && !Has(hierarchies, needed))
      return MakeError(ErrorKind::kNotFound,
                       fmt::format("no cgroup hierarchy with the '{}' controller under {}", needed, root));
  }
  DomainCgroup cgroup;
  for (const auto& h : hierarchies) {
    std::string group = h.path + "/" + host_group;
    if (auto status = MakeDir(group); !status) return tl::unexpected(status.error());
    if (h.v2) {
      std::string enable;
      for (const auto& c : h.controllers) enable += (enable.empty() ? "+" : " +") + c;
      for (const auto& dir : {h.path, group})
        if (auto status = WriteValue(dir + "/cgroup.subtree_control", enable); !status)
          return tl::unexpected(status.error());
    }
    std::string dir = group + "/" + domain;
    Destroy(dir);  // a stale one from a host that did not stop cleanly
    if (auto status = MakeDir(dir); !status) return tl::unexpected(status.error());
    cgroup.dirs_.push_back(dir);
    cgroup.procs_.push_back(dir + "/cgroup.procs");
    if (auto status = ApplyLimits(h, dir, limits); !status) return tl::unexpected(status.error());
  }
  return cgroup;
}

void DomainCgroup::Remove() {
  for (const auto& dir : dirs_) Destroy(dir);
  dirs_.clear();
  procs_.clear();
}

void DomainCgroup::RemoveHostGroup(const std::string& host_group, const std::string& root) {
  for (const auto& h : FindHierarchies(root)) Destroy(h.path + "/" + host_group);
}

}  // namespace qrexec::host
