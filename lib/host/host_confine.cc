// The host's side of confining a domain: a private state directory, the
// domain's id range and user namespace, its seccomp filter and cgroups.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>

#include "base/log.h"
#include "base/unique_fd.h"
#include "host/process.h"
#include "host/host.h"
#include "host/home_image.h"
#include "host/host_internal.h"
#include "host/sealed_memfd.h"
#include "host/seccomp_filter.h"
#include "host/userns.h"

namespace qrexec::host {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Who may replace `path` (rename it away and put their own in its place):
// its owner, and anyone who may write to a directory above it without the
// sticky bit.
Status CheckAncestors(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  for (fs::path dir = p.parent_path(); !dir.empty(); dir = dir.parent_path()) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) < 0) return ErrnoError("stat " + dir.string());
    bool foreign_owner = st.st_uid != 0 && st.st_uid != ::geteuid();
    bool open_to_others = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0;
    if (foreign_owner || open_to_others)
      return MakeError(ErrorKind::kRefused,
                       fmt::format("unsafe state directory {}: {} is {} (mode {:o}, owner {}); use a directory only "
                                   "root can change, such as /var/lib/qrexec-host",
                                   path, dir.string(), foreign_owner ? "owned by another user" : "writable by others",
                                   st.st_mode & 07777, st.st_uid));
    if ((st.st_mode & S_IXOTH) == 0)
      return MakeError(ErrorKind::kRefused,
                       fmt::format("state directory {}: {} is not searchable by others (mode {:o}); each domain's "
                                   "bwrap runs as that domain's unprivileged root and must reach its files there",
                                   path, dir.string(), st.st_mode & 07777));
    if (dir == dir.root_path()) break;
  }
  return Ok();
}

}  // namespace

Status MakeHostDir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) < 0 && errno != EEXIST) return ErrnoError("mkdir " + path);
  struct stat st {};
  if (::lstat(path.c_str(), &st) < 0) return ErrnoError("stat " + path);
  if (!S_ISDIR(st.st_mode))
    return MakeError(ErrorKind::kRefused, fmt::format("{} exists and is not a directory", path));
  if (st.st_uid != ::geteuid())
    return MakeError(ErrorKind::kRefused,
                     fmt::format("{} exists and belongs to uid {}, not to us ({}): refusing to use it", path,
                                 st.st_uid, ::geteuid()));
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    return MakeError(ErrorKind::kRefused,
                     fmt::format("{} exists and is writable by others (mode {:o}): refusing to use it", path,
                                 st.st_mode & 07777));
  if ((st.st_mode & 07777) != mode && ::chmod(path.c_str(), mode) < 0) return ErrnoError("chmod " + path);
  return Ok();
}

Status WriteTextFile(const std::string& path, const std::string& text) {
  std::string partial = path + ".new";
  ::unlink(partial.c_str());
  UniqueFd fd(::open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoError("create " + partial);
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      ::fchmod(fd.get(), 0644) < 0)
    return ErrnoError("write " + partial);
  fd.reset();
  if (::rename(partial.c_str(), path.c_str()) < 0) return ErrnoError("rename " + partial);
  return Ok();
}

Status CheckStateDir(const std::string& state_dir) {
  if (!fs::path(state_dir).is_absolute())
    return MakeError(ErrorKind::kRefused, "the state directory must be an absolute path: " + state_dir);
  return CheckAncestors(state_dir);
}

uint32_t Host::AllocateIdSlot() const {
  // Configured domains keep their id as slot (stable, so their homes keep
  // their owners); disposables take the lowest slot no live domain holds.
  for (uint32_t slot = next_dynamic_id_floor_; slot < kMaxIdSlots; ++slot) {
    bool taken = false;
    for (const auto& domain : domains_) taken = taken || domain->id_slot == slot;
    if (!taken) return slot;
  }
  return 0;
}

IdRange Host::IdsOf(const Domain& domain) const { return IdRangeOfSlot(options_.config.uid_base, domain.id_slot); }

Status Host::ConfineSandbox(Domain& domain, SandboxSpec& spec, SpawnOptions& spawn, SandboxHandles& handles) {
  const DomainLimits& limits = domain.config.limits;
  spec.tmpfs_bytes = limits.tmpfs_bytes;
  std::string init = Program("qrexec-sandbox-init");
  if (::access(init.c_str(), X_OK) != 0) return MakeError(ErrorKind::kNotFound, "no qrexec-sandbox-init in " + options_.bin_dir);
  spec.init_program = init;
  auto filter = BuildSeccompFilter(SeccompOptions{limits.allow_user_namespaces});
  if (!filter) return tl::unexpected(filter.error());
  handles.seccomp = std::move(*filter);
  spec.seccomp_fd = handles.seccomp.get();
  spawn.keep_fds.push_back(handles.seccomp.get());
  auto passwd = SealedMemfdWith("qrexec-passwd", SandboxPasswd(domain.config.default_user));
  if (!passwd) return tl::unexpected(passwd.error());
  auto group = SealedMemfdWith("qrexec-group", SandboxGroup(domain.config.default_user));
  if (!group) return tl::unexpected(group.error());
  auto shadow = SealedMemfdWith("qrexec-shadow", SandboxShadow(domain.config.default_user));
  if (!shadow) return tl::unexpected(shadow.error());
  handles.passwd = std::move(*passwd);
  handles.group = std::move(*group);
  handles.shadow = std::move(*shadow);
  spec.passwd_fd = handles.passwd.get();
  spec.group_fd = handles.group.get();
  spec.shadow_fd = handles.shadow.get();
  spawn.keep_fds.push_back(handles.passwd.get());
  spawn.keep_fds.push_back(handles.group.get());
  spawn.keep_fds.push_back(handles.shadow.get());
  if (::geteuid() != 0) return Ok();  // an unprivileged test host: no namespace or cgroups to make
  auto userns = MakeUserNamespace(IdsOf(domain));
  if (!userns) return tl::unexpected(userns.error());
  handles.userns = std::move(*userns);
  spawn.join_userns = handles.userns.get();
  auto cgroup = DomainCgroup::Create(HostCgroupName(paths_.state_dir), domain.config.name,
                                     ResourceLimits{limits.memory_bytes, limits.max_processes, limits.cpu_weight});
  if (!cgroup) return tl::unexpected(cgroup.error());
  domain.cgroup = std::move(*cgroup);
  spawn.cgroup_procs = domain.cgroup.procs_files();
  return Ok();
}

Status Host::MountHome(const Domain& domain, const std::string& home) {
  uint64_t bytes = domain.config.limits.home_bytes;
  if (bytes == 0 || ::geteuid() != 0) return Ok();  // a plain directory
  uid_t owner = IdsOf(domain).ToHost(domain.config.default_user == "root" ? 0 : kSandboxUserUid);
  std::string image = fs::path(home).parent_path().string() + "/home.img";
  if (auto status = MountHomeImage(image, home, bytes, owner); !status)
    return MakeError(ErrorKind::kInternal,
                     fmt::format("{}: cannot mount its home image ({}); home_size = 0 uses a plain directory "
                                 "without a size limit",
                                 domain.config.name, status.error().ToString()));
  return Ok();
}

Status Host::MountPersistentHomes() {
  // Mounted while the host runs, so a disposable template's home can be
  // copied whether it is running or not, and the host sees every home.
  for (const auto& domain : domains_) {
    if (domain->disposable()) continue;
    std::string dir = paths_.domains_dir + "/" + domain->config.name;
    if (auto status = MakeHostDir(dir, 0711); !status) return status;
    if (auto status = MountHome(*domain, dir + "/home"); !status) return status;
  }
  return Ok();
}

Status Host::PrepareStorage(Domain& domain) {
  const DomainConfig& config = domain.config;
  std::string dir = domain.disposable() ? paths_.disp_dir + "/" + config.name : paths_.domains_dir + "/" + config.name;
  std::string home = dir + "/home";
  if (domain.disposable()) {
    domain.scratch_dir = dir;
    UnmountHome(home);
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  if (auto status = MakeHostDir(dir, 0711); !status) return status;
  bool fresh = ::mkdir(home.c_str(), 0700) == 0;
  if (!fresh && errno != EEXIST) return ErrnoError("mkdir " + home);
  if (auto status = MountHome(domain, home); !status) return status;
  if (domain.disposable()) {
    // A fresh copy of the disposable template's home.
    std::string template_home = paths_.domains_dir + "/" + config.template_name + "/home";
    if (fs::is_directory(template_home)) {
      auto rc = RunProgram({"/bin/cp", "-a", "--", template_home + "/.", home + "/"}, sys::Deadline::After(60s));
      if (!rc || *rc != 0) return MakeError(ErrorKind::kInternal, "cannot copy " + template_home);
      // The copy is owned by the template's ids: move them to ours (the
      // image's root already is ours, so PrepareHome would not notice).
      const Domain* source = Find(config.template_name);
      if (source != nullptr && ::geteuid() == 0)
        if (auto status = ShiftOwnership(home, IdsOf(*source), IdsOf(domain)); !status) return status;
      fresh = false;
    }
  }
  if (::chmod(home.c_str(), 0700) < 0) return ErrnoError("chmod " + home);
  if (auto status = PrepareHome(domain, home, fresh); !status) return status;
  return Ok();
}

Status Host::PrepareHome(const Domain& domain, const std::string& home, bool fresh) {
  if (::geteuid() != 0) return Ok();  // unprivileged test hosts keep it as it is
  struct stat st {};
  if (::lstat(home.c_str(), &st) < 0) return ErrnoError("stat " + home);
  if (!S_ISDIR(st.st_mode)) return MakeError(ErrorKind::kRefused, home + " is not a directory");
  IdRange ids = IdsOf(domain);
  uid_t owner = ids.ToHost(domain.config.default_user == "root" ? 0 : kSandboxUserUid);
  if (fresh) {
    if (::chown(home.c_str(), owner, owner) < 0) return ErrnoError("chown " + home);
    return Ok();
  }
  if (st.st_uid == owner) return Ok();
  // A home from before id ranges (host ids 0 and 1000), one whose domain
  // moved to another slot, or a disposable's copy of its template's home:
  // every owner moves to the same id in this domain's range.
  uint64_t base = options_.config.uid_base;
  uint64_t end = base + static_cast<uint64_t>(kMaxIdSlots) * kIdsPerDomain;
  IdRange from{0, kIdsPerDomain};
  if (st.st_uid >= base && st.st_uid < end)
    from.first = static_cast<uid_t>(base + (st.st_uid - base) / kIdsPerDomain * kIdsPerDomain);
  LOG_INFO("{}: moving the owners of {} from ids {}+ to {}+", domain.config.name, home, from.first, ids.first);
  return ShiftOwnership(home, from, ids);
}

}  // namespace qrexec::host
