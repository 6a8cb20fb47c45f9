#include "commands.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>
#include <vector>

#include <fmt/core.h>

#include "admin/client.h"
#include "base/log.h"
#include "event/loop.h"
#include "host/config.h"
#include "host/host.h"
#include "host/sandbox.h"

namespace qrexec::host_cli {
namespace {

using namespace std::chrono_literals;

constexpr const char* kBwrapCandidates[] = {"/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"};

int Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "qrexec-host: %s\n", message.c_str());
  return code;
}

// The state directory of the host the CLI talks to.
Result<std::string> StateDir(const GlobalOptions& global) {
  if (!global.state_dir.empty()) return global.state_dir;
  auto config = host::LoadConfig(global.config_path);
  if (!config) return tl::unexpected(config.error());
  return config->state_dir;
}

struct Session {
  host::HostPaths paths;
};

Result<Session> Connect(const GlobalOptions& global) {
  auto state = StateDir(global);
  if (!state) return tl::unexpected(state.error());
  Session session{host::HostPaths(*state)};
  if (::access(session.paths.control_socket.c_str(), F_OK) != 0)
    return MakeError(ErrorKind::kNotFound,
                     fmt::format("no host is running (no {}); start one with 'qrexec-host up'",
                                 session.paths.control_socket));
  return session;
}

Result<std::string> Control(const Session& session, const std::string& method, const std::string& dest) {
  return admin::CallOk(session.paths.control_socket, method, dest, {}, sys::Deadline::After(120s));
}

// Starts `name` unless it runs already. Returns an error message or "".
std::string EnsureRunning(const Session& session, const std::string& name) {
  auto started = Control(session, "admin.vm.Start", name);
  if (started) return {};
  if (started.error().message.rfind(std::string(admin::kNotHaltedError), 0) == 0) return {};
  if (started.error().kind == ErrorKind::kNotFound) return "unknown domain '" + name + "'";
  return "cannot start " + name + ": " + started.error().message;
}

std::map<std::string, std::string> ParseKeyValues(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

// Replaces this process with qrexec-client -d DOMAIN USER:COMMAND.
int ExecClient(const Session& session, const std::string& domain, const std::string& command) {
  auto paths = Control(session, "host.Paths", "dom0");
  if (!paths) return Fail("cannot ask the host for its paths: " + paths.error().message);
  auto values = ParseKeyValues(*paths);
  std::string client = values["bin_dir"] + "/qrexec-client";
  if (::access(client.c_str(), X_OK) != 0) return Fail("no qrexec-client at " + client);
  ::setenv("QREXEC_BROKER_SOCKET", values["broker_socket"].c_str(), 1);
  ::setenv("VCHAN_DOMAIN", "0", 1);
  std::string socket_dir = "--socket-dir=" + values["socket_dir"];
  std::vector<const char*> argv = {client.c_str(), socket_dir.c_str(), "-d", domain.c_str(), command.c_str(), nullptr};
  ::execv(client.c_str(), const_cast<char* const*>(argv.data()));
  return Fail("cannot run " + client + ": " + std::strerror(errno), 125);
}

std::string FindBwrap() {
  for (const char* path : kBwrapCandidates)
    if (::access(path, X_OK) == 0) return path;
  return {};
}

}  // namespace

std::string ShellQuote(const std::string& word) {
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

int CmdUp(const GlobalOptions& global, const std::vector<std::string>& args) {
  bool no_daemons = false;
  for (const auto& arg : args) {
    if (arg == "--no-daemons") {
      no_daemons = true;
    } else {
      return Fail("up: unexpected argument '" + arg + "'", 2);
    }
  }
  auto config = host::LoadConfig(global.config_path);
  if (!config) return Fail(config.error().message);
  if (!global.state_dir.empty()) config->state_dir = global.state_dir;
  if (::geteuid() != 0)
    return Fail("up needs root: domains are bubblewrap sandboxes with their own PID, mount, IPC, UTS and "
                "network namespaces");
  std::string bwrap = FindBwrap();
  if (bwrap.empty()) return Fail("bubblewrap (bwrap) is not installed; on Debian: apt-get install bubblewrap");

  ::signal(SIGPIPE, SIG_IGN);
  event::Loop loop;
  // Created before the host spawns anything, so the stop signals are blocked
  // (and delivered through the loop) from the start.
  std::vector<event::SignalWatch> stop_watches;
  for (int signo : {SIGINT, SIGTERM, SIGHUP}) {
    auto watch = loop.WatchSignal(signo, [&loop](int got) {
      LOG_INFO("signal {}: shutting down", got);
      loop.Quit();
    });
    if (!watch) return Fail("signalfd: " + watch.error().ToString());
    stop_watches.push_back(std::move(*watch));
  }

  host::HostOptions options;
  options.bin_dir = global.bin_dir;
  if (!config->bin_dir.empty()) options.bin_dir = config->bin_dir;
  options.config = std::move(*config);
  options.bwrap = bwrap;
  options.start_daemons = !no_daemons;
  host::Host host(loop, std::move(options));
  if (auto status = host.Init(); !status) {
    host.Shutdown();
    return Fail("cannot start the host: " + status.error().ToString());
  }
  LOG_INFO("host is up (state {}, control socket {})", host.paths().state_dir, host.paths().control_socket);
  if (auto status = loop.Run(); !status) LOG_ERROR("{}", status.error().ToString());
  host.Shutdown();
  LOG_INFO("host is down");
  return 0;
}

int CmdLs(const GlobalOptions& global, const std::vector<std::string>& args) {
  if (!args.empty()) return Fail("ls takes no arguments", 2);
  auto session = Connect(global);
  if (!session) return Fail(session.error().message);
  auto list = Control(*session, "host.List", "dom0");
  if (!list) return Fail(list.error().message);
  std::printf("%-20s %-13s %-10s %s\n", "NAME", "CLASS", "STATE", "TEMPLATE");
  std::istringstream in(*list);
  std::string name, klass, state, tmpl, id, uuid;
  while (in >> name >> klass >> state >> tmpl >> id >> uuid)
    std::printf("%-20s %-13s %-10s %s\n", name.c_str(), klass.c_str(), state.c_str(), tmpl.c_str());
  return 0;
}

int CmdStart(const GlobalOptions& global, const std::vector<std::string>& args) {
  if (args.size() != 1) return Fail("usage: qrexec-host start NAME", 2);
  auto session = Connect(global);
  if (!session) return Fail(session.error().message);
  auto started = Control(*session, "admin.vm.Start", args[0]);
  if (started) return 0;
  if (started.error().kind == ErrorKind::kNotFound) return Fail("unknown domain '" + args[0] + "'");
  if (started.error().message.rfind(std::string(admin::kNotHaltedError), 0) == 0) {
    std::fprintf(stderr, "qrexec-host: %s is already running\n", args[0].c_str());
    return 0;
  }
  return Fail("cannot start " + args[0] + ": " + started.error().message);
}

int CmdKill(const GlobalOptions& global, const std::vector<std::string>& args) {
  if (args.size() != 1) return Fail("usage: qrexec-host kill NAME", 2);
  auto session = Connect(global);
  if (!session) return Fail(session.error().message);
  auto killed = Control(*session, "admin.vm.Kill", args[0]);
  if (killed) return 0;
  if (killed.error().kind == ErrorKind::kNotFound) return Fail("unknown domain '" + args[0] + "'");
  if (killed.error().message.rfind(std::string(admin::kNotStartedError), 0) == 0) {
    std::fprintf(stderr, "qrexec-host: %s is not running\n", args[0].c_str());
    return 0;
  }
  return Fail("cannot kill " + args[0] + ": " + killed.error().message);
}

int CmdRun(const GlobalOptions& global, const std::vector<std::string>& args) {
  constexpr const char* kRunUsage = "usage: qrexec-host run NAME [-u USER] [--] CMD...";
  if (args.empty()) return Fail(kRunUsage, 2);
  std::string name = args[0];
  std::string user = "DEFAULT";
  size_t i = 1;
  if (i + 1 < args.size() && args[i] == "-u") {
    user = args[i + 1];
    i += 2;
  }
  if (i < args.size() && args[i] == "--") ++i;
  if (i >= args.size()) return Fail(kRunUsage, 2);
  if (user.empty() || user.find(':') != std::string::npos) return Fail("bad user name '" + user + "'", 2);
  // Like qvm-run: the words form one command line for the domain's shell.
  std::string command;
  for (; i < args.size(); ++i) command += (command.empty() ? "" : " ") + args[i];
  auto session = Connect(global);
  if (!session) return Fail(session.error().message);
  if (auto error = EnsureRunning(*session, name); !error.empty()) return Fail(error);
  return ExecClient(*session, name, user + ":" + command);
}

int CmdCall(const GlobalOptions& global, const std::vector<std::string>& args) {
  constexpr const char* kCallUsage = "usage: qrexec-host call SOURCE TARGET SERVICE[+ARG] [-- LOCAL_PROGRAM [ARGS...]]";
  if (args.size() < 3) return Fail(kCallUsage, 2);
  std::vector<std::string> local;
  if (args.size() > 3) {
    if (args[3] != "--" || args.size() == 4) return Fail(kCallUsage, 2);
    local.assign(args.begin() + 4, args.end());
  }
  // qrexec-client-vm inside SOURCE, started by dom0 as a plain command; the
  // words are quoted so that the domain's shell passes them unchanged.
  std::string command = std::string(host::kSandboxBinDir) + "/qrexec-client-vm " + ShellQuote(args[1]) + " " +
                        ShellQuote(args[2]);
  for (const auto& word : local) command += " " + ShellQuote(word);
  auto session = Connect(global);
  if (!session) return Fail(session.error().message);
  if (auto error = EnsureRunning(*session, args[0]); !error.empty()) return Fail(error);
  return ExecClient(*session, args[0], "root:" + command);
}

}  // namespace qrexec::host_cli
