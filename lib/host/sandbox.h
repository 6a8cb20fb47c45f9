// Domains as bubblewrap sandboxes: the bwrap command line for one domain.
//
// Inside a sandbox:
//   /usr, /bin, /lib*, /sbin    read-only, from the template's root (or the host)
//   /etc                        a few read-only files from that root, plus the
//                               domain's generated passwd/group
//   /etc/qubes-rpc              the template's services (read-only)
//   /etc/qubes/rpc-config       the template's rpc-config (read-only)
//   /usr/local                  tmpfs; /usr/local/etc/qubes-rpc and
//                               /usr/local/etc/qubes/rpc-config hold the
//                               domain's own services and rpc-config (read-only),
//                               /usr/local/bin the qrexec programs (read-only)
//   /home/<user>                the domain's private home (read-write)
//   /tmp, /run, /var            tmpfs (/var/run -> /run)
//   /run/qubes/broker.sock      the domain's broker socket
// Namespaces: the domain's own user namespace (made by the host and joined
// before bwrap starts: host/userns.h), mount, PID, IPC, UTS (hostname =
// domain name), network (only loopback), cgroup when available. Inside, the
// capabilities are those a service launcher needs; the bounding set is cut
// to them by qrexec-sandbox-init (the first program), no_new_privs is set
// and the seccomp filter of host/seccomp_filter.h is installed.
//
// bwrap itself runs as the domain's root, an unprivileged host uid: every
// bind source must be reachable by it (the host keeps its state directory
// searchable but not listable: mode 0711).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qrexec::host {

inline constexpr const char* kSandboxBrokerSocket = "/run/qubes/broker.sock";
inline constexpr const char* kSandboxAgentSocket = "/run/qubes/qrexec-agent";
inline constexpr const char* kSandboxBinDir = "/usr/local/bin";
inline constexpr const char* kSandboxInitProgram = "/usr/local/bin/qrexec-sandbox-init";
inline constexpr const char* kSandboxServicePath = "/run/qubes-rpc:/usr/local/etc/qubes-rpc:/etc/qubes-rpc";
inline constexpr const char* kSandboxRpcConfigPath =
    "/run/qubes/rpc-config:/usr/local/etc/qubes/rpc-config:/etc/qubes/rpc-config";

struct SandboxSpec {
  std::string bwrap = "/usr/bin/bwrap";
  std::string name;
  unsigned domain_id = 0;
  std::string system_root;          // "" or "/": the host's system directories
  std::string home_dir;             // host path, bound read-write at /home/<user>
  std::string user = "user";
  // Sealed memfds (sealed_memfd.h) with the generated /etc/passwd,
  // /etc/group and /etc/shadow (root-only, for PAM's account check), bound
  // by bwrap --ro-bind-data; -1: none.
  int passwd_fd = -1;
  int group_fd = -1;
  int shadow_fd = -1;
  std::string template_service_dir;  // may be empty
  std::string own_service_dir;
  std::string template_rpc_config_dir;
  std::string own_rpc_config_dir;
  std::string broker_socket;        // host path
  // Host path -> name under /usr/local/bin (read-only).
  std::vector<std::pair<std::string, std::string>> programs;
  std::vector<std::string> extra_env;  // "K=V"
  // Host path of qrexec-sandbox-init; when set, it runs first (bound at
  // /usr/local/bin) and gets CAP_SETPCAP to cut the bounding set.
  std::string init_program;
  int seccomp_fd = -1;        // bwrap --seccomp: the compiled filter
  uint64_t tmpfs_bytes = 0;   // size of /tmp, /run and /var (0: tmpfs default)
  std::vector<std::string> command;    // the first process inside
};

// The complete argv (starting with the bwrap path).
std::vector<std::string> BuildBwrapArgs(const SandboxSpec& spec);

// /etc/passwd and /etc/group text for a sandbox with `user` as uid/gid 1000.
std::string SandboxPasswd(const std::string& user);
std::string SandboxGroup(const std::string& user);
// The matching /etc/shadow: no password anyone could log in with ("*"),
// no password ageing (so PAM's account check passes for every user).
std::string SandboxShadow(const std::string& user);

// Capabilities kept inside, over the domain's own namespaces only: setuid
// and setgid to the service user, kill of its processes, and the file
// capabilities a root service expects on the domain's own files. Everything
// else, including CAP_SYS_ADMIN and CAP_NET_ADMIN, is dropped.
const std::vector<std::string>& SandboxCapabilities();

}  // namespace qrexec::host
