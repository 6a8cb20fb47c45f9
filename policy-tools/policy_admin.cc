#include "policy_admin.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/core.h>

#include "base/sys.h"
#include "base/unique_fd.h"
#include "policy/loader.h"
#include "sha256.h"

namespace qrexec::policy_tools {
namespace {

using AdminStatus = tl::expected<void, AdminError>;

tl::unexpected<AdminError> Refuse(const char* kind, std::string message) {
  return tl::unexpected(AdminError{kind, std::move(message)});
}

tl::unexpected<AdminError> Internal(std::string message) {
  return tl::unexpected(AdminError{"", std::move(message)});
}

// Letters, digits, '+', '-', '.', '_' (the qrexec service-name characters).
bool IsRpcNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '-' || c == '.' || c == '_';
}

bool IsFileNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

// realpath() when the path exists, else the resolved parent plus the last
// component (the file may be about to be created).
std::string Resolve(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) != nullptr) return buf;
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return path;
  std::string parent = slash == 0 ? "/" : path.substr(0, slash);
  if (::realpath(parent.c_str(), buf) == nullptr) return path;
  return std::string(buf) + path.substr(slash);
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::string Dirname(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string Basename(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

// Writes `data` to `path` (created 0664, truncated) and fsyncs it.
AdminStatus WriteSynced(const std::string& path, std::string_view data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0664));
  if (!fd.valid()) return Internal(fmt::format("cannot create {}: {}", path, std::strerror(errno)));
  while (!data.empty()) {
    ssize_t n = ::write(fd.get(), data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Internal(fmt::format("cannot write {}: {}", path, std::strerror(errno)));
    data.remove_prefix(static_cast<size_t>(n));
  }
  // The mode is set explicitly so that the umask does not decide it; the
  // group "qubes" (where it exists) may edit policy, as in the reference.
  (void)::fchmod(fd.get(), 0664);
  if (struct group* qubes = ::getgrnam("qubes"); qubes != nullptr)
    (void)::fchown(fd.get(), 0, qubes->gr_gid);
  if (::fsync(fd.get()) != 0)
    return Internal(fmt::format("cannot sync {}: {}", path, std::strerror(errno)));
  return {};
}

void SyncDirectory(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.valid()) (void)::fsync(fd.get());
}

// The exclusive lock on the policy directory for one request.
class DirectoryLock {
 public:
  explicit DirectoryLock(const std::string& dir)
      : fd_(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    if (fd_.valid()) locked_ = ::flock(fd_.get(), LOCK_EX) == 0;
  }
  bool locked() const { return locked_; }

 private:
  UniqueFd fd_;
  bool locked_ = false;
};

}  // namespace

std::string PolicyToken(std::string_view data) { return "sha256:" + Sha256Hex(data); }

PolicyAdmin::PolicyAdmin(std::string policy_dir)
    : policy_dir_(std::move(policy_dir)), include_dir_(policy_dir_ + "/include") {}

AdminResult PolicyAdmin::Handle(std::string_view service, std::string_view argument,
                                std::string_view payload) {
  if (!std::all_of(argument.begin(), argument.end(), IsRpcNameChar))
    return Refuse(kProtocolError,
                  fmt::format("Invalid argument: \"{}\"\nAllowed are letters, digits and the "
                              "characters '.', '+', '-' and '_'",
                              argument));
  std::string_view method = service;
  bool include = false;
  if (method.starts_with("policy.include.")) {
    method.remove_prefix(15);
    include = true;
  } else if (method.starts_with("policy.")) {
    method.remove_prefix(7);
  } else {
    method = {};
  }
  bool known = method == "List" || method == "Get" || method == "Replace" || method == "Remove" ||
               (method == "GetFiles" && !include);
  if (!known) return Refuse(kProtocolError, fmt::format("unrecognized method: {}", service));
  bool takes_argument = method != "List";
  bool takes_payload = method == "Replace" || method == "Remove";
  if (!takes_argument && !argument.empty())
    return Refuse(kProtocolError, "Unexpected argument");
  if (!takes_payload && !payload.empty()) return Refuse(kProtocolError, "Unexpected payload");

  DirectoryLock lock(policy_dir_);
  if (!lock.locked())
    return Internal(fmt::format("cannot lock {}: {}", policy_dir_, std::strerror(errno)));
  if (method == "List") return List(include);
  if (method == "Get") return Get(include, argument);
  if (method == "Replace") return Replace(include, argument, payload);
  if (method == "Remove") return Remove(include, argument, payload);
  return GetFiles(argument);
}

AdminResult PolicyAdmin::List(bool include) {
  const std::string& dir = include ? include_dir_ : policy_dir_;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Internal(fmt::format("cannot list {}: {}", dir, std::strerror(errno)));
  std::vector<std::string> names;
  while (struct dirent* entry = ::readdir(d)) {
    std::string name = entry->d_name;
    if (!IsRegularFile(dir + "/" + name)) continue;
    if (!include) {
      if (name.size() <= 7 || !name.ends_with(".policy")) continue;
      name.resize(name.size() - 7);
    }
    names.push_back(std::move(name));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  std::string out;
  for (const std::string& name : names) out += name + "\n";
  return out;
}

AdminResult PolicyAdmin::Get(bool include, std::string_view name) {
  auto path = PathFor(include, name);
  if (!path) return tl::unexpected(path.error());
  if (!IsRegularFile(*path)) return Refuse(kNotFoundError, "Not found: " + *path);
  auto data = sys::ReadWholeFile(*path);
  if (!data) return Internal(fmt::format("cannot read {}: {}", *path, std::strerror(errno)));
  return PolicyToken(*data) + "\n" + *data;
}

// The token rules shared by Replace and Remove.
static AdminStatus CheckToken(std::string_view token, const std::string& path) {
  if (token == "any") return {};
  if (token == "new") {
    if (Exists(path)) return Refuse(kTokenError, "The file exists, but the token is 'new'");
    return {};
  }
  if (!token.starts_with("sha256:")) return Refuse(kProtocolError, "Unrecognized token");
  if (!Exists(path)) return Refuse(kTokenError, "The file does not exist, but the token is not 'new'");
  auto data = sys::ReadWholeFile(path);
  if (!data) return Internal(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  if (PolicyToken(*data) != token) return Refuse(kTokenError, "Token mismatch");
  return {};
}

AdminResult PolicyAdmin::Replace(bool include, std::string_view name, std::string_view payload) {
  auto path = PathFor(include, name);
  if (!path) return tl::unexpected(path.error());
  size_t newline = payload.find('\n');
  if (newline == std::string_view::npos)
    return Refuse(kProtocolError, "The payload must start with a line holding the token");
  if (auto ok = CheckToken(payload.substr(0, newline), *path); !ok) return tl::unexpected(ok.error());
  std::string data(payload.substr(newline + 1));
  if (auto ok = Validate(*path, data); !ok) return tl::unexpected(ok.error());
  // A dotfile, which policy loaders skip: a "!NAME.policy" temp (the
  // reference's) would fail a concurrent load as an invalid file name.
  std::string temp = Dirname(*path) + "/.!" + Basename(*path);
  if (auto ok = WriteSynced(temp, data); !ok) {
    ::unlink(temp.c_str());
    return tl::unexpected(ok.error());
  }
  if (::rename(temp.c_str(), path->c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    return Internal(fmt::format("cannot rename {}: {}", temp, std::strerror(err)));
  }
  SyncDirectory(Dirname(*path));
  return std::string();
}

AdminResult PolicyAdmin::Remove(bool include, std::string_view name, std::string_view payload) {
  auto path = PathFor(include, name);
  if (!path) return tl::unexpected(path.error());
  if (auto ok = CheckToken(payload, *path); !ok) return tl::unexpected(ok.error());
  if (!IsRegularFile(*path)) return Refuse(kNotFoundError, "Not found: " + *path);
  if (auto ok = Validate(*path, std::nullopt); !ok) return tl::unexpected(ok.error());
  if (::unlink(path->c_str()) != 0)
    return Internal(fmt::format("cannot remove {}: {}", *path, std::strerror(errno)));
  SyncDirectory(Dirname(*path));
  return std::string();
}

AdminResult PolicyAdmin::GetFiles(std::string_view service) {
  if (service.empty()) return Refuse(kProtocolError, "The service name is empty");
  std::string bad;
  for (char c : service)
    if ((c == '+' || !IsRpcNameChar(c)) && bad.find(c) == std::string::npos) bad += c;
  if (!bad.empty()) {
    std::sort(bad.begin(), bad.end());
    return Refuse(kProtocolError,
                  fmt::format("The service name '{}' has invalid characters: '{}'", service, bad));
  }
  policy::LoadOptions options;
  options.dirs = {policy_dir_};
  auto loaded = policy::LoadPolicy(options);
  if (!loaded) return Internal("cannot load the policy: " + loaded.error().message);
  const std::string root = Resolve(policy_dir_) + "/";
  std::vector<std::string> files;
  for (const policy::Rule& rule : loaded->rules()) {
    if (rule.service && *rule.service != service) continue;
    std::string file = Resolve(rule.location.file);
    std::string entry = file;
    if (file.starts_with(root)) {
      // Inside the policy directory (include/ too): the file's stem.
      entry = Basename(file);
      if (size_t dot = entry.find_last_of('.'); dot != std::string::npos && dot != 0)
        entry.resize(dot);
    }
    if (std::find(files.begin(), files.end(), entry) == files.end()) files.push_back(entry);
  }
  std::string out;
  for (const std::string& file : files) out += file + "\n";
  return out;
}

tl::expected<std::string, AdminError> PolicyAdmin::PathFor(bool include,
                                                           std::string_view name) const {
  if (name.empty() || !std::all_of(name.begin(), name.end(), IsFileNameChar))
    return Refuse(kInvalidNameError,
                  fmt::format("Invalid policy file name: {}\nA name is made of letters, digits, "
                              "'_' and '-' only.",
                              name));
  const std::string& dir = include ? include_dir_ : policy_dir_;
  std::string path = Resolve(fmt::format("{}/{}{}", dir, name, include ? "" : ".policy"));
  if (Dirname(path) != Resolve(dir))
    return Refuse(kInvalidPathError, fmt::format("The path must be inside {}", dir));
  return path;
}

tl::expected<void, AdminError> PolicyAdmin::Validate(const std::string& path,
                                                     std::optional<std::string> content) const {
  policy::LoadOptions options;
  options.dirs = {policy_dir_};
  options.overrides.emplace(path, std::move(content));
  auto loaded = policy::LoadPolicy(options);
  if (!loaded)
    return Refuse(kSyntaxError, "Policy change validation failed: " + loaded.error().message);
  return {};
}

}  // namespace qrexec::policy_tools
