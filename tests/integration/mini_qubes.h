// MiniQubes: a small Qubes made of our real binaries on the socket transport,
// in a temporary directory, without root. Used by the integration tests and
// by the latency benchmark.
//
// It starts, for every running domain, a qrexec-agent (VCHAN_DOMAIN = its id)
// and a qrexec-daemon in "dom0" (VCHAN_DOMAIN = 0); one qrexec-policy-daemon;
// and a fake qubesd on a Unix socket that serves internal.GetSystemInfo,
// admin.vm.Start, admin.vm.CreateDisposable and admin.vm.Kill (starting and
// stopping agent+daemon pairs), so autostart and disposables work too.
//
// Layout under root():
//   vchan/                     VCHAN_SOCKET_DIR
//   run/                       daemon sockets, policy.sock, qubesd.sock
//   policy/                    policy directory (SetPolicy writes 30-test.policy)
//   dom0/rpc, dom0/rpc-config  dom0 services (run by the daemons)
//   <name>/rpc, <name>/rpc-config, <name>/agent.sock   per domain
#pragma once

#include <signal.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace qrexec::harness {

struct DomainSpec {
  std::string name;
  int domid = 0;
  std::string type = "AppVM";  // AppVM, TemplateVM, DispVM, StandaloneVM
  bool running = true;
  std::vector<std::string> tags;
  std::string default_dispvm;  // empty = null
  bool template_for_dispvms = false;
};

class MiniQubes {
 public:
  MiniQubes(std::vector<DomainSpec> domains, std::string policy);
  ~MiniQubes();

  // Starts the policy daemon, the fake qubesd, and every running domain.
  // Returns false (with a message in error()) if something did not come up.
  bool Start();
  const std::string& error() const { return error_; }
  // Stops every process (SIGTERM, then SIGKILL after 2 s) and the fake
  // qubesd, keeping the directory and its logs (the destructor does this
  // too, then removes the directory).
  void Stop();

  const std::string& root() const { return dir_.path(); }
  std::string ServiceDir(const std::string& domain) const;  // "dom0" for dom0 services
  std::string ConfigDir(const std::string& domain) const;
  void SetPolicy(const std::string& policy_text);

  // Spawn options for qrexec-client-vm run inside `source`.
  SpawnOptions ClientVm(const std::string& source, std::vector<std::string> args) const;
  // Spawn options for qrexec-client in dom0.
  SpawnOptions Client(std::vector<std::string> args) const;

  bool IsRunning(const std::string& name);
  // Disposables created so far (names), and how many are still running.
  std::vector<std::string> CreatedDisposables();
  int RunningDisposables();
  // Logs of the daemons and the policy daemon (for failure messages).
  std::string Logs() const;
  // Pids of the dom0 processes (daemons and policy daemon), for measuring
  // their memory and descriptors.
  std::vector<pid_t> Dom0Pids();
  // Extra environment for every daemon (e.g. QREXEC_DEBUG=1); set before Start().
  void SetDaemonEnv(std::string name, std::string value) { daemon_env_[std::move(name)] = std::move(value); }
  // Extra environment for every agent; set before Start().
  void SetAgentEnv(std::string name, std::string value) { agent_env_[std::move(name)] = std::move(value); }
  // An extra command-line argument for every qrexec-agent (before Start).
  void AddAgentArg(std::string arg) { agent_args_.push_back(std::move(arg)); }

  // --- fault injection (tests/faults) ---
  // Start and Restart* must run on a thread that outlives the processes:
  // the harness gives children PR_SET_PDEATHSIG, which follows the thread.
  // Pids of the running processes (-1 if none).
  pid_t AgentPid(const std::string& name);
  pid_t DaemonPid(const std::string& name);
  pid_t PolicyDaemonPid();
  // Sends `signo` to the process and reaps it (SIGKILL after 5 s); returns
  // its exit status as Process::Wait does. The domain stays "running" for
  // the fake qubesd.
  std::optional<int> KillAgent(const std::string& name, int signo = SIGKILL);
  std::optional<int> KillDaemon(const std::string& name, int signo = SIGKILL);
  std::optional<int> KillPolicyDaemon(int signo = SIGKILL);
  // Starts a new agent for the domain (its daemon reconnects by itself).
  bool RestartAgent(const std::string& name);
  // Starts a new daemon for the domain and waits until its socket accepts
  // connections (the agent must be running).
  bool RestartDaemon(const std::string& name);
  // Starts a new policy daemon and waits until policy.sock accepts.
  bool RestartPolicyDaemon();
  // The daemons' --policy-program (default: qrexec-policy-exec from the
  // build); takes effect for daemons started afterwards.
  void SetPolicyProgram(std::string path) { policy_program_ = std::move(path); }
  // Extra arguments for the policy daemon (e.g. --agent-socket PATH); take
  // effect when it is (re)started.
  void SetPolicyDaemonArgs(std::vector<std::string> args) { policy_daemon_args_ = std::move(args); }
  // Path of a domain's daemon socket (qrexec.<name>) and agent trigger socket.
  std::string DaemonSocket(const std::string& name) const { return dir_ / ("run/qrexec." + name); }
  std::string AgentSocket(const std::string& name) const { return dir_ / (name + "/agent.sock"); }
  std::string VchanDir() const { return dir_ / "vchan"; }

 private:
  struct Domain {
    DomainSpec spec;
    std::string uuid;
    std::unique_ptr<Process> agent;
    std::unique_ptr<Process> daemon;
  };

  bool StartDomain(Domain& domain);
  bool StartAgent(Domain& domain);
  bool StartDaemon(Domain& domain);
  bool StartPolicyDaemon();
  void StopDomain(Domain& domain);
  std::string SystemInfoJson();
  void ServeQubesd();
  std::string HandleQubesd(const std::string& request);
  std::map<std::string, std::string> BaseEnv(int domid) const;

  TempDir dir_;
  std::string policy_;
  std::string error_;
  std::map<std::string, std::string> daemon_env_;
  std::map<std::string, std::string> agent_env_;
  std::vector<std::string> agent_args_;
  std::string policy_program_;
  std::vector<std::string> policy_daemon_args_;
  std::mutex mutex_;  // guards domains_ (fake qubesd thread vs test thread)
  std::map<std::string, Domain> domains_;
  std::vector<std::string> disposables_;
  int next_domid_ = 100;
  int next_disp_ = 1;
  std::unique_ptr<Process> policy_daemon_;
  UniqueFd qubesd_listener_;
  UniqueFd qubesd_stop_;  // write end of a pipe that stops the thread
  std::thread qubesd_thread_;
};

}  // namespace qrexec::harness
