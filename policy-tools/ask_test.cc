// The "ask" and notification flows of qrexec-policy-daemon with a scripted
// agent and with the real qrexec-policy-agent (policy-language.md §4.8, §5.4).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "base/sys.h"
#include "harness.h"
#include "test_util.h"

namespace qrexec::policy_tools::testing {
namespace {

using nlohmann::json;

constexpr std::string_view kPersonalAllow =
    "user=DEFAULT\nresult=allow\ntarget=personal\n"
    "target_uuid=uuid:22222222-2222-2222-2222-222222222222\nautostart=True\nrequested_target="
    "personal";

// Splits "HEADER\0JSON" and parses the JSON.
std::pair<std::string, json> SplitAgentRequest(const std::string& request) {
  auto nul = request.find('\0');
  if (nul == std::string::npos) return {request, json()};
  return {request.substr(0, nul), json::parse(request.substr(nul + 1), nullptr, false)};
}

class AskFlowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    harness::WriteFile(dir_ / "system-info.json", SmallSystemInfoJson());
    harness::WriteFile(dir_ / "policy/30-test.policy",
                       "test.Ask * work @anyvm ask default_target=personal\n"
                       "test.AskNotify * work @anyvm ask notify=yes\n"
                       "test.Allow * work personal allow\n"
                       "test.Deny * work personal deny\n"
                       "test.Quiet * work personal deny notify=no\n"
                       "test.Loud * work personal allow notify=yes\n"
                       "test.NoGui * vault @anyvm ask default_target=personal\n");
  }
  std::optional<std::string> Ask(std::string_view source, std::string_view target,
                                 std::string_view service) {
    return Query(daemon_.policy_socket(), PolicyRequest(source, target, service));
  }
  std::vector<std::string> AskRequests(ScriptedAgent& agent) {
    std::vector<std::string> asks;
    for (const auto& request : agent.requests())
      if (request.starts_with("policy.Ask")) asks.push_back(request);
    return asks;
  }

  harness::TempDir dir_;
  DaemonUnderTest daemon_{dir_};
};

TEST_F(AskFlowTest, ThePolicyAgentIsAskedWithTheExactRequestAndItsChoiceIsUsed) {
  ScriptedAgent agent(daemon_.agent_socket(), [](const std::string& request) {
    return request.starts_with("policy.Ask") ? std::string("allow:personal") : std::string();
  });
  ASSERT_TRUE(daemon_.Start());
  EXPECT_EQ(Ask("work", "", "test.Ask+arg"),
            "user=DEFAULT\nresult=allow\ntarget=personal\n"
            "target_uuid=uuid:22222222-2222-2222-2222-222222222222\nautostart=True\n"
            "requested_target=@default");
  auto asks = AskRequests(agent);
  ASSERT_EQ(asks.size(), 1u);
  auto [header, body] = SplitAgentRequest(asks[0]);
  EXPECT_EQ(header, "policy.Ask dom0 name dom0");
  EXPECT_EQ(body["source"], "work");
  EXPECT_EQ(body["service"], "test.Ask");
  EXPECT_EQ(body["argument"], "+arg");
  EXPECT_EQ(body["default_target"], "personal");
  // Internal qubes and the source itself are never offered.
  EXPECT_EQ(body["targets"], json({"@dispvm:default-dvm", "default-dvm", "personal", "vault"}));
  EXPECT_EQ(body["icons"]["@dispvm:default-dvm"], "dispvm-red");
}

TEST_F(AskFlowTest, AChoiceOutsideTheOfferedTargetsIsDenied) {
  ScriptedAgent agent(daemon_.agent_socket(), [](const std::string&) { return "allow:dom0"; });
  ASSERT_TRUE(daemon_.Start());
  EXPECT_EQ(Ask("work", "personal", "test.Ask"), "result=deny");
  EXPECT_NE(daemon_.Log().find("is not a valid choice"), std::string::npos) << daemon_.Log();
}

TEST_F(AskFlowTest, AnUnreachableAgentOrAGarbledReplyDenies) {
  ASSERT_TRUE(daemon_.Start());
  EXPECT_EQ(Ask("work", "personal", "test.Ask"), "result=deny");  // nobody listens
  ScriptedAgent agent(daemon_.agent_socket(), [](const std::string&) { return "yes please"; });
  EXPECT_EQ(Ask("work", "personal", "test.Ask"), "result=deny");
}

TEST_F(AskFlowTest, ASourceWithoutGuiVmIsDeniedWithoutAsking) {
  ScriptedAgent agent(daemon_.agent_socket(), [](const std::string&) { return "allow:personal"; });
  ASSERT_TRUE(daemon_.Start());
  EXPECT_EQ(Ask("vault", "personal", "test.NoGui"), "result=deny");
  EXPECT_TRUE(AskRequests(agent).empty());
}

TEST_F(AskFlowTest, APendingAskDoesNotBlockOtherEvaluations) {
  ScriptedAgent agent(daemon_.agent_socket(), [](const std::string&) { return "allow:personal"; });
  agent.Hold();
  ASSERT_TRUE(daemon_.Start());
  std::optional<std::string> asked;
  std::thread asker([&] { asked = Ask("work", "personal", "test.Ask"); });
  ASSERT_TRUE(agent.WaitForRequests(1));
  // The user has not answered yet; other clients are served meanwhile.
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(Ask("work", "personal", "test.Allow"), std::string(kPersonalAllow));
  EXPECT_FALSE(asked.has_value());
  agent.Release();
  asker.join();
  EXPECT_EQ(asked, std::string(kPersonalAllow));
}

TEST_F(AskFlowTest, AClientThatLeavesWhileAskedDropsTheQuestion) {
  ScriptedAgent agent(daemon_.agent_socket(), [](const std::string&) { return "allow:personal"; });
  agent.Hold();
  ASSERT_TRUE(daemon_.Start());
  {
    auto conn = harness::ConnectUnixRetry(daemon_.policy_socket());
    ASSERT_TRUE(conn);
    ASSERT_TRUE(sys::WriteAll(conn->get(), PolicyRequest("work", "personal", "test.Ask")));
    ASSERT_TRUE(agent.WaitForRequests(1));
  }  // closed without waiting for the answer
  bool logged = false;
  for (int i = 0; i < 500 && !logged; ++i) {
    logged = daemon_.Log().find("client left while the user was being asked") != std::string::npos;
    if (!logged) ::usleep(10000);
  }
  EXPECT_TRUE(logged) << daemon_.Log();
  agent.Release();
  EXPECT_EQ(Ask("work", "personal", "test.Ask"), std::string(kPersonalAllow));
}

TEST_F(AskFlowTest, DenialsAndNotifyYesAllowsAreNotified) {
  ScriptedAgent agent(daemon_.agent_socket(), [](const std::string& request) {
    return request.starts_with("policy.Ask") ? "deny" : "";
  });
  ASSERT_TRUE(daemon_.Start());
  EXPECT_EQ(Ask("work", "personal", "test.Deny"), "result=deny");
  EXPECT_EQ(Ask("work", "personal", "test.Quiet"), "result=deny");
  EXPECT_EQ(Ask("work", "personal", "test.Allow"), std::string(kPersonalAllow));
  EXPECT_EQ(Ask("work", "personal", "test.Loud"), std::string(kPersonalAllow));
  EXPECT_EQ(Ask("work", "personal", "test.AskNotify"), "result=deny");  // the user said no
  ASSERT_TRUE(agent.WaitForRequests(4));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // nothing else may arrive
  std::vector<json> notes;
  for (const auto& request : agent.requests()) {
    auto [header, body] = SplitAgentRequest(request);
    if (header == "policy.Notify dom0 name dom0") notes.push_back(body);
  }
  ASSERT_EQ(notes.size(), 3u);
  std::vector<std::string> seen;
  for (const auto& note : notes)
    seen.push_back(note["resolution"].get<std::string>() + " " +
                   note["service"].get<std::string>() + " " + note["target"].get<std::string>());
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen,
            (std::vector<std::string>{"allow test.Loud personal", "deny test.AskNotify personal",
                                      "deny test.Deny personal"}));
}

class RealAgentTest : public AskFlowTest {
 protected:
  // The agent's standard output goes to dir/agent.out.
  std::optional<harness::Process> StartAgent(const char* mode) {
    harness::SpawnOptions options;
    options.argv = {harness::BinPath("qrexec-policy-agent"), "-s", daemon_.agent_socket(), mode};
    options.stdin_mode = harness::Stdio::kNull;
    UniqueFd out(
        ::open((dir_ / "agent.out").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    options.stdout_fd = out.get();
    auto process = harness::Process::Spawn(options);
    if (!process) return std::nullopt;
    for (int i = 0; i < 5000 && !harness::PathExists(daemon_.agent_socket()); ++i) ::usleep(2000);
    return std::move(*process);
  }
  // Waits (10 s at most) until the agent printed `text`.
  bool AgentPrinted(std::string_view text) {
    for (int i = 0; i < 1000; ++i) {
      if (harness::ReadFile(dir_ / "agent.out").find(text) != std::string::npos) return true;
      ::usleep(10000);
    }
    return false;
  }
};

TEST_F(RealAgentTest, AssumeYesAnswersTheDefaultTarget) {
  auto agent = StartAgent("--assume-yes");
  ASSERT_TRUE(agent);
  ASSERT_TRUE(daemon_.Start());
  EXPECT_EQ(Ask("work", "vault", "test.Ask"),
            "user=DEFAULT\nresult=allow\ntarget=personal\n"
            "target_uuid=uuid:22222222-2222-2222-2222-222222222222\nautostart=True\n"
            "requested_target=vault");
  EXPECT_EQ(Ask("work", "personal", "test.Loud"), std::string(kPersonalAllow));
  // Without a default target, --assume-yes has nothing to pick.
  EXPECT_EQ(Ask("work", "personal", "test.AskNotify"), "result=deny");
  EXPECT_TRUE(
      AgentPrinted("policy.Ask: work -> test.Ask+ targets=[@dispvm:default-dvm, "
                   "default-dvm, personal, vault] default=personal: allow:personal"))
      << harness::ReadFile(dir_ / "agent.out");
  // Notifications are sent after the answer, so wait for them.
  EXPECT_TRUE(AgentPrinted("policy.Notify: allow test.Loud+ from work to personal"))
      << harness::ReadFile(dir_ / "agent.out");
  EXPECT_TRUE(AgentPrinted("policy.Notify: deny test.AskNotify+ from work to personal"))
      << harness::ReadFile(dir_ / "agent.out");
}

TEST_F(RealAgentTest, AssumeNoDenies) {
  auto agent = StartAgent("--assume-no");
  ASSERT_TRUE(agent);
  ASSERT_TRUE(daemon_.Start());
  EXPECT_EQ(Ask("work", "personal", "test.Ask"), "result=deny");
  EXPECT_TRUE(AgentPrinted("default=personal: deny")) << harness::ReadFile(dir_ / "agent.out");
}

}  // namespace
}  // namespace qrexec::policy_tools::testing
