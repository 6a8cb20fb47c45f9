// Warm call handlers (agent/warm_handlers.h, opt-in: --warm-handlers) seen from outside: which
// process runs each call, what a handler keeps between calls, and how the
// agent replaces and retires them.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mini_qubes.h"

namespace qrexec::harness {
namespace {

using std::chrono::milliseconds;

const char* kPolicy =
    "demo.Who * work vault allow\ndemo.Hold * work vault allow\ndemo.Late * work vault allow\n";

std::string ReadProcFile(pid_t pid, const char* file) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Children of `parent` that are call handlers (forked from the agent, so
// they keep its name).
std::vector<pid_t> HandlersOf(pid_t parent) {
  std::vector<pid_t> handlers;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = std::stoi(name);
    std::string stat = ReadProcFile(pid, "stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && state != 'Z' && ReadProcFile(pid, "comm") == "qrexec-agent\n")
      handlers.push_back(pid);
  }
  return handlers;
}

bool Gone(pid_t pid) {
  std::string stat = ReadProcFile(pid, "stat");
  auto close = stat.rfind(')');
  return stat.empty() ||
         (close != std::string::npos && stat.size() > close + 2 && stat[close + 2] == 'Z');
}

class WarmHandlers : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> agent_args = {}) {
    qubes_ = std::make_unique<MiniQubes>(
        std::vector<DomainSpec>{{.name = "work", .domid = 1}, {.name = "vault", .domid = 2}},
        kPolicy);
    for (auto& arg : agent_args) qubes_->AddAgentArg(arg);
    // Prints the pid of the process that handles the call, then echoes.
    WriteScript(qubes_->ServiceDir("vault") + "/demo.Who",
                "echo \"$PPID $QREXEC_AGENT_PID\"; cat\n");
    WriteScript(qubes_->ServiceDir("vault") + "/demo.Hold", "sleep 1; echo held\n");
    // Leaves a process behind that sends SIGUSR1 after the call is over.
    WriteScript(qubes_->ServiceDir("vault") + "/demo.Late",
                "echo \"$QREXEC_AGENT_PID\"\n"
                "(sleep 0.2; kill -USR1 \"$QREXEC_AGENT_PID\") </dev/null >/dev/null 2>&1 &\n");
    ASSERT_TRUE(qubes_->Start()) << qubes_->error();
  }

  // The handler's pid as the service saw it (its parent, which must also be
  // QREXEC_AGENT_PID), and whatever followed on stdout.
  std::pair<pid_t, std::string> Who(std::string_view input = {}) {
    auto result = RunProgram(qubes_->ClientVm("work", {"vault", "demo.Who"}), input,
                             std::chrono::seconds(20));
    EXPECT_EQ(result.exit_code, 0) << result.err << qubes_->Logs();
    std::istringstream out(result.out);
    pid_t parent = 0, agent_pid = 0;
    out >> parent >> agent_pid;
    EXPECT_EQ(parent, agent_pid) << "QREXEC_AGENT_PID must name the handler";
    std::string rest;
    std::getline(out, rest);  // the end of the first line
    std::stringstream tail;
    tail << out.rdbuf();
    return {parent, tail.str()};
  }

  std::unique_ptr<MiniQubes> qubes_;
};

TEST_F(WarmHandlers, ConsecutiveCallsRunInOneWarmHandler) {
  Start({"--warm-handlers"});
  auto [first, out1] = Who("a");
  auto [second, out2] = Who("b");
  EXPECT_EQ(out1, "a");
  EXPECT_EQ(out2, "b");
  EXPECT_EQ(first, second);
  EXPECT_EQ(HandlersOf(qubes_->AgentPid("vault")), std::vector<pid_t>{first});
}

TEST_F(WarmHandlers, ForkPerCallGivesEveryCallAFreshHandler) {
  Start({"--fork-per-call"});
  auto [first, out1] = Who();
  auto [second, out2] = Who();
  EXPECT_NE(first, second);
  EXPECT_TRUE(Gone(first));
}

TEST_F(WarmHandlers, AnIdleHandlerHoldsNothingButItsAgentSocket) {
  Start({"--warm-handlers"});
  auto [handler, out] = Who("x");
  // stdin, stdout, stderr (inherited from the agent) and the socket.
  bool idle = false;
  for (int i = 0; i < 200 && !idle; ++i) {
    std::error_code ec;
    auto fds = std::distance(
        std::filesystem::directory_iterator("/proc/" + std::to_string(handler) + "/fd", ec),
        std::filesystem::directory_iterator());
    idle = fds == 4;
    if (!idle) std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_TRUE(idle);
}

TEST_F(WarmHandlers, AKilledIdleHandlerIsReplacedByANewOne) {
  Start({"--warm-handlers"});
  auto [first, out1] = Who();
  ASSERT_GT(first, 0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  for (int i = 0; i < 500 && !Gone(first); ++i) std::this_thread::sleep_for(milliseconds(10));
  ASSERT_TRUE(Gone(first));
  auto [second, out2] = Who("still works");
  EXPECT_NE(second, first);
  EXPECT_EQ(out2, "still works");
}

TEST_F(WarmHandlers, AtMostFourHandlersStayAfterABurst) {
  Start({"--warm-handlers"});
  std::vector<std::future<RunResult>> calls;
  for (int i = 0; i < 8; ++i) {
    calls.push_back(std::async(std::launch::async, [this] {
      return RunProgram(qubes_->ClientVm("work", {"vault", "demo.Hold"}), "",
                        std::chrono::seconds(30));
    }));
  }
  for (auto& call : calls) {
    auto result = call.get();
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(result.out, "held\n");
  }
  pid_t agent = qubes_->AgentPid("vault");
  size_t handlers = 99;
  for (int i = 0; i < 500; ++i) {
    handlers = HandlersOf(agent).size();
    if (handlers <= 4) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_LE(handlers, 4u);
  EXPECT_GE(handlers, 1u);
}

// A service may leave a process behind that signals SIGUSR1 (the
// single-socket switch) after its call ended. The next call on the same
// handler must not be switched: its stdout would be dropped.
TEST_F(WarmHandlers, ALateSigusr1FromAnEarlierCallDoesNotReachTheNextCall) {
  Start({"--warm-handlers"});
  auto late =
      RunProgram(qubes_->ClientVm("work", {"vault", "demo.Late"}), "", std::chrono::seconds(20));
  ASSERT_EQ(late.exit_code, 0) << late.err << qubes_->Logs();
  std::this_thread::sleep_for(milliseconds(500));  // the signal is pending now
  auto [handler, out] = Who("kept");
  EXPECT_EQ(std::to_string(handler) + "\n", late.out) << "the same handler ran both calls";
  EXPECT_EQ(out, "kept");
}

}  // namespace
}  // namespace qrexec::harness
