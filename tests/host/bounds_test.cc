// What one domain can take from the host and the others (issue 10, "Bounded
// broker and daemons"): each test runs the attack from inside a real domain
// (tests/host/bounds_probe.cc, run as the domain's root through the real
// agent) and checks that the attacker hits its bound while the host and the
// other domains go on. Needs root, bubblewrap and the built binaries.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "host/process.h"
#include "host/sandbox.h"
#include "host_fixture.h"

namespace qrexec::host::testing {
namespace {

using namespace std::chrono_literals;

bool HaveBinaries() {
  for (const char* name : {"qrexec-agent", "qrexec-client-vm", "qrexec-daemon", "qrexec-client",
                           "qrexec-policy-daemon", "qrexec-policy-exec", "qrexec-host"})
    if (::access((std::string(QREXEC_BIN_DIR) + "/" + name).c_str(), X_OK) != 0) return false;
  return true;
}

#define QREXEC_REQUIRE_CALL_PATH()                                                                         \
  do {                                                                                                     \
    QREXEC_REQUIRE_ROOT_AND_BWRAP();                                                                       \
    if (!HaveBinaries()) GTEST_SKIP() << "needs the agent, daemon and policy binaries in " QREXEC_BIN_DIR; \
  } while (0)

// "a=1 b=2" -> {a: 1, b: 2}
std::map<std::string, int> ParseCounts(const std::string& text) {
  std::map<std::string, int> out;
  std::istringstream words(text);
  std::string word;
  while (words >> word) {
    auto eq = word.find('=');
    if (eq != std::string::npos) out[word.substr(0, eq)] = std::atoi(word.c_str() + eq + 1);
  }
  return out;
}

// Lowers this process's soft descriptor limit for one test (the host under
// test runs in it, as `qrexec-host up` would with the usual limit of 1024).
class SoftDescriptorLimit {
 public:
  explicit SoftDescriptorLimit(rlim_t soft) {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit lowered = saved_;
    lowered.rlim_cur = std::min(soft, saved_.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &lowered);
  }
  ~SoftDescriptorLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }

 private:
  rlimit saved_{};
};

class BoundsTest : public HostFixture {
 protected:
  void SetUp() override {
    HostFixture::SetUp();
    std::filesystem::create_directories(dir_ + "/rpc/debian");
    std::filesystem::create_directories(dir_ + "/dom0-rpc");
    std::filesystem::create_directories(dir_ + "/policy.d");
    marker_ = "sleep 41" + std::to_string(::getpid() % 10000) + "3";
    std::string hold = dir_ + "/dom0-rpc/demo.Hold";
    std::ofstream(hold) << "#!/bin/sh\nexec " << marker_ << "\n";
    ::chmod(hold.c_str(), 0755);
    std::ofstream(dir_ + "/policy.d/30-test.policy") << "demo.Hold * work @adminvm allow\n";
    config_ = "policy_dir = \"" + dir_ + "/policy.d\"\ndom0_services = \"" + dir_ + "/dom0-rpc\"\n";
    domains_ = "[[domain]]\nname = \"debian\"\nclass = \"TemplateVM\"\nservices = \"" + dir_ + "/rpc/debian\"\n"
               "[[domain]]\nname = \"work\"\ntemplate = \"debian\"\n"
               "[[domain]]\nname = \"vault\"\ntemplate = \"debian\"\n"
               "[[domain]]\nname = \"other\"\ntemplate = \"debian\"\n";
  }

  void TearDown() override {
    for (pid_t pid : ProcessesWith(marker_)) ::kill(pid, SIGKILL);
    HostFixture::TearDown();
  }

  void CopyProbe(const std::string& name) {
    std::filesystem::create_directories(HomeOf(name));
    std::filesystem::copy_file(QREXEC_BOUNDS_PROBE, HomeOf(name) + "/probe",
                               std::filesystem::copy_options::overwrite_existing);
  }

  uint32_t IdOf(const std::string& name) {
    for (const auto& entry : host_->List())
      if (entry.name == name) return entry.id;
    ADD_FAILURE() << "no domain " << name;
    return 0;
  }

  // Starts `qrexec-client -d DOMAIN root:COMMAND` (output to a file); the
  // loop must run while it does (the broker lives in this process).
  Child StartIn(const std::string& domain, const std::string& command, const std::string& out_path) {
    SpawnOptions options;
    options.argv = {"/bin/sh", "-c",
                    std::string(QREXEC_BIN_DIR) + "/qrexec-client --socket-dir=" + host_->paths().daemon_socket_dir +
                        " -d " + domain + " 'root:" + command + "' < /dev/null > " + out_path + " 2>&1"};
    options.env = MakeEnvironment({}, {"QREXEC_BROKER_SOCKET=" + host_->paths().BrokerSocket("dom0"),
                                       "VCHAN_DOMAIN=0"});
    auto child = Spawn(options);
    EXPECT_TRUE(child) << child.error().ToString();
    return child ? std::move(*child) : Child();
  }

  // Runs the loop until `child` exits; its exit code, or -1 after `limit`.
  int WaitFor(Child& child, std::chrono::seconds limit = 60s) {
    if (!child.valid()) return -1;
    auto until = sys::Clock::now() + limit;
    while (child.valid() && sys::Clock::now() < until) {
      if (auto status = child.TryReap()) return ExitCodeOf(*status);
      (void)loop_.RunOnce(10ms);
    }
    child.Signal(SIGKILL);
    (void)child.Wait(sys::Deadline::After(5s));
    return -1;
  }

  struct RunResult {
    int exit_code = -1;
    std::string output;
  };
  RunResult RunIn(const std::string& domain, const std::string& command) {
    std::string out = dir_ + "/run." + domain + ".out";
    Child child = StartIn(domain, command, out);
    RunResult result;
    result.exit_code = WaitFor(child);
    result.output = ReadFile(out);
    return result;
  }

  std::map<std::string, int> WaitForCounts(const std::string& path, std::chrono::milliseconds limit = 30s) {
    if (!WaitForFile(path, limit)) {
      ADD_FAILURE() << "no " << path;
      return {};
    }
    return ParseCounts(ReadFile(path));
  }

  std::string marker_;
  std::string config_;
  std::string domains_;
};

// Attack 5: two domains each try to hold 500 channel requests nobody will
// answer, with the host at the usual 1024-descriptor limit. Each is stopped
// at 128 (EAGAIN for the rest), its requests expire (ETIMEDOUT), and the host
// goes on serving a third domain meanwhile.
TEST_F(BoundsTest, BrokerRequestsAreCappedPerDomainAndExpire) {
  QREXEC_REQUIRE_CALL_PATH();
  SoftDescriptorLimit limit(1024);
  ASSERT_TRUE(MakeHost("broker_pending_timeout = 3\n" + config_ + domains_, /*with_daemons=*/true));
  for (const char* name : {"work", "vault", "other"}) ASSERT_TRUE(StartDomain(name));
  CopyProbe("work");
  CopyProbe("vault");
  std::string remotes = "0 " + std::to_string(IdOf("other"));
  Child work = StartIn("work", "/home/user/probe broker-flood 500 12000 /home/user/flood " + remotes,
                       dir_ + "/work.out");
  Child vault = StartIn("vault", "/home/user/probe broker-flood 500 12000 /home/user/flood " + remotes,
                        dir_ + "/vault.out");
  auto work_holding = WaitForCounts(HomeOf("work") + "/flood.holding");
  auto vault_holding = WaitForCounts(HomeOf("vault") + "/flood.holding");
  for (auto* counts : {&work_holding, &vault_holding}) {
    EXPECT_EQ((*counts)["sent"], 500) << ReadFile(dir_ + "/work.out");
    EXPECT_EQ((*counts)["eagain"], 500 - 128);
    EXPECT_EQ((*counts)["unanswered"], 128);
  }
  EXPECT_LE(host_->broker().pending_count(IdOf("work")), 128u);
  EXPECT_LE(host_->broker().pending_count(IdOf("vault")), 128u);
  // Meanwhile the host serves the others.
  auto alive = RunIn("other", "echo alive");
  EXPECT_EQ(alive.exit_code, 0) << alive.output;
  EXPECT_EQ(alive.output, "alive\n");
  EXPECT_EQ(host_->List().size(), 5u);  // dom0, debian, work, vault, other
  // The held requests expire; nothing is left waiting.
  for (const char* name : {"work", "vault"}) {
    auto final_counts = WaitForCounts(HomeOf(name) + "/flood");
    EXPECT_EQ(final_counts["etimedout"], 128) << name;
    EXPECT_EQ(final_counts["unanswered"], 0) << name;
    EXPECT_EQ(final_counts["ok"], 0) << name;
  }
  EXPECT_EQ(WaitFor(work), 0) << ReadFile(dir_ + "/work.out");
  EXPECT_EQ(WaitFor(vault), 0) << ReadFile(dir_ + "/vault.out");
  EXPECT_EQ(host_->broker().pending_count(IdOf("work")), 0u);
  auto again = RunIn("work", "echo back");
  EXPECT_EQ(again.output, "back\n");
}

// Attack 7: a domain allowed one dom0 service makes 300 concurrent calls of
// it and drops each agent connection at once (so the agent reports every
// port free while the services run). At most 256 run at once; the rest are
// refused, and the domain can call again once services end.
TEST_F(BoundsTest, ADomainRunsAtMost256Dom0ServicesAtOnce) {
  QREXEC_REQUIRE_CALL_PATH();
  ASSERT_TRUE(MakeHost(config_ + domains_, /*with_daemons=*/true));
  ASSERT_TRUE(StartDomain("work"));
  CopyProbe("work");
  Child flood = StartIn("work", "/home/user/probe dom0-flood 300 demo.Hold /home/user/dom0", dir_ + "/flood.out");
  size_t most = 0;
  auto until = sys::Clock::now() + 60s;
  while (!std::filesystem::exists(HomeOf("work") + "/dom0.verdicts") && sys::Clock::now() < until) {
    most = std::max(most, ProcessesWith(marker_).size());
    Spin(100ms);
  }
  auto verdicts = WaitForCounts(HomeOf("work") + "/dom0.verdicts");
  Spin(500ms);  // the last services start
  most = std::max(most, ProcessesWith(marker_).size());
  EXPECT_LE(most, 256u);
  EXPECT_GE(most, 100u) << "the flood did not get far: " << ReadFile(HomeOf("work") + "/dom0.verdicts");
  EXPECT_LE(verdicts["connected"], 256) << ReadFile(dir_ + "/flood.out");
  // Under load a few calls may fail for other reasons than the bound (a
  // full backlog); what is not connected was turned away, mostly refused.
  EXPECT_GE(verdicts["refused"] + verdicts["failed"], 300 - 256);
  EXPECT_GT(verdicts["refused"], 0);
  // Services end: the domain's calls work again, and the flood winds down.
  for (pid_t pid : ProcessesWith(marker_)) ::kill(pid, SIGKILL);
  EXPECT_EQ(WaitFor(flood), 0) << ReadFile(dir_ + "/flood.out");
  std::ofstream(dir_ + "/dom0-rpc/demo.Hold") << "#!/bin/sh\necho held\n";
  // The killed services' helpers exit asynchronously (slowly under the
  // sanitizers); until the last has, the domain may still be at its bound.
  RunResult call;
  for (auto retry_until = sys::Clock::now() + 30s; sys::Clock::now() < retry_until; Spin(200ms)) {
    call = RunIn("work", std::string(kSandboxBinDir) + "/qrexec-client-vm @adminvm demo.Hold");
    if (call.exit_code == 0) break;
  }
  EXPECT_EQ(call.exit_code, 0) << call.output;
  EXPECT_EQ(call.output, "held\n");
}

// Attack 8: 300 clients connect to the agent's trigger socket and send
// nothing. dom0's calls into the domain still work, and the agent drops the
// idle clients after its trigger time-out.
TEST_F(BoundsTest, IdleTriggerClientsAreDroppedAndCannotStopDom0Calls) {
  QREXEC_REQUIRE_CALL_PATH();
  ASSERT_TRUE(MakeHost(config_ + domains_, /*with_daemons=*/true));
  ASSERT_TRUE(StartDomain("work"));
  CopyProbe("work");
  Child idle = StartIn("work", "/home/user/probe idle-triggers 300 20000 /home/user/idle", dir_ + "/idle.out");
  auto open = WaitForCounts(HomeOf("work") + "/idle.open");
  EXPECT_EQ(open["open"], 300) << ReadFile(dir_ + "/idle.out");
  Spin(300ms);  // the agent has accepted what it will
  auto call = RunIn("work", "echo served");
  EXPECT_EQ(call.exit_code, 0) << call.output;
  EXPECT_EQ(call.output, "served\n");
  // 256 are dropped after 5 s; the rest, accepted then, 5 s later.
  auto final_counts = WaitForCounts(HomeOf("work") + "/idle", 30s);
  EXPECT_EQ(final_counts["dropped"], final_counts["open"]);
  EXPECT_EQ(WaitFor(idle), 0) << ReadFile(dir_ + "/idle.out");
}

// Attack 5, the other half: `qrexec-host up` does not stay at the soft
// descriptor limit it was started with.
TEST_F(BoundsTest, QrexecHostRaisesItsDescriptorLimit) {
  QREXEC_REQUIRE_CALL_PATH();
  rlimit limits{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limits), 0);
  if (limits.rlim_max <= 512) GTEST_SKIP() << "the hard descriptor limit is too low to tell";
  std::string path = dir_ + "/host.toml";
  std::ofstream(path) << "[host]\nstate_dir = \"" + dir_ + "/state\"\n";
  SpawnOptions options;
  options.argv = {"/bin/sh", "-c", "ulimit -Sn 512 && exec " + std::string(QREXEC_BIN_DIR) + "/qrexec-host --config " +
                                       path + " up"};
  options.env = MakeEnvironment({}, {});
  options.log_path = dir_ + "/up.log";
  auto up = Spawn(options);
  ASSERT_TRUE(up);
  std::string control = dir_ + "/state/run/control.sock";
  auto until = sys::Clock::now() + 20s;
  while (!std::filesystem::exists(control) && sys::Clock::now() < until) std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(std::filesystem::exists(control)) << ReadFile(dir_ + "/up.log");
  std::string line;
  std::ifstream in("/proc/" + std::to_string(up->pid()) + "/limits");
  while (std::getline(in, line) && line.rfind("Max open files", 0) != 0) {
  }
  std::istringstream fields(line.substr(std::string("Max open files").size()));
  unsigned long long soft = 0, hard = 0;
  fields >> soft >> hard;
  EXPECT_EQ(soft, limits.rlim_max) << line;
  EXPECT_EQ(hard, limits.rlim_max) << line;
  up->Signal(SIGTERM);
  auto status = up->Wait(sys::Deadline::After(30s));
  ASSERT_TRUE(status);
  EXPECT_EQ(ExitCodeOf(*status), 0) << ReadFile(dir_ + "/up.log");
}

}  // namespace
}  // namespace qrexec::host::testing
