#include "host/host.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/log.h"
#include "base/names.h"
#include "host/home_image.h"
#include "host/host_internal.h"
#include "host/sandbox.h"

namespace qrexec::host {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* kAgentName = "qrexec-agent";
constexpr const char* kPamHelperName = "qrexec-pam-session";

// Services run as the domain's user through a `qrexec` PAM session, as in
// Qubes, when the sandbox can hold one: the helper is among the programs
// copied in and the template's /etc/pam.d has the qrexec stack (the vm
// package installs it). Otherwise they run directly, as before.
std::string PamSessionArgument(const SandboxSpec& spec) {
  bool has_helper = false;
  for (const auto& program : spec.programs) has_helper = has_helper || program.second == kPamHelperName;
  std::string root = spec.system_root.empty() ? "/" : spec.system_root;
  bool has_stack = ::access((fs::path(root) / "etc/pam.d/qrexec").c_str(), R_OK) == 0;
  if (!has_helper || !has_stack) return "--no-pam-session";
  return std::string("--pam-session-helper=") + kSandboxBinDir + "/" + kPamHelperName;
}

std::string RandomUuid() {
  unsigned char b[16] = {};
  std::ifstream in("/dev/urandom", std::ios::binary);
  in.read(reinterpret_cast<char*>(b), sizeof b);
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  return fmt::format("{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                     b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                     b[15]);
}

bool SocketAnswers(const std::string& path) { return sys::UnixConnect(path).has_value(); }

Broker::Options BrokerOptionsFor(const HostConfig& config) {
  Broker::Options options;
  if (config.broker_max_pending) options.max_pending_per_domain = *config.broker_max_pending;
  if (config.broker_pending_timeout) options.pending_timeout = *config.broker_pending_timeout;
  return options;
}

}  // namespace

const char* PowerStateName(PowerState state) {
  switch (state) {
    case PowerState::kHalted: return "Halted";
    case PowerState::kStarting: return "Transient";
    case PowerState::kRunning: return "Running";
  }
  return "Halted";
}

HostPaths::HostPaths(std::string state) : state_dir(std::move(state)) {
  run_dir = state_dir + "/run";
  broker_dir = run_dir + "/broker";
  daemon_socket_dir = run_dir + "/qrexec";
  domains_dir = state_dir + "/domains";
  disp_dir = state_dir + "/disp";
  log_dir = state_dir + "/log";
  qubesd_socket = run_dir + "/qubesd.sock";
  control_socket = run_dir + "/control.sock";
  policy_socket = run_dir + "/policy.sock";
  policy_agent_socket = run_dir + "/policy-agent.sock";
  dom0_rpc_dir = run_dir + "/dom0-rpc";
  policy_exec_wrapper = run_dir + "/qrexec-policy-exec";
}

Host::Host(event::Loop& loop, HostOptions options)
    : loop_(loop), options_(std::move(options)), paths_(options_.config.state_dir),
      broker_(loop, BrokerOptionsFor(options_.config)) {
  uint32_t id = 1;
  for (const auto& config : options_.config.domains) {
    auto domain = std::make_unique<Domain>();
    domain->config = config;
    domain->id = id++;
    domain->id_slot = domain->id;
    domains_.push_back(std::move(domain));
  }
  next_dynamic_id_ = std::max<uint32_t>(id, 100);
  next_dynamic_id_floor_ = next_dynamic_id_;
}

Host::~Host() { Shutdown(); }

Status Host::Init() {
  if (::geteuid() == 0) {
    if (auto status = CheckStateDir(paths_.state_dir); !status) return status;
    if (auto status = CheckIdBase(options_.config.uid_base); !status) return status;
  }
  if (next_dynamic_id_floor_ >= kMaxIdSlots)
    return MakeError(ErrorKind::kRefused, fmt::format("at most {} domains", kMaxIdSlots - 100));
  // Searchable (not listable) where a domain's bwrap, which runs as that
  // domain's root (an unprivileged host uid), must reach its bind sources.
  for (const auto& dir : {paths_.state_dir, paths_.run_dir, paths_.domains_dir, paths_.disp_dir})
    if (auto status = MakeHostDir(dir, 0711); !status) return status;
  if (auto status = MakeHostDir(paths_.log_dir, 0700); !status) return status;
  for (const auto& dir : {paths_.broker_dir, paths_.daemon_socket_dir, paths_.dom0_rpc_dir})
    if (auto status = MakeHostDir(dir, 0711); !status) return status;
  if (::geteuid() == 0) DomainCgroup::RemoveHostGroup(HostCgroupName(paths_.state_dir));  // a crashed run's
  // Disposables' storage of a previous run that did not shut down cleanly.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(paths_.disp_dir, ec)) {
    UnmountHome(entry.path().string() + "/home");
    fs::remove_all(entry.path(), ec);
  }
  if (auto status = MountPersistentHomes(); !status) return status;
  if (auto status = broker_.AddDomain(0, "dom0", paths_.BrokerSocket("dom0")); !status) return status;
  qubesd_server_ = std::make_unique<admin::Server>(loop_);
  control_server_ = std::make_unique<admin::Server>(loop_);
  RegisterHandlers(*qubesd_server_, false);
  RegisterHandlers(*control_server_, true);
  if (auto status = qubesd_server_->Listen(paths_.qubesd_socket); !status) return status;
  if (auto status = control_server_->Listen(paths_.control_socket); !status) return status;
  ::chmod(paths_.qubesd_socket.c_str(), 0600);
  ::chmod(paths_.control_socket.c_str(), 0600);
  if (auto status = WritePolicyExecWrapper(); !status) return status;
  if (options_.start_policy_daemon) {
    StartPolicyAgent();
    StartPolicyDaemon();
  }
  if (options_.autostart) {
    for (const auto& domain : domains_) {
      if (!domain->config.autostart) continue;
      std::string name = domain->config.name;
      Start(name, [name](Status status) {
        if (status) {
          LOG_INFO("autostart: {} is running", name);
        } else {
          LOG_ERROR("autostart: {}: {}", name, status.error().ToString());
        }
      });
    }
  }
  return Ok();
}

void Host::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  std::vector<std::string> running;
  for (const auto& domain : domains_)
    if (domain->state != PowerState::kHalted) running.push_back(domain->config.name);
  for (auto it = running.rbegin(); it != running.rend(); ++it) StopDomain(*it, "host shutdown");
  // Dynamic disposables that were created but never started.
  std::vector<std::string> dynamic;
  for (const auto& domain : domains_)
    if (domain->dynamic) dynamic.push_back(domain->config.name);
  for (const auto& name : dynamic) StopDomain(name, "host shutdown");
  helper_timers_.clear();
  policy_daemon_watch_.Reset();
  policy_agent_watch_.Reset();
  if (policy_daemon_.valid()) policy_daemon_.Stop(2s);
  if (policy_agent_.valid()) policy_agent_.Stop(2s);
  qubesd_server_.reset();
  control_server_.reset();
  broker_.RemoveDomain(0);
  std::error_code ec;
  for (const auto& path : {paths_.qubesd_socket, paths_.control_socket, paths_.policy_socket})
    fs::remove(path, ec);
  fs::remove_all(paths_.disp_dir, ec);
  for (const auto& domain : domains_) UnmountHome(paths_.domains_dir + "/" + domain->config.name + "/home");
  fs::remove_all(paths_.run_dir, ec);  // sockets of this run, incl. the policy daemon's
  if (::geteuid() == 0) DomainCgroup::RemoveHostGroup(HostCgroupName(paths_.state_dir));
}

Host::Domain* Host::Find(const std::string& ref) const {
  std::string_view uuid;
  if (ref.rfind("uuid:", 0) == 0) uuid = std::string_view(ref).substr(5);
  for (const auto& domain : domains_) {
    if (uuid.empty() ? domain->config.name == ref : domain->config.uuid == uuid) return domain.get();
  }
  return nullptr;
}

const DomainConfig* Host::ConfigOf(const std::string& name) const {
  Domain* domain = Find(name);
  return domain == nullptr ? nullptr : &domain->config;
}

std::optional<pid_t> Host::SandboxPid(const std::string& name) const {
  Domain* domain = Find(name);
  if (domain == nullptr || !domain->sandbox.valid()) return std::nullopt;
  return domain->sandbox.pid();
}

std::optional<pid_t> Host::DaemonPid(const std::string& name) const {
  Domain* domain = Find(name);
  if (domain == nullptr || !domain->daemon.valid()) return std::nullopt;
  return domain->daemon.pid();
}

Result<std::pair<std::string, std::string>> Host::CreateDisposable(const std::string& ref,
                                                                   const std::string& made_for) {
  const DomainConfig* base = nullptr;
  if (names::RefersToDom0(ref)) {
    base = ConfigOf(options_.config.default_dispvm);
  } else {
    Domain* dest = Find(ref);
    if (dest == nullptr) return MakeError(ErrorKind::kNotFound, "no such domain: " + ref);
    base = dest->config.template_for_dispvms ? &dest->config : ConfigOf(dest->config.default_dispvm);
  }
  if (base == nullptr || !base->template_for_dispvms)
    return MakeError(ErrorKind::kRefused, "no disposable template for " + ref);
  std::string name;
  for (;;) {
    name = "disp" + std::to_string(next_disposable_number_++);
    if (Find(name) == nullptr && !fs::exists(paths_.disp_dir + "/" + name)) break;
  }
  auto domain = std::make_unique<Domain>();
  domain->config.name = name;
  domain->config.klass = DomainClass::kDispVM;
  domain->config.template_name = base->name;
  domain->config.label = base->label;
  domain->config.default_dispvm = base->default_dispvm;
  domain->config.default_user = base->default_user;
  domain->config.limits = base->limits;
  domain->config.uuid = RandomUuid();
  domain->id_slot = AllocateIdSlot();
  if (domain->id_slot == 0) return MakeError(ErrorKind::kOverloaded, "no free id range for another disposable");
  domain->id = next_dynamic_id_++;
  domain->dynamic = true;
  domain->made_for = made_for;
  std::pair<std::string, std::string> result{name, domain->config.uuid};
  LOG_INFO("created disposable {} from {} for {}", name, base->name, made_for.empty() ? "dom0" : made_for);
  domains_.push_back(std::move(domain));
  return result;
}

void Host::Start(const std::string& ref, StartDone done) {
  if (names::RefersToDom0(ref)) return done(MakeError(ErrorKind::kRefused, "dom0 is always running"));
  Domain* domain = Find(ref);
  if (domain == nullptr) return done(MakeError(ErrorKind::kNotFound, "no such domain: " + ref));
  if (domain->config.klass == DomainClass::kDispVM && !domain->dynamic &&
      domain->config.template_name.empty())
    return done(MakeError(ErrorKind::kInternal, "disposable without a template"));
  if (domain->state == PowerState::kRunning)
    return done(MakeError(ErrorKind::kRefused, domain->config.name + " is already running"));
  domain->waiters.push_back(std::move(done));
  if (domain->state == PowerState::kStarting) return;
  domain->state = PowerState::kStarting;
  std::string name = domain->config.name;
  LOG_INFO("starting {}", name);
  Status status = PrepareStorage(*domain);
  if (status) {
    // As root, the domain's own root is told apart from its other users.
    std::optional<uid_t> root_uid;
    if (::geteuid() == 0) root_uid = IdsOf(*domain).ToHost(0);
    status = broker_.AddDomain(domain->id, name, paths_.BrokerSocket(name), root_uid);
  }
  if (status) status = LaunchSandbox(*domain);
  if (status && options_.start_daemons) status = LaunchDaemon(*domain);
  if (!status) {
    FinishStart(name, status);
    return;
  }
  if (!options_.start_daemons) {
    FinishStart(name, Ok());
    return;
  }
  domain->start_deadline = sys::Clock::now() + options_.start_timeout;
  auto timer = loop_.AddTimer(50ms, [this, name] { CheckReady(name); });
  if (!timer) {
    FinishStart(name, tl::unexpected(timer.error()));
    return;
  }
  domain->ready_timer = std::move(*timer);
}

Status Host::LaunchSandbox(Domain& domain) {
  const DomainConfig& config = domain.config;
  SandboxSpec spec;
  spec.bwrap = options_.bwrap;
  spec.name = config.name;
  spec.domain_id = domain.id;
  spec.user = config.default_user;
  std::string base = domain.disposable() ? domain.scratch_dir : paths_.domains_dir + "/" + config.name;
  spec.home_dir = base + "/home";
  spec.broker_socket = paths_.BrokerSocket(config.name);
  // The system and the template's services come from the TemplateVM at the
  // end of the chain (DispVM -> disposable template -> TemplateVM).
  const DomainConfig* app = &config;
  if (config.klass == DomainClass::kDispVM) {
    app = ConfigOf(config.template_name);
    if (app == nullptr) return MakeError(ErrorKind::kNotFound, "disposable template " + config.template_name + " is gone");
  }
  const DomainConfig* system = app;
  if (app->klass == DomainClass::kAppVM && !app->template_name.empty()) system = ConfigOf(app->template_name);
  if (system == nullptr) return MakeError(ErrorKind::kNotFound, "template of " + config.name + " is gone");
  spec.system_root = system->root;
  if (system != app) {
    spec.template_service_dir = system->service_dir;
    spec.template_rpc_config_dir = system->rpc_config_dir;
    spec.own_service_dir = config.service_dir.empty() ? app->service_dir : config.service_dir;
    spec.own_rpc_config_dir = config.rpc_config_dir.empty() ? app->rpc_config_dir : config.rpc_config_dir;
  } else {
    spec.template_service_dir = system->service_dir;
    spec.template_rpc_config_dir = system->rpc_config_dir;
  }
  for (const char* program : {kAgentName, "qrexec-client-vm", "qrexec-fork-server", kPamHelperName}) {
    std::string path = Program(program);
    if (::access(path.c_str(), X_OK) == 0) spec.programs.emplace_back(path, program);
  }
  if (const char* debug = std::getenv("QREXEC_DEBUG")) spec.extra_env.push_back(std::string("QREXEC_DEBUG=") + debug);
  spec.command = options_.sandbox_command;
  if (spec.command.empty()) {
    if (::access(Program(kAgentName).c_str(), X_OK) != 0)
      return MakeError(ErrorKind::kNotFound, "no " + std::string(kAgentName) + " in " + options_.bin_dir);
    spec.command = {std::string(kSandboxBinDir) + "/" + kAgentName, "--no-fork-server",
                    PamSessionArgument(spec), std::string("--agent-socket=") + kSandboxAgentSocket};
  }
  SpawnOptions spawn;
  SandboxHandles handles;  // closed once bwrap holds them
  if (auto status = ConfineSandbox(domain, spec, spawn, handles); !status) return status;
  spawn.argv = BuildBwrapArgs(spec);
  spawn.env = {"PATH=/usr/bin:/bin"};
  spawn.log_path = paths_.log_dir + "/" + config.name + ".log";
  auto child = Spawn(spawn);
  if (!child) return tl::unexpected(child.error());
  domain.sandbox = std::move(*child);
  std::string name = config.name;
  auto watch = loop_.WatchFd(domain.sandbox.pidfd(), event::Interest::Read(),
                             [this, name](event::Ready) { OnSandboxExit(name); });
  if (!watch) return tl::unexpected(watch.error());  // StopDomain ends the sandbox
  domain.sandbox_watch = std::move(*watch);
  return Ok();
}

std::vector<std::string> Host::DaemonEnvironment() const {
  std::string service_path = paths_.dom0_rpc_dir;
  if (!options_.config.dom0_service_dir.empty()) service_path += ":" + options_.config.dom0_service_dir;
  return MakeEnvironment({"VCHAN_", "NOTIFY_SOCKET"},
                         {"QREXEC_BROKER_SOCKET=" + paths_.BrokerSocket("dom0"), "VCHAN_DOMAIN=0",
                          "QREXEC_POLICY_SOCKET=" + paths_.policy_socket,
                          "QREXEC_QUBESD_SOCKET=" + paths_.qubesd_socket,
                          "QREXEC_CLIENT_PROGRAM=" + Program("qrexec-client"),
                          "QREXEC_SERVICE_PATH=" + service_path, "QREXEC_LOG_DIR=" + paths_.log_dir,
                          "QREXEC_STARTUP_TIMEOUT=" +
                              std::to_string(std::max<long long>(1, options_.start_timeout.count() / 1000))});
}

Status Host::LaunchDaemon(Domain& domain) {
  const DomainConfig& config = domain.config;
  std::string daemon = Program("qrexec-daemon");
  if (::access(daemon.c_str(), X_OK) != 0) return MakeError(ErrorKind::kNotFound, "no qrexec-daemon in " + options_.bin_dir);
  SpawnOptions spawn;
  spawn.argv = {daemon, "-D", "--socket-dir=" + paths_.daemon_socket_dir, "-u", config.uuid,
                "-p", paths_.policy_exec_wrapper, "--policy-socket=" + paths_.policy_socket,
                "--qubesd-socket=" + paths_.qubesd_socket, std::to_string(domain.id), config.name,
                config.default_user};
  spawn.env = DaemonEnvironment();
  spawn.log_path = paths_.log_dir + "/qrexec." + config.name + ".log";
  auto child = Spawn(spawn);
  if (!child) return tl::unexpected(child.error());
  domain.daemon = std::move(*child);
  std::string name = config.name;
  auto watch = loop_.WatchFd(domain.daemon.pidfd(), event::Interest::Read(),
                             [this, name](event::Ready) { OnDaemonExit(name); });
  if (!watch) return tl::unexpected(watch.error());  // StopDomain ends the daemon
  domain.daemon_watch = std::move(*watch);
  return Ok();
}

void Host::CheckReady(const std::string& name) {
  Domain* domain = Find(name);
  if (domain == nullptr || domain->state != PowerState::kStarting) return;
  if (SocketAnswers(paths_.DaemonSocket(name))) return FinishStart(name, Ok());
  if (sys::Clock::now() >= domain->start_deadline)
    return FinishStart(name, MakeError(ErrorKind::kTimedOut, name + ": the agent did not connect in time"));
  if (auto armed = domain->ready_timer.Arm(50ms); !armed) FinishStart(name, armed);
}

void Host::FinishStart(const std::string& name, Status status) {
  Domain* domain = Find(name);
  if (domain == nullptr) return;
  domain->ready_timer.Reset();
  auto waiters = std::move(domain->waiters);
  domain->waiters.clear();
  if (status) {
    domain->state = PowerState::kRunning;
    LOG_INFO("{} is running", name);
  } else {
    LOG_ERROR("starting {} failed: {}", name, status.error().ToString());
    StopDomain(name, "start failed");
  }
  for (auto& waiter : waiters) waiter(status);
}

void Host::OnSandboxExit(const std::string& name) {
  Domain* domain = Find(name);
  if (domain == nullptr) return;
  LOG_INFO("the sandbox of {} ended", name);
  if (domain->state == PowerState::kStarting) {
    FinishStart(name, MakeError(ErrorKind::kInternal, "the sandbox of " + name + " ended while starting"));
    return;
  }
  StopDomain(name, "sandbox ended");
}

Status Host::Kill(const std::string& ref) {
  if (names::RefersToDom0(ref)) return MakeError(ErrorKind::kRefused, "cannot kill dom0");
  Domain* domain = Find(ref);
  if (domain == nullptr) return MakeError(ErrorKind::kNotFound, "no such domain: " + ref);
  if (domain->state == PowerState::kHalted) {
    bool dynamic = domain->dynamic;
    if (dynamic) StopDomain(domain->config.name, "killed");  // destroys it
    return dynamic ? Ok() : MakeError(ErrorKind::kRefused, domain->config.name + " is not running");
  }
  std::string name = domain->config.name;
  if (domain->state == PowerState::kStarting) {
    FinishStart(name, MakeError(ErrorKind::kRefused, name + " was killed while starting"));
    return Ok();
  }
  StopDomain(name, "killed");
  return Ok();
}

void Host::StopDomain(const std::string& name, const std::string& why) {
  Domain* domain = Find(name);
  if (domain == nullptr) return;
  domain->ready_timer.Reset();
  domain->sandbox_watch.Reset();
  // The daemon first, while its agent still answers: it exits at once.
  if (domain->daemon.valid()) domain->daemon.Signal(SIGTERM);
  if (domain->sandbox.valid()) {
    // SIGKILL to the PID namespace's init ends every process in it; the
    // kernel reaps them all before the outer bwrap sees its child exit.
    // So kill that init and let bwrap reap it; kill bwrap itself only if
    // that does not end it.
    auto inner = ChildrenOf(domain->sandbox.pid());
    for (pid_t pid : inner) ::kill(pid, SIGKILL);
    if (inner.empty() || !domain->sandbox.Wait(sys::Deadline::After(5s))) {
      domain->sandbox.Signal(SIGKILL);
      if (!domain->sandbox.Wait(sys::Deadline::After(10s))) LOG_ERROR("the sandbox of {} did not end", name);
    }
  }
  domain->cgroup.Remove();  // whatever is left of the domain's processes
  domain->daemon_watch.Reset();
  if (domain->daemon.valid()) domain->daemon.Stop(2s);
  broker_.RemoveDomain(domain->id);
  std::error_code ec;
  for (const auto& link : {paths_.DaemonSocket(name), paths_.DaemonSocket(std::to_string(domain->id)),
                           paths_.DaemonSocket("uuid:" + domain->config.uuid)})
    fs::remove(link, ec);
  if (!domain->scratch_dir.empty()) {
    UnmountHome(domain->scratch_dir + "/home");
    fs::remove_all(domain->scratch_dir, ec);
    if (ec) LOG_ERROR("cannot remove {}: {}", domain->scratch_dir, ec.message());
    domain->scratch_dir.clear();
  }
  if (domain->state != PowerState::kHalted) LOG_INFO("{} stopped ({})", name, why);
  domain->state = PowerState::kHalted;
  auto waiters = std::move(domain->waiters);
  domain->waiters.clear();
  std::string stopped = domain->config.name;  // `name` may be that string, erased below
  if (domain->dynamic) {
    LOG_INFO("disposable {} destroyed", name);
    for (auto it = domains_.begin(); it != domains_.end(); ++it) {
      if (it->get() == domain) {
        domains_.erase(it);
        break;
      }
    }
  }
  for (auto& waiter : waiters) waiter(MakeError(ErrorKind::kInternal, stopped + " stopped: " + why));
  DestroyDisposablesMadeFor(stopped);
}

// The daemons' fallback policy program (used when the policy daemon does not
// answer): qrexec-policy-exec with this host's policy directories and qubesd
// socket. The daemon runs it as PROGRAM -- SOURCE TARGET SERVICE; the
// arguments pass through "$@" untouched.
Status Host::WritePolicyExecWrapper() {
  auto quote = [](const std::string& word) {
    std::string out = "'";
    for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
  };
  std::string script = "#!/bin/sh\nexec " + quote(Program("qrexec-policy-exec"));
  for (const auto& dir : options_.config.policy_dirs) script += " --path " + quote(dir);
  script += " --qubesd-socket " + quote(paths_.qubesd_socket) + " --agent-socket " +
            quote(paths_.policy_agent_socket) + " --direct-agent --qrexec-client " +
            quote(Program("qrexec-client")) + " \"$@\"\n";
  if (auto status = WriteTextFile(paths_.policy_exec_wrapper, script); !status) return status;
  if (::chmod(paths_.policy_exec_wrapper.c_str(), 0700) < 0) return ErrnoError("chmod " + paths_.policy_exec_wrapper);
  return Ok();
}

void Host::StartPolicyAgent() {
  const std::string& mode = options_.config.policy_agent;
  if (mode == "none") return;
  std::string program = Program("qrexec-policy-agent");
  if (::access(program.c_str(), X_OK) != 0) {
    LOG_WARNING("no qrexec-policy-agent in {}: 'ask' rules will be denied", options_.bin_dir);
    return;
  }
  SpawnOptions spawn;
  spawn.argv = {program, "--socket-path", paths_.policy_agent_socket};
  if (mode != "prompt") spawn.argv.push_back("--" + mode);
  spawn.env = MakeEnvironment({}, {});
  spawn.inherit_stdin = mode == "prompt";
  spawn.new_session = mode != "prompt";
  if (mode != "prompt") spawn.log_path = paths_.log_dir + "/policy-agent.log";
  auto child = Spawn(spawn);
  if (!child) {
    LOG_ERROR("cannot start the policy agent: {}", child.error().ToString());
    return;
  }
  policy_agent_ = std::move(*child);
  Supervise(policy_agent_, policy_agent_watch_, "qrexec-policy-agent", &Host::StartPolicyAgent);
}

void Host::Supervise(Child& child, event::FdWatch& watch, const std::string& what,
                     void (Host::*restart)()) {
  constexpr int kMaxHelperRestarts = 5;
  auto watched = loop_.WatchFd(
      child.pidfd(), event::Interest::Read(), [this, &child, &watch, what, restart](event::Ready) {
        watch.Reset();
        auto status = child.TryReap();
        LOG_ERROR("{} exited ({})", what, status ? ExitCodeOf(*status) : -1);
        if (shut_down_ || ++helper_restarts_ > kMaxHelperRestarts) return;
        auto timer = loop_.AddTimer(std::chrono::seconds(1), [this, restart] {
          if (!shut_down_) (this->*restart)();
        });
        if (!timer) {
          LOG_ERROR("cannot restart {}: {}", what, timer.error().ToString());
          return;
        }
        helper_timers_.push_back(std::move(*timer));
      });
  if (!watched) {
    LOG_ERROR("cannot watch {}: {}", what, watched.error().ToString());
    return;
  }
  watch = std::move(*watched);
}

void Host::StartPolicyDaemon() {
  std::string program = Program("qrexec-policy-daemon");
  if (::access(program.c_str(), X_OK) != 0) {
    LOG_WARNING("no qrexec-policy-daemon in {}: daemons will use qrexec-policy-exec", options_.bin_dir);
    return;
  }
  SpawnOptions spawn;
  spawn.argv = {program};
  for (const auto& dir : options_.config.policy_dirs) {
    spawn.argv.push_back("--policy-path");
    spawn.argv.push_back(dir);
  }
  spawn.argv.insert(spawn.argv.end(),
                    {"--socket-path", paths_.policy_socket, "--eval-socket-path",
                     paths_.dom0_rpc_dir + "/policy.EvalSimple", "--gui-socket-path",
                     paths_.dom0_rpc_dir + "/policy.EvalGUI", "--qubesd-socket", paths_.qubesd_socket,
                     "--agent-socket", paths_.policy_agent_socket, "--direct-agent", "--qrexec-client",
                     Program("qrexec-client")});
  spawn.env = DaemonEnvironment();
  spawn.log_path = paths_.log_dir + "/policy-daemon.log";
  auto child = Spawn(spawn);
  if (!child) {
    LOG_ERROR("cannot start the policy daemon: {}", child.error().ToString());
    return;
  }
  policy_daemon_ = std::move(*child);
  Supervise(policy_daemon_, policy_daemon_watch_, "qrexec-policy-daemon", &Host::StartPolicyDaemon);
}

}  // namespace qrexec::host
