#include "mini_qubes.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/sys.h"

namespace qrexec::harness {
namespace {

constexpr const char* kUser = "user";

std::string CurrentUser() {
  const char* user = std::getenv("USER");
  if (user && *user) return user;
  return getuid() == 0 ? "root" : kUser;
}

std::string MakeUuid(int domid) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", domid);
  return buf;
}

// The path accepts connections (a stale socket file of a killed process
// does not count).
bool WaitForConnect(const std::string& path, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (sys::UnixConnect(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

UniqueFd OpenLog(const std::string& path) {
  return UniqueFd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
}

}  // namespace

MiniQubes::MiniQubes(std::vector<DomainSpec> domains, std::string policy) : policy_(std::move(policy)) {
  for (const char* sub : {"vchan", "run", "policy", "logs", "dom0/rpc", "dom0/rpc-config"})
    std::filesystem::create_directories(dir_ / sub);
  // dom0 itself, as the policy and qubesd know it.
  domains.insert(domains.begin(), DomainSpec{.name = "dom0", .domid = 0, .type = "AdminVM"});
  for (auto& spec : domains) {
    Domain domain;
    domain.uuid = spec.domid == 0 ? "00000000-0000-0000-0000-000000000000" : MakeUuid(spec.domid);
    domain.spec = spec;
    if (spec.domid != 0) {
      std::filesystem::create_directories(ServiceDir(spec.name));
      std::filesystem::create_directories(ConfigDir(spec.name));
    }
    domains_.emplace(spec.name, std::move(domain));
  }
  SetPolicy(policy_);
}

MiniQubes::~MiniQubes() { Stop(); }

void MiniQubes::Stop() {
  if (qubesd_thread_.joinable()) {
    qubesd_stop_.reset();  // wakes the thread (POLLHUP on the read end)
    qubesd_thread_.join();
  }
  std::lock_guard lock(mutex_);
  for (auto& [name, domain] : domains_) StopDomain(domain);
  if (policy_daemon_) {
    policy_daemon_->Kill(SIGTERM);
    if (!policy_daemon_->Wait(std::chrono::seconds(2))) policy_daemon_->Kill(SIGKILL);
    policy_daemon_.reset();
  }
}

std::string MiniQubes::ServiceDir(const std::string& domain) const { return dir_ / (domain + "/rpc"); }
std::string MiniQubes::ConfigDir(const std::string& domain) const { return dir_ / (domain + "/rpc-config"); }

void MiniQubes::SetPolicy(const std::string& policy_text) {
  policy_ = policy_text;
  WriteFile(dir_ / "policy/30-test.policy", policy_text);
}

std::map<std::string, std::string> MiniQubes::BaseEnv(int domid) const {
  return {{"VCHAN_SOCKET_DIR", dir_ / "vchan"},
          {"VCHAN_DOMAIN", std::to_string(domid)},
          {"QREXEC_QUBESD_SOCKET", dir_ / "run/qubesd.sock"}};
}

bool MiniQubes::Start() {
  auto listener = sys::UnixListen(dir_ / "run/qubesd.sock", 64);
  auto stop = sys::Pipe();
  if (!listener || !stop) {
    error_ = "cannot create the fake qubesd socket";
    return false;
  }
  qubesd_listener_ = std::move(*listener);
  qubesd_stop_ = std::move(stop->second);
  qubesd_thread_ = std::thread([this, stop_read = std::make_shared<UniqueFd>(std::move(stop->first))] {
    for (;;) {
      pollfd fds[2] = {{qubesd_listener_.get(), POLLIN, 0}, {stop_read->get(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) continue;
      if (fds[1].revents) return;
      if (fds[0].revents) ServeQubesd();
    }
  });

  if (!StartPolicyDaemon()) return false;
  std::lock_guard lock(mutex_);
  for (auto& [name, domain] : domains_) {
    if (domain.spec.domid == 0 || !domain.spec.running) continue;
    if (!StartDomain(domain)) return false;
  }
  return true;
}

bool MiniQubes::StartPolicyDaemon() {
  UniqueFd log = OpenLog(dir_ / "logs/policy-daemon.log");
  std::vector<std::string> argv = {BinPath("qrexec-policy-daemon"), "--policy-path", dir_ / "policy",
                                   "--socket-path", dir_ / "run/policy.sock", "--eval-socket-path",
                                   dir_ / "run/policy.EvalSimple", "--gui-socket-path",
                                   dir_ / "run/policy.EvalGUI", "--qubesd-socket", dir_ / "run/qubesd.sock"};
  argv.insert(argv.end(), policy_daemon_args_.begin(), policy_daemon_args_.end());
  auto policy = Process::Spawn({
      .argv = argv,
      .env = BaseEnv(0),
      .stdin_mode = Stdio::kNull,
      .stdout_mode = Stdio::kNull,
      .stderr_fd = log.get()});
  if (!policy) {
    error_ = "cannot start qrexec-policy-daemon";
    return false;
  }
  policy_daemon_ = std::make_unique<Process>(std::move(*policy));
  if (!WaitForConnect(dir_ / "run/policy.sock", std::chrono::seconds(10))) {
    error_ = "qrexec-policy-daemon did not create its socket\n" + Logs();
    return false;
  }
  return true;
}

bool MiniQubes::StartDomain(Domain& domain) {
  if (!StartAgent(domain) || !StartDaemon(domain)) return false;
  domain.spec.running = true;
  return true;
}

bool MiniQubes::StartAgent(Domain& domain) {
  const auto& name = domain.spec.name;
  int domid = domain.spec.domid;
  auto agent_env = BaseEnv(domid);
  agent_env["QREXEC_SERVICE_PATH"] = ServiceDir(name);
  agent_env["QUBES_RPC_CONFIG_PATH"] = ConfigDir(name);
  for (const auto& [key, value] : agent_env_) agent_env[key] = value;
  UniqueFd agent_log = OpenLog(dir_ / ("logs/agent." + name + ".log"));
  std::vector<std::string> argv = {BinPath("qrexec-agent"), "--no-fork-server",
                                   "--agent-socket=" + (dir_ / (name + "/agent.sock"))};
  argv.insert(argv.end(), agent_args_.begin(), agent_args_.end());
  auto agent = Process::Spawn({.argv = argv,
                               .env = agent_env,
                               .stdin_mode = Stdio::kNull,
                               .stdout_mode = Stdio::kNull,
                               .stderr_fd = agent_log.get()});
  if (!agent) {
    error_ = "cannot start qrexec-agent for " + name;
    return false;
  }
  domain.agent = std::make_unique<Process>(std::move(*agent));
  return true;
}

bool MiniQubes::StartDaemon(Domain& domain) {
  const auto& name = domain.spec.name;
  int domid = domain.spec.domid;
  auto daemon_env = BaseEnv(0);
  daemon_env["QREXEC_SERVICE_PATH"] = ServiceDir("dom0");
  daemon_env["QUBES_RPC_CONFIG_PATH"] = ConfigDir("dom0");
  for (const auto& [key, value] : daemon_env_) daemon_env[key] = value;
  UniqueFd daemon_log = OpenLog(dir_ / ("logs/daemon." + name + ".log"));
  std::string policy_program = policy_program_.empty() ? BinPath("qrexec-policy-exec") : policy_program_;
  auto daemon = Process::Spawn(
      {.argv = {BinPath("qrexec-daemon"), "-D", "-q", "--socket-dir=" + (dir_ / "run"),
                "--uuid=" + domain.uuid, "--policy-program=" + policy_program,
                "--policy-socket=" + (dir_ / "run/policy.sock"), std::to_string(domid), name,
                CurrentUser()},
       .env = daemon_env,
       .stdin_mode = Stdio::kNull,
       .stdout_mode = Stdio::kNull,
       .stderr_fd = daemon_log.get()});
  if (!daemon) {
    error_ = "cannot start qrexec-daemon for " + name;
    return false;
  }
  domain.daemon = std::make_unique<Process>(std::move(*daemon));
  if (!WaitForConnect(dir_ / ("run/qrexec." + name), std::chrono::seconds(10))) {
    error_ = "qrexec-daemon for " + name + " did not come up\n" + Logs();
    return false;
  }
  return true;
}

void MiniQubes::StopDomain(Domain& domain) {
  if (domain.daemon) domain.daemon->Kill(SIGTERM);
  if (domain.agent) domain.agent->Kill(SIGTERM);
  for (auto* process : {domain.daemon.get(), domain.agent.get()})
    if (process && !process->Wait(std::chrono::seconds(2))) process->Kill(SIGKILL);
  domain.daemon.reset();
  domain.agent.reset();
  if (domain.spec.domid != 0) domain.spec.running = false;
}

SpawnOptions MiniQubes::ClientVm(const std::string& source, std::vector<std::string> args) const {
  const Domain& domain = domains_.at(source);
  std::vector<std::string> argv = {BinPath("qrexec-client-vm"),
                                   "--agent-socket=" + (dir_ / (source + "/agent.sock"))};
  argv.insert(argv.end(), args.begin(), args.end());
  return SpawnOptions{.argv = argv, .env = BaseEnv(domain.spec.domid)};
}

SpawnOptions MiniQubes::Client(std::vector<std::string> args) const {
  std::vector<std::string> argv = {BinPath("qrexec-client"), "--socket-dir=" + (dir_ / "run")};
  argv.insert(argv.end(), args.begin(), args.end());
  auto env = BaseEnv(0);
  env["QREXEC_SERVICE_PATH"] = ServiceDir("dom0");
  env["QUBES_RPC_CONFIG_PATH"] = ConfigDir("dom0");
  return SpawnOptions{.argv = argv, .env = env};
}

bool MiniQubes::IsRunning(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = domains_.find(name);
  return it != domains_.end() && it->second.spec.running;
}

std::vector<std::string> MiniQubes::CreatedDisposables() {
  std::lock_guard lock(mutex_);
  return disposables_;
}

int MiniQubes::RunningDisposables() {
  std::lock_guard lock(mutex_);
  int count = 0;
  for (const auto& name : disposables_) {
    auto it = domains_.find(name);
    if (it != domains_.end() && it->second.spec.running) ++count;
  }
  return count;
}

std::string MiniQubes::Logs() const {
  std::string out;
  for (const auto& entry : std::filesystem::directory_iterator(dir_ / "logs"))
    out += "==> " + entry.path().filename().string() + "\n" + ReadFile(entry.path()) + "\n";
  return out;
}

std::vector<pid_t> MiniQubes::Dom0Pids() {
  std::lock_guard lock(mutex_);
  std::vector<pid_t> pids;
  if (policy_daemon_) pids.push_back(policy_daemon_->pid());
  for (const auto& [name, domain] : domains_)
    if (domain.daemon) pids.push_back(domain.daemon->pid());
  return pids;
}

pid_t MiniQubes::AgentPid(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = domains_.find(name);
  return it != domains_.end() && it->second.agent ? it->second.agent->pid() : -1;
}

pid_t MiniQubes::DaemonPid(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = domains_.find(name);
  return it != domains_.end() && it->second.daemon ? it->second.daemon->pid() : -1;
}

pid_t MiniQubes::PolicyDaemonPid() {
  std::lock_guard lock(mutex_);
  return policy_daemon_ ? policy_daemon_->pid() : -1;
}

namespace {
std::optional<int> KillAndReap(std::unique_ptr<Process>& process, int signo) {
  if (!process) return std::nullopt;
  process->Kill(signo);
  auto status = process->Wait(std::chrono::seconds(5));
  if (!status) {
    process->Kill(SIGKILL);
    status = process->Wait(std::chrono::seconds(5));
  }
  process.reset();
  return status;
}
}  // namespace

std::optional<int> MiniQubes::KillAgent(const std::string& name, int signo) {
  std::lock_guard lock(mutex_);
  return KillAndReap(domains_.at(name).agent, signo);
}

std::optional<int> MiniQubes::KillDaemon(const std::string& name, int signo) {
  std::lock_guard lock(mutex_);
  return KillAndReap(domains_.at(name).daemon, signo);
}

std::optional<int> MiniQubes::KillPolicyDaemon(int signo) {
  std::lock_guard lock(mutex_);
  return KillAndReap(policy_daemon_, signo);
}

bool MiniQubes::RestartAgent(const std::string& name) {
  std::lock_guard lock(mutex_);
  Domain& domain = domains_.at(name);
  if (domain.agent) return false;
  return StartAgent(domain);
}

bool MiniQubes::RestartDaemon(const std::string& name) {
  std::lock_guard lock(mutex_);
  Domain& domain = domains_.at(name);
  if (domain.daemon) return false;
  return StartDaemon(domain);
}

bool MiniQubes::RestartPolicyDaemon() {
  {
    std::lock_guard lock(mutex_);
    if (policy_daemon_) return false;
  }
  // Not under the lock: the policy daemon asks the fake qubesd at start.
  return StartPolicyDaemon();
}

std::string MiniQubes::SystemInfoJson() {
  nlohmann::json domains = nlohmann::json::object();
  for (const auto& [name, domain] : domains_) {
    const auto& spec = domain.spec;
    domains[name] = {
        {"internal", nullptr},
        {"tags", spec.tags},
        {"type", spec.type},
        {"template_for_dispvms", spec.template_for_dispvms},
        {"default_dispvm", spec.default_dispvm.empty() ? nlohmann::json(nullptr)
                                                       : nlohmann::json(spec.default_dispvm)},
        {"icon", "appvm-red"},
        {"label", "0xcc0000"},
        {"guivm", spec.domid == 0 ? nlohmann::json(nullptr) : nlohmann::json("dom0")},
        {"relayvm", nullptr},
        {"transport_rpc", nullptr},
        {"power_state", spec.running || spec.domid == 0 ? "Running" : "Halted"},
        {"uuid", domain.uuid}};
  }
  return nlohmann::json{{"domains", domains}}.dump();
}

void MiniQubes::ServeQubesd() {
  auto client = sys::Accept(qubesd_listener_.get());
  if (!client) return;
  auto request = sys::ReadToEof(client->get(), 1 << 16, sys::Deadline::After(std::chrono::seconds(5)));
  if (!request) return;
  std::string reply = HandleQubesd(*request);
  (void)sys::WriteAll(client->get(), reply);
}

// Request: "METHOD+ARG SOURCE TYPE DEST\0PAYLOAD". Replies "0\0..." or
// "2\0EXCEPTION\0...".
std::string MiniQubes::HandleQubesd(const std::string& request) {
  std::string head = request.substr(0, request.find('\0'));
  std::istringstream words(head);
  std::string call, source, type, dest;
  words >> call >> source >> type >> dest;
  std::string method = call.substr(0, call.find('+'));
  std::string ok(1, '0');
  ok += '\0';
  auto fail = [](const std::string& exception) { return std::string("2") + '\0' + exception + '\0' + '\0'; };

  std::lock_guard lock(mutex_);
  if (method == "internal.GetSystemInfo") return ok + SystemInfoJson();
  // Find the destination by name or uuid:UUID.
  Domain* target = nullptr;
  for (auto& [name, domain] : domains_)
    if (name == dest || "uuid:" + domain.uuid == dest) target = &domain;
  if (!target) return fail("QubesVMNotFoundError");
  if (method == "admin.vm.Start") {
    if (target->spec.running) return fail("QubesVMNotHaltedError");
    return StartDomain(*target) ? ok : fail("QubesException");
  }
  if (method == "admin.vm.Kill") {
    StopDomain(*target);
    return ok;
  }
  if (method == "admin.vm.CreateDisposable") {
    if (!target->spec.template_for_dispvms) return fail("QubesException");
    DomainSpec spec{.name = "disp" + std::to_string(next_disp_++), .domid = next_domid_++,
                    .type = "DispVM", .running = false};
    Domain disposable;
    disposable.spec = spec;
    disposable.uuid = MakeUuid(spec.domid);
    std::filesystem::create_directories(ServiceDir(spec.name));
    std::filesystem::create_directories(ConfigDir(spec.name));
    // A disposable gets its template's services.
    std::filesystem::copy(ServiceDir(target->spec.name), ServiceDir(spec.name),
                          std::filesystem::copy_options::recursive |
                              std::filesystem::copy_options::copy_symlinks);
    std::string uuid = disposable.uuid;
    disposables_.push_back(spec.name);
    domains_.emplace(spec.name, std::move(disposable));
    return ok + "uuid:" + uuid;
  }
  return fail("QubesNotImplementedError");
}

}  // namespace qrexec::harness
