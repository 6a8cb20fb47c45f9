// End-to-end calls through our real programs over the socket vchan backend:
// two agents (domains 42 "work" and 43 "vault"), their two daemons, a policy
// stub program, and the callers (qrexec-client, qrexec-client-vm).
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <optional>
#include <thread>

#include "dom0_fixture.h"

namespace qrexec::dom0test {
namespace {

std::string CurrentUser() {
  const passwd* pw = ::getpwuid(::getuid());
  return pw ? pw->pw_name : "root";
}

class EndToEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteScript(dir_ / "rpc/test.Echo", "echo \"$QREXEC_REMOTE_DOMAIN:$1\"\ncat\nexit 3\n");
    WriteScript(dir_ / "rpc0/test.Dom0",
                "echo \"dom0 from $QREXEC_REMOTE_DOMAIN ($QREXEC_REQUESTED_TARGET_TYPE "
                "$QREXEC_REQUESTED_TARGET_KEYWORD)\"\n");
    // Allows everything: test.Dom0 to dom0, the rest to vault (by uuid).
    WriteScript(dir_ / "policy",
                "case \"$4\" in\n"
                "test.Dom0*) printf 'user=DEFAULT\\nresult=allow\\ntarget=dom0\\n"
                "autostart=False\\nrequested_target=@adminvm\\n' ;;\n"
                "test.Deny*) printf 'result=deny\\n' ; exit 1 ;;\n"
                "*) printf 'user=DEFAULT\\nresult=allow\\ntarget=vault\\ntarget_uuid=uuid:U43\\n"
                "autostart=False\\nrequested_target=vault\\n' ;;\nesac\n");
    for (int domid : {42, 43}) StartAgent(domid);
    StartDaemon(42, "work");
    StartDaemon(43, "vault");
    for (const char* sock : {"qrexec.42", "qrexec.43"})
      for (int i = 0; i < 1000 && !PathExists(dir_ / sock); ++i)
        std::this_thread::sleep_for(milliseconds(5));
  }

  void TearDown() override {
    for (auto& process : processes_) {
      process.Kill(SIGTERM);
      process.Wait();
    }
  }

  std::map<std::string, std::string> Env(int domid, const std::string& service_dir) {
    return {{"VCHAN_SOCKET_DIR", dir_.path()},
            {"VCHAN_DOMAIN", std::to_string(domid)},
            {"QREXEC_SERVICE_PATH", dir_ / service_dir},
            {"QUBES_RPC_CONFIG_PATH", dir_ / "rpc-config"}};
  }

  void Spawn(std::vector<std::string> argv, std::map<std::string, std::string> env) {
    SpawnOptions options{.argv = std::move(argv), .env = std::move(env)};
    options.unset_env = {"QREXEC_BROKER_SOCKET"};
    options.stdin_mode = options.stdout_mode = Stdio::kNull;
    options.stderr_mode = Stdio::kInherit;
    auto process = Process::Spawn(options);
    ASSERT_TRUE(process);
    processes_.push_back(std::move(*process));
  }

  void StartAgent(int domid) {
    Spawn({BinPath("qrexec-agent"), "--no-fork-server",
           "--agent-socket=" + (dir_ / ("agent" + std::to_string(domid) + ".sock"))},
          Env(domid, "rpc"));
  }

  void StartDaemon(int domid, const std::string& name) {
    Spawn({BinPath("qrexec-daemon"), "-D", "--socket-dir=" + dir_.path(),
           "--policy-program=" + (dir_ / "policy"), "--policy-socket=" + (dir_ / "none.sock"), "-u",
           "U" + std::to_string(domid), std::to_string(domid), name, CurrentUser()},
          Env(0, "rpc0"));
  }

  RunResult ClientVm(const std::string& target, const std::string& service,
                     std::string_view input) {
    SpawnOptions options{.argv = {BinPath("qrexec-client-vm"),
                                  "--agent-socket=" + (dir_ / "agent42.sock"), target, service},
                         .env = Env(42, "rpc")};
    return RunProgram(options, input);
  }

  TempDir dir_;
  std::vector<Process> processes_;
};

TEST_F(EndToEndTest, Dom0RunsAServiceInAVm) {
  SpawnOptions options{.argv = {BinPath("qrexec-client"), "--socket-dir=" + dir_.path(), "-d",
                                "vault", "DEFAULT:QUBESRPC test.Echo+a dom0"},
                       .env = Env(0, "rpc0")};
  auto result = RunProgram(options, "input");
  EXPECT_EQ(result.out, "dom0:a\ninput");
  EXPECT_EQ(result.exit_code, 3) << result.err;
}

TEST_F(EndToEndTest, VmCallsAnotherVmThroughBothDaemons) {
  auto result = ClientVm("vault", "test.Echo+b", "data");
  EXPECT_EQ(result.out, "work:b\ndata");
  EXPECT_EQ(result.exit_code, 3) << result.err;
}

TEST_F(EndToEndTest, VmCallsADom0Service) {
  auto result = ClientVm("@adminvm", "test.Dom0", "");
  EXPECT_EQ(result.out, "dom0 from work (keyword adminvm)\n");
  EXPECT_EQ(result.exit_code, 0) << result.err;
}

TEST_F(EndToEndTest, DeniedCallExits126) {
  auto result = ClientVm("vault", "test.Deny", "");
  EXPECT_EQ(result.exit_code, 126) << result.err;
}

TEST_F(EndToEndTest, ManySequentialCallsReuseThePorts) {
  for (int i = 0; i < 300; ++i) {
    auto result = ClientVm("vault", "test.Echo+" + std::to_string(i), "");
    ASSERT_EQ(result.exit_code, 3) << "call " << i << ": " << result.err;
  }
  // No descriptor leaks in the daemons (processes_[2] and [3]).
  for (size_t i : {2u, 3u}) {
    size_t fds = 0;
    for (auto& entry : std::filesystem::directory_iterator(
             "/proc/" + std::to_string(processes_[i].pid()) + "/fd")) {
      (void)entry;
      ++fds;
    }
    EXPECT_LT(fds, 32u) << "daemon " << i;
  }
}

TEST_F(EndToEndTest, ManyParallelCallsAllComplete) {
  constexpr int kCalls = 64;
  std::vector<int> codes(kCalls, -1);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i)
    threads.emplace_back([&, i] { codes[i] = ClientVm("vault", "test.Echo+p", "x").exit_code; });
  for (auto& thread : threads) thread.join();
  for (int i = 0; i < kCalls; ++i) EXPECT_EQ(codes[i], 3) << "call " << i;
}

}  // namespace
}  // namespace qrexec::dom0test
