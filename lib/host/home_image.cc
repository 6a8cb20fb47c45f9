#include "host/home_image.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "host/process.h"

namespace qrexec::host {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

Status Run(const std::vector<std::string>& argv) {
  auto rc = RunProgram(argv, sys::Deadline::After(120s));
  if (!rc) return tl::unexpected(rc.error());
  if (*rc != 0) return MakeError(ErrorKind::kInternal, fmt::format("{} exited with {}", argv[0], *rc));
  return Ok();
}

Status CreateImage(const std::string& image, uint64_t bytes, uid_t owner) {
  std::string partial = image + ".new";
  {
    int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoError("create " + partial);
    int rc = ::ftruncate(fd, static_cast<off_t>(bytes));
    ::close(fd);
    if (rc < 0) return ErrnoError("truncate " + partial);
  }
  // No reserved blocks (nothing in a home runs as the filesystem's root
  // user on the host), lazy initialisation: a few tens of milliseconds.
  if (auto status = Run({"/sbin/mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                         fmt::format("root_owner={}:{},lazy_itable_init=1,lazy_journal_init=1", owner, owner),
                         partial});
      !status)
    return status;
  if (::rename(partial.c_str(), image.c_str()) < 0) return ErrnoError("rename " + partial);
  return Ok();
}

Status Mount(const std::string& image, const std::string& dir) {
  return Run({"/bin/mount", "-o", "loop,nosuid,nodev", "-t", "ext4", image, dir});
}

}  // namespace

bool IsMountPoint(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string target = fs::path(dir).lexically_normal().string();
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string id, parent, devs, root, mount_point;
    fields >> id >> parent >> devs >> root >> mount_point;
    if (mount_point == target) return true;
  }
  return false;
}

Status MountHomeImage(const std::string& image, const std::string& dir, uint64_t bytes, uid_t owner) {
  if (IsMountPoint(dir)) return Ok();
  if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) return ErrnoError("mkdir " + dir);
  struct stat st {};
  if (::lstat(image.c_str(), &st) < 0) {
    if (errno != ENOENT) return ErrnoError("stat " + image);
    if (auto status = CreateImage(image, bytes, owner); !status) return status;
    std::error_code ec;
    if (!fs::is_empty(dir, ec)) {
      // A home from before images: copy it in, then leave the directory
      // empty as the mount point.
      std::string staging = dir + ".migrating";
      fs::remove_all(staging, ec);
      if (::mkdir(staging.c_str(), 0700) < 0) return ErrnoError("mkdir " + staging);
      if (auto status = Mount(image, staging); !status) return status;
      Status copied = Run({"/bin/cp", "-a", "--", dir + "/.", staging + "/"});
      UnmountHome(staging);
      ::rmdir(staging.c_str());
      if (!copied) return copied;
      for (const auto& entry : fs::directory_iterator(dir, ec)) fs::remove_all(entry.path(), ec);
    }
  } else if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorKind::kRefused, image + " is not a regular file");
  }
  if (auto status = Mount(image, dir); !status) return status;
  std::error_code ec;
  fs::remove(dir + "/lost+found", ec);  // mke2fs's; nothing in a home needs it
  return Ok();
}

void UnmountHome(const std::string& dir) {
  if (!IsMountPoint(dir)) return;
  if (::umount2(dir.c_str(), 0) < 0) ::umount2(dir.c_str(), MNT_DETACH);
}

}  // namespace qrexec::host
