// The qrexec-host command line: error messages (no root needed), and a whole
// `up` / ls / run / call / SIGTERM cycle (root, bubblewrap, the binaries).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "host/process.h"
#include "host_fixture.h"

namespace qrexec::host::testing {
namespace {

using namespace std::chrono_literals;

const std::string kHost = std::string(QREXEC_BIN_DIR) + "/qrexec-host";

struct Output {
  int exit_code = -1;
  std::string text;  // stdout and stderr
};

class CliTest : public HostFixture {
 protected:
  Output Run(const std::vector<std::string>& args, const std::string& input = {}) {
    std::string out = dir_ + "/cli.out", in = dir_ + "/cli.in";
    std::ofstream(in) << input;
    std::string command = kHost;
    for (const auto& arg : args) command += " '" + arg + "'";
    SpawnOptions options;
    options.argv = {"/bin/sh", "-c", command + " < " + in + " > " + out + " 2>&1"};
    options.env = MakeEnvironment({"QREXEC_HOST_CONFIG"}, {});
    Output result;
    auto child = Spawn(options);
    if (!child) return result;
    auto status = child->Wait(sys::Deadline::After(60s));
    if (status) result.exit_code = ExitCodeOf(*status);
    result.text = ReadFile(out);
    return result;
  }

  std::string WriteConfig(const std::string& text) {
    std::string path = dir_ + "/host.toml";
    std::ofstream(path) << text;
    return path;
  }
};

TEST_F(CliTest, ABadConfigIsReportedWithFileAndLine) {
  std::string path = WriteConfig("[host]\nstate_dir = \"" + dir_ + "/state\"\n[[domain]]\nname = \"work\"\nclass = \"HVM\"\n");
  auto result = Run({"--config", path, "up"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.text.find(path + ":5: unknown class 'HVM'"), std::string::npos) << result.text;
  auto missing = Run({"--config", dir_ + "/nope.toml", "ls"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.text.find("nope.toml: cannot read the configuration"), std::string::npos) << missing.text;
}

TEST_F(CliTest, CommandsWithoutARunningHostSaySo) {
  std::string path = WriteConfig("[host]\nstate_dir = \"" + dir_ + "/state\"\n");
  auto result = Run({"--config", path, "ls"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.text.find("no host is running"), std::string::npos) << result.text;
  auto usage = Run({"--config", path, "frobnicate"});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_NE(usage.text.find("unknown command 'frobnicate'"), std::string::npos);
}

TEST_F(CliTest, UpRefusesToRunWithoutRoot) {
  if (::geteuid() != 0) {
    std::string path = WriteConfig("[host]\nstate_dir = \"" + dir_ + "/state\"\n");
    auto result = Run({"--config", path, "up"});
    EXPECT_EQ(result.exit_code, 1);
    EXPECT_NE(result.text.find("up needs root"), std::string::npos) << result.text;
    return;
  }
  if (::access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "needs setpriv to drop root";
  std::filesystem::permissions(dir_, std::filesystem::perms::all);
  std::string path = WriteConfig("[host]\nstate_dir = \"" + dir_ + "/state\"\n");
  ::chmod(path.c_str(), 0644);
  SpawnOptions options;
  std::string out = dir_ + "/nonroot.out";
  options.argv = {"/bin/sh", "-c",
                  "/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups " + kHost + " --config " + path +
                      " up > " + out + " 2>&1"};
  options.env = MakeEnvironment({}, {});
  auto child = Spawn(options);
  ASSERT_TRUE(child);
  auto status = child->Wait(sys::Deadline::After(30s));
  ASSERT_TRUE(status);
  EXPECT_EQ(ExitCodeOf(*status), 1);
  EXPECT_NE(ReadFile(out).find("up needs root"), std::string::npos) << ReadFile(out);
}

TEST_F(CliTest, UpLsRunCallAndACleanShutdown) {
  QREXEC_REQUIRE_ROOT_AND_BWRAP();
  for (const char* name : {"qrexec-agent", "qrexec-client-vm", "qrexec-daemon", "qrexec-client",
                           "qrexec-policy-daemon", "qrexec-policy-exec"})
    if (::access((std::string(QREXEC_BIN_DIR) + "/" + name).c_str(), X_OK) != 0)
      GTEST_SKIP() << "needs " << name << " in " QREXEC_BIN_DIR;
  std::filesystem::create_directories(dir_ + "/rpc");
  std::filesystem::create_directories(dir_ + "/policy.d");
  std::ofstream(dir_ + "/rpc/demo.Echo") << "#!/bin/sh\necho \"echo from $(hostname)\"\ncat\n";
  ::chmod((dir_ + "/rpc/demo.Echo").c_str(), 0755);
  std::ofstream(dir_ + "/policy.d/30-test.policy") << "demo.Echo * work vault allow\n";
  std::string path = WriteConfig("[host]\nstate_dir = \"" + dir_ + "/state\"\npolicy_dir = \"policy.d\"\n"
                                 "[[domain]]\nname = \"debian\"\nclass = \"TemplateVM\"\nservices = \"rpc\"\n"
                                 "[[domain]]\nname = \"work\"\ntemplate = \"debian\"\n"
                                 "[[domain]]\nname = \"vault\"\ntemplate = \"debian\"\n");
  SpawnOptions options;
  options.argv = {kHost, "--config", path, "up"};
  options.env = MakeEnvironment({}, {});
  options.log_path = dir_ + "/up.log";
  auto up = Spawn(options);
  ASSERT_TRUE(up);
  std::string control = dir_ + "/state/run/control.sock";
  auto limit = sys::Clock::now() + 20s;
  while (!std::filesystem::exists(control) && sys::Clock::now() < limit) std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(std::filesystem::exists(control)) << ReadFile(dir_ + "/up.log");

  auto ls = Run({"--config", path, "ls"});
  EXPECT_EQ(ls.exit_code, 0);
  EXPECT_NE(ls.text.find("work"), std::string::npos);
  EXPECT_NE(ls.text.find("Halted"), std::string::npos);
  auto unknown = Run({"--config", path, "start", "nosuch"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.text.find("unknown domain 'nosuch'"), std::string::npos) << unknown.text;

  auto run = Run({"--config", path, "run", "work", "--", "hostname; exit 3"});
  EXPECT_EQ(run.exit_code, 3) << run.text;
  EXPECT_EQ(run.text, "work\n");
  auto call = Run({"--config", path, "call", "work", "vault", "demo.Echo"}, "hi\n");
  EXPECT_EQ(call.exit_code, 0) << call.text;
  EXPECT_EQ(call.text, "echo from vault\nhi\n");
  auto denied = Run({"--config", path, "call", "vault", "work", "demo.Echo"});
  EXPECT_EQ(denied.exit_code, 126) << denied.text;
  auto ls2 = Run({"--config", path, "ls"});
  EXPECT_NE(ls2.text.find("Running"), std::string::npos) << ls2.text;

  std::vector<pid_t> agents = ProcessesWith(dir_);  // daemons name the state dir
  EXPECT_FALSE(agents.empty());
  up->Signal(SIGTERM);
  auto status = up->Wait(sys::Deadline::After(30s));
  ASSERT_TRUE(status);
  EXPECT_EQ(ExitCodeOf(*status), 0) << ReadFile(dir_ + "/up.log");
  EXPECT_TRUE(ProcessesWith(dir_ + "/state").empty());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/state/run"));
  EXPECT_TRUE(MountsUnder(dir_).empty());
}

}  // namespace
}  // namespace qrexec::host::testing
