#include "host/userns.h"

#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "base/sys.h"

namespace qrexec::host {
namespace {

constexpr uid_t kNobody = 65534;

Status WriteProcFile(const std::string& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError("open " + path);
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return ErrnoError("write " + path);
  return Ok();
}

// Ids taken on the host: accounts/groups (third field of passwd/group) and
// subordinate ranges ("name:first:count").
struct TakenId {
  uint64_t first;
  uint64_t count;
  std::string what;
};

std::vector<TakenId> ReadTakenIds(const std::string& etc) {
  std::vector<TakenId> taken;
  auto fields = [](const std::string& line) {
    std::vector<std::string> out;
    std::stringstream in(line);
    std::string field;
    while (std::getline(in, field, ':')) out.push_back(field);
    return out;
  };
  auto number = [](const std::string& text, uint64_t& out) {
    if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos) return false;
    out = std::stoull(text);
    return true;
  };
  for (const char* file : {"passwd", "group"}) {
    std::ifstream in(etc + "/" + file);
    for (std::string line; std::getline(in, line);) {
      auto f = fields(line);
      uint64_t id = 0;
      if (f.size() >= 3 && number(f[2], id)) taken.push_back({id, 1, etc + "/" + file + ": " + f[0]});
    }
  }
  for (const char* file : {"subuid", "subgid"}) {
    std::ifstream in(etc + "/" + file);
    for (std::string line; std::getline(in, line);) {
      auto f = fields(line);
      uint64_t first = 0, count = 0;
      if (f.size() >= 3 && number(f[1], first) && number(f[2], count))
        taken.push_back({first, count, etc + "/" + file + ": " + f[0]});
    }
  }
  return taken;
}

// The one ShiftOwnership in progress (nftw has no user pointer).
struct Shift {
  IdRange from, to;
  int error = 0;
};
Shift* g_shift = nullptr;

uid_t ShiftId(uid_t id) {
  if (id >= g_shift->from.first && id - g_shift->from.first < g_shift->from.count)
    return g_shift->to.first + (id - g_shift->from.first);
  return g_shift->to.first + kNobody;
}

int ShiftOne(const char* path, const struct stat* st, int /*type*/, struct FTW* /*ftw*/) {
  uid_t uid = ShiftId(st->st_uid);
  gid_t gid = ShiftId(st->st_gid);
  if ((uid != st->st_uid || gid != st->st_gid) && ::lchown(path, uid, gid) < 0) {
    g_shift->error = errno;
    return 1;
  }
  // chown clears set-id bits; put them back on what is not a symlink.
  if (!S_ISLNK(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)) != 0) ::chmod(path, st->st_mode & 07777);
  return 0;
}

}  // namespace

IdRange IdRangeOfSlot(uid_t base, uint32_t slot) {
  return IdRange{static_cast<uid_t>(base + static_cast<uint64_t>(slot) * kIdsPerDomain), kIdsPerDomain};
}

Status CheckIdBase(uid_t base, const std::string& etc) {
  uint64_t first = base;
  uint64_t end = first + static_cast<uint64_t>(kMaxIdSlots) * kIdsPerDomain;
  if (first < kIdsPerDomain || end > 0xffffffffULL)
    return MakeError(ErrorKind::kRefused,
                     fmt::format("uid_base {} leaves no room for {} domain ranges below 2^32", base, kMaxIdSlots));
  for (const auto& id : ReadTakenIds(etc)) {
    if (id.first < end && first < id.first + id.count)
      return MakeError(ErrorKind::kRefused,
                       fmt::format("uid_base {}: the domains' ids {}-{} overlap {} ({}+{})", base, first, end - 1,
                                   id.what, id.first, id.count));
  }
  return Ok();
}

Result<UniqueFd> MakeUserNamespace(const IdRange& range) {
  // A child unshares a user namespace and waits; we write its maps from
  // outside (privileged writer: setgroups stays allowed), open the
  // namespace, and let the child go.
  auto go = sys::Pipe();
  if (!go) return tl::unexpected(go.error());
  auto ready = sys::Pipe();
  if (!ready) return tl::unexpected(ready.error());
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork");
  if (pid == 0) {
    go->second.reset();
    ready->first.reset();
    char byte = ::unshare(CLONE_NEWUSER) == 0 ? 1 : 0;
    (void)!::write(ready->second.get(), &byte, 1);
    (void)!::read(go->first.get(), &byte, 1);
    ::_exit(0);
  }
  go->first.reset();
  ready->second.reset();
  auto finish = [pid, &go] {
    go->second.reset();
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  };
  char byte = 0;
  ssize_t n;
  do {
    n = ::read(ready->first.get(), &byte, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1 || byte != 1) {
    finish();
    return MakeError(ErrorKind::kInternal, "cannot create a user namespace (is user.max_user_namespaces 0?)");
  }
  std::string map = fmt::format("0 {} {}\n", range.first, range.count);
  std::string proc = "/proc/" + std::to_string(pid);
  Status status = WriteProcFile(proc + "/uid_map", map);
  if (status) status = WriteProcFile(proc + "/gid_map", map);
  UniqueFd ns;
  if (status) {
    ns.reset(::open((proc + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns.valid()) status = ErrnoError("open " + proc + "/ns/user");
  }
  finish();
  if (!status) return tl::unexpected(status.error());
  return ns;
}

Status ShiftOwnership(const std::string& dir, const IdRange& from, const IdRange& to) {
  Shift shift{from, to};
  g_shift = &shift;
  int rc = ::nftw(dir.c_str(), ShiftOne, 64, FTW_PHYS | FTW_MOUNT);
  g_shift = nullptr;
  if (rc != 0) return ErrnoError("re-own " + dir, shift.error != 0 ? shift.error : errno);
  return Ok();
}

}  // namespace qrexec::host
