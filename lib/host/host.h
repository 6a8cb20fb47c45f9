// The embedded host: domain lifecycle (start/kill/disposables) on top of the
// broker and the bubblewrap launcher, the qrexec-daemon per running domain,
// the policy daemon, and the qubesd-compatible admin socket.
//
// Everything runs on one event::Loop; nothing here blocks for long except Kill,
// which waits (bounded) until every process of the domain is gone.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "admin/server.h"
#include "base/result.h"
#include "event/loop.h"
#include "host/broker.h"
#include "host/config.h"
#include "host/process.h"

namespace qrexec::host {

struct IdRange;
struct SandboxSpec;
struct SandboxHandles;

inline constexpr const char* kDom0Uuid = "00000000-0000-0000-0000-000000000000";

// Where the host keeps things under its state directory.
struct HostPaths {
  explicit HostPaths(std::string state);
  std::string state_dir;
  std::string run_dir;            // sockets of this run
  std::string broker_dir;         // <name>.sock per domain
  std::string daemon_socket_dir;  // qrexec-daemon --socket-dir
  std::string domains_dir;        // <name>/home, <name>/etc (persistent)
  std::string disp_dir;           // disposables' storage (removed with them)
  std::string log_dir;
  std::string qubesd_socket;      // the qubesd-compatible admin socket
  std::string control_socket;     // the CLI's socket (same protocol, more methods)
  std::string policy_socket;      // qrexec-policy-daemon
  std::string policy_agent_socket;
  std::string dom0_rpc_dir;       // runtime dom0 services (policy.EvalSimple...)
  std::string policy_exec_wrapper;  // the daemons' fallback policy program
  std::string BrokerSocket(const std::string& name) const { return broker_dir + "/" + name + ".sock"; }
  std::string DaemonSocket(const std::string& name) const { return daemon_socket_dir + "/qrexec." + name; }
};

struct HostOptions {
  HostConfig config;
  std::string bin_dir;  // qrexec-agent, qrexec-daemon, ... (resolved by the caller)
  std::string bwrap = "/usr/bin/bwrap";
  bool start_daemons = true;        // a qrexec-daemon per running domain
  bool start_policy_daemon = true;  // when the binary exists
  bool autostart = true;            // start domains marked autostart in Init
  // The first process in each sandbox; empty: the agent.
  std::vector<std::string> sandbox_command;
  std::chrono::milliseconds start_timeout{30000};
};

enum class PowerState { kHalted, kStarting, kRunning };
const char* PowerStateName(PowerState state);  // Halted, Transient, Running

struct DomainStatus {
  std::string name;
  std::string klass;
  std::string state;
  std::string template_name;
  std::string uuid;
  uint32_t id = 0;
};

class Host {
 public:
  using StartDone = std::function<void(Status)>;

  Host(event::Loop& loop, HostOptions options);
  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  // Creates the directories, the dom0 broker socket, the admin and control
  // sockets, starts the policy daemon and the autostart domains.
  Status Init();
  // Stops every domain and child process and removes the runtime sockets and
  // disposables' storage.
  void Shutdown();

  // `ref`: a name, "uuid:UUID", or a dom0 alias. `done` runs once the domain
  // is running (its daemon's socket answers) or starting failed. An error of
  // kind kRefused means "already running".
  void Start(const std::string& ref, StartDone done);
  // Ends every process of the domain; a disposable is destroyed with its
  // storage. kNotFound for an unknown domain, kRefused when it is not running.
  Status Kill(const std::string& ref);
  // Registers a new disposable dispN from `ref` (a disposable template, or a
  // domain whose default_dispvm is one). Returns its name and uuid.
  // `made_for`: the source domain of the call it serves (empty: dom0's own);
  // the disposable is destroyed when that domain stops.
  Result<std::pair<std::string, std::string>> CreateDisposable(const std::string& ref,
                                                               const std::string& made_for = {});

  std::vector<DomainStatus> List() const;
  std::string SystemInfoJson() const;
  // pid of the sandbox (the outer bwrap process), for tests.
  std::optional<pid_t> SandboxPid(const std::string& name) const;
  // pid of the domain's qrexec-daemon while it runs, for tests.
  std::optional<pid_t> DaemonPid(const std::string& name) const;
  bool Exists(const std::string& name) const { return Find(name) != nullptr; }

  const HostPaths& paths() const { return paths_; }
  Broker& broker() { return broker_; }

 private:
  struct Domain;

  Domain* Find(const std::string& ref) const;
  Status PrepareStorage(Domain& domain);
  Status LaunchSandbox(Domain& domain);
  // host_confine.cc: the domain's id range, user namespace, seccomp filter
  // and cgroups, added to its bwrap command line and spawn options.
  uint32_t AllocateIdSlot() const;
  IdRange IdsOf(const Domain& domain) const;
  Status ConfineSandbox(Domain& domain, SandboxSpec& spec, SpawnOptions& spawn, SandboxHandles& handles);
  // Gives the home to the domain's user in its id range (`fresh`: just
  // made), moving owners from another range when needed.
  Status PrepareHome(const Domain& domain, const std::string& home, bool fresh);
  // With a home_size: the home is an image mounted at `home` (home_image.h).
  Status MountHome(const Domain& domain, const std::string& home);
  Status MountPersistentHomes();
  Status LaunchDaemon(Domain& domain);
  void CheckReady(const std::string& name);
  void FinishStart(const std::string& name, Status status);
  void OnSandboxExit(const std::string& name);
  // The domain's qrexec-daemon exited: a running domain is stopped (nothing
  // can reach it any more); see docs/architecture.md "Lifecycle".
  void OnDaemonExit(const std::string& name);
  // Destroys every disposable made for `source` (after `source` stopped).
  void DestroyDisposablesMadeFor(const std::string& source);
  // The running domain whose qrexec-daemon is `pid` or one of its ancestors
  // (the daemon itself, or a process it started); empty if none.
  std::string DomainOfDaemonProcess(pid_t pid) const;
  // Stops the domain's processes and frees its resources; destroys a
  // dynamic disposable.
  void StopDomain(const std::string& name, const std::string& why);
  void StartPolicyDaemon();
  void StartPolicyAgent();
  Status WritePolicyExecWrapper();
  // Watches a helper (policy daemon or agent): logs its exit and starts it
  // again after a second, at most kMaxHelperRestarts times.
  void Supervise(Child& child, event::FdWatch& watch, const std::string& what,
                 void (Host::*restart)());
  void RegisterHandlers(admin::Server& server, bool control);
  std::string Program(const std::string& name) const { return options_.bin_dir + "/" + name; }
  std::vector<std::string> DaemonEnvironment() const;
  const DomainConfig* ConfigOf(const std::string& name) const;

  event::Loop& loop_;
  HostOptions options_;
  HostPaths paths_;
  Broker broker_;
  std::unique_ptr<admin::Server> qubesd_server_;
  std::unique_ptr<admin::Server> control_server_;
  std::vector<std::unique_ptr<Domain>> domains_;
  Child policy_daemon_;
  Child policy_agent_;
  event::FdWatch policy_daemon_watch_;  // after the children: unregistered first
  event::FdWatch policy_agent_watch_;
  int helper_restarts_ = 0;
  std::vector<event::Timer> helper_timers_;
  uint32_t next_dynamic_id_ = 0;
  uint32_t next_dynamic_id_floor_ = 0;  // the first id slot of disposables
  // dispN numbers are never reused while the host runs, as in Qubes: each
  // disposable is a new domain, also by name.
  uint32_t next_disposable_number_ = 1;
  bool shut_down_ = false;
};

}  // namespace qrexec::host
