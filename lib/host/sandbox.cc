#include "host/sandbox.h"

#include <sys/stat.h>

#include <filesystem>

namespace qrexec::host {
namespace {

// /etc entries copied read-only from the system root when they exist.
constexpr const char* kEtcEntries[] = {
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "nsswitch.conf",
    "host.conf",   "hosts",      "profile",      "profile.d",    "bash.bashrc", "environment",
    "shells",      "login.defs", "pam.d",        "security",     "ssl",         "mime.types",
    "os-release",  "timezone",   "inputrc",      "debian_version"};

constexpr const char* kTopLevel[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};

bool IsDir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

const std::vector<std::string>& SandboxCapabilities() {
  static const std::vector<std::string> kCaps = {"CAP_SETUID", "CAP_SETGID", "CAP_CHOWN",
                                                 "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL"};
  return kCaps;
}

std::string SandboxPasswd(const std::string& user) {
  std::string text = "root:x:0:0:root:/root:/bin/bash\n";
  if (user != "root") text += user + ":x:1000:1000:" + user + ":/home/" + user + ":/bin/bash\n";
  text += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
  return text;
}

std::string SandboxGroup(const std::string& user) {
  std::string text = "root:x:0:\n";
  if (user != "root") text += user + ":x:1000:\nqubes:x:98:" + user + "\n";
  text += "nogroup:x:65534:\n";
  return text;
}

std::string SandboxShadow(const std::string& user) {
  std::string text = "root:*:::::::\n";
  if (user != "root") text += user + ":*:::::::\n";
  text += "nobody:*:::::::\n";
  return text;
}

std::vector<std::string> BuildBwrapArgs(const SandboxSpec& spec) {
  std::vector<std::string> a = {spec.bwrap};
  auto add = [&a](std::initializer_list<std::string> items) { a.insert(a.end(), items); };
  add({"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup-try",
       "--die-with-parent", "--new-session", "--hostname", spec.name});
  add({"--cap-drop", "ALL"});
  for (const auto& cap : SandboxCapabilities()) add({"--cap-add", cap});
  // Our init is the PID namespace's init, so bwrap's own (which keeps a
  // full bounding set) is not there.
  if (!spec.init_program.empty()) add({"--cap-add", "CAP_SETPCAP", "--as-pid-1"});
  if (spec.seccomp_fd >= 0) add({"--seccomp", std::to_string(spec.seccomp_fd)});

  std::string root = spec.system_root.empty() ? "/" : spec.system_root;
  auto in_root = [&root](const std::string& rel) {
    return (std::filesystem::path(root) / rel).lexically_normal().string();
  };
  // The system, read-only.
  add({"--ro-bind", in_root("usr"), "/usr"});
  for (const char* top : kTopLevel) {
    std::string host_path = in_root(top);
    std::error_code ec;
    auto status = std::filesystem::symlink_status(host_path, ec);
    if (ec || !std::filesystem::exists(status)) continue;
    if (std::filesystem::is_symlink(status)) {
      add({"--symlink", std::filesystem::read_symlink(host_path, ec).string(), std::string("/") + top});
    } else if (std::filesystem::is_directory(status)) {
      add({"--ro-bind", host_path, std::string("/") + top});
    }
  }
  add({"--dir", "/etc"});
  for (const char* entry : kEtcEntries) add({"--ro-bind-try", in_root(std::string("etc/") + entry), std::string("/etc/") + entry});
  // --perms: bwrap makes data files 0600 unless told otherwise.
  if (spec.passwd_fd >= 0) add({"--perms", "0644", "--ro-bind-data", std::to_string(spec.passwd_fd), "/etc/passwd"});
  if (spec.group_fd >= 0) add({"--perms", "0644", "--ro-bind-data", std::to_string(spec.group_fd), "/etc/group"});
  if (spec.shadow_fd >= 0) add({"--perms", "0600", "--ro-bind-data", std::to_string(spec.shadow_fd), "/etc/shadow"});

  add({"--proc", "/proc", "--dev", "/dev"});
  // Each --size applies to the next --tmpfs only.
  auto tmpfs = [&](const char* where, uint64_t bytes) {
    if (bytes != 0) add({"--size", std::to_string(bytes)});
    add({"--tmpfs", where});
  };
  add({"--perms", "1777"});
  tmpfs("/tmp", spec.tmpfs_bytes);
  tmpfs("/run", spec.tmpfs_bytes);
  tmpfs("/var", spec.tmpfs_bytes);
  add({"--symlink", "../run", "/var/run"});
  add({"--perms", "1777", "--dir", "/var/tmp", "--dir", "/run/qubes", "--perms", "0700", "--dir", "/root",
       "--perms", "0755", "--dir", "/home"});
  // Services and rpc-config: the template's under /etc, the domain's own
  // under /usr/local (first in the search path, as in Qubes).
  add({"--dir", "/etc/qubes-rpc", "--dir", "/etc/qubes/rpc-config"});
  if (!spec.template_service_dir.empty() && IsDir(spec.template_service_dir))
    add({"--ro-bind", spec.template_service_dir, "/etc/qubes-rpc"});
  if (!spec.template_rpc_config_dir.empty() && IsDir(spec.template_rpc_config_dir))
    add({"--ro-bind", spec.template_rpc_config_dir, "/etc/qubes/rpc-config"});
  tmpfs("/usr/local", 1 << 20);  // holds mount points only
  add({"--dir", "/usr/local/bin", "--dir", "/usr/local/etc/qubes-rpc", "--dir",
       "/usr/local/etc/qubes/rpc-config"});
  if (!spec.own_service_dir.empty() && IsDir(spec.own_service_dir))
    add({"--ro-bind", spec.own_service_dir, "/usr/local/etc/qubes-rpc"});
  if (!spec.own_rpc_config_dir.empty() && IsDir(spec.own_rpc_config_dir))
    add({"--ro-bind", spec.own_rpc_config_dir, "/usr/local/etc/qubes/rpc-config"});
  for (const auto& [host_path, name] : spec.programs)
    add({"--ro-bind", host_path, std::string(kSandboxBinDir) + "/" + name});
  if (!spec.init_program.empty()) add({"--ro-bind", spec.init_program, kSandboxInitProgram});

  std::string home = spec.user == "root" ? "/root" : "/home/" + spec.user;
  if (!spec.home_dir.empty()) add({"--bind", spec.home_dir, home});
  if (!spec.broker_socket.empty()) add({"--ro-bind", spec.broker_socket, kSandboxBrokerSocket});

  add({"--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
       "--setenv", "HOSTNAME", spec.name, "--setenv", "HOME", "/root", "--setenv", "LANG", "C.UTF-8",
       "--setenv", "QREXEC_BROKER_SOCKET", kSandboxBrokerSocket, "--setenv", "VCHAN_DOMAIN",
       std::to_string(spec.domain_id), "--setenv", "QREXEC_SERVICE_PATH", kSandboxServicePath,
       "--setenv", "QUBES_RPC_CONFIG_PATH", kSandboxRpcConfigPath});
  for (const auto& var : spec.extra_env) {
    size_t eq = var.find('=');
    if (eq == std::string::npos) continue;
    add({"--setenv", var.substr(0, eq), var.substr(eq + 1)});
  }
  add({"--chdir", "/", "--"});
  if (!spec.init_program.empty()) a.push_back(kSandboxInitProgram);
  a.insert(a.end(), spec.command.begin(), spec.command.end());
  return a;
}

}  // namespace qrexec::host
