// Whole calls through our real binaries on the socket transport: client-vm ->
// agent -> daemon -> policy daemon -> daemon -> agent -> service, and back.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mini_qubes.h"

namespace qrexec::harness {
namespace {

const char* kPolicy = R"(
demo.Echo      *  work  vault      allow
demo.Echo      *  work  @dispvm    allow
demo.Exit      *  work  vault      allow
demo.Missing   *  work  vault      allow
demo.Sha256    *  work  vault      allow
demo.Produce   *  work  vault      allow
demo.Complain  *  work  vault      allow
demo.Echo      *  work  sleepy     allow
demo.Dom0Env   *  work  @adminvm   allow
demo.Echo      *  work  @default   allow target=vault
demo.Denied    *  @anyvm @anyvm    deny
)";

class Calls : public ::testing::Test {
 protected:
  void SetUp() override {
    qubes_ = std::make_unique<MiniQubes>(
        std::vector<DomainSpec>{
            {.name = "work", .domid = 1, .default_dispvm = "dvm-tmpl"},
            {.name = "vault", .domid = 2},
            {.name = "sleepy", .domid = 3, .running = false},
            {.name = "dvm-tmpl", .domid = 4, .running = false, .template_for_dispvms = true},
        },
        kPolicy);
    for (const char* vm : {"vault", "sleepy", "dvm-tmpl"}) {
      WriteScript(qubes_->ServiceDir(vm) + "/demo.Echo",
                  "printf 'from %s:' \"$QREXEC_REMOTE_DOMAIN\"; cat; echo err >&2\n");
    }
    WriteScript(qubes_->ServiceDir("vault") + "/demo.Exit",
                "case \"$1\" in sig) kill -TERM $$ ;; *) exit \"$1\" ;; esac\n");
    WriteScript(qubes_->ServiceDir("vault") + "/demo.Sha256", "exec sha256sum\n");
    WriteScript(qubes_->ServiceDir("vault") + "/demo.Complain", "echo complaint >&2; sleep 2\n");
    WriteScript(qubes_->ServiceDir("vault") + "/demo.Produce",
                "exec 3>&1\nhead -c \"$1\" /dev/urandom | tee /dev/fd/3 | sha256sum >&2\n");
    WriteScript(qubes_->ServiceDir("dom0") + "/demo.Dom0Env",
                "echo \"remote=$QREXEC_REMOTE_DOMAIN type=$QREXEC_REQUESTED_TARGET_TYPE "
                "keyword=$QREXEC_REQUESTED_TARGET_KEYWORD full=$QREXEC_SERVICE_FULL_NAME\"\n");
    ASSERT_TRUE(qubes_->Start()) << qubes_->error();
  }

  RunResult Call(const std::string& target, const std::string& service, std::string_view input = {},
                 std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {target, service};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunProgram(qubes_->ClientVm("work", args), input, std::chrono::seconds(60));
  }

  std::unique_ptr<MiniQubes> qubes_;
};

TEST_F(Calls, AnAllowedCallCarriesStdinStdoutStderrAndTheSource) {
  auto result = Call("vault", "demo.Echo", "hello");
  EXPECT_EQ(result.exit_code, 0) << result.err << qubes_->Logs();
  EXPECT_EQ(result.out, "from work:hello");
  EXPECT_EQ(result.err, "err\n");
}

TEST_F(Calls, ADeniedCallExits126AndSaysRequestRefused) {
  auto result = Call("vault", "demo.Denied");
  EXPECT_EQ(result.exit_code, 126);
  EXPECT_NE(result.err.find("Request refused"), std::string::npos) << result.err;
}

TEST_F(Calls, ACallWithNoMatchingRuleIsDenied) {
  auto result = Call("vault", "demo.NoRuleForThis");
  EXPECT_EQ(result.exit_code, 126);
}

TEST_F(Calls, AMissingServiceExits127) {
  auto result = Call("vault", "demo.Missing");
  EXPECT_EQ(result.exit_code, 127) << result.err << qubes_->Logs();
}

TEST_F(Calls, TheRemoteExitCodeIsReturned) {
  EXPECT_EQ(Call("vault", "demo.Exit+7").exit_code, 7);
  EXPECT_EQ(Call("vault", "demo.Exit+0").exit_code, 0);
}

TEST_F(Calls, AServiceKilledByASignalExits128PlusTheSignal) {
  EXPECT_EQ(Call("vault", "demo.Exit+sig").exit_code, 128 + SIGTERM);
}

TEST_F(Calls, DollarDispvmIsSentAsAtDispvmAndRunsInAFreshDisposable) {
  auto result = Call("$dispvm", "demo.Echo", "x");
  EXPECT_EQ(result.exit_code, 0) << result.err << qubes_->Logs();
  EXPECT_EQ(result.out, "from work:x");
  ASSERT_EQ(qubes_->CreatedDisposables().size(), 1u);
  auto second = Call("@dispvm", "demo.Echo", "y");
  EXPECT_EQ(second.exit_code, 0);
  EXPECT_EQ(qubes_->CreatedDisposables().size(), 2u) << "each call gets a new disposable";
  // Each disposable is killed when its call ends.
  for (int i = 0; i < 200 && qubes_->RunningDisposables() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  EXPECT_EQ(qubes_->RunningDisposables(), 0);
}

TEST_F(Calls, ADefaultTargetIsRedirectedByPolicy) {
  auto result = Call("", "demo.Echo", "z");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "from work:z");
}

TEST_F(Calls, AHaltedTargetIsStartedOnDemand) {
  EXPECT_FALSE(qubes_->IsRunning("sleepy"));
  auto result = Call("sleepy", "demo.Echo", "wake");
  EXPECT_EQ(result.exit_code, 0) << result.err << qubes_->Logs();
  EXPECT_EQ(result.out, "from work:wake");
  EXPECT_TRUE(qubes_->IsRunning("sleepy"));
}

// The daemon appends "+" to a service without an argument (§5.1), so dom0
// services see the full name with it.
TEST_F(Calls, AVmCanCallAServiceInDom0) {
  auto result = Call("@adminvm", "demo.Dom0Env");
  EXPECT_EQ(result.exit_code, 0) << result.err << qubes_->Logs();
  EXPECT_EQ(result.out, "remote=work type=keyword keyword=adminvm full=demo.Dom0Env+\n");
}

TEST_F(Calls, Dom0CanRunAServiceInAVm) {
  auto result = RunProgram(qubes_->Client({"-d", "vault", "DEFAULT:QUBESRPC demo.Echo dom0"}), "d0");
  EXPECT_EQ(result.exit_code, 0) << result.err << qubes_->Logs();
  EXPECT_EQ(result.out, "from dom0:d0");
}

TEST_F(Calls, ALocalProgramTalksToTheService) {
  TempDir scratch;
  std::string out = scratch / "reply";
  auto result = Call("vault", "demo.Echo", {},
                     {"/bin/sh", "-c", "echo ping; exec 1>&-; cat > " + out});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(ReadFile(out), "from work:ping\n");
}

// Is there a process whose command line is exactly `argv`?
bool AnyProcessRuns(const std::vector<std::string>& argv) {
  std::string wanted;
  for (const auto& arg : argv) wanted += arg + '\0';
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    if (ReadFile(entry.path() / "cmdline") == wanted) return true;
  }
  return false;
}

// §4.6: a service's stderr goes to the caller and also to
// `logger -t SERVICE+ARG-SOURCE`, which lives as long as the call.
TEST_F(Calls, ServiceStderrIsAlsoHandedToLoggerTaggedWithServiceAndSource) {
  if (::access("/usr/bin/logger", X_OK) != 0 && ::access("/bin/logger", X_OK) != 0)
    GTEST_SKIP() << "no logger program";
  auto call = std::async(std::launch::async, [this] { return Call("vault", "demo.Complain+why"); });
  bool seen = false;
  for (int i = 0; i < 150 && !seen; ++i) {
    seen = AnyProcessRuns({"logger", "-t", "demo.Complain+why-work"});
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto result = call.get();
  EXPECT_TRUE(seen) << "no `logger -t demo.Complain+why-work` while the call ran";
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.err, "complaint\n");
}

// Byte-exact streams: sha256 of what one side sent against what the other got.
void ExpectCallerToServiceExact(MiniQubes& qubes, long long bytes) {
  TempDir scratch;
  std::string client_vm;
  for (const auto& word : qubes.ClientVm("work", {"vault", "demo.Sha256"}).argv) client_vm += "'" + word + "' ";
  SpawnOptions options = qubes.ClientVm("work", {});
  options.argv = {"/bin/bash", "-c",
                  "head -c " + std::to_string(bytes) + " /dev/urandom | tee >(sha256sum > " +
                      (scratch / "sent") + ") | " + client_vm + " > " + (scratch / "got") +
                      "; rc=$?; sleep 0.2; exit $rc"};
  auto result = RunProgram(options, {}, std::chrono::minutes(5));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(ReadFile(scratch / "got"), ReadFile(scratch / "sent"));
  EXPECT_EQ(ReadFile(scratch / "got").size(), 68u);
}

void ExpectServiceToCallerExact(MiniQubes& qubes, long long bytes) {
  TempDir scratch;
  std::string client_vm;
  for (const auto& word : qubes.ClientVm("work", {"vault", "demo.Produce+" + std::to_string(bytes)}).argv)
    client_vm += "'" + word + "' ";
  SpawnOptions options = qubes.ClientVm("work", {});
  options.argv = {"/bin/bash", "-c",
                  "set -o pipefail; " + client_vm + " 2> " + (scratch / "sent") + " | sha256sum > " +
                      (scratch / "got")};
  auto result = RunProgram(options, {}, std::chrono::minutes(5));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(ReadFile(scratch / "got"), ReadFile(scratch / "sent"));
  EXPECT_EQ(ReadFile(scratch / "got").size(), 68u);
}

TEST_F(Calls, A64KiBStreamArrivesByteExactInBothDirections) {
  ExpectCallerToServiceExact(*qubes_, 64 * 1024);
  ExpectServiceToCallerExact(*qubes_, 64 * 1024);
}

TEST_F(Calls, A1GiBStreamArrivesByteExactInBothDirections) {
  ExpectCallerToServiceExact(*qubes_, 1LL << 30);
  ExpectServiceToCallerExact(*qubes_, 1LL << 30);
}

TEST_F(Calls, ManyCallsAtOnceAllSucceed) {
  std::vector<std::future<RunResult>> calls;
  for (int i = 0; i < 32; ++i)
    calls.push_back(std::async(std::launch::async, [this, i] { return Call("vault", "demo.Echo", std::to_string(i)); }));
  for (int i = 0; i < 32; ++i) {
    auto result = calls[static_cast<size_t>(i)].get();
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(result.out, "from work:" + std::to_string(i));
  }
}

}  // namespace
}  // namespace qrexec::harness
