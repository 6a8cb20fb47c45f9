// Call latency, throughput and concurrency of whole qrexec calls through our
// real binaries (MiniQubes on the socket transport), each measured beside
// its baseline in the same run. Usage: call_bench --json FILE [--quick] [--only CASE]
#include <signal.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "bench_util.h"
#include "mini_qubes.h"

extern char** environ;

namespace qrexec::bench {
namespace {

using harness::DomainSpec;
using harness::MiniQubes;
using harness::SpawnOptions;

struct Options {
  std::string json = "bench/results.call.json";
  int calls = 2000;
  long long stream_bytes = 4LL << 30;
  int concurrent_calls = 1000;
  int mesh_domains = 100;
  std::string only;  // --only latency|throughput|stages|concurrency|mesh|pam: run one case
  bool Runs(const std::string& name) const { return only.empty() || only == name; }
};

std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::vector<std::string> MergedEnv(const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : extra) env[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

struct Command {
  std::vector<std::string> argv;
  std::vector<std::string> env;
};

Command ToCommand(const SpawnOptions& options) { return {options.argv, MergedEnv(options.env)}; }

std::string ShellQuote(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& word : argv) out += "'" + word + "' ";
  return out;
}

std::vector<double> TimeSequential(const Command& command, int count, int* failures) {
  std::vector<double> ms;
  ms.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    auto start = Clock::now();
    if (SpawnAndWait(command.argv, command.env) != 0) ++*failures;
    ms.push_back(MsSince(start));
  }
  return ms;
}

void AddLatency(Report& report, const std::string& prefix, const std::vector<double>& ms) {
  report.Add(prefix + ".p50", Percentile(ms, 50), "ms");
  report.Add(prefix + ".p90", Percentile(ms, 90), "ms");
  report.Add(prefix + ".p99", Percentile(ms, 99), "ms");
}

constexpr const char* kCallPolicy =
    "bench.True * work vault allow\nbench.Sink * work vault allow\n"
    "bench.Source * work vault allow\n";

// work -> vault with the bench.* services; nullptr (reported) if it does not start.
std::unique_ptr<MiniQubes> StartCallQubes(const std::vector<std::string>& agent_args,
                                          const std::string& policy = kCallPolicy) {
  auto qubes = std::make_unique<MiniQubes>(
      std::vector<DomainSpec>{{.name = "work", .domid = 1}, {.name = "vault", .domid = 2}}, policy);
  for (const auto& arg : agent_args) qubes->AddAgentArg(arg);
  (void)::symlink("/bin/true", (qubes->ServiceDir("vault") + "/bench.True").c_str());
  harness::WriteScript(qubes->ServiceDir("vault") + "/bench.Sink", "exec cat > /dev/null\n");
  harness::WriteScript(qubes->ServiceDir("vault") + "/bench.Source", "exec head -c \"$1\" /dev/zero\n");
  if (!qubes->Start()) {
    fmt::print(stderr, "cannot start MiniQubes: {}\n", qubes->error());
    return nullptr;
  }
  return qubes;
}

// The agents of `qubes` reuse warm call handlers (the default); those of
// `fork_per_call` fork one per call, as Qubes' agent does.
void BenchLatency(Report& report, MiniQubes& qubes, MiniQubes& fork_per_call, const Options& options) {
  fmt::print("\nCall latency ({} sequential calls of a service that exits at once)\n", options.calls);
  int failures = 0;
  auto floor = TimeSequential({{"/bin/true"}, MergedEnv({})}, options.calls, &failures);
  AddLatency(report, "latency.floor.spawn", floor);
  int call_failures = 0;
  auto calls = TimeSequential(ToCommand(qubes.ClientVm("work", {"vault", "bench.True"})), options.calls,
                              &call_failures);
  AddLatency(report, "latency.vm_to_vm.socket", calls);
  double total_s = 0;
  for (double v : calls) total_s += v / 1000;
  report.Add("latency.vm_to_vm.socket.calls_per_s", calls.size() / total_s, "1/s");
  report.Add("latency.vm_to_vm.socket.failures", call_failures, "count");
  double ratio = Percentile(calls, 50) / Percentile(floor, 50);
  report.Note(fmt::format("vm_to_vm p50 / spawn floor p50 = {:.2f}x (goal: p50 < 1 ms and <= 3x)", ratio));
  int forked_failures = 0;
  auto forked = TimeSequential(ToCommand(fork_per_call.ClientVm("work", {"vault", "bench.True"})),
                               options.calls, &forked_failures);
  AddLatency(report, "latency.vm_to_vm.socket.fork_per_call", forked);
  report.Add("latency.vm_to_vm.socket.fork_per_call.failures", forked_failures, "count");
  report.Note(fmt::format("with a handler forked per call (--fork-per-call): p50 = {:.2f}x the floor",
                          Percentile(forked, 50) / Percentile(floor, 50)));
}

// Whole VM-to-VM calls of bench.True run as user nobody (policy user=), the
// agent running as root: direct exec (--no-pam-session) beside the PAM
// session helper with the shipped stack (dist/pam/qrexec, docs/pam.md).
// Root only: only root switches users.
void BenchPam(Report& report, const Options& options) {
  std::string helper = std::string(QREXEC_BIN_DIR) + "/qrexec-pam-session";
  if (::geteuid() != 0 || ::access(helper.c_str(), X_OK) != 0) {
    fmt::print("\nPAM sessions: skipped (needs root and qrexec-pam-session)\n");
    return;
  }
  char tmpl[] = "/tmp/qrx-call-bench-pam-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return;
  std::string confdir = tmpl;
  harness::WriteFile(confdir + "/qrexec", harness::ReadFile(std::string(QREXEC_SOURCE_DIR) + "/dist/pam/qrexec"));
  const std::string policy = "bench.True * work vault allow user=nobody\n";
  auto direct = StartCallQubes({"--no-pam-session"}, policy);
  auto pam = StartCallQubes({"--pam-session", "--pam-session-helper=" + helper, "--pam-confdir=" + confdir},
                            policy);
  if (!direct || !pam) {
    std::filesystem::remove_all(confdir);
    return;
  }
  // nobody must reach the service's symlink to /bin/true.
  for (auto* qubes : {direct.get(), pam.get()}) ::chmod(qubes->root().c_str(), 0755);
  int calls = std::max(options.calls / 10, 50);
  fmt::print("\nCalls run as another user ({} sequential calls each)\n", calls);
  int direct_failures = 0, pam_failures = 0;
  auto direct_ms = TimeSequential(ToCommand(direct->ClientVm("work", {"vault", "bench.True"})), calls,
                                  &direct_failures);
  auto pam_ms = TimeSequential(ToCommand(pam->ClientVm("work", {"vault", "bench.True"})), calls,
                               &pam_failures);
  AddLatency(report, "latency.other_user.direct", direct_ms);
  AddLatency(report, "latency.other_user.pam", pam_ms);
  report.Add("latency.other_user.direct.failures", direct_failures, "count");
  report.Add("latency.other_user.pam.failures", pam_failures, "count");
  report.Note(fmt::format("call as another user through a PAM session: p50 = {:.2f}x direct exec",
                          Percentile(pam_ms, 50) / Percentile(direct_ms, 50)));
  std::filesystem::remove_all(confdir);
}

// Runs a shell pipeline and returns MB/s for `bytes` moved.
double PipelineMBps(const std::string& pipeline, long long bytes, const std::vector<std::string>& env) {
  auto start = Clock::now();
  int status = SpawnAndWait({"/bin/bash", "-c", "set -o pipefail; " + pipeline}, env);
  double seconds = MsSince(start) / 1000;
  if (status != 0) fmt::print("  (pipeline failed with {}: {})\n", status, pipeline);
  return static_cast<double>(bytes) / 1e6 / seconds;
}

double SocketpairMBps(long long bytes) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0) return 0;
  auto start = Clock::now();
  pid_t reader = fork();
  if (reader == 0) {
    close(fds[0]);
    static char buf[65536];
    while (read(fds[1], buf, sizeof buf) > 0) {
    }
    _exit(0);
  }
  close(fds[1]);
  static char chunk[65536];
  long long left = bytes;
  while (left > 0) {
    ssize_t n = write(fds[0], chunk, static_cast<size_t>(std::min<long long>(left, sizeof chunk)));
    if (n <= 0) break;
    left -= n;
  }
  close(fds[0]);
  waitpid(reader, nullptr, 0);
  return static_cast<double>(bytes) / 1e6 / (MsSince(start) / 1000);
}

void BenchThroughput(Report& report, MiniQubes& qubes, const Options& options) {
  long long n = options.stream_bytes;
  fmt::print("\nThroughput ({} bytes per stream)\n", n);
  auto env = MergedEnv({});
  std::string producer = fmt::format("head -c {} /dev/zero", n);
  double pipe = PipelineMBps(producer + " | cat > /dev/null", n, env);
  report.Add("throughput.pipe", pipe, "MB/s");
  report.Add("throughput.socketpair", SocketpairMBps(n), "MB/s");
  auto to_service = qubes.ClientVm("work", {"vault", "bench.Sink"});
  double up = PipelineMBps(producer + " | " + ShellQuote(to_service.argv), n, MergedEnv(to_service.env));
  report.Add("throughput.caller_to_service", up, "MB/s");
  auto from_service = qubes.ClientVm("work", {"vault", fmt::format("bench.Source+{}", n)});
  double down = PipelineMBps(ShellQuote(from_service.argv) + " | cat > /dev/null", n,
                             MergedEnv(from_service.env));
  report.Add("throughput.service_to_caller", down, "MB/s");
  report.Note(fmt::format("caller->service = {:.0f}% of the pipe, service->caller = {:.0f}% (goal >= 50%)",
                          100 * up / pipe, 100 * down / pipe));
}

struct Dom0Usage {
  long rss_kib = 0;
  int fds = 0;
};

Dom0Usage MeasureDom0(MiniQubes& qubes) {
  Dom0Usage usage;
  for (pid_t pid : qubes.Dom0Pids()) {
    usage.rss_kib += RssKiB(pid);
    usage.fds += OpenFds(pid);
  }
  return usage;
}

// Starts every command at once; returns per-call durations and failures.
std::vector<double> RunAllAtOnce(const std::vector<Command>& commands, int* failures, Dom0Usage* peak,
                                 MiniQubes& qubes) {
  std::map<pid_t, Clock::time_point> started;
  for (const auto& command : commands) {
    auto start = Clock::now();
    pid_t pid = SpawnLight(command.argv, command.env);
    if (pid > 0) started[pid] = start;
    else ++*failures;
  }
  std::vector<double> ms;
  // dom0 is sampled at most every 10 ms: reading /proc for every reaped call
  // would make the benchmark itself a noticeable load on the 2 cores.
  Clock::time_point last_sample{};
  while (!started.empty()) {
    if (Clock::now() - last_sample >= std::chrono::milliseconds(10)) {
      last_sample = Clock::now();
      auto now = MeasureDom0(qubes);
      peak->rss_kib = std::max(peak->rss_kib, now.rss_kib);
      peak->fds = std::max(peak->fds, now.fds);
    }
    int status = 0;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) break;
    auto it = started.find(pid);
    if (it == started.end()) continue;
    ms.push_back(MsSince(it->second));
    if (DecodeStatus(status) != 0) ++*failures;
    started.erase(it);
  }
  return ms;
}

void BenchConcurrency(Report& report, const Options& options) {
  fmt::print("\nConcurrency ({} calls at once from one domain to 10 targets, twice)\n", options.concurrent_calls);
  std::vector<DomainSpec> domains = {{.name = "work", .domid = 1}};
  for (int i = 0; i < 10; ++i) domains.push_back({.name = fmt::format("t{}", i), .domid = 10 + i});
  MiniQubes qubes(domains, "bench.True * @anyvm @anyvm allow\n");
  for (int i = 0; i < 10; ++i)
    (void)::symlink("/bin/true", (qubes.ServiceDir(fmt::format("t{}", i)) + "/bench.True").c_str());
  if (!qubes.Start()) {
    fmt::print("  cannot start: {}\n", qubes.error());
    return;
  }
  auto idle = MeasureDom0(qubes);
  std::map<pid_t, std::pair<long, long>> idle_rss;  // RssAnon, RssFile
  for (pid_t pid : qubes.Dom0Pids()) idle_rss[pid] = {RssKiB(pid, "RssAnon"), RssKiB(pid, "RssFile")};
  std::vector<Command> commands;
  for (int i = 0; i < options.concurrent_calls; ++i)
    commands.push_back(ToCommand(qubes.ClientVm("work", {fmt::format("t{}", i % 10), "bench.True"})));
  int failures = 0;
  Dom0Usage peak = idle;
  // Two bursts: the first shows whether dom0 returns to idle, the second
  // that whatever stays after the first (allocator high-water marks) does not
  // grow again.
  auto ms = RunAllAtOnce(commands, &failures, &peak, qubes);
  usleep(500 * 1000);
  auto after = MeasureDom0(qubes);
  auto second = RunAllAtOnce(commands, &failures, &peak, qubes);
  ms.insert(ms.end(), second.begin(), second.end());
  usleep(500 * 1000);
  auto after_second = MeasureDom0(qubes);
  for (auto [pid, before] : idle_rss) {
    long anon = RssKiB(pid, "RssAnon"), file = RssKiB(pid, "RssFile");
    if (anon + file - before.first - before.second > 64)
      report.Note(fmt::format("dom0 pid {} ({}) after two bursts: RssAnon {} -> {} KiB, RssFile {} -> {} KiB",
                              pid, Trim(harness::ReadFile(fmt::format("/proc/{}/comm", pid))),
                              before.first, anon, before.second, file));
  }
  report.Add("concurrency.one_domain.failures", failures, "count");
  report.Add("concurrency.one_domain.max_ms", ms.empty() ? 0 : Percentile(ms, 100), "ms");
  report.Add("concurrency.one_domain.p50_ms", Percentile(ms, 50), "ms");
  report.Add("concurrency.dom0.rss_idle", idle.rss_kib / 1024.0, "MiB");
  report.Add("concurrency.dom0.rss_peak", peak.rss_kib / 1024.0, "MiB");
  report.Add("concurrency.dom0.rss_after", after.rss_kib / 1024.0, "MiB");
  report.Add("concurrency.dom0.fds_idle", idle.fds, "count");
  report.Add("concurrency.dom0.fds_peak", peak.fds, "count");
  report.Add("concurrency.dom0.fds_after", after.fds, "count");
  report.Add("concurrency.dom0.rss_after_second_burst", after_second.rss_kib / 1024.0, "MiB");
  report.Add("concurrency.dom0.fds_after_second_burst", after_second.fds, "count");
}

void BenchMesh(Report& report, const Options& options) {
  int n = options.mesh_domains;
  fmt::print("\nConcurrency ({} domains each calling the next one, all at once)\n", n);
  std::vector<DomainSpec> domains;
  for (int i = 0; i < n; ++i) domains.push_back({.name = fmt::format("m{}", i), .domid = 1 + i});
  MiniQubes qubes(domains, "bench.True * @anyvm @anyvm allow\n");
  for (int i = 0; i < n; ++i)
    (void)::symlink("/bin/true", (qubes.ServiceDir(fmt::format("m{}", i)) + "/bench.True").c_str());
  if (!qubes.Start()) {
    fmt::print("  cannot start: {}\n", qubes.error());
    return;
  }
  std::vector<Command> commands;
  for (int i = 0; i < n; ++i)
    commands.push_back(ToCommand(qubes.ClientVm(fmt::format("m{}", i), {fmt::format("m{}", (i + 1) % n), "bench.True"})));
  int failures = 0;
  Dom0Usage peak;
  auto ms = RunAllAtOnce(commands, &failures, &peak, qubes);
  report.Add("concurrency.mesh.failures", failures, "count");
  report.Add("concurrency.mesh.max_ms", ms.empty() ? 0 : Percentile(ms, 100), "ms");
}

// Per-stage timing of sequential calls, from the call-timing debug lines
// (LOG_CALL_STAGE, CLOCK_MONOTONIC microseconds) of the caller's daemon and
// the target's agent, on one time axis with the benchmark's own clock
// (steady_clock is CLOCK_MONOTONIC) around each qrexec-client-vm:
//   trigger   client started -> its daemon has the trigger (exec of the
//             client, agent relay)
//   policy    -> policy daemon's answer
//   connect   -> the target agent has the request (target daemon, its agent)
//   vchan     -> data vchan joined (handler fork, wait for the caller's end)
//   spawn     -> service exec'd (vfork+exec)
//   exit_code -> service ran, its EOFs and exit code were sent
//   finish    -> the client exited (exit code received, process exit, reap)
// A trivial service writes no data, so "first byte" has no separate stage:
// the first message after the vchan is its stdout EOF, inside exit_code.
std::vector<long long> StageTimes(const std::string& log_text, const std::string& stage) {
  std::vector<long long> out;
  std::istringstream log(log_text);
  std::string line;
  std::string wanted = " stage=" + stage + " ";
  while (std::getline(log, line)) {
    auto mono = line.find("mono_us=");
    if (line.find("call-timing") == std::string::npos || line.find(wanted) == std::string::npos ||
        mono == std::string::npos)
      continue;
    out.push_back(std::stoll(line.substr(mono + 8)));
  }
  return out;
}

void BenchStages(Report& report, const Options& options) {
  int calls = options.calls / 4;
  fmt::print("\nPer-stage timing ({} calls, from the daemon's and agent's debug logs)\n", calls);
  MiniQubes qubes({{.name = "work", .domid = 1}, {.name = "vault", .domid = 2}}, "bench.True * work vault allow\n");
  (void)::symlink("/bin/true", (qubes.ServiceDir("vault") + "/bench.True").c_str());
  qubes.SetDaemonEnv("QREXEC_DEBUG", "1");
  qubes.SetAgentEnv("QREXEC_DEBUG", "1");
  if (!qubes.Start()) {
    fmt::print("  cannot start: {}\n", qubes.error());
    return;
  }
  Command command = ToCommand(qubes.ClientVm("work", {"vault", "bench.True"}));
  std::vector<long long> started, ended;
  for (int i = 0; i < calls; ++i) {
    auto us = [] {
      return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch()).count();
    };
    started.push_back(us());
    (void)SpawnAndWait(command.argv, command.env);
    ended.push_back(us());
  }
  // The handler logs exit_code_sent after the client may already have
  // exited: give the last lines a moment to reach the log.
  std::vector<std::pair<std::string, std::vector<long long>>> points;
  auto deadline = Clock::now() + std::chrono::seconds(5);
  for (;;) {
    std::string daemon_log = harness::ReadFile(qubes.root() + "/logs/daemon.work.log");
    std::string agent_log = harness::ReadFile(qubes.root() + "/logs/agent.vault.log");
    points = {{"trigger", StageTimes(daemon_log, "trigger_received")},
              {"policy", StageTimes(daemon_log, "policy_answered")},
              {"connect", StageTimes(agent_log, "request_received")},
              {"vchan", StageTimes(agent_log, "vchan_connected")},
              {"spawn", StageTimes(agent_log, "service_started")},
              {"exit_code", StageTimes(agent_log, "exit_code_sent")},
              {"finish", ended}};
    bool complete = true;
    for (const auto& [name, times] : points) complete = complete && times.size() == started.size();
    if (complete) break;
    if (Clock::now() > deadline) {
      for (const auto& [name, times] : points)
        if (times.size() != started.size())
          fmt::print("  stage {}: {} log lines for {} calls; no stage timing\n", name, times.size(),
                     started.size());
      return;
    }
    usleep(50 * 1000);
  }
  std::vector<double> totals;
  for (size_t i = 0; i < started.size(); ++i) totals.push_back((ended[i] - started[i]) / 1000.0);
  const std::vector<long long>* previous = &started;
  for (const auto& [name, times] : points) {
    std::vector<double> ms;
    for (size_t i = 0; i < times.size(); ++i) ms.push_back((times[i] - (*previous)[i]) / 1000.0);
    report.Add("stages." + name + ".p50", Percentile(ms, 50), "ms");
    previous = &times;
  }
  report.Add("stages.total.p50", Percentile(totals, 50), "ms");
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--json" && i + 1 < argc) options.json = argv[++i];
    if (arg == "--only" && i + 1 < argc) options.only = argv[++i];
    if (arg == "--quick") {
      options.calls = 200;
      options.stream_bytes = 256LL << 20;
      options.concurrent_calls = 100;
      options.mesh_domains = 20;
    }
  }
  return options;
}

int Main(int argc, char** argv) {
  Options options = ParseOptions(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  Report report;
  if (options.Runs("latency") || options.Runs("throughput")) {
    auto qubes = StartCallQubes({});
    if (!qubes) return 1;
    if (options.Runs("latency")) {
      auto fork_per_call = StartCallQubes({"--fork-per-call"});
      if (!fork_per_call) return 1;
      BenchLatency(report, *qubes, *fork_per_call, options);
    }
    if (options.Runs("throughput")) BenchThroughput(report, *qubes, options);
  }
  if (options.Runs("stages")) BenchStages(report, options);
  if (options.Runs("concurrency")) BenchConcurrency(report, options);
  if (options.Runs("mesh")) BenchMesh(report, options);
  if (options.Runs("pam")) BenchPam(report, options);
  report.Finish(options.json);
  return 0;
}

}  // namespace
}  // namespace qrexec::bench

int main(int argc, char** argv) { return qrexec::bench::Main(argc, argv); }
