// qrexec-agent's control channel and trigger socket (qrexec-protocol.md
// §1.4, §2.5, §2.6, §2.10). Modeled on Qubes' TestAgent.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <thread>

#include "agent_fixture.h"
#include "base/sys.h"

namespace qrexec::harness::agent_side {
namespace {

class AgentControl : public ::testing::Test {
 protected:
  void Start() {
    agent_.emplace(dir_);
    agent_->ConnectDom0();
  }
  // A qrexec-client-vm stand-in: connects and sends a trigger request.
  UniqueFd Trigger(const std::string& target, const std::string& service,
                   const std::string& source = "") {
    auto client = ConnectUnixRetry(agent_->agent_socket());
    EXPECT_TRUE(client);
    if (!client) return UniqueFd();
    EXPECT_TRUE(SendMessage(client->get(), kTriggerService4,
                            Trigger4Body(source, target, "SOCKET", service)));
    return std::move(*client);
  }
  // Reads the relayed trigger from the control channel; returns its request id.
  std::string ExpectRelayedTrigger(const std::string& target, const std::string& service,
                                   const std::string& source = "") {
    auto message = RecvMessage(agent_->control());
    EXPECT_TRUE(message);
    if (!message) return "";
    EXPECT_EQ(message->type, kTriggerService4);
    EXPECT_EQ(message->body.size(), 160 + service.size() + 1);
    EXPECT_EQ(message->body.substr(0, 64), Fixed(source, 64));
    EXPECT_EQ(message->body.substr(64, 64), Fixed(target, 64));
    EXPECT_EQ(message->body.substr(160), service + '\0');
    std::string ident = message->body.substr(128, 32);
    return ident.substr(0, ident.find('\0'));
  }
  void ExpectExit(int status) {
    auto code = agent_->process().Wait();
    ASSERT_TRUE(code) << "agent did not exit";
    EXPECT_EQ(*code, status);
  }

  TempDir dir_;
  std::optional<AgentUnderTest> agent_;
};

TEST_F(AgentControl, AgentSendsHelloFirstAndAcceptsTheDaemonsHello) {
  Start();  // asserts HELLO{4} arrives before we send anything
  EXPECT_TRUE(agent_->process().Running());
}

TEST_F(AgentControl, AnR42DaemonWithProtocolThreeIsAccepted) {
  agent_.emplace(dir_);
  agent_->ConnectDom0(3);
  UniqueFd client = Trigger("target", "test.Old");
  ExpectRelayedTrigger("target", "test.Old");
}

TEST_F(AgentControl, TriggerIsRelayedWithSocketRequestId) {
  Start();
  UniqueFd client = Trigger("$dispvm", "test.Service+arg", "src-qube");
  std::string ident = ExpectRelayedTrigger("$dispvm", "test.Service+arg", "src-qube");
  EXPECT_EQ(ident.rfind("SOCKET", 0), 0u) << ident;
  EXPECT_GT(ident.size(), 6u);
}

TEST_F(AgentControl, ServiceConnectAnswersTheClientAndItsEofTerminatesTheConnection) {
  Start();
  UniqueFd client = Trigger("target", "test.Service");
  std::string ident = ExpectRelayedTrigger("target", "test.Service");
  ASSERT_TRUE(
      SendMessage(agent_->control(), kServiceConnect, U32(43) + U32(515) + Fixed(ident, 32)));
  auto answer = RecvExact(client.get(), 8);
  ASSERT_TRUE(answer) << answer.error().ToString();
  EXPECT_EQ(*answer, U32(43) + U32(515));
  client.reset();
  ExpectTerminated(agent_->control(), 43, 515);
}

// Neither the port (dom0 allocated it) nor the width of the ident field
// (dom0 may relay a client's short field, just the text and its NUL) is held
// against dom0.
TEST_F(AgentControl, ServiceConnectWithAHighPortAndAShortIdentFieldReachesTheClient) {
  Start();
  UniqueFd client = Trigger("target", "test.Service");
  std::string ident = ExpectRelayedTrigger("target", "test.Service");
  ASSERT_TRUE(SendMessage(agent_->control(), kServiceConnect,
                          U32(43) + U32(1024) + ident + std::string(1, '\0')));
  auto answer = RecvExact(client.get(), 8);
  ASSERT_TRUE(answer) << answer.error().ToString();
  EXPECT_EQ(*answer, U32(43) + U32(1024));
  client.reset();
  ExpectTerminated(agent_->control(), 43, 1024);
}

TEST_F(AgentControl, AnswerForAClientThatLeftNeverReachesANewerClient) {
  Start();
  UniqueFd first = Trigger("target", "test.First");
  std::string first_ident = ExpectRelayedTrigger("target", "test.First");
  first.reset();
  UniqueFd second = Trigger("target", "test.Second");
  std::string second_ident = ExpectRelayedTrigger("target", "test.Second");
  EXPECT_NE(first_ident, second_ident);
  ASSERT_TRUE(
      SendMessage(agent_->control(), kServiceConnect, U32(43) + U32(515) + Fixed(first_ident, 32)));
  ExpectTerminated(agent_->control(), 43, 515);
  ASSERT_TRUE(SendMessage(agent_->control(), kServiceConnect,
                          U32(43) + U32(517) + Fixed(second_ident, 32)));
  auto answer = RecvExact(second.get(), 8);
  ASSERT_TRUE(answer);
  EXPECT_EQ(*answer, U32(43) + U32(517));
}

TEST_F(AgentControl, ServiceRefusedClosesTheClient) {
  Start();
  UniqueFd client = Trigger("target", "test.Service");
  std::string ident = ExpectRelayedTrigger("target", "test.Service");
  ASSERT_TRUE(SendMessage(agent_->control(), kServiceRefused, Fixed(ident, 32)));
  EXPECT_TRUE(WaitForEof(client.get()));
  EXPECT_TRUE(agent_->process().Running());
}

TEST_F(AgentControl, RefusalOfAnUnknownRequestIsIgnored) {
  Start();
  ASSERT_TRUE(SendMessage(agent_->control(), kServiceRefused, Fixed("SOCKET999", 32)));
  ASSERT_TRUE(SendMessage(agent_->control(), kServiceRefused, Fixed("other", 32)));
  UniqueFd client = Trigger("target", "test.Service");
  ExpectRelayedTrigger("target", "test.Service");
  EXPECT_TRUE(agent_->process().Running());
}

TEST_F(AgentControl, ConnectForAnUnknownRequestReleasesThePort) {
  Start();
  ASSERT_TRUE(
      SendMessage(agent_->control(), kServiceConnect, U32(43) + U32(517) + Fixed("SOCKET999", 32)));
  ExpectTerminated(agent_->control(), 43, 517);
}

TEST_F(AgentControl, InvalidTriggerRequestsAreClosedAndNotRelayed) {
  Start();
  auto wrong_type = ConnectUnixRetry(agent_->agent_socket());
  ASSERT_TRUE(wrong_type);
  ASSERT_TRUE(
      SendMessage(wrong_type->get(), 0x212, Fixed("t", 64) + Fixed("SOCKET", 32) + "s" + '\0'));
  EXPECT_TRUE(WaitForEof(wrong_type->get()));
  auto empty_service = ConnectUnixRetry(agent_->agent_socket());
  ASSERT_TRUE(empty_service);
  ASSERT_TRUE(
      SendMessage(empty_service->get(), kTriggerService4, Trigger4Body("", "t", "SOCKET", "")));
  EXPECT_TRUE(WaitForEof(empty_service->get()));
  auto huge = ConnectUnixRetry(agent_->agent_socket());
  ASSERT_TRUE(huge);
  ASSERT_TRUE(SendRaw(huge->get(), U32(kTriggerService4) + U32(160 + 65001 + 1)));
  EXPECT_TRUE(WaitForEof(huge->get()));
  // Nothing reached dom0; a valid request still works.
  UniqueFd client = Trigger("target", "test.Valid");
  ExpectRelayedTrigger("target", "test.Valid");
}

TEST_F(AgentControl, TriggersBeforeDom0ConnectsAreRefused) {
  agent_.emplace(dir_);
  auto client = ConnectUnixRetry(agent_->agent_socket());
  ASSERT_TRUE(client);
  ASSERT_TRUE(SendMessage(client->get(), kTriggerService4, Trigger4Body("", "t", "SOCKET", "s")));
  EXPECT_TRUE(WaitForEof(client->get()));
}

struct BadMessage {
  const char* name;
  uint32_t type;
  std::string body;
};

class AgentRejects : public AgentControl, public ::testing::WithParamInterface<BadMessage> {};

TEST_P(AgentRejects, InvalidMessageFromDom0MakesTheAgentExitOne) {
  Start();
  ASSERT_TRUE(SendMessage(agent_->control(), GetParam().type, GetParam().body));
  ExpectExit(1);
}

INSTANTIATE_TEST_SUITE_P(
    Messages, AgentRejects,
    ::testing::Values(
        BadMessage{"UnknownType", 0x999, ""}, BadMessage{"DataMessageOnControl", kDataStdout, "x"},
        BadMessage{"SecondHello", kHello, U32(4)},
        BadMessage{"ExecWithoutCommand", kExecCmdline, U32(0) + U32(513)},
        BadMessage{"ExecEmptyBody", kExecCmdline, ""},
        BadMessage{"JustExecEmptyBody", kJustExec, ""},
        BadMessage{"RefusedEmptyBody", kServiceRefused, ""},
        BadMessage{"ConnectBadIdent", kServiceConnect, U32(1) + U32(513) + Fixed("SOCKET5!", 32)},
        BadMessage{"ConnectIdentWithoutNul", kServiceConnect,
                   U32(1) + U32(513) + std::string(32, 'A')},
        BadMessage{"HelloTooLong", kHello, U32(4) + U32(0)},
        BadMessage{"ExecWithoutNul", kExecCmdline, U32(0) + U32(513) + "user:cmd"},
        BadMessage{"ExecWithInnerNul", kExecCmdline, U32(0) + U32(513) + std::string("a\0b\0", 4)},
        BadMessage{"RefusedTooShort", kServiceRefused, Fixed("SOCKET5", 31)},
        BadMessage{"RefusedTooLong", kServiceRefused, Fixed("SOCKET5", 33)},
        BadMessage{"ConnectTooShort", kServiceConnect, U32(1) + U32(513)},
        BadMessage{"ConnectShortIdentWithoutNul", kServiceConnect, U32(1) + U32(513) + "SOCKET5"},
        BadMessage{"TriggerFromDom0", kTriggerService4, Trigger4Body("", "t", "x", "s")},
        BadMessage{"TerminatedFromDom0", kConnectionTerminated, U32(0) + U32(513)}),
    [](const ::testing::TestParamInfo<BadMessage>& param_info) { return param_info.param.name; });

TEST_F(AgentControl, AtMost256ConnectionsAreServedAtOnce) {
  Start();
  std::vector<UniqueFd> clients;
  std::vector<std::string> idents;
  for (int i = 0; i < 256; ++i) {
    clients.push_back(Trigger("target", "test.Many"));
    idents.push_back(ExpectRelayedTrigger("target", "test.Many"));
  }
  // The next client is not accepted while all slots are taken...
  UniqueFd extra = Trigger("target", "test.Extra");
  EXPECT_FALSE(sys::WaitReadable(agent_->control(), sys::Deadline::After(milliseconds(300))));
  // ...and is served as soon as one slot is free.
  ASSERT_TRUE(SendMessage(agent_->control(), kServiceRefused, Fixed(idents.front(), 32)));
  ExpectRelayedTrigger("target", "test.Extra");
}

TEST_F(AgentControl, AClientThatSendsNoRequestInTimeIsDropped) {
  agent_.emplace(dir_, kVmDomain, std::map<std::string, std::string>{},
                 std::vector<std::string>{"--no-fork-server", "--trigger-timeout=0.3"});
  agent_->ConnectDom0();
  auto silent = ConnectUnixRetry(agent_->agent_socket());
  ASSERT_TRUE(silent);
  auto partial = ConnectUnixRetry(agent_->agent_socket());
  ASSERT_TRUE(partial);
  ASSERT_TRUE(sys::WriteAll(partial->get(), std::string_view("\x13\x02\0\0", 4)));  // half a header
  UniqueFd complete = Trigger("target", "test.Waits");
  ExpectRelayedTrigger("target", "test.Waits");
  EXPECT_TRUE(WaitForEof(silent->get(), milliseconds(3000)));
  EXPECT_TRUE(WaitForEof(partial->get(), milliseconds(3000)));
  // A client whose request went to dom0 waits for the answer as long as it
  // takes.
  EXPECT_FALSE(WaitForEof(complete.get(), milliseconds(500)));
}

// Local clients have their own budget: 300 of them that connect and say
// nothing (more than the 256 served at once) cannot make dom0's calls fail.
TEST_F(AgentControl, IdleLocalClientsCannotStopCallsFromDom0) {
  agent_.emplace(dir_, kVmDomain, std::map<std::string, std::string>{},
                 std::vector<std::string>{"--no-fork-server", "--trigger-timeout=60"});
  agent_->ConnectDom0();
  WriteScript(dir_ / "rpc/test.Echo", "cat\n");
  std::vector<UniqueFd> idle;
  for (int i = 0; i < 300; ++i) {
    auto fd = sys::UnixConnect(agent_->agent_socket());
    if (fd) idle.push_back(std::move(*fd));
  }
  ASSERT_GE(idle.size(), 256u);
  std::this_thread::sleep_for(milliseconds(200));  // the agent has accepted what it will
  auto output = RunCall(*agent_, dir_, RpcCommand("test.Echo+"), "still served");
  EXPECT_EQ(output.out, "still served");
  EXPECT_EQ(output.exit_code, 0);
}

TEST_F(AgentControl, WrongHelloMakesTheAgentExitOne) {
  agent_.emplace(dir_);
  auto control = VchanConnect(dir_.path(), kVmDomain, 0, 512);
  ASSERT_TRUE(control);
  auto hello = RecvMessage(control->get());
  ASSERT_TRUE(hello);
  ASSERT_TRUE(SendMessage(control->get(), kHello, U32(1)));
  ExpectExit(1);
}

TEST_F(AgentControl, OversizedHeaderMakesTheAgentExitOne) {
  Start();
  ASSERT_TRUE(SendRaw(agent_->control(), U32(kExecCmdline) + U32(0x7fffffff)));
  ExpectExit(1);
}

TEST_F(AgentControl, AgentWaitsForDom0AgainAfterItDisconnects) {
  Start();
  agent_->CloseControl();
  agent_->ConnectDom0();
  UniqueFd client = Trigger("target", "test.Again");
  ExpectRelayedTrigger("target", "test.Again");
}

TEST_F(AgentControl, WaitingClientsAreRefusedWhenDom0Disconnects) {
  Start();
  UniqueFd client = Trigger("target", "test.Service");
  ExpectRelayedTrigger("target", "test.Service");
  agent_->CloseControl();
  EXPECT_TRUE(WaitForEof(client.get()));
}

TEST_F(AgentControl, SigtermStopsTheAgentWithStatusZero) {
  Start();
  agent_->process().Kill(SIGTERM);
  ExpectExit(0);
  EXPECT_FALSE(PathExists(agent_->agent_socket()));
}

TEST_F(AgentControl, UsageErrorsExitTwo) {
  for (const char* arg : {"--bogus", "-h"}) {
    SpawnOptions options;
    options.argv = {BinPath("qrexec-agent"), arg};
    options.stdin_mode = Stdio::kNull;
    auto result = RunProgram(options);
    EXPECT_EQ(result.exit_code, 2) << arg;
  }
}

// Qubes' qrexec-agent ignores positionals and reads options after them.
TEST_F(AgentControl, StrayPositionalIsIgnoredAndLaterOptionsStillApply) {
  agent_.emplace(dir_, kVmDomain, std::map<std::string, std::string>{},
                 std::vector<std::string>{"stray", "--no-fork-server"});
  agent_->ConnectDom0();
  UniqueFd client = Trigger("target", "test.Service");
  ExpectRelayedTrigger("target", "test.Service");
  EXPECT_TRUE(agent_->process().Running());
}

TEST_F(AgentControl, NotifiesSystemdOnceDom0Connected) {
  std::string path = dir_ / "notify.sock";
  UniqueFd notify(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(notify.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  agent_.emplace(dir_, kVmDomain, std::map<std::string, std::string>{{"NOTIFY_SOCKET", path}});
  agent_->ConnectDom0();
  ASSERT_TRUE(sys::WaitReadable(notify.get(), sys::Deadline::After(std::chrono::seconds(10))));
  char buffer[64] = {};
  ssize_t n = ::recv(notify.get(), buffer, sizeof buffer, 0);
  EXPECT_EQ(std::string(buffer, n > 0 ? static_cast<size_t>(n) : 0), "READY=1");
}

}  // namespace
}  // namespace qrexec::harness::agent_side
