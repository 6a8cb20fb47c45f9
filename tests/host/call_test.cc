// Whole calls on the embedded host: real sandboxes, qrexec-agent inside,
// qrexec-daemon per domain, the policy daemon, the broker. Needs root,
// bubblewrap and the built binaries.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "host/process.h"
#include "host/sandbox.h"
#include "host_fixture.h"

namespace qrexec::host::testing {
namespace {

using namespace std::chrono_literals;

bool HaveBinaries() {
  for (const char* name : {"qrexec-agent", "qrexec-client-vm", "qrexec-daemon", "qrexec-client",
                           "qrexec-policy-daemon", "qrexec-policy-exec"})
    if (::access((std::string(QREXEC_BIN_DIR) + "/" + name).c_str(), X_OK) != 0) return false;
  return true;
}

#define QREXEC_REQUIRE_CALL_PATH()                                              \
  do {                                                                          \
    QREXEC_REQUIRE_ROOT_AND_BWRAP();                                            \
    if (!HaveBinaries()) GTEST_SKIP() << "needs the agent, daemon and policy binaries in " QREXEC_BIN_DIR; \
  } while (0)

struct CallResult {
  int exit_code = -1;
  std::string output;
  std::chrono::milliseconds took{0};
};

// A TemplateVM root made of the host's system (links to /usr and the /etc
// entries) whose /etc/pam.d is a copy of the host's with the shipped qrexec
// stack added, and whose /etc/environment holds a marker that pam_env (in
// that stack) puts into a service's environment. "" when the host's /bin,
// /lib... are not merged-/usr links (links to them would point at themselves
// inside the sandbox).
std::string MakePamTemplateRoot(const std::string& dir) {
  namespace fs = std::filesystem;
  std::string root = dir + "/template-root";
  fs::create_directories(root + "/etc/pam.d");
  fs::create_directory_symlink("/usr", root + "/usr");
  for (const char* top : {"bin", "sbin", "lib", "lib32", "lib64", "libx32"}) {
    fs::path host_path = fs::path("/") / top;
    std::error_code ec;
    auto status = fs::symlink_status(host_path, ec);
    if (ec || !fs::exists(status)) continue;
    if (!fs::is_symlink(status)) return "";
    fs::create_symlink(fs::read_symlink(host_path), root + "/" + top);
  }
  for (const auto& entry : fs::directory_iterator("/etc")) {
    std::string name = entry.path().filename();
    if (name == "pam.d" || name == "environment") continue;
    fs::create_symlink(entry.path(), root + "/etc/" + name);
  }
  for (const auto& entry : fs::directory_iterator("/etc/pam.d"))
    if (entry.is_regular_file()) fs::copy_file(entry.path(), root + "/etc/pam.d/" + entry.path().filename().string());
  fs::copy_file(QREXEC_SOURCE_DIR "/dist/pam/qrexec", root + "/etc/pam.d/qrexec",
                fs::copy_options::overwrite_existing);
  std::ofstream(root + "/etc/environment") << "QREXEC_PAM_MARK=session-opened\n";
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_symlink()) continue;
    ::chmod(entry.path().c_str(), entry.is_directory() ? 0755 : 0644);
  }
  ::chmod(root.c_str(), 0755);
  return root;
}

class CallTest : public HostFixture {
 protected:
  void SetUp() override {
    HostFixture::SetUp();
    std::filesystem::create_directories(dir_ + "/rpc/debian");
    std::filesystem::create_directories(dir_ + "/policy.d");
    WriteService("demo.Echo", "#!/bin/sh\necho \"echo from $(hostname) for $QREXEC_REMOTE_DOMAIN\"\ncat\n");
    sleep_marker_ = "sleep 43" + std::to_string(::getpid() % 10000) + "7";
    WriteService("demo.Sleep", "#!/bin/sh\necho started\nexec " + sleep_marker_ + "\n");
    std::ofstream(dir_ + "/policy.d/30-test.policy") << "demo.Echo +asked work vault ask default_target=vault\n"
                                                        "demo.Echo * work vault allow\n"
                                                        "demo.Echo * work @dispvm allow\n"
                                                        "demo.Sleep * work vault allow\n"
                                                        "demo.Echo * @anyvm @anyvm deny\n";
    config_ = "policy_dir = \"" + dir_ + "/policy.d\"\ndefault_dispvm = \"dvm\"\n"
              "[[domain]]\nname = \"debian\"\nclass = \"TemplateVM\"\nservices = \"" + dir_ + "/rpc/debian\"\n"
              "[[domain]]\nname = \"work\"\ntemplate = \"debian\"\nautostart = true\n"
              "[[domain]]\nname = \"vault\"\ntemplate = \"debian\"\n"
              "[[domain]]\nname = \"dvm\"\ntemplate = \"debian\"\ntemplate_for_dispvms = true\n";
  }

  void WriteService(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/rpc/debian/" + name;
    std::ofstream(path) << text;
    ::chmod(path.c_str(), 0755);
  }

  // The user qrexec-client-vm runs as inside SOURCE.
  std::string caller_user_ = "root";

  // Runs qrexec-client -d SOURCE USER:qrexec-client-vm TARGET SERVICE in the
  // host's loop until it exits. `during` runs once after `delay`.
  CallResult Call(const std::string& source, const std::string& target, const std::string& service,
                  const std::string& input = {}, std::chrono::milliseconds delay = 0ms,
                  const std::function<void()>& during = {}) {
    std::string out_path = dir_ + "/call.out";
    std::string in_path = dir_ + "/call.in";
    std::ofstream(in_path) << input;
    std::filesystem::remove(out_path);
    std::string command = caller_user_ + ":" + kSandboxBinDir + "/qrexec-client-vm " + target + " " + service;
    SpawnOptions options;
    options.argv = {"/bin/sh", "-c",
                    std::string(QREXEC_BIN_DIR) + "/qrexec-client --socket-dir=" + host_->paths().daemon_socket_dir +
                        " -d " + source + " '" + command + "' < " + in_path + " > " + out_path + " 2>&1"};
    options.env = MakeEnvironment({}, {"QREXEC_BROKER_SOCKET=" + host_->paths().BrokerSocket("dom0"),
                                       "VCHAN_DOMAIN=0"});
    auto started = sys::Clock::now();
    auto child = Spawn(options);
    CallResult result;
    if (!child) {
      ADD_FAILURE() << child.error().ToString();
      return result;
    }
    bool ran_during = false;
    auto limit = started + 60s;
    while (sys::Clock::now() < limit) {
      if (auto status = child->TryReap()) {
        result.exit_code = ExitCodeOf(*status);
        break;
      }
      if (!ran_during && during && sys::Clock::now() - started >= delay) {
        ran_during = true;
        during();
      }
      (void)loop_.RunOnce(10ms);
    }
    if (result.exit_code < 0) {
      child->Signal(SIGKILL);
      (void)child->Wait(sys::Deadline::After(5s));
      ADD_FAILURE() << "call did not finish";
    }
    result.took = std::chrono::duration_cast<std::chrono::milliseconds>(sys::Clock::now() - started);
    result.output = ReadFile(out_path);
    return result;
  }

  std::string RunningState(const std::string& name) {
    for (const auto& entry : host_->List())
      if (entry.name == name) return entry.state;
    return "absent";
  }

  ::testing::AssertionResult WaitRunning(const std::string& name) {
    auto limit = sys::Clock::now() + 30s;
    while (sys::Clock::now() < limit) {
      if (RunningState(name) == "Running") return ::testing::AssertionSuccess();
      (void)loop_.RunOnce(20ms);
    }
    return ::testing::AssertionFailure() << name << " is " << RunningState(name);
  }

  std::string config_;
  std::string sleep_marker_;
};

TEST_F(CallTest, AnAllowedCallAutostartsTheTargetAndConnectsTheStreams) {
  QREXEC_REQUIRE_CALL_PATH();
  ASSERT_TRUE(MakeHost(config_, /*with_daemons=*/true));
  ASSERT_TRUE(WaitRunning("work"));  // autostart = true
  EXPECT_EQ(RunningState("vault"), "Halted");
  auto result = Call("work", "vault", "demo.Echo", "some input\n");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, "echo from vault for work\nsome input\n");
  EXPECT_EQ(RunningState("vault"), "Running");
}

// In Qubes qrexec-client-vm runs as the domain's user, not root: the
// domain's broker socket must serve every user inside the domain.
TEST_F(CallTest, TheDomainsOrdinaryUserCanMakeCalls) {
  QREXEC_REQUIRE_CALL_PATH();
  ASSERT_TRUE(MakeHost(config_, /*with_daemons=*/true));
  ASSERT_TRUE(WaitRunning("work"));
  caller_user_ = "user";
  auto result = Call("work", "vault", "demo.Echo", "as user\n");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, "echo from vault for work\nas user\n");
}

// As in Qubes, a service the agent (root) runs as the domain's user goes
// through a `qrexec` PAM session when the template has that stack: here the
// marker pam_env takes from the template's /etc/environment shows it. The
// template root "/" of the other tests has no such stack on a test machine,
// and there services run directly (--no-pam-session).
TEST_F(CallTest, ServicesRunInAPamSessionWhenTheTemplateHasTheQrexecStack) {
  QREXEC_REQUIRE_CALL_PATH();
  if (::access(QREXEC_BIN_DIR "/qrexec-pam-session", X_OK) != 0) GTEST_SKIP() << "built without libpam";
  std::string root = MakePamTemplateRoot(dir_);
  if (root.empty()) GTEST_SKIP() << "needs a merged-/usr host (/bin, /lib... as links)";
  WriteService("demo.Env", "#!/bin/sh\necho \"mark=${QREXEC_PAM_MARK:-none} user=$(id -un)\"\n");
  std::ofstream(dir_ + "/policy.d/20-env.policy") << "demo.Env * work vault allow\n";
  std::string config = config_;
  std::string template_line = "class = \"TemplateVM\"\n";
  config.replace(config.find(template_line), template_line.size(),
                 template_line + "root = \"" + root + "\"\n");
  ASSERT_TRUE(MakeHost(config, /*with_daemons=*/true));
  ASSERT_TRUE(WaitRunning("work"));
  auto result = Call("work", "vault", "demo.Env");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, "mark=session-opened user=user\n");
}

TEST_F(CallTest, ADeniedCallEndsWith126) {
  QREXEC_REQUIRE_CALL_PATH();
  ASSERT_TRUE(MakeHost(config_, true));
  ASSERT_TRUE(WaitRunning("work"));
  auto result = Call("work", "debian", "demo.Echo");
  EXPECT_EQ(result.exit_code, 126) << result.output;
  EXPECT_EQ(RunningState("debian"), "Halted");
}

TEST_F(CallTest, AnAskRuleIsAnsweredByThePolicyAgent) {
  QREXEC_REQUIRE_CALL_PATH();
  if (::access(QREXEC_BIN_DIR "/qrexec-policy-agent", X_OK) != 0) GTEST_SKIP() << "needs qrexec-policy-agent";
  ASSERT_TRUE(MakeHost("policy_agent = \"assume-yes\"\n" + config_, true));
  ASSERT_TRUE(WaitRunning("work"));
  auto result = Call("work", "vault", "demo.Echo+asked", "yes\n");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, "echo from vault for work\nyes\n");
}

TEST_F(CallTest, ACallToDispvmRunsInAFreshDisposableThatIsGoneAfterwards) {
  QREXEC_REQUIRE_CALL_PATH();
  ASSERT_TRUE(MakeHost(config_, true));
  ASSERT_TRUE(WaitRunning("work"));
  auto result = Call("work", "@dispvm", "demo.Echo", "x\n");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output.rfind("echo from disp", 0), 0u) << result.output;
  Spin(500ms);
  for (const auto& entry : host_->List()) EXPECT_NE(entry.name.rfind("disp", 0), 0u) << entry.name << " remains";
  EXPECT_TRUE(std::filesystem::is_empty(host_->paths().disp_dir));
  EXPECT_TRUE(MountsUnder(host_->paths().disp_dir).empty());  // persistent homes stay mounted while the host runs
}

TEST_F(CallTest, KillingTheTargetMidCallEndsTheCallerWithin5Seconds) {
  QREXEC_REQUIRE_CALL_PATH();
  ASSERT_TRUE(MakeHost(config_, true));
  ASSERT_TRUE(WaitRunning("work"));
  ASSERT_TRUE(StartDomain("vault"));
  std::chrono::steady_clock::time_point killed_at;
  auto result = Call("work", "vault", "demo.Sleep", {}, 2s, [&] {
    killed_at = sys::Clock::now();
    EXPECT_TRUE(host_->Kill("vault"));
  });
  auto after_kill = std::chrono::duration_cast<std::chrono::milliseconds>(sys::Clock::now() - killed_at);
  EXPECT_LT(after_kill, 5s);
  EXPECT_EQ(result.output.rfind("started\n", 0), 0u) << result.output;
  // The vchan closed before an exit code arrived.
  EXPECT_EQ(result.exit_code, 255) << result.output;
  EXPECT_TRUE(ProcessesWith(sleep_marker_).empty());
}

TEST_F(CallTest, AfterAHostRestartDomainsAreHaltedAndKeepTheirHomes) {
  QREXEC_REQUIRE_CALL_PATH();
  ASSERT_TRUE(MakeHost(config_, true));
  ASSERT_TRUE(WaitRunning("work"));
  ASSERT_TRUE(StartDomain("vault"));
  std::ofstream(HomeOf("vault") + "/kept") << "kept\n";
  std::vector<pid_t> pids;
  for (const char* name : {"work", "vault"}) {
    auto pid = host_->SandboxPid(name);
    ASSERT_TRUE(pid);
    pids.push_back(*pid);
    for (pid_t inner : ChildrenOf(*pid)) pids.push_back(inner);
  }
  host_.reset();  // shutdown
  for (pid_t pid : pids) EXPECT_NE(::kill(pid, 0), 0) << "pid " << pid << " survived the shutdown";
  // Same config without autostart for vault: it is Halted, and a call
  // starts it again.
  ASSERT_TRUE(MakeHost(config_, true));
  EXPECT_EQ(RunningState("vault"), "Halted");
  ASSERT_TRUE(WaitRunning("work"));
  auto result = Call("work", "vault", "demo.Echo", "again\n");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(ReadFile(HomeOf("vault") + "/kept"), "kept\n");
}

}  // namespace
}  // namespace qrexec::host::testing
