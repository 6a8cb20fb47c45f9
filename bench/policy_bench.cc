// Policy evaluation throughput: in-process Evaluate() calls per second on one
// core at 10, 1,000 and 10,000 rules, indexed walk vs the linear first-match
// baseline. Prints a small table; no assertions.
//
//   build/bench/policy_bench [--quick] [--json FILE]
// --json writes the metrics as a JSON list of {"name","value","unit"} for
// bench/run.sh; --quick measures for 0.1 s instead of 0.5 s per cell.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "policy/evaluate.h"
#include "policy/loader.h"
#include "policy/system_info.h"

namespace {

using namespace qrexec::policy;

constexpr int kQubes = 40;

SystemInfo MakeSystem() {
  std::string json = R"({"domains": {"dom0": {"tags": [], "type": "AdminVM",
    "template_for_dispvms": false, "default_dispvm": "vm0", "power_state": "Running",
    "uuid": "00000000-0000-0000-0000-000000000000"})";
  for (int i = 0; i < kQubes; ++i)
    json += fmt::format(
        R"(, "vm{0}": {{"tags": ["tag{1}"], "type": "AppVM", "template_for_dispvms": {2},
        "default_dispvm": "vm0", "power_state": "Running",
        "uuid": "00000000-0000-4000-8000-{0:012d}"}})",
        i, i % 5, i == 0 ? "true" : "false");
  json += "}}";
  return *SystemInfo::FromJson(json);
}

// `n` rules: about 10 per service (source literal, tag or type rules),
// then a final catch-all deny.
Policy MakePolicy(int n, int* services_out) {
  int services = std::max(1, n / 10);
  std::string text;
  std::mt19937 rng(7);
  for (int i = 0; i < n - 1; ++i) {
    int svc = i % services;
    int kind = static_cast<int>(rng() % 4);
    std::string source = kind == 0   ? fmt::format("@tag:tag{}", rng() % 5)
                         : kind == 1 ? "@type:AppVM"
                                     : fmt::format("vm{}", rng() % kQubes);
    std::string target = rng() % 2 ? "@anyvm" : fmt::format("vm{}", rng() % kQubes);
    const char* action = rng() % 3 == 0 ? "deny" : "allow";
    text += fmt::format("bench.Svc{} * {} {} {}\n", svc, source, target, action);
  }
  text += "* * @anyvm @anyvm deny\n";
  *services_out = services;
  return *ParsePolicyText(text, "bench.policy");
}

double g_seconds = 0.5;

double Measure(const Policy& policy, const SystemInfo& info, const std::vector<Request>& requests,
               MatchPath path, int* allowed) {
  using Clock = std::chrono::steady_clock;
  size_t done = 0;
  *allowed = 0;
  auto start = Clock::now();
  double elapsed = 0;
  do {
    for (int k = 0; k < 256; ++k) {
      const Request& req = requests[done % requests.size()];
      Decision d = Evaluate(policy, info, req, path);
      *allowed += d.verdict == Verdict::kAllow;
      ++done;
    }
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < g_seconds);
  return static_cast<double>(done) / elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--quick") {
      g_seconds = 0.1;
    } else if (arg == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: policy_bench [--quick] [--json FILE]\n");
      return 2;
    }
  }
  SystemInfo info = MakeSystem();
  std::string metrics;
  std::printf("%-8s %16s %16s %9s\n", "rules", "indexed eval/s", "linear eval/s", "speedup");
  for (int n : {10, 1000, 10000}) {
    int services = 0;
    Policy policy = MakePolicy(n, &services);
    std::mt19937 rng(42);
    std::vector<Request> requests;
    for (int i = 0; i < 4096; ++i)
      requests.push_back(MakeRequest(fmt::format("vm{}", rng() % kQubes),
                                     fmt::format("vm{}", rng() % kQubes),
                                     fmt::format("bench.Svc{}+arg", rng() % services)));
    int allowed_indexed = 0, allowed_linear = 0;
    double indexed = Measure(policy, info, requests, MatchPath::kIndexed, &allowed_indexed);
    double linear = Measure(policy, info, requests, MatchPath::kLinear, &allowed_linear);
    std::printf("%-8d %16.0f %16.0f %8.1fx\n", n, indexed, linear, indexed / linear);
    // policy.evals_per_s.N_rules is the engine's (indexed) path; the linear
    // first match of the reference is its baseline, side by side.
    for (auto [suffix, value] : {std::pair{"", indexed}, std::pair{".linear", linear}})
      metrics += fmt::format("{}  {{\"name\": \"policy.evals_per_s.{}_rules{}\", \"value\": {:.0f}, "
                             "\"unit\": \"1/s\"}}",
                             metrics.empty() ? "" : ",\n", n, suffix, value);
  }
  if (!json_path.empty()) std::ofstream(json_path) << "[\n" << metrics << "\n]\n";
  return 0;
}
