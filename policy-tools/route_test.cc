// How the policy daemon reaches agents and qubesd: through qrexec-client for
// a GuiVM other than dom0, system info from a qubesd socket, and the real
// agent prompting on a terminal.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "base/check.h"
#include "base/sys.h"
#include "harness.h"
#include "test_util.h"

namespace qrexec::policy_tools::testing {
namespace {

constexpr std::string_view kPersonalAllow =
    "user=DEFAULT\nresult=allow\ntarget=personal\n"
    "target_uuid=uuid:22222222-2222-2222-2222-222222222222\nautostart=True\nrequested_target="
    "personal";

class RouteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    harness::WriteFile(dir_ / "system-info.json", SmallSystemInfoJson());
    harness::WriteFile(dir_ / "policy/30-test.policy",
                       "test.Ask * work @anyvm ask default_target=personal\n"
                       "test.Allow * work personal allow\n");
  }
  std::optional<std::string> Ask(std::string_view target, std::string_view service) {
    return Query(daemon_.policy_socket(), PolicyRequest("work", target, service));
  }
  harness::TempDir dir_;
  DaemonUnderTest daemon_{dir_};
};

TEST_F(RouteTest, AGuiVmOtherThanDom0IsAskedThroughQrexecClient) {
  std::string info = SmallSystemInfoJson();
  info.replace(info.find(R"("guivm": "dom0")"), 15, R"("guivm": "sys-gui")");  // work's GuiVM
  harness::WriteFile(dir_ / "system-info.json", info);
  harness::WriteScript(dir_ / "fake-qrexec-client",
                       "echo \"$@\" > \"$0.args\"\ncat > \"$0.stdin\"\nprintf allow:personal\n");
  ASSERT_TRUE(daemon_.Start({"--qrexec-client", dir_ / "fake-qrexec-client"}));
  EXPECT_EQ(Ask("personal", "test.Ask"), std::string(kPersonalAllow));
  EXPECT_EQ(harness::ReadFile(dir_ / "fake-qrexec-client.args"),
            "-d sys-gui DEFAULT:QUBESRPC policy.Ask dom0\n");
  std::string body = harness::ReadFile(dir_ / "fake-qrexec-client.stdin");
  EXPECT_TRUE(body.starts_with("{")) << body;  // the JSON alone, no header
  EXPECT_NE(body.find(R"("default_target":"personal")"), std::string::npos) << body;
}

TEST_F(RouteTest, SystemInfoComesFromQubesdAndIsRefreshedAfterTheTtl) {
  FakeQubesd qubesd(dir_ / "qubesd.sock");
  qubesd.SetJson(SmallSystemInfoJson());
  std::vector<std::string> extra = {"--qubesd-socket", dir_ / "qubesd.sock", "--system-info-ttl",
                                    "0"};
  // DaemonUnderTest passes --system-info; start this one by hand.
  harness::SpawnOptions options;
  options.argv = {harness::BinPath("qrexec-policy-daemon"),
                  "--policy-path",
                  dir_ / "policy",
                  "--legacy-path",
                  dir_ / "legacy",
                  "--socket-path",
                  dir_ / "p.sock",
                  "--eval-socket-path",
                  dir_ / "e.sock",
                  "--gui-socket-path",
                  dir_ / "g.sock"};
  options.argv.insert(options.argv.end(), extra.begin(), extra.end());
  options.stdin_mode = harness::Stdio::kNull;
  options.stdout_mode = harness::Stdio::kNull;
  auto daemon = harness::Process::Spawn(options);
  ASSERT_TRUE(daemon);
  auto ask = [&] {
    return Query(dir_ / "p.sock", PolicyRequest("work", "personal", "test.Allow"));
  };
  EXPECT_EQ(ask(), std::string(kPersonalAllow));
  EXPECT_EQ(qubesd.last_request(), std::string("internal.GetSystemInfo+ dom0 name dom0\0", 39));
  std::string info = SmallSystemInfoJson();
  info.replace(info.find("22222222-2222-2222-2222-222222222222"), 36,
               "77777777-7777-7777-7777-777777777777");
  qubesd.SetJson(info);
  auto reply = ask();
  ASSERT_TRUE(reply);
  EXPECT_NE(reply->find("target_uuid=uuid:77777777-7777-7777-7777-777777777777"),
            std::string::npos);
  // qubesd answering garbage: refused, not crashed.
  qubesd.SetJson("not json");
  EXPECT_EQ(ask(), "result=deny");
  EXPECT_TRUE(daemon->Running());
  daemon->Kill(SIGTERM);
  EXPECT_EQ(daemon->Wait(), 0);
}

TEST_F(RouteTest, TheAgentPromptsOnItsTerminalAndReadsTheChoice) {
  int master = -1, slave = -1;
  ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
  UniqueFd master_fd(master), slave_fd(slave);
  harness::SpawnOptions options;
  // setsid: no controlling terminal, so the agent falls back to its stdin/stdout.
  options.argv = {"/usr/bin/setsid", harness::BinPath("qrexec-policy-agent"), "-s",
                  daemon_.agent_socket()};
  options.stdin_fd = slave_fd.get();
  options.stdout_fd = slave_fd.get();
  auto agent = harness::Process::Spawn(options);
  ASSERT_TRUE(agent);
  for (int i = 0; i < 5000 && !harness::PathExists(daemon_.agent_socket()); ++i) ::usleep(2000);
  ASSERT_TRUE(daemon_.Start());
  std::optional<std::string> answer;
  std::thread asker([&] { answer = Ask("vault", "test.Ask"); });
  std::string screen;
  auto deadline = sys::Deadline::After(std::chrono::seconds(10));
  while (screen.find("or 'n' to deny: ") == std::string::npos && !deadline.expired()) {
    if (!sys::WaitReadable(master_fd.get(), deadline)) break;
    char buf[1024];
    ssize_t n = ::read(master_fd.get(), buf, sizeof buf);
    if (n > 0) screen.append(buf, static_cast<size_t>(n));
  }
  EXPECT_NE(screen.find("Qube 'work' asks to call 'test.Ask' with argument '+'."),
            std::string::npos)
      << screen;
  EXPECT_NE(screen.find("1) Disposable VM (default-dvm)"), std::string::npos) << screen;
  EXPECT_NE(screen.find("3) personal [default]"), std::string::npos) << screen;
  EXPECT_NE(screen.find("4) vault"), std::string::npos) << screen;
  ASSERT_TRUE(sys::WriteAll(master_fd.get(), "4\n"));
  asker.join();
  EXPECT_EQ(answer,
            "user=DEFAULT\nresult=allow\ntarget=vault\n"
            "target_uuid=uuid:44444444-4444-4444-4444-444444444444\nautostart=True\n"
            "requested_target=vault");
}

}  // namespace
}  // namespace qrexec::policy_tools::testing
