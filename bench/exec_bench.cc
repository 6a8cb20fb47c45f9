// Starting a service for another user, direct exec vs through the PAM
// session helper (docs/pam.md), measured the way the agent's handler does
// it: exec::StartService + wait, for /bin/true as the RPC service
// bench.True run as user nobody. Three cases side by side:
//   direct       setgroups/setgid/setuid + exec (--no-pam-session)
//   pam          qrexec-pam-session with the shipped stack dist/pam/qrexec
//                (its @includes are the system's common-* files) and the
//                /bin/sh login shell
//   pam_minimal  the same helper with a pam_permit-only stack: the cost of
//                the extra process and the login shell without the modules
// Needs root (only root switches users); elsewhere it prints why and writes
// no metrics. Usage: exec_bench --json FILE [--quick]
#include <fmt/core.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_util.h"
#include "exec/service.h"

namespace qrexec::bench {
namespace {

constexpr const char* kCommand = "nobody:QUBESRPC bench.True+ bench";

std::string BinDir() {
  const char* dir = std::getenv("QREXEC_BIN_DIR");
  return dir != nullptr ? dir : QREXEC_BIN_DIR;
}

// One start-and-wait in milliseconds; -1 when the service did not exit 0.
double RunOnce(const exec::ExecContext& ctx) {
  exec::StartOptions options;
  options.stdin_io = exec::Stdio::Null();
  options.stdout_io = exec::Stdio::Null();
  options.stderr_io = exec::Stdio::Null();
  Clock::time_point start = Clock::now();
  exec::StartedService started =
      exec::ParseAndStartService(kCommand, exec::UserPrefix::kPresent, ctx, options);
  auto* process = std::get_if<exec::StartedProcess>(&started);
  if (process == nullptr) return -1;
  auto status = process->child.Wait();
  double ms = MsSince(start);
  return status && exec::QrexecExitCode(*status) == 0 ? ms : -1;
}

void Measure(Report& report, const std::string& name, const exec::ExecContext& ctx, int calls,
             int* failures, double* p50) {
  for (int i = 0; i < 5; ++i) RunOnce(ctx);  // page cache, name service
  std::vector<double> times;
  for (int i = 0; i < calls; ++i) {
    double ms = RunOnce(ctx);
    if (ms < 0)
      ++*failures;
    else
      times.push_back(ms);
  }
  *p50 = Percentile(times, 50);
  report.Add("exec.other_user." + name + ".p50", *p50, "ms");
  report.Add("exec.other_user." + name + ".p99", Percentile(times, 99), "ms");
}

void WriteText(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return;
  std::fputs(text.c_str(), f);
  std::fclose(f);
}

int Run(const std::string& json_path, bool quick) {
  Report report;
  std::string helper = BinDir() + "/qrexec-pam-session";
  const char* skip = nullptr;
  if (::geteuid() != 0)
    skip = "needs root (only root switches users)";
  else if (::getpwnam("nobody") == nullptr)
    skip = "no user nobody";
  else if (::access(helper.c_str(), X_OK) != 0)
    skip = "no qrexec-pam-session (built without libpam)";
  if (skip != nullptr) {
    std::printf("exec_bench: skipped: %s\n", skip);
    report.Finish(json_path);
    return 0;
  }
  char tmpl[] = "/tmp/qrx-exec-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return 1;
  std::filesystem::path dir(tmpl);
  ::chmod(tmpl, 0755);
  std::filesystem::create_directories(dir / "rpc");
  std::filesystem::create_directories(dir / "pam.d");
  std::filesystem::create_directories(dir / "minimal.d");
  std::filesystem::create_symlink("/bin/true", dir / "rpc/bench.True");
  std::filesystem::copy_file(std::string(QREXEC_SOURCE_DIR) + "/dist/pam/qrexec",
                             dir / "pam.d/qrexec");
  WriteText(dir / "minimal.d/qrexec",
            "auth required pam_permit.so\naccount required pam_permit.so\n"
            "session required pam_permit.so\n");

  exec::ExecContext direct;
  direct.service_path = exec::SearchPath{{dir / "rpc"}};
  direct.config_path = exec::SearchPath{{dir / "config"}};
  exec::ExecContext pam = direct;
  pam.pam_session = exec::PamSessionHelper{helper, dir / "pam.d"};
  exec::ExecContext minimal = direct;
  minimal.pam_session = exec::PamSessionHelper{helper, dir / "minimal.d"};

  int calls = quick ? 30 : 500;
  int failures = 0;
  double direct_p50 = 0, pam_p50 = 0, minimal_p50 = 0;
  fmt::print("{} starts of /bin/true as nobody, each case:\n", calls);
  Measure(report, "direct", direct, calls, &failures, &direct_p50);
  Measure(report, "pam", pam, calls, &failures, &pam_p50);
  Measure(report, "pam_minimal", minimal, calls, &failures, &minimal_p50);
  report.Add("exec.other_user.pam_ratio", direct_p50 > 0 ? pam_p50 / direct_p50 : 0, "x");
  report.Add("exec.other_user.failures", failures, "count");
  report.Note(fmt::format("PAM session / direct exec p50: {:.2f}x (minimal stack {:.2f}x)",
                          direct_p50 > 0 ? pam_p50 / direct_p50 : 0,
                          direct_p50 > 0 ? minimal_p50 / direct_p50 : 0));
  report.Finish(json_path);
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace qrexec::bench

int main(int argc, char** argv) {
  std::string json_path;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: exec_bench --json FILE [--quick]\n");
      return 2;
    }
  }
  if (json_path.empty()) json_path = "/dev/null";
  return qrexec::bench::Run(json_path, quick);
}
