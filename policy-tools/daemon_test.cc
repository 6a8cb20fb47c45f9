// Black-box tests of qrexec-policy-daemon: the real binary in a temporary
// directory, spoken to over its sockets (policy-language.md §5.1).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/sys.h"
#include "harness.h"
#include "test_util.h"

namespace qrexec::policy_tools::testing {
namespace {

constexpr std::string_view kPersonalAllow =
    "user=DEFAULT\nresult=allow\ntarget=personal\n"
    "target_uuid=uuid:22222222-2222-2222-2222-222222222222\nautostart=True\nrequested_target="
    "personal";

class PolicyDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    harness::WriteFile(dir_ / "system-info.json", SmallSystemInfoJson());
    WritePolicy("30-test.policy",
                "test.Allow * work personal allow\n"
                "test.Allow * work @dispvm allow\n"
                "test.Allow * work vault deny notify=no\n"
                "test.Dom0 * work @adminvm allow user=root\n"
                "test.Ask * work @anyvm ask default_target=personal\n"
                "test.AskNoDefault * work @anyvm ask\n"
                "test.Notify * work personal allow notify=yes\n");
  }
  void WritePolicy(const std::string& name, std::string_view text) {
    harness::WriteFile(dir_ / ("policy/" + name), text);
  }
  std::optional<std::string> Ask(std::string_view source, std::string_view target,
                                 std::string_view service, std::string_view extra = "") {
    return Query(daemon_.policy_socket(), PolicyRequest(source, target, service, extra));
  }

  harness::TempDir dir_;
  DaemonUnderTest daemon_{dir_};
};

TEST_F(PolicyDaemonTest, AnswersAreByteExactForQubeDispvmDom0AndDeny) {
  ASSERT_TRUE(daemon_.Start());
  EXPECT_EQ(Ask("work", "personal", "test.Allow"), std::string(kPersonalAllow));
  EXPECT_EQ(Ask("work", "@dispvm", "test.Allow"),
            "user=DEFAULT\nresult=allow\ntarget=@dispvm:default-dvm\n"
            "target_uuid=@dispvm:uuid:33333333-3333-3333-3333-333333333333\nautostart=True\n"
            "requested_target=@dispvm");
  EXPECT_EQ(Ask("work", "dom0", "test.Dom0"),
            "user=root\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=dom0");
  EXPECT_EQ(Ask("work", "vault", "test.Allow"), "result=deny");
  EXPECT_EQ(Ask("work", "personal", "test.Unknown"), "result=deny");
  EXPECT_EQ(Ask("personal", "personal", "test.Allow"), "result=deny");
}

TEST_F(PolicyDaemonTest, MalformedRequestsAreClosedWithoutAnAnswer) {
  ASSERT_TRUE(daemon_.Start());
  const std::vector<std::string> bad = {
      "source=work\nintended_target=personal\n\n",  // missing key
      "source=work\nsource=work\nintended_target=personal\nservice_and_arg=test.Allow\n\n",
      "source=work\nintended_target=personal\nservice_and_arg=test.Allow\ndomain_id=1\n\n",
      "source=work\nintended_target=personal\nservice_and_arg=test.Allow\njust_evaluate=maybe\n\n",
      "source=work\nno equals sign\nintended_target=personal\nservice_and_arg=test.Allow\n\n",
      "source=w\xc3\xb6rk\nintended_target=personal\nservice_and_arg=test.Allow\n\n",
      ""};
  for (const auto& request : bad) EXPECT_EQ(Query(daemon_.policy_socket(), request), "") << request;
  EXPECT_EQ(Ask("work", "personal", "test.Allow"), std::string(kPersonalAllow));
  EXPECT_NE(daemon_.Log().find("error parsing policy request"), std::string::npos);
}

TEST_F(PolicyDaemonTest, ARequestEndedByEofIsAnswered) {
  ASSERT_TRUE(daemon_.Start());
  EXPECT_EQ(Query(daemon_.policy_socket(),
                  "source=work\nintended_target=personal\nservice_and_arg=test.Allow"),
            std::string(kPersonalAllow));
}

TEST_F(PolicyDaemonTest, ManyConcurrentClientsAreAllAnswered) {
  ASSERT_TRUE(daemon_.Start());
  // One client that never finishes its request must not hold up the others.
  auto stalled = harness::ConnectUnixRetry(daemon_.policy_socket());
  ASSERT_TRUE(stalled);
  ASSERT_TRUE(sys::WriteAll(stalled->get(), "source=work\n"));
  constexpr int kClients = 200;
  std::vector<UniqueFd> conns;
  for (int i = 0; i < kClients; ++i) {
    auto conn = harness::ConnectUnixRetry(daemon_.policy_socket());
    ASSERT_TRUE(conn);
    std::string request = PolicyRequest("work", i % 2 ? "personal" : "vault", "test.Allow");
    ASSERT_TRUE(sys::WriteAll(conn->get(), request.substr(0, 10)));
    conns.push_back(std::move(*conn));
  }
  for (int i = 0; i < kClients; ++i) {
    std::string request = PolicyRequest("work", i % 2 ? "personal" : "vault", "test.Allow");
    ASSERT_TRUE(sys::WriteAll(conns[i].get(), request.substr(10)));
  }
  for (int i = 0; i < kClients; ++i) {
    auto reply =
        sys::ReadToEof(conns[i].get(), 4096, sys::Deadline::After(std::chrono::seconds(10)));
    ASSERT_TRUE(reply);
    EXPECT_EQ(*reply, i % 2 ? std::string(kPersonalAllow) : "result=deny");
  }
}

TEST_F(PolicyDaemonTest, APolicyChangeIsSeenByTheNextRequest) {
  ASSERT_TRUE(daemon_.Start());
  EXPECT_EQ(Ask("work", "personal", "test.New"), "result=deny");
  WritePolicy("20-new.policy", "test.New * work personal allow\n");
  EXPECT_EQ(Ask("work", "personal", "test.New"), std::string(kPersonalAllow));
  // A new subdirectory included with !include-dir is watched too.
  WritePolicy("10-inc.policy", "!include-dir sub\n");
  harness::WriteFile(dir_ / "policy/sub/a.policy", "test.Sub * work personal allow\n");
  EXPECT_EQ(Ask("work", "personal", "test.Sub"), std::string(kPersonalAllow));
  harness::WriteFile(dir_ / "policy/sub/a.policy", "test.Sub * work personal deny\n");
  EXPECT_EQ(Ask("work", "personal", "test.Sub"), "result=deny");
  ASSERT_EQ(::unlink((dir_ / "policy/20-new.policy").c_str()), 0);
  EXPECT_EQ(Ask("work", "personal", "test.New"), "result=deny");
}

TEST_F(PolicyDaemonTest, ABrokenPolicyDeniesEverythingAndTheLogNamesFileAndLine) {
  ASSERT_TRUE(daemon_.Start());
  WritePolicy("40-broken.policy", "# fine\ntest.Allow * work personal allow bogus\n");
  EXPECT_EQ(Ask("work", "personal", "test.Allow"), "result=deny");
  EXPECT_NE(daemon_.Log().find("40-broken.policy:2:"), std::string::npos) << daemon_.Log();
  EXPECT_TRUE(daemon_.Running());
  WritePolicy("40-broken.policy", "# fixed\n");
  EXPECT_EQ(Ask("work", "personal", "test.Allow"), std::string(kPersonalAllow));
}

TEST_F(PolicyDaemonTest, ADaemonStartedOnABrokenPolicyDeniesUntilFixed) {
  WritePolicy("40-broken.policy", "test.Allow * work\n");
  ASSERT_TRUE(daemon_.Start());
  EXPECT_EQ(Ask("work", "personal", "test.Allow"), "result=deny");
  EXPECT_NE(daemon_.Log().find("40-broken.policy:1: wrong number of fields"), std::string::npos)
      << daemon_.Log();
  ASSERT_EQ(::unlink((dir_ / "policy/40-broken.policy").c_str()), 0);
  EXPECT_EQ(Ask("work", "personal", "test.Allow"), std::string(kPersonalAllow));
}

TEST_F(PolicyDaemonTest, ASystemInfoChangeIsSeenByTheNextRequest) {
  ASSERT_TRUE(daemon_.Start());
  EXPECT_EQ(Ask("work", "personal", "test.Allow"), std::string(kPersonalAllow));
  std::string info = SmallSystemInfoJson();
  auto pos = info.find("22222222-2222-2222-2222-222222222222");
  info.replace(pos, 36, "66666666-6666-6666-6666-666666666666");
  harness::WriteFile(dir_ / "system-info.json", info);
  auto reply = Ask("work", "personal", "test.Allow");
  ASSERT_TRUE(reply);
  EXPECT_NE(reply->find("target_uuid=uuid:66666666-6666-6666-6666-666666666666"),
            std::string::npos);
}

TEST_F(PolicyDaemonTest, JustEvaluateAndAssumeYesChangeTheAnswer) {
  ASSERT_TRUE(daemon_.Start());
  EXPECT_EQ(Ask("work", "personal", "test.Allow", "just_evaluate=yes\n"), "result=allow");
  EXPECT_EQ(Ask("work", "personal", "test.Ask", "just_evaluate=yes\n"), "result=deny");
  EXPECT_EQ(Ask("work", "personal", "test.Ask", "assume_yes_for_ask=yes\n"),
            std::string(kPersonalAllow));
  EXPECT_EQ(Ask("work", "personal", "test.Ask", "assume_yes_for_ask=yes\njust_evaluate=yes\n"),
            "result=allow");
}

TEST_F(PolicyDaemonTest, EvalSimpleAnswersWithANewline) {
  ASSERT_TRUE(daemon_.Start());
  using namespace std::string_literals;
  EXPECT_EQ(
      Query(daemon_.eval_socket(), "policy.EvalSimple+test.Allow vault keyword\0work\0personal"s),
      "result=allow\n");
  EXPECT_EQ(Query(daemon_.eval_socket(), "policy.EvalSimple+test.Allow vault\0work\0vault"s),
            "result=deny\n");
  // Ask counts as allowed (assume yes) when the target is a choice.
  EXPECT_EQ(Query(daemon_.eval_socket(), "policy.EvalSimple+test.Ask vault\0work\0personal"s),
            "result=allow\n");
  const std::vector<std::string> bad = {
      "policy.EvalGUI+test.Allow vault\0work\0personal"s,       // wrong service
      "policy.EvalSimple vault\0work\0personal"s,               // nothing to evaluate
      "policy.EvalSimple++x vault\0work\0personal"s,            // starts with +
      "policy.EvalSimple+test.Allow vault\0work"s,              // no target
      "policy.EvalSimple+test.Allow vault\0work\0pers:nal"s,    // bad character
      "policy.EvalSimple+test.Allow vault\0work\0personal\0"s,  // extra NUL
      "policy.EvalSimple+test.Allow vault\0"s + std::string(40, 'a') + "\0personal"s,
      "policy.EvalSimple+test.Allow vault\0work\0"s + std::string(100, 'a'),
      "no header at all"s};
  for (const auto& request : bad) EXPECT_EQ(Query(daemon_.eval_socket(), request), "") << request;
}

TEST_F(PolicyDaemonTest, EvalGuiNeedsTheCallerToBeTheGuiVmOfBothQubes) {
  ASSERT_TRUE(daemon_.Start());
  using namespace std::string_literals;
  EXPECT_EQ(Query(daemon_.gui_socket(), "policy.EvalGUI+test.Allow dom0 keyword\0work\0personal"s),
            "result=allow\n");
  EXPECT_EQ(Query(daemon_.gui_socket(), "policy.EvalGUI+test.Allow dom0\0personal\0work"s),
            "result=deny\n");
  EXPECT_EQ(Query(daemon_.gui_socket(), "policy.EvalGUI+test.Allow sys-gui\0work\0personal"s), "");
  EXPECT_EQ(Query(daemon_.gui_socket(), "policy.EvalGUI+test.Allow dom0\0work\0vault"s), "");
}

}  // namespace
}  // namespace qrexec::policy_tools::testing

namespace qrexec::policy_tools::testing {
namespace {

TEST_F(PolicyDaemonTest, AnswersStayConsistentWhileThePolicyKeepsChanging) {
  ASSERT_TRUE(daemon_.Start());
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    for (int i = 0; i < 40; ++i) {
      WritePolicy("20-flip.policy",
                  i % 2 ? "test.Flip * work personal deny\n" : "test.Flip * work personal allow\n");
      ::usleep(2000);
    }
    writing = false;
  });
  std::atomic<int> bad{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&] {
      while (writing) {
        auto reply = Ask("work", "personal", "test.Flip");
        if (reply != "result=deny" && reply != std::string(kPersonalAllow)) ++bad;
      }
    });
  writer.join();
  for (auto& client : clients) client.join();
  EXPECT_EQ(bad, 0);
  WritePolicy("20-flip.policy", "test.Flip * work personal allow\n");
  EXPECT_EQ(Ask("work", "personal", "test.Flip"), std::string(kPersonalAllow));
}

TEST_F(PolicyDaemonTest, RunningOutOfDescriptorsPausesAcceptingInsteadOfFailing) {
  if (!harness::PathExists("/usr/bin/prlimit")) GTEST_SKIP() << "needs util-linux prlimit";
  // Start it under a low descriptor limit by hand (DaemonUnderTest adds its own argv[0]).
  harness::SpawnOptions options;
  options.argv = {"/usr/bin/prlimit", "--nofile=40:40",    harness::BinPath("qrexec-policy-daemon"),
                  "--policy-path",    dir_ / "policy",     "--legacy-path",
                  dir_ / "legacy",    "--system-info",     dir_ / "system-info.json",
                  "--socket-path",    dir_ / "p.sock",     "--eval-socket-path",
                  dir_ / "e.sock",    "--gui-socket-path", dir_ / "g.sock"};
  options.stdin_mode = harness::Stdio::kNull;
  options.stdout_mode = harness::Stdio::kNull;
  auto daemon = harness::Process::Spawn(options);
  ASSERT_TRUE(daemon);
  ASSERT_EQ(Query(dir_ / "p.sock", PolicyRequest("work", "personal", "test.Allow")),
            std::string(kPersonalAllow));
  std::vector<UniqueFd> idle;
  for (int i = 0; i < 80; ++i) {
    auto conn = harness::ConnectUnixRetry(dir_ / "p.sock");
    ASSERT_TRUE(conn);
    idle.push_back(std::move(*conn));
  }
  ::usleep(100000);
  EXPECT_TRUE(daemon->Running());
  idle.clear();
  EXPECT_EQ(Query(dir_ / "p.sock", PolicyRequest("work", "personal", "test.Allow")),
            std::string(kPersonalAllow));
  daemon->Kill(SIGTERM);
  EXPECT_EQ(daemon->Wait(), 0);
  EXPECT_NE(daemon->ReadStderr().find("pausing accept"), std::string::npos);
}

}  // namespace
}  // namespace qrexec::policy_tools::testing

namespace qrexec::policy_tools::testing {
namespace {

TEST_F(PolicyDaemonTest, RequestsThatNeverCompleteAreDropped) {
  ASSERT_TRUE(daemon_.Start({"--request-timeout", "300"}));
  std::vector<UniqueFd> slow;
  for (const auto& path : {daemon_.policy_socket(), daemon_.eval_socket()}) {
    auto conn = harness::ConnectUnixRetry(path);
    ASSERT_TRUE(conn);
    ASSERT_TRUE(sys::WriteAll(conn->get(), "source=work\n"));
    slow.push_back(std::move(*conn));
  }
  for (const auto& conn : slow) EXPECT_TRUE(harness::WaitForEof(conn.get()));
  EXPECT_EQ(Ask("work", "personal", "test.Allow"), std::string(kPersonalAllow));
}

TEST_F(PolicyDaemonTest, EvaluationClientsCannotTakeTheSlotsOfPolicySocketClients) {
  ASSERT_TRUE(daemon_.Start());
  std::vector<UniqueFd> idle;
  for (int i = 0; i < 300; ++i) {
    auto conn = harness::ConnectUnixRetry(i % 2 ? daemon_.eval_socket() : daemon_.gui_socket());
    ASSERT_TRUE(conn);
    idle.push_back(std::move(*conn));
  }
  EXPECT_EQ(Ask("work", "personal", "test.Allow"), std::string(kPersonalAllow));
  // The daemon accepts in batches: wait (10 s at most) until it met the cap.
  bool capped = false;
  for (int i = 0; i < 1000 && !capped; ++i) {
    capped = daemon_.Log().find("for evaluation services), dropping one") != std::string::npos;
    if (!capped) ::usleep(10000);
  }
  EXPECT_TRUE(capped) << daemon_.Log();
}

}  // namespace
}  // namespace qrexec::policy_tools::testing

namespace qrexec::policy_tools::testing {
namespace {

TEST_F(PolicyDaemonTest, RandomBytesOnEverySocketNeverBringItDown) {
  ASSERT_TRUE(daemon_.Start());
  std::mt19937 rng(12345);
  const std::string alphabet = std::string("source=work\nintended_target=personal\n", 36) +
                               std::string("service_and_arg=test.Allow+\0\xff@.:-", 34) +
                               "policy.EvalSimple+policy.EvalGUI ";
  for (int i = 0; i < 150; ++i) {
    std::string blob(rng() % 300, '\0');
    for (char& c : blob) c = alphabet[rng() % alphabet.size()];
    for (const auto& path : {daemon_.policy_socket(), daemon_.eval_socket(), daemon_.gui_socket()})
      (void)Query(path, blob);
  }
  EXPECT_TRUE(daemon_.Running());
  EXPECT_EQ(Ask("work", "personal", "test.Allow"), std::string(kPersonalAllow));
}

}  // namespace
}  // namespace qrexec::policy_tools::testing
