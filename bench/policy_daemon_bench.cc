// policy.sock round trips against the real qrexec-policy-daemon at 10, 1,000
// and 10,000 rules (p50/p99 of connect + request + answer + close, one client
// at a time), plus a burst of concurrent clients. Goal: p99 < 200 us.
// Usage: policy_daemon_bench [--json FILE] [--quick]
#include <fmt/core.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"

extern char** environ;

namespace qrexec::bench {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSystemInfo = R"({"domains": {
 "dom0": {"tags": [], "type": "AdminVM", "template_for_dispvms": false, "default_dispvm": null,
          "icon": "adminvm-black", "label": "0x333333", "guivm": null, "power_state": "Running",
          "uuid": "00000000-0000-0000-0000-000000000000", "internal": null},
 "work": {"tags": ["t1"], "type": "AppVM", "template_for_dispvms": false, "default_dispvm": null,
          "icon": "appvm-blue", "label": "0x3384d6", "guivm": "dom0", "power_state": "Running",
          "uuid": "11111111-1111-1111-1111-111111111111", "internal": null},
 "personal": {"tags": ["t2"], "type": "AppVM", "template_for_dispvms": false, "default_dispvm": null,
          "icon": "appvm-yellow", "label": "0xe5e500", "guivm": "dom0", "power_state": "Running",
          "uuid": "22222222-2222-2222-2222-222222222222", "internal": null}}})";

constexpr std::string_view kRequest =
    "source=work\nintended_target=personal\nservice_and_arg=bench.Target+x\n\n";

// n rules; the only allow is the last one, and half of the others share its
// service (so a per-service index still has to walk them).
std::string MakePolicy(int n) {
  std::string text;
  for (int i = 0; i + 1 < n; ++i) {
    if (i % 2)
      text += fmt::format("bench.Target +a{} @tag:t1 @anyvm deny\n", i);
    else
      text += fmt::format("bench.S{} * @anyvm @anyvm deny\n", i);
  }
  text += "bench.Target * work personal allow\n";
  return text;
}

int Connect(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// One round trip; returns the answer ("" on failure).
std::string RoundTrip(const std::string& path) {
  int fd = Connect(path);
  if (fd < 0) return {};
  std::string answer;
  if (::write(fd, kRequest.data(), kRequest.size()) == static_cast<ssize_t>(kRequest.size())) {
    ::shutdown(fd, SHUT_WR);
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
      answer.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return answer;
}

std::string DaemonPath() {
  auto self = fs::read_symlink("/proc/self/exe");
  return (self.parent_path().parent_path() / "bin" / "qrexec-policy-daemon").string();
}

struct Result {
  double p50_us = 0, p99_us = 0, max_us = 0, burst_per_s = 0;
  bool ok = false;
};

Result Measure(int rules, int round_trips) {
  char tmpl[] = "/tmp/pdbench.XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  fs::create_directories(dir + "/policy");
  std::ofstream(dir + "/policy/50-bench.policy") << MakePolicy(rules);
  std::ofstream(dir + "/system-info.json") << kSystemInfo;
  std::string sock = dir + "/policy.sock";
  std::vector<std::string> argv = {DaemonPath(),
                                   "--policy-path",
                                   dir + "/policy",
                                   "--legacy-path",
                                   dir + "/legacy",
                                   "--system-info",
                                   dir + "/system-info.json",
                                   "--socket-path",
                                   sock,
                                   "--eval-socket-path",
                                   dir + "/eval.sock",
                                   "--gui-socket-path",
                                   dir + "/gui.sock"};
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  pid_t pid = SpawnDetached(argv, env);
  Result result;
  for (int i = 0; i < 5000 && !fs::exists(dir + "/gui.sock"); ++i) ::usleep(1000);
  std::string expected = RoundTrip(sock);
  if (expected.find("result=allow") != std::string::npos) {
    for (int i = 0; i < 500; ++i) RoundTrip(sock);  // warm-up
    std::vector<double> us;
    us.reserve(round_trips);
    bool all_ok = true;
    for (int i = 0; i < round_trips; ++i) {
      auto start = Clock::now();
      all_ok &= RoundTrip(sock) == expected;
      us.push_back(MsSince(start) * 1000.0);
    }
    result.p50_us = Percentile(us, 50);
    result.p99_us = Percentile(us, 99);
    result.max_us = Percentile(us, 100);
    // Burst: 4 client threads at once.
    constexpr int kThreads = 4;
    int per_thread = round_trips / kThreads;
    auto start = Clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&] {
        for (int i = 0; i < per_thread; ++i) RoundTrip(sock);
      });
    for (auto& thread : threads) thread.join();
    result.burst_per_s = kThreads * per_thread / (MsSince(start) / 1000.0);
    result.ok = all_ok;
  }
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  fs::remove_all(dir);
  return result;
}

int Main(int argc, char** argv) {
  std::string json = "bench/results.policy_daemon.json";
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--json" && i + 1 < argc)
      json = argv[++i];
    else if (arg == "--quick")
      quick = true;
  }
  int round_trips = quick ? 2000 : 20000;
  Report report;
  std::vector<std::pair<int, Result>> results;
  bool ok = true;
  for (int rules : {10, 1000, 10000}) {
    results.emplace_back(rules, Measure(rules, round_trips));
    ok &= results.back().second.ok;
  }
  std::printf("policy.sock round trips, %d sequential (+ %d in a 4-client burst)\n", round_trips,
              round_trips);
  std::printf("%-8s %10s %10s %10s %14s\n", "rules", "p50 us", "p99 us", "max us", "4-client rt/s");
  for (const auto& [rules, r] : results)
    std::printf("%-8d %10.1f %10.1f %10.1f %14.0f%s\n", rules, r.p50_us, r.p99_us, r.max_us,
                r.burst_per_s, r.ok ? "" : "  (FAILED)");
  for (const auto& [rules, r] : results) {
    report.Add(fmt::format("policy.sock_rtt.{}_rules.p50", rules), r.p50_us, "us");
    report.Add(fmt::format("policy.sock_rtt.{}_rules.p99", rules), r.p99_us, "us");
    report.Add(fmt::format("policy.sock_burst_4_clients.{}_rules", rules), r.burst_per_s,
               "round trips/s");
  }
  report.Note("goal: policy.sock p99 < 200 us at 10,000 rules");
  report.Finish(json);
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace qrexec::bench

int main(int argc, char** argv) { return qrexec::bench::Main(argc, argv); }
