// Black-box tests of qrexec-daemon: the test plays the VM's agent (vchan
// server of port 512), local clients, the target daemon, the policy daemon,
// the fallback policy program and qubesd. Modeled on Qubes' TestDaemon.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>

#include <optional>
#include <thread>

#include "dom0_fixture.h"

namespace qrexec::dom0test {
namespace {

constexpr int kDomid = 42;
const std::string kPolicyAllowVault =
    "user=DEFAULT\nresult=allow\ntarget=vault\ntarget_uuid=uuid:U2\nautostart=False\n"
    "requested_target=vault";

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(dir_ / "policy-answer", "result=deny\n");
    WriteScript(dir_ / "policy", "echo \"$@\" >> " + (dir_ / "policy-args") + "\ncat " +
                                     (dir_ / "policy-answer") + "\nexit $(cat " +
                                     (dir_ / "policy-exit") + " 2>/dev/null || echo 0)\n");
  }

  // Ends the daemon cleanly (so sanitizer reports at exit are written) and
  // checks that neither it nor its dom0 helpers reported a sanitizer error.
  void TearDown() override {
    if (daemon_ && daemon_->Running()) {
      daemon_->Kill(SIGTERM);
      daemon_->Wait();
    }
    std::string log = Log();
    for (const char* bad : {"AddressSanitizer", "LeakSanitizer", "runtime error:"})
      EXPECT_EQ(log.find(bad), std::string::npos) << log;
  }

  // Starts the daemon and plays the agent's side of the handshake.
  void StartDaemon(uint32_t agent_version = 4) {
    auto listener = VchanListen(dir_.path(), kDomid, 0, 512);
    ASSERT_TRUE(listener);
    SpawnDaemon();
    auto agent = VchanAccept(listener->get(), dir_.path(), kDomid, 0, 512);
    ASSERT_TRUE(agent);
    agent_ = std::move(*agent);
    auto version = Handshake(agent_.get(), agent_version);
    ASSERT_TRUE(version);
    EXPECT_EQ(*version, agent_version) << "the daemon echoes the agent's version";
    WaitForPath(dir_ / "qrexec.42");
  }

  void SpawnDaemon() {
    SpawnOptions options;
    options.argv = {"/bin/sh",
                    "-c",
                    "exec \"$0\" \"$@\" 2>>" + (dir_ / "daemon.log"),
                    BinPath("qrexec-daemon")};
    std::vector<std::string> flags = {"--direct",
                                      "--socket-dir=" + dir_.path(),
                                      "--policy-program=" + (dir_ / "policy"),
                                      "--policy-socket=" + (dir_ / "policy.sock"),
                                      "--qubesd-socket=" + (dir_ / "qubesd.sock"),
                                      "-u",
                                      "U1"};
    std::vector<std::string> positionals = {std::to_string(kDomid), "work", "alice"};
    if (options_after_positionals_) std::swap(flags, positionals);
    options.argv.insert(options.argv.end(), flags.begin(), flags.end());
    options.argv.insert(options.argv.end(), positionals.begin(), positionals.end());
    options.env = {{"VCHAN_SOCKET_DIR", dir_.path()},
                   {"VCHAN_DOMAIN", "0"},
                   {"QREXEC_DEBUG", "1"},
                   {"QREXEC_SERVICE_PATH", dir_ / "rpc"},
                   {"QUBES_RPC_CONFIG_PATH", dir_ / "rpc-config"}};
    options.unset_env = {"QREXEC_BROKER_SOCKET"};
    options.stdin_mode = Stdio::kNull;
    options.stdout_mode = Stdio::kNull;
    options.stderr_mode = Stdio::kNull;
    auto process = Process::Spawn(options);
    ASSERT_TRUE(process);
    daemon_.emplace(std::move(*process));
  }

  void WaitForPath(const std::string& path) {
    for (int i = 0; i < 1000 && !PathExists(path); ++i)
      std::this_thread::sleep_for(milliseconds(5));
    ASSERT_TRUE(PathExists(path)) << path << "\n" << Log();
  }

  std::string Log() { return PathExists(dir_ / "daemon.log") ? ReadFile(dir_ / "daemon.log") : ""; }

  // Waits (a little) for a log line: the daemon writes it after acting.
  bool LogHas(const std::string& text) {
    for (int i = 0; i < 200; ++i) {
      if (Log().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return false;
  }

  // A local client after the hello exchange.
  UniqueFd ConnectClient() {
    auto fd = ConnectUnixRetry(dir_ / "qrexec.42");
    EXPECT_TRUE(fd);
    if (!fd) return UniqueFd();
    EXPECT_EQ(Recv(fd->get()), (Msg{kHello, HelloBody(3)}));
    EXPECT_TRUE(SendMessage(fd->get(), kHello, HelloBody(3)));
    return std::move(*fd);
  }

  void SendTrigger(std::string_view target, std::string_view ident, std::string_view service,
                   std::string_view source = "") {
    ASSERT_TRUE(SendMessage(agent_.get(), kTrigger4, Trigger4Body(source, target, ident, service)));
  }

  void ExpectRefused(std::string_view ident) {
    EXPECT_EQ(Recv(agent_.get()), (Msg{kServiceRefused, Ident(ident)})) << Log();
  }

  // Plays the target daemon on an accepted connection: checks the command
  // and answers {43, port}.
  void ServeTarget(int fd, std::string_view expected_command, uint32_t port = 514) {
    ASSERT_TRUE(ServeDaemonHello(fd));
    EXPECT_EQ(Recv(fd), (Msg{kExecCmdline, CmdBody(kDomid, 0, expected_command)}));
    ASSERT_TRUE(SendMessage(fd, kExecCmdline, U32(43) + U32(port)));
  }

  TempDir dir_;
  std::optional<Process> daemon_;
  bool options_after_positionals_ = false;  // SpawnDaemon: "42 work alice --direct ..."
  UniqueFd agent_;
};

TEST_F(DaemonTest, EchoesTheAgentsProtocolVersion4) { StartDaemon(4); }

TEST_F(DaemonTest, EchoesTheAgentsProtocolVersion3) { StartDaemon(3); }

TEST_F(DaemonTest, RefusesAnAgentOlderThanProtocol2) {
  auto listener = VchanListen(dir_.path(), kDomid, 0, 512);
  ASSERT_TRUE(listener);
  SpawnDaemon();
  auto agent = VchanAccept(listener->get(), dir_.path(), kDomid, 0, 512);
  ASSERT_TRUE(agent);
  ASSERT_TRUE(SendMessage(agent->get(), kHello, HelloBody(1)));
  EXPECT_EQ(daemon_->Wait(), 1);
  EXPECT_FALSE(PathExists(dir_ / "qrexec.42"));
}

TEST_F(DaemonTest, CreatesItsSocketWithNameAndUuidSymlinks) {
  StartDaemon();
  EXPECT_TRUE(PathExists(dir_ / "qrexec.work"));
  EXPECT_TRUE(PathExists(dir_ / "qrexec.uuid:U1"));
}

TEST_F(DaemonTest, DaemonizesAndReportsTheConnectionToTheForegroundProcess) {
  auto listener = VchanListen(dir_.path(), kDomid, 0, 512);
  ASSERT_TRUE(listener);
  SpawnOptions options;
  options.argv = {BinPath("qrexec-daemon"), "-q",  "--socket-dir=" + dir_.path(), "-u", "U1",
                  std::to_string(kDomid),   "work"};
  options.env = {{"VCHAN_SOCKET_DIR", dir_.path()},
                 {"VCHAN_DOMAIN", "0"},
                 {"QREXEC_LOG_DIR", dir_.path()},
                 {"QREXEC_STARTUP_TIMEOUT", "10"}};
  options.stdin_mode = Stdio::kNull;
  auto parent = Process::Spawn(options);
  ASSERT_TRUE(parent);
  auto agent = VchanAccept(listener->get(), dir_.path(), kDomid, 0, 512);
  ASSERT_TRUE(agent);
  ASSERT_TRUE(Handshake(agent->get(), 4));
  EXPECT_EQ(parent->Wait(), 0);
  WaitForPath(dir_ / "qrexec.42");
  // The background daemon logs to <log-dir>/qrexec.<name>.log; end it.
  std::string log;
  for (int i = 0; i < 200 && log.find("connected") == std::string::npos; ++i) {
    std::this_thread::sleep_for(milliseconds(5));
    log = PathExists(dir_ / "qrexec.work.log") ? ReadFile(dir_ / "qrexec.work.log") : "";
  }
  size_t open = log.find("qrexec-daemon[");
  ASSERT_NE(open, std::string::npos) << log;
  pid_t pid = std::stoi(log.substr(open + 14));
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  for (int i = 0; i < 200 && PathExists(dir_ / "qrexec.42"); ++i)
    std::this_thread::sleep_for(milliseconds(5));
  EXPECT_FALSE(PathExists(dir_ / "qrexec.42")) << "sockets removed on exit";
}

TEST_F(DaemonTest, ForegroundProcessExits3WhenTheAgentNeverComes) {
  SpawnOptions options;
  options.argv = {BinPath("qrexec-daemon"), "-q",  "--socket-dir=" + dir_.path(), "-u", "U1",
                  std::to_string(kDomid),   "work"};
  options.env = {{"VCHAN_SOCKET_DIR", dir_.path()},
                 {"VCHAN_DOMAIN", "0"},
                 {"QREXEC_LOG_DIR", dir_.path()},
                 {"QREXEC_STARTUP_TIMEOUT", "1"}};
  auto result = RunProgram(options, {}, milliseconds(10000));
  EXPECT_EQ(result.exit_code, 3);
}

TEST_F(DaemonTest, UsageErrorsExit1) {
  auto no_uuid = RunProgram({.argv = {BinPath("qrexec-daemon"), "--direct", "42", "work"}});
  EXPECT_EQ(no_uuid.exit_code, 1);
  EXPECT_NE(no_uuid.err.find("UUID"), std::string::npos);
  EXPECT_EQ(RunProgram({.argv = {BinPath("qrexec-daemon"), "-u", "x", "0", "work"}}).exit_code, 1);
  EXPECT_EQ(RunProgram({.argv = {BinPath("qrexec-daemon"), "-h"}}).exit_code, 1);
}

// Like Qubes' qrexec-daemon, options may follow the positionals.
TEST_F(DaemonTest, AcceptsOptionsAfterThePositionals) {
  options_after_positionals_ = true;
  StartDaemon();
  UniqueFd client = ConnectClient();
  ASSERT_TRUE(SendMessage(client.get(), kExecCmdline, CmdBody(43, 0, "DEFAULT:cmd")));
  EXPECT_EQ(Recv(client.get()), (Msg{kExecCmdline, U32(kDomid) + U32(514)}));
  EXPECT_EQ(Recv(agent_.get()), (Msg{kExecCmdline, CmdBody(43, 514, "alice:cmd")}));
}

TEST_F(DaemonTest, ForwardsAClientCommandWithAnAllocatedPortAndTheDefaultUser) {
  StartDaemon();
  UniqueFd client = ConnectClient();
  ASSERT_TRUE(SendMessage(client.get(), kExecCmdline, CmdBody(43, 0, "DEFAULT:do something")));
  EXPECT_EQ(Recv(client.get()), (Msg{kExecCmdline, U32(kDomid) + U32(514)}));
  EXPECT_EQ(Recv(agent_.get()), (Msg{kExecCmdline, CmdBody(43, 514, "alice:do something")}));
}

TEST_F(DaemonTest, AllocatesTheNextEvenPortForAHigherPeer) {
  StartDaemon();
  UniqueFd first = ConnectClient();
  ASSERT_TRUE(SendMessage(first.get(), kExecCmdline, CmdBody(43, 0, "user:a")));
  EXPECT_EQ(Recv(first.get()), (Msg{kExecCmdline, U32(kDomid) + U32(514)}));
  UniqueFd second = ConnectClient();
  ASSERT_TRUE(SendMessage(second.get(), kExecCmdline, CmdBody(43, 0, "user:b")));
  EXPECT_EQ(Recv(second.get()), (Msg{kExecCmdline, U32(kDomid) + U32(516)}));
  UniqueFd lower = ConnectClient();
  ASSERT_TRUE(SendMessage(lower.get(), kExecCmdline, CmdBody(7, 0, "user:c")));
  EXPECT_EQ(Recv(lower.get()), (Msg{kExecCmdline, U32(kDomid) + U32(513)}));
}

TEST_F(DaemonTest, JustExecKeepsItsMessageType) {
  StartDaemon();
  UniqueFd client = ConnectClient();
  ASSERT_TRUE(SendMessage(client.get(), kJustExec, CmdBody(0, 0, "user:true")));
  EXPECT_EQ(Recv(client.get()), (Msg{kJustExec, U32(kDomid) + U32(513)}));
  EXPECT_EQ(Recv(agent_.get()), (Msg{kJustExec, CmdBody(0, 513, "user:true")}));
}

TEST_F(DaemonTest, ConnectionTerminatedReleasesThePortAndClosesTheClient) {
  StartDaemon();
  UniqueFd client = ConnectClient();
  ASSERT_TRUE(SendMessage(client.get(), kExecCmdline, CmdBody(43, 0, "user:a")));
  EXPECT_EQ(Recv(client.get()), (Msg{kExecCmdline, U32(kDomid) + U32(514)}));
  Recv(agent_.get());
  // Wrong domain: nothing happens.
  ASSERT_TRUE(SendMessage(agent_.get(), kConnectionTerminated, U32(44) + U32(514)));
  EXPECT_FALSE(WaitForEof(client.get(), milliseconds(200)));
  ASSERT_TRUE(SendMessage(agent_.get(), kConnectionTerminated, U32(43) + U32(514)));
  EXPECT_TRUE(WaitForEof(client.get()));
  UniqueFd again = ConnectClient();
  ASSERT_TRUE(SendMessage(again.get(), kExecCmdline, CmdBody(43, 0, "user:b")));
  EXPECT_EQ(Recv(again.get()), (Msg{kExecCmdline, U32(kDomid) + U32(514)}));
}

TEST_F(DaemonTest, DropsAClientWhoseHelloIsTooOld) {
  StartDaemon();
  auto fd = ConnectUnixRetry(dir_ / "qrexec.42");
  ASSERT_TRUE(fd);
  EXPECT_EQ(Recv(fd->get()), (Msg{kHello, HelloBody(3)}));
  ASSERT_TRUE(SendMessage(fd->get(), kHello, HelloBody(2)));
  EXPECT_TRUE(WaitForEof(fd->get()));
}

TEST_F(DaemonTest, DropsAClientWithAnInvalidRequest) {
  StartDaemon();
  UniqueFd client = ConnectClient();
  ASSERT_TRUE(SendMessage(client.get(), kExecCmdline, U32(0) + U32(0) + "no-nul"));
  EXPECT_TRUE(WaitForEof(client.get()));
  UniqueFd other = ConnectClient();
  ASSERT_TRUE(SendMessage(other.get(), kTrigger4, std::string(170, 'a')));
  EXPECT_TRUE(WaitForEof(other.get()));
}

TEST_F(DaemonTest, DropsAClientThatSendsDataAfterItsRequest) {
  StartDaemon();
  UniqueFd client = ConnectClient();
  ASSERT_TRUE(SendMessage(client.get(), kExecCmdline, CmdBody(43, 0, "user:a")));
  EXPECT_EQ(Recv(client.get()), (Msg{kExecCmdline, U32(kDomid) + U32(514)}));
  ASSERT_TRUE(SendMessage(client.get(), kExecCmdline, CmdBody(43, 0, "user:b")));
  EXPECT_TRUE(WaitForEof(client.get()));
}

TEST_F(DaemonTest, ClosesClientsBeyond256) {
  StartDaemon();
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 256; ++i) {
    auto fd = ConnectUnixRetry(dir_ / "qrexec.42");
    ASSERT_TRUE(fd);
    ASSERT_EQ(Recv(fd->get()), (Msg{kHello, HelloBody(3)})) << i;
    clients.push_back(std::move(*fd));
  }
  auto extra = ConnectUnixRetry(dir_ / "qrexec.42");
  ASSERT_TRUE(extra);
  EXPECT_TRUE(WaitForEof(extra->get()));
  clients.pop_back();
  std::this_thread::sleep_for(milliseconds(50));
  UniqueFd again = ConnectClient();
  ASSERT_TRUE(SendMessage(again.get(), kExecCmdline, CmdBody(43, 0, "user:a")));
  EXPECT_EQ(Recv(again.get()), (Msg{kExecCmdline, U32(kDomid) + U32(514)}));
}

TEST_F(DaemonTest, DropsAServiceConnectForAnUnknownRequest) {
  StartDaemon();
  UniqueFd client = ConnectClient();
  ASSERT_TRUE(SendMessage(client.get(), kServiceConnect, U32(43) + U32(0) + Ident("SOCKET9")));
  EXPECT_TRUE(WaitForEof(client.get()));
}

TEST_F(DaemonTest, SendsThePolicyRequestLinesAndRefusesOnDeny) {
  FakeServer policy(dir_ / "policy.sock", {"result=deny"}, FakeServer::ReadUntil::kBlankLine);
  StartDaemon();
  SendTrigger("vault", "SOCKET7", "qubes.Foo+bar");
  ExpectRefused("SOCKET7");
  auto requests = policy.Requests(1);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0],
            "source=work\nrequested_source=\nintended_target=vault\n"
            "service_and_arg=qubes.Foo+bar\n\n");
  EXPECT_FALSE(PathExists(dir_ / "policy-args")) << "no fallback on a valid answer";
  EXPECT_TRUE(LogHas("call-timing ident=SOCKET7 stage=refused"));
}

TEST_F(DaemonTest, Protocol3TriggersOmitTheRequestedSource) {
  FakeServer policy(dir_ / "policy.sock", {"result=deny"}, FakeServer::ReadUntil::kBlankLine);
  StartDaemon(3);
  std::string body = Fixed("vault", 64) + Fixed("SOCKET3", 32) + "qubes.Foo" + std::string(1, '\0');
  ASSERT_TRUE(SendMessage(agent_.get(), kTrigger3, body));
  ExpectRefused("SOCKET3");
  auto requests = policy.Requests(1);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0], "source=work\nintended_target=vault\nservice_and_arg=qubes.Foo\n\n");
}

TEST_F(DaemonTest, Protocol2AgentsUseTheFixedSizeTrigger) {
  FakeServer policy(dir_ / "policy.sock", {"result=deny"}, FakeServer::ReadUntil::kBlankLine);
  StartDaemon(2);
  std::string body = Fixed("qubes.Foo+x", 64) + Fixed("vault", 32) + Fixed("SOCKET2", 32);
  ASSERT_TRUE(SendMessage(agent_.get(), 0x210, body));
  ExpectRefused("SOCKET2");
  auto requests = policy.Requests(1);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0], "source=work\nintended_target=vault\nservice_and_arg=qubes.Foo+x\n\n");
}

TEST_F(DaemonTest, Protocol4TriggerUnderProtocol3IsFatal) {
  StartDaemon(3);
  SendTrigger("vault", "SOCKET7", "qubes.Foo");
  EXPECT_EQ(daemon_->Wait(), 1);
}

TEST_F(DaemonTest, PassesTheRequestedSourceToPolicy) {
  FakeServer policy(dir_ / "policy.sock", {"result=deny"}, FakeServer::ReadUntil::kBlankLine);
  StartDaemon();
  SendTrigger("vault", "SOCKET7", "qubes.Foo", "remote1");
  ExpectRefused("SOCKET7");
  auto requests = policy.Requests(1);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0],
            "source=work\nrequested_source=remote1\nintended_target=vault\n"
            "service_and_arg=qubes.Foo\n\n");
}

TEST_F(DaemonTest, SanitizesTheTargetBeforeAskingPolicy) {
  FakeServer policy(dir_ / "policy.sock", {"result=deny"}, FakeServer::ReadUntil::kBlankLine);
  StartDaemon();
  SendTrigger("va/ult;x", "SOCKET7", "qubes.Foo+bar");
  ExpectRefused("SOCKET7");
  auto requests = policy.Requests(1);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_NE(requests[0].find("intended_target=va_ult_x\n"), std::string::npos) << requests[0];
}

TEST_F(DaemonTest, AllowedCallIsConnectedThroughTheTargetDaemon) {
  FakeServer policy(dir_ / "policy.sock", {kPolicyAllowVault}, FakeServer::ReadUntil::kBlankLine);
  UniqueFd target = ListenUnix(dir_ / "qrexec.uuid:U2");
  StartDaemon();
  SendTrigger("vault", "SOCKET7", "qubes.Foo");
  UniqueFd conn = AcceptOne(target.get());
  ASSERT_TRUE(conn.valid()) << Log();
  ServeTarget(conn.get(), "DEFAULT:QUBESRPC qubes.Foo+ work");
  EXPECT_EQ(Recv(agent_.get()), (Msg{kServiceConnect, U32(43) + U32(514) + Ident("SOCKET7")}))
      << Log();
  for (const char* stage :
       {"trigger_received", "policy_answered", "target_connected", "service_connect_sent"})
    EXPECT_TRUE(LogHas(std::string("call-timing ident=SOCKET7 stage=") + stage)) << stage;
}

TEST_F(DaemonTest, MalformedPolicyAnswerFallsBackToThePolicyProgram) {
  FakeServer policy(dir_ / "policy.sock", {"result=allow\nresult=deny"},
                    FakeServer::ReadUntil::kBlankLine);
  StartDaemon();
  SendTrigger("vault", "SOCKET7", "qubes.Foo+bar");
  ExpectRefused("SOCKET7");
  EXPECT_EQ(ReadFile(dir_ / "policy-args"), "-- work vault qubes.Foo+bar\n");
}

TEST_F(DaemonTest, UnreachablePolicyDaemonFallsBackToAnAllowingProgram) {
  WriteFile(dir_ / "policy-answer", kPolicyAllowVault + "\n");
  UniqueFd target = ListenUnix(dir_ / "qrexec.uuid:U2");
  StartDaemon();
  SendTrigger("vault", "SOCKET7", "qubes.Foo+bar");
  UniqueFd conn = AcceptOne(target.get());
  ASSERT_TRUE(conn.valid()) << Log();
  ServeTarget(conn.get(), "DEFAULT:QUBESRPC qubes.Foo+bar work");
  EXPECT_EQ(Recv(agent_.get()), (Msg{kServiceConnect, U32(43) + U32(514) + Ident("SOCKET7")}));
}

TEST_F(DaemonTest, FailingPolicyProgramRefusesTheCall) {
  WriteFile(dir_ / "policy-answer", kPolicyAllowVault + "\n");
  WriteFile(dir_ / "policy-exit", "1");
  StartDaemon();
  SendTrigger("vault", "SOCKET7", "qubes.Foo+bar");
  ExpectRefused("SOCKET7");
}

TEST_F(DaemonTest, RefusesAnInvalidRequestIdWithoutAskingPolicy) {
  StartDaemon();
  SendTrigger("vault", "SOCK$7", "qubes.Foo+bar");
  ExpectRefused("SOCK$7");
  SendTrigger("vault", "SOCKET8", "+bar");
  ExpectRefused("SOCKET8");
  EXPECT_FALSE(PathExists(dir_ / "policy-args"));
}

TEST_F(DaemonTest, TargetNotRunningWithoutAutostartIsRefused) {
  FakeServer policy(dir_ / "policy.sock", {kPolicyAllowVault}, FakeServer::ReadUntil::kBlankLine);
  StartDaemon();
  SendTrigger("vault", "SOCKET7", "qubes.Foo+bar");
  ExpectRefused("SOCKET7");
}

TEST_F(DaemonTest, AutostartStartsTheTargetThroughQubesd) {
  std::string answer = kPolicyAllowVault;
  answer.replace(answer.find("autostart=False"), 15, "autostart=True");
  FakeServer policy(dir_ / "policy.sock", {answer}, FakeServer::ReadUntil::kBlankLine);
  UniqueFd target;
  FakeServer qubesd(dir_ / "qubesd.sock", {std::string("0\0", 2)}, FakeServer::ReadUntil::kEof,
                    [&](size_t) { target = ListenUnix(dir_ / "qrexec.uuid:U2"); });
  StartDaemon();
  SendTrigger("vault", "SOCKET7", "qubes.Foo+bar");
  auto requests = qubesd.Requests(1);
  ASSERT_EQ(requests.size(), 1u) << Log();
  EXPECT_EQ(requests[0], std::string("admin.vm.Start dom0 name uuid:U2\0", 33));
  for (int i = 0; i < 200 && !target.valid(); ++i) std::this_thread::sleep_for(milliseconds(5));
  UniqueFd conn = AcceptOne(target.get());
  ASSERT_TRUE(conn.valid()) << Log();
  ServeTarget(conn.get(), "DEFAULT:QUBESRPC qubes.Foo+bar work");
  EXPECT_EQ(Recv(agent_.get()), (Msg{kServiceConnect, U32(43) + U32(514) + Ident("SOCKET7")}));
}

TEST_F(DaemonTest, DisposableIsCreatedStartedAndKilledAfterTheCall) {
  FakeServer policy(dir_ / "policy.sock",
                    {"user=DEFAULT\nresult=allow\ntarget=@dispvm:tmpl\n"
                     "target_uuid=@dispvm:uuid:T1\nautostart=True\nrequested_target=@dispvm"},
                    FakeServer::ReadUntil::kBlankLine);
  UniqueFd target;
  FakeServer qubesd(dir_ / "qubesd.sock",
                    {std::string("0\0uuid:D1", 9), std::string("0\0", 2), std::string("0\0", 2)},
                    FakeServer::ReadUntil::kEof, [&](size_t i) {
                      if (i == 1) target = ListenUnix(dir_ / "qrexec.uuid:D1");
                    });
  StartDaemon();
  SendTrigger("@dispvm", "SOCKET7", "qubes.Foo+bar");
  ASSERT_EQ(qubesd.Requests(2).size(), 2u) << Log();
  for (int i = 0; i < 200 && !target.valid(); ++i) std::this_thread::sleep_for(milliseconds(5));
  UniqueFd conn = AcceptOne(target.get());
  ASSERT_TRUE(conn.valid()) << Log();
  ServeTarget(conn.get(), "DEFAULT:QUBESRPC qubes.Foo+bar work");
  EXPECT_EQ(Recv(agent_.get()), (Msg{kServiceConnect, U32(43) + U32(514) + Ident("SOCKET7")}));
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(qubesd.Requests(3, milliseconds(100)).size(), 2u) << "not killed while in use";
  conn.reset();  // the target daemon closes: the call ended
  auto requests = qubesd.Requests(3);
  ASSERT_EQ(requests.size(), 3u) << Log();
  EXPECT_EQ(requests[0], std::string("admin.vm.CreateDisposable dom0 name uuid:T1\0uuid", 48));
  EXPECT_EQ(requests[1], std::string("admin.vm.Start dom0 name uuid:D1\0", 33));
  EXPECT_EQ(requests[2], std::string("admin.vm.Kill dom0 name uuid:D1\0", 32));
}

// The caller goes away first (also before the target joined the data
// connection): our agent reports the target's port terminated, and the
// disposable is killed without waiting for the target daemon.
TEST_F(DaemonTest, DisposableIsKilledWhenTheAgentReportsTheCallerGone) {
  FakeServer policy(dir_ / "policy.sock",
                    {"user=DEFAULT\nresult=allow\ntarget=@dispvm:tmpl\n"
                     "target_uuid=@dispvm:uuid:T1\nautostart=True\nrequested_target=@dispvm"},
                    FakeServer::ReadUntil::kBlankLine);
  UniqueFd target;
  FakeServer qubesd(dir_ / "qubesd.sock",
                    {std::string("0\0uuid:D1", 9), std::string("0\0", 2), std::string("0\0", 2)},
                    FakeServer::ReadUntil::kEof, [&](size_t i) {
                      if (i == 1) target = ListenUnix(dir_ / "qrexec.uuid:D1");
                    });
  StartDaemon();
  SendTrigger("@dispvm", "SOCKET7", "qubes.Foo+bar");
  ASSERT_EQ(qubesd.Requests(2).size(), 2u) << Log();
  for (int i = 0; i < 200 && !target.valid(); ++i) std::this_thread::sleep_for(milliseconds(5));
  UniqueFd conn = AcceptOne(target.get());
  ASSERT_TRUE(conn.valid()) << Log();
  ServeTarget(conn.get(), "DEFAULT:QUBESRPC qubes.Foo+bar work");
  EXPECT_EQ(Recv(agent_.get()), (Msg{kServiceConnect, U32(43) + U32(514) + Ident("SOCKET7")}));
  // Another call's connection: not this one.
  ASSERT_TRUE(SendMessage(agent_.get(), kConnectionTerminated, U32(43) + U32(516)));
  EXPECT_EQ(qubesd.Requests(3, milliseconds(200)).size(), 2u) << "killed for another connection";
  ASSERT_TRUE(SendMessage(agent_.get(), kConnectionTerminated, U32(43) + U32(514)));
  auto requests = qubesd.Requests(3);
  ASSERT_EQ(requests.size(), 3u) << Log();
  EXPECT_EQ(requests[2], std::string("admin.vm.Kill dom0 name uuid:D1\0", 32));
}

TEST_F(DaemonTest, Dom0TargetRunsTheServiceWithItsEnvironment) {
  WriteScript(dir_ / "rpc/test.Env",
              "echo \"$QREXEC_REMOTE_DOMAIN|$QREXEC_SERVICE_FULL_NAME|$QREXEC_SERVICE_ARGUMENT|"
              "$QREXEC_REQUESTED_TARGET_TYPE|$QREXEC_REQUESTED_TARGET_KEYWORD\"\ncat\nexit 5\n");
  FakeServer policy(dir_ / "policy.sock",
                    {"user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=False\n"
                     "requested_target=@adminvm"},
                    FakeServer::ReadUntil::kBlankLine);
  auto listener = VchanListen(dir_.path(), kDomid, 0, 513);
  ASSERT_TRUE(listener);
  StartDaemon();
  SendTrigger("@adminvm", "SOCKET7", "test.Env+arg");
  EXPECT_EQ(Recv(agent_.get()), (Msg{kServiceConnect, U32(0) + U32(513) + Ident("SOCKET7")}))
      << Log();
  auto data = VchanAccept(listener->get(), dir_.path(), kDomid, 0, 513);
  ASSERT_TRUE(data) << Log();
  ASSERT_TRUE(Handshake(data->get(), 4));
  ASSERT_TRUE(SendMessage(data->get(), kStdin, "input"));
  ASSERT_TRUE(SendMessage(data->get(), kStdin, ""));
  EXPECT_EQ(Recv(data->get()), (Msg{kStderr, ""})) << "empty STDERR first";
  std::string out;
  for (;;) {
    Msg msg = Recv(data->get());
    if (msg.type == kStdout && !msg.body.empty()) {
      out += msg.body;
      continue;
    }
    if (msg.type == kStdout) continue;
    EXPECT_EQ(msg, (Msg{kExitCode, U32(5)})) << Log();
    break;
  }
  EXPECT_EQ(out, "work|test.Env+arg|arg|keyword|adminvm\ninput");
}

// The source's agent is not trusted: it may report a dom0 call's port free
// at once (MSG_CONNECTION_TERMINATED) while the service goes on. The daemon
// counts each dom0 service until its helper exits, and refuses the 257th.
TEST_F(DaemonTest, AtMost256Dom0ServicesRunAtOnceWhateverTheAgentReports) {
  WriteScript(dir_ / "rpc/test.Hold", "read line\n");  // lives until stdin ends
  const std::string allow =
      "user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=False\nrequested_target=@adminvm";
  FakeServer policy(dir_ / "policy.sock", std::vector<std::string>(300, allow),
                    FakeServer::ReadUntil::kBlankLine);
  StartDaemon();
  // Every call gets the data port back at once, so ports are no bound.
  std::vector<UniqueFd> calls;
  auto start_call = [&](const std::string& ident) -> bool {
    auto listener = VchanListen(dir_.path(), kDomid, 0, 513);
    if (!listener) return false;
    SendTrigger("@adminvm", ident, "test.Hold");
    Msg answer = Recv(agent_.get());
    if (answer != Msg{kServiceConnect, U32(0) + U32(513) + Ident(ident)}) {
      EXPECT_EQ(answer, (Msg{kServiceRefused, Ident(ident)})) << Log();
      return false;
    }
    auto data = VchanAccept(listener->get(), dir_.path(), kDomid, 0, 513);
    if (!data || !Handshake(data->get(), 4)) return false;
    calls.push_back(std::move(*data));
    return SendMessage(agent_.get(), kConnectionTerminated, U32(0) + U32(513)).has_value();
  };
  for (int i = 0; i < 256; ++i) ASSERT_TRUE(start_call("R" + std::to_string(i))) << i << "\n" << Log();
  SendTrigger("@adminvm", "OVER", "test.Hold");
  ExpectRefused("OVER");
  EXPECT_TRUE(LogHas("too many dom0 services running")) << Log();
  // One service ends (its stdin closes with the vchan): there is room again.
  calls.front().reset();
  bool started = false;
  for (int attempt = 0; attempt < 50 && !started; ++attempt) {
    std::this_thread::sleep_for(milliseconds(100));
    started = start_call("AGAIN" + std::to_string(attempt));
  }
  EXPECT_TRUE(started) << Log();
}

// A policy.sock that accepts every connection and never answers.
class SilentPolicy {
 public:
  explicit SilentPolicy(const std::string& path) : listen_(ListenUnix(path)) {
    thread_ = std::thread([this] {
      for (;;) {
        UniqueFd fd = AcceptOne(listen_.get(), milliseconds(20000));
        if (!fd.valid()) return;
        held_.push_back(std::move(fd));
      }
    });
  }
  ~SilentPolicy() {
    ::shutdown(listen_.get(), SHUT_RDWR);
    thread_.join();
  }

 private:
  UniqueFd listen_;
  std::vector<UniqueFd> held_;
  std::thread thread_;
};

TEST_F(DaemonTest, AServiceConnectFromAClientAnswersAPendingRequest) {
  SilentPolicy policy(dir_ / "policy.sock");
  StartDaemon();
  SendTrigger("vault", "SOCKET7", "qubes.Foo+bar");
  std::this_thread::sleep_for(milliseconds(100));  // the request is now pending
  UniqueFd client = ConnectClient();
  ASSERT_TRUE(SendMessage(client.get(), kServiceConnect, U32(43) + U32(0) + Ident("SOCKET7")));
  EXPECT_EQ(Recv(client.get()), (Msg{kServiceConnect, U32(kDomid) + U32(514)}));
  EXPECT_EQ(Recv(agent_.get()), (Msg{kServiceConnect, U32(43) + U32(514) + Ident("SOCKET7")}));
  UniqueFd second = ConnectClient();
  ASSERT_TRUE(SendMessage(second.get(), kServiceConnect, U32(43) + U32(0) + Ident("SOCKET7")));
  EXPECT_TRUE(WaitForEof(second.get())) << "an answered request cannot be connected twice";
}

// qrexec-client -c joins our caller to a call whose port the target's daemon
// allocated; with -W it waits on us too, and we close it when our agent
// reports the caller gone.
TEST_F(DaemonTest, AClientThatJoinedAVmCallIsClosedWhenTheCallerGoes) {
  SilentPolicy policy(dir_ / "policy.sock");
  StartDaemon();
  SendTrigger("vault", "SOCKET7", "qubes.Foo+bar");
  std::this_thread::sleep_for(milliseconds(100));  // the request is now pending
  UniqueFd client = ConnectClient();
  ASSERT_TRUE(SendMessage(client.get(), kServiceConnect, U32(43) + U32(514) + Ident("SOCKET7")));
  EXPECT_EQ(Recv(agent_.get()), (Msg{kServiceConnect, U32(43) + U32(514) + Ident("SOCKET7")}));
  ASSERT_TRUE(SendMessage(agent_.get(), kConnectionTerminated, U32(43) + U32(516)));
  EXPECT_FALSE(WaitForEof(client.get(), milliseconds(200))) << "closed for another connection";
  ASSERT_TRUE(SendMessage(agent_.get(), kConnectionTerminated, U32(43) + U32(514)));
  EXPECT_TRUE(WaitForEof(client.get()));
}

// A `qrexec-client -c` style client may send just the ident text and its NUL
// instead of the full 32-byte field, with a port it already has; the daemon
// relays the message to the agent exactly as it came.
TEST_F(DaemonTest, AServiceConnectWithAShortIdentFieldIsRelayedAsSent) {
  SilentPolicy policy(dir_ / "policy.sock");
  StartDaemon();
  SendTrigger("vault", "SOCKET11", "qubes.Foo");
  std::this_thread::sleep_for(milliseconds(100));  // the request is now pending
  UniqueFd client = ConnectClient();
  std::string body = U32(43) + U32(513) + "SOCKET11" + std::string(1, '\0');
  ASSERT_TRUE(SendMessage(client.get(), kServiceConnect, body));
  EXPECT_EQ(Recv(agent_.get()), (Msg{kServiceConnect, body}));
}

// The daemon hands out the data ports, so a port a client names itself must
// be one the daemon could have handed out.
TEST_F(DaemonTest, DropsAServiceConnectNamingAPortOutsideItsRange) {
  SilentPolicy policy(dir_ / "policy.sock");
  StartDaemon();
  SendTrigger("vault", "SOCKET12", "qubes.Foo");
  std::this_thread::sleep_for(milliseconds(100));
  UniqueFd client = ConnectClient();
  ASSERT_TRUE(
      SendMessage(client.get(), kServiceConnect, U32(43) + U32(1024) + "SOCKET12" + '\0'));
  EXPECT_TRUE(WaitForEof(client.get()));
  EXPECT_TRUE(SilentFor(agent_.get(), milliseconds(300)));
}

TEST_F(DaemonTest, RefusesRequestsBeyond256PendingOnes) {
  SilentPolicy policy(dir_ / "policy.sock");
  StartDaemon();
  for (int i = 0; i < 256; ++i) SendTrigger("vault", "R" + std::to_string(i), "qubes.Foo");
  SendTrigger("vault", "OVER", "qubes.Foo");
  ExpectRefused("OVER");
  // The earlier ones stay pending: nothing else arrives.
  EXPECT_TRUE(SilentFor(agent_.get(), milliseconds(300)));
}

TEST_F(DaemonTest, UnknownMessageFromTheAgentEndsTheDaemonWithTheReasonLogged) {
  StartDaemon();
  ASSERT_TRUE(SendMessage(agent_.get(), 0x999, "xx"));
  EXPECT_EQ(daemon_->Wait(), 1);
  EXPECT_TRUE(LogHas("invalid message from the agent (type 0x999")) << Log();
}

TEST_F(DaemonTest, OversizedConnectionTerminatedEndsTheDaemon) {
  StartDaemon();
  ASSERT_TRUE(SendMessage(agent_.get(), kConnectionTerminated, U32(43) + U32(514) + "x"));
  EXPECT_EQ(daemon_->Wait(), 1);
}

TEST_F(DaemonTest, Protocol2TriggerUnderProtocol4IsFatal) {
  StartDaemon();
  ASSERT_TRUE(SendMessage(agent_.get(), 0x210, std::string(128, 'a')));
  EXPECT_EQ(daemon_->Wait(), 1);
}

TEST_F(DaemonTest, ReconnectsWhenTheAgentRestarts) {
  StartDaemon();
  auto listener = VchanListen(dir_.path(), kDomid, 0, 512);
  ASSERT_TRUE(listener);
  agent_.reset();
  auto agent = VchanAccept(listener->get(), dir_.path(), kDomid, 0, 512);
  ASSERT_TRUE(agent) << Log();
  auto version = Handshake(agent->get(), 4);
  ASSERT_TRUE(version);
  agent_ = std::move(*agent);
  WaitForPath(dir_ / "qrexec.42");
  UniqueFd client = ConnectClient();
  ASSERT_TRUE(SendMessage(client.get(), kExecCmdline, CmdBody(43, 0, "user:a")));
  EXPECT_EQ(Recv(client.get()), (Msg{kExecCmdline, U32(kDomid) + U32(514)}));
}

TEST_F(DaemonTest, SigtermEndsTheDaemonWhileItWaitsForARestartedAgent) {
  StartDaemon();
  agent_.reset();
  for (int i = 0; i < 200 && PathExists(dir_ / "qrexec.42"); ++i)
    std::this_thread::sleep_for(milliseconds(5));
  EXPECT_FALSE(PathExists(dir_ / "qrexec.42")) << "socket removed while the agent is away";
  daemon_->Kill(SIGTERM);
  EXPECT_EQ(daemon_->Wait(milliseconds(3000)), 0);
}

TEST_F(DaemonTest, ExitsZeroOnSigterm) {
  StartDaemon();
  daemon_->Kill(SIGTERM);
  EXPECT_EQ(daemon_->Wait(), 0);
}

}  // namespace
}  // namespace qrexec::dom0test
