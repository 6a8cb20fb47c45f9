// Black-box tests of qrexec-client: the test plays the daemons' sockets, the
// remote agent's handler (data vchan client) or the calling VM (data vchan
// server). Modeled on Qubes' TestClient.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <filesystem>
#include <optional>
#include <thread>

#include "base/sys.h"
#include "dom0_fixture.h"

namespace qrexec::dom0test {
namespace {

class ClientTest : public ::testing::Test {
 protected:
  Process Start(std::vector<std::string> args, Stdio stdin_mode = Stdio::kPipe) {
    SpawnOptions options;
    options.argv = {BinPath("qrexec-client"), "--socket-dir=" + dir_.path()};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.env = {{"VCHAN_SOCKET_DIR", dir_.path()},
                   {"VCHAN_DOMAIN", "0"},
                   {"QREXEC_SERVICE_PATH", dir_ / "rpc"},
                   {"QUBES_RPC_CONFIG_PATH", dir_ / "rpc-config"},
                   {"QREXEC_QUBESD_SOCKET", dir_ / "qubesd.sock"}};
    options.unset_env = {"QREXEC_BROKER_SOCKET"};
    options.stdin_mode = stdin_mode;
    auto process = Process::Spawn(options);
    EXPECT_TRUE(process);
    return std::move(*process);
  }

  RunResult Run(std::vector<std::string> args, std::string_view input = {}) {
    SpawnOptions options;
    options.argv = {BinPath("qrexec-client"), "--socket-dir=" + dir_.path()};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.env = {{"VCHAN_SOCKET_DIR", dir_.path()},
                   {"VCHAN_DOMAIN", "0"},
                   {"QREXEC_SERVICE_PATH", dir_ / "rpc"},
                   {"QUBES_RPC_CONFIG_PATH", dir_ / "rpc-config"}};
    return RunProgram(options, input);
  }

  // Plays the target daemon of a dom0 -> VM call: expects `type` with
  // `command` and answers {43, 513}.
  void ServeExec(int listen_fd, uint32_t type, std::string_view command, uint32_t port = 513) {
    UniqueFd conn = AcceptOne(listen_fd);
    ASSERT_TRUE(conn.valid());
    ASSERT_TRUE(ServeDaemonHello(conn.get()));
    EXPECT_EQ(Recv(conn.get()), (Msg{type, CmdBody(0, 0, command)}));
    ASSERT_TRUE(SendMessage(conn.get(), type, U32(43) + U32(port)));
  }

  // Plays the agent's handler: joins the data vchan the client offers.
  UniqueFd JoinData(int port = 513) {
    auto fd = VchanConnect(dir_.path(), 0, 43, port);
    EXPECT_TRUE(fd);
    if (!fd) return UniqueFd();
    EXPECT_TRUE(Handshake(fd->get(), 4));
    return std::move(*fd);
  }

  // Everything the caller sends on stdin, up to its EOF.
  std::string ReadStdin(int fd) { return StreamUntilEof(fd, kStdin); }

  void Finish(int fd, std::string_view out, uint32_t code) {
    if (!out.empty()) {
      ASSERT_TRUE(SendMessage(fd, kStdout, out));
    }
    ASSERT_TRUE(SendMessage(fd, kStdout, ""));
    ASSERT_TRUE(SendMessage(fd, kStderr, ""));
    ASSERT_TRUE(SendMessage(fd, kExitCode, U32(code)));
  }

  TempDir dir_;
};

TEST_F(ClientTest, RunsACommandInAVmAndReturnsTheRemoteExitCode) {
  UniqueFd daemon = ListenUnix(dir_ / "qrexec.vm1");
  Process client = Start({"-d", "vm1", "user:cmd"});
  ServeExec(daemon.get(), kExecCmdline, "user:cmd");
  UniqueFd data = JoinData();
  ASSERT_TRUE(client.WriteStdin("hello"));
  client.CloseStdin();
  EXPECT_EQ(ReadStdin(data.get()), "hello");
  Finish(data.get(), "out", 3);
  EXPECT_EQ(client.ReadStdout(), "out");
  EXPECT_EQ(client.Wait(), 3);
}

// The daemon allocates ports; the client serves the data vchan on whichever
// port it was given, even one outside the range our own daemon uses.
TEST_F(ClientTest, ServesTheDataVchanOnWhateverPortTheDaemonGave) {
  UniqueFd daemon = ListenUnix(dir_ / "qrexec.vm1");
  Process client = Start({"-d", "vm1", "user:cmd"});
  ServeExec(daemon.get(), kExecCmdline, "user:cmd", 1024);
  UniqueFd data = JoinData(1024);
  ASSERT_TRUE(data.valid());
  client.CloseStdin();
  EXPECT_EQ(ReadStdin(data.get()), "");
  Finish(data.get(), "high", 5);
  EXPECT_EQ(client.ReadStdout(), "high");
  EXPECT_EQ(client.Wait(), 5);
}

TEST_F(ClientTest, NoExitCodeOptionReturnsZero) {
  UniqueFd daemon = ListenUnix(dir_ / "qrexec.vm1");
  Process client = Start({"-E", "-d", "vm1", "user:cmd"});
  ServeExec(daemon.get(), kExecCmdline, "user:cmd");
  UniqueFd data = JoinData();
  client.CloseStdin();
  ReadStdin(data.get());
  Finish(data.get(), "", 3);
  EXPECT_EQ(client.Wait(), 0);
}

TEST_F(ClientTest, VchanClosedBeforeTheExitCodeGives255) {
  UniqueFd daemon = ListenUnix(dir_ / "qrexec.vm1");
  Process client = Start({"-d", "vm1", "user:cmd"});
  ServeExec(daemon.get(), kExecCmdline, "user:cmd");
  UniqueFd data = JoinData();
  ASSERT_TRUE(SendMessage(data.get(), kStdout, "partial"));
  data.reset();
  EXPECT_EQ(client.Wait(), 255);
}

TEST_F(ClientTest, JustExecSendsJustExecAndReturnsTheImmediateStatus) {
  UniqueFd daemon = ListenUnix(dir_ / "qrexec.vm1");
  Process client = Start({"-e", "-d", "vm1", "user:cmd"});
  ServeExec(daemon.get(), kJustExec, "user:cmd");
  UniqueFd data = JoinData();
  ASSERT_TRUE(SendMessage(data.get(), kExitCode, U32(0)));
  EXPECT_EQ(client.Wait(), 0);
}

TEST_F(ClientTest, PrefixDataIsSentBeforeStdin) {
  UniqueFd daemon = ListenUnix(dir_ / "qrexec.vm1");
  Process client = Start({"-p", "prefix:", "-d", "vm1", "user:cmd"});
  ServeExec(daemon.get(), kExecCmdline, "user:cmd");
  UniqueFd data = JoinData();
  ASSERT_TRUE(client.WriteStdin("body"));
  client.CloseStdin();
  EXPECT_EQ(ReadStdin(data.get()), "prefix:body");
  Finish(data.get(), "", 0);
  EXPECT_EQ(client.Wait(), 0);
}

TEST_F(ClientTest, FiltersEscapeCharactersWithT) {
  UniqueFd daemon = ListenUnix(dir_ / "qrexec.vm1");
  Process client = Start({"-t", "-d", "vm1", "user:cmd"});
  ServeExec(daemon.get(), kExecCmdline, "user:cmd");
  UniqueFd data = JoinData();
  client.CloseStdin();
  ReadStdin(data.get());
  Finish(data.get(), "a\x1b[1mb\n", 0);
  EXPECT_EQ(client.ReadStdout(), "a_[1mb\n");
  EXPECT_EQ(client.Wait(), 0);
}

TEST_F(ClientTest, LocalProgramIsConnectedToTheRemoteCommand) {
  UniqueFd daemon = ListenUnix(dir_ / "qrexec.vm1");
  Process client =
      Start({"-d", "vm1", "-l",
             "printf \"to-$QREXEC_REMOTE_DOMAIN\"; cat > " + (dir_ / "local-out"), "user:cmd"});
  ServeExec(daemon.get(), kExecCmdline, "user:cmd");
  UniqueFd data = JoinData();
  EXPECT_EQ(Recv(data.get()), (Msg{kStdin, "to-vm1"}));
  Finish(data.get(), "from-remote", 0);
  EXPECT_EQ(ReadStdin(data.get()), "");
  EXPECT_EQ(client.Wait(), 0);
  EXPECT_EQ(ReadFile(dir_ / "local-out"), "from-remote");
}

TEST_F(ClientTest, UseStdinSocketCarriesBothDirectionsOnFd0) {
  UniqueFd daemon = ListenUnix(dir_ / "qrexec.vm1");
  auto pair = sys::SocketPair();
  ASSERT_TRUE(pair);
  SpawnOptions options;
  options.argv = {BinPath("qrexec-client"),
                  "--socket-dir=" + dir_.path(),
                  "--use-stdin-socket",
                  "-d",
                  "vm1",
                  "user:cmd"};
  options.env = {{"VCHAN_SOCKET_DIR", dir_.path()}, {"VCHAN_DOMAIN", "0"}};
  options.stdin_fd = pair->second.get();
  options.stdout_mode = Stdio::kNull;
  auto client = Process::Spawn(options);
  ASSERT_TRUE(client);
  pair->second.reset();
  ServeExec(daemon.get(), kExecCmdline, "user:cmd");
  UniqueFd data = JoinData();
  ASSERT_TRUE(SendRaw(pair->first.get(), "via-socket"));
  ::shutdown(pair->first.get(), SHUT_WR);
  EXPECT_EQ(ReadStdin(data.get()), "via-socket");
  Finish(data.get(), "reply", 0);
  EXPECT_EQ(RecvExact(pair->first.get(), 5).value_or("?"), "reply");
  EXPECT_TRUE(WaitForEof(pair->first.get()));
  EXPECT_EQ(client->Wait(), 0);
}

TEST_F(ClientTest, TimesOutWhenTheDataChannelIsNotJoined) {
  UniqueFd daemon = ListenUnix(dir_ / "qrexec.vm1");
  Process client = Start({"-w", "1", "-d", "vm1", "user:cmd"});
  ServeExec(daemon.get(), kExecCmdline, "user:cmd");
  EXPECT_EQ(client.Wait(milliseconds(5000)), 125);
}

TEST_F(ClientTest, MissingDaemonExits125) {
  EXPECT_EQ(Run({"-d", "nosuchvm", "user:cmd"}).exit_code, 125);
}

TEST_F(ClientTest, OptionsAfterTheCommandAreReadAndExtraArgumentsIgnored) {
  UniqueFd daemon = ListenUnix(dir_ / "qrexec.vm1");
  Process client = Start({"user:cmd", "ignored-extra", "-d", "vm1", "-E"});
  ServeExec(daemon.get(), kExecCmdline, "user:cmd");
  UniqueFd data = JoinData();
  client.CloseStdin();
  EXPECT_EQ(ReadStdin(data.get()), "");
  Finish(data.get(), "", 3);
  EXPECT_EQ(client.Wait(), 0);  // -E after the command took effect
}

TEST_F(ClientTest, TimeoutMustStartWithAnAsciiDigit) {
  for (const char* bad : {"abc", "-1", " 5", "5x", ""}) {
    auto result = Run({"-w", bad, "-d", "vm1", "user:cmd"});
    EXPECT_EQ(result.exit_code, 1) << "-w '" << bad << "'";
  }
  // Base-0 forms are numbers: they reach the (missing) daemon.
  EXPECT_EQ(Run({"-w", "0x10", "-d", "nosuchvm", "user:cmd"}).exit_code, 125);
  EXPECT_EQ(Run({"-w", "010", "-d", "nosuchvm", "user:cmd"}).exit_code, 125);
}

TEST_F(ClientTest, OnlyOneOfJustExecLocalProgramAndConnect) {
  EXPECT_EQ(Run({"-d", "vm1", "-e", "-c", "SOCKET7,work,42", "user:cmd"}).exit_code, 1);
  EXPECT_EQ(Run({"-d", "vm1", "-e", "-l", "cat", "user:cmd"}).exit_code, 1);
  EXPECT_EQ(Run({"-d", "vm1", "-l", "cat", "-c", "SOCKET7,work,42", "user:cmd"}).exit_code, 1);
  EXPECT_EQ(Run({"-d", "vm1", "-c", "SOCKET7,work,-4", "user:cmd"}).exit_code, 1);
}

TEST_F(ClientTest, KillsTheTargetAfterTheCallWithK) {
  UniqueFd daemon = ListenUnix(dir_ / "qrexec.vm1");
  FakeServer qubesd(dir_ / "qubesd.sock", {std::string("0\0", 2)}, FakeServer::ReadUntil::kEof);
  Process client = Start({"-k", "-d", "vm1", "user:cmd"});
  ServeExec(daemon.get(), kExecCmdline, "user:cmd");
  UniqueFd data = JoinData();
  client.CloseStdin();
  ReadStdin(data.get());
  Finish(data.get(), "", 0);
  EXPECT_EQ(client.Wait(), 0);
  auto requests = qubesd.Requests(1);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0], std::string("admin.vm.Kill dom0 name vm1\0", 28));
}

TEST_F(ClientTest, ConnectsAVmToVmCallThroughBothDaemons) {
  UniqueFd target = ListenUnix(dir_ / "qrexec.vm2");
  UniqueFd source = ListenUnix(dir_ / "qrexec.42");
  Process client =
      Start({"-d", "vm2", "-c", "SOCKET7,work,42", "DEFAULT:QUBESRPC a.b+ work"}, Stdio::kNull);
  UniqueFd t = AcceptOne(target.get());
  ASSERT_TRUE(t.valid());
  ASSERT_TRUE(ServeDaemonHello(t.get()));
  EXPECT_EQ(Recv(t.get()), (Msg{kExecCmdline, CmdBody(42, 0, "DEFAULT:QUBESRPC a.b+ work")}));
  ASSERT_TRUE(SendMessage(t.get(), kExecCmdline, U32(43) + U32(514)));
  UniqueFd s = AcceptOne(source.get());
  ASSERT_TRUE(s.valid());
  ASSERT_TRUE(ServeDaemonHello(s.get()));
  EXPECT_EQ(Recv(s.get()), (Msg{kServiceConnect, U32(43) + U32(514) + Ident("SOCKET7")}));
  EXPECT_EQ(client.Wait(), 0);
}

TEST_F(ClientTest, WaitOptionKeepsTheTargetConnectionUntilItCloses) {
  UniqueFd target = ListenUnix(dir_ / "qrexec.vm2");
  UniqueFd source = ListenUnix(dir_ / "qrexec.42");
  Process client = Start({"-W", "-d", "vm2", "-c", "SOCKET7,work,42", "DEFAULT:QUBESRPC a.b+ work"},
                         Stdio::kNull);
  UniqueFd t = AcceptOne(target.get());
  ASSERT_TRUE(ServeDaemonHello(t.get()));
  Recv(t.get());
  ASSERT_TRUE(SendMessage(t.get(), kExecCmdline, U32(43) + U32(514)));
  UniqueFd s = AcceptOne(source.get());
  ASSERT_TRUE(ServeDaemonHello(s.get()));
  Recv(s.get());
  EXPECT_FALSE(client.Wait(milliseconds(300)).has_value()) << "still waiting for the call end";
  t.reset();
  EXPECT_EQ(client.Wait(), 0);
}

// The source daemon closes the connection when its agent reports the caller
// gone: the call is over, also if the target never reports its end.
TEST_F(ClientTest, WaitOptionEndsWhenTheSourceDaemonCloses) {
  UniqueFd target = ListenUnix(dir_ / "qrexec.vm2");
  UniqueFd source = ListenUnix(dir_ / "qrexec.42");
  Process client = Start({"-W", "-d", "vm2", "-c", "SOCKET7,work,42", "DEFAULT:QUBESRPC a.b+ work"},
                         Stdio::kNull);
  UniqueFd t = AcceptOne(target.get());
  ASSERT_TRUE(ServeDaemonHello(t.get()));
  Recv(t.get());
  ASSERT_TRUE(SendMessage(t.get(), kExecCmdline, U32(43) + U32(514)));
  UniqueFd s = AcceptOne(source.get());
  ASSERT_TRUE(ServeDaemonHello(s.get()));
  Recv(s.get());
  EXPECT_FALSE(client.Wait(milliseconds(300)).has_value()) << "still waiting for the call end";
  s.reset();
  EXPECT_EQ(client.Wait(), 0);
}

// qrexec-policy-exec runs a disposable's call as -EWkd DISPN -c ...: the
// disposable is killed once the call is over.
TEST_F(ClientTest, KillsTheTargetOfAVmToVmCallWithK) {
  UniqueFd target = ListenUnix(dir_ / "qrexec.vm2");
  UniqueFd source = ListenUnix(dir_ / "qrexec.42");
  FakeServer qubesd(dir_ / "qubesd.sock", {std::string("0\0", 2)}, FakeServer::ReadUntil::kEof);
  Process client = Start({"-W", "-k", "-d", "vm2", "-c", "SOCKET7,work,42", "DEFAULT:QUBESRPC a.b+ work"},
                         Stdio::kNull);
  UniqueFd t = AcceptOne(target.get());
  ASSERT_TRUE(ServeDaemonHello(t.get()));
  Recv(t.get());
  ASSERT_TRUE(SendMessage(t.get(), kExecCmdline, U32(43) + U32(514)));
  UniqueFd s = AcceptOne(source.get());
  ASSERT_TRUE(ServeDaemonHello(s.get()));
  Recv(s.get());
  t.reset();
  EXPECT_EQ(client.Wait(), 0);
  auto requests = qubesd.Requests(1);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0], std::string("admin.vm.Kill dom0 name vm2\0", 28));
}

TEST_F(ClientTest, VmToVmFailureExits137) {
  EXPECT_EQ(Run({"-d", "vm2", "-c", "SOCKET7,work,42", "DEFAULT:QUBESRPC a.b+ work"}).exit_code,
            137);
}

TEST_F(ClientTest, RunsADom0ServiceForAVm) {
  WriteScript(dir_ / "rpc/test.Echo",
              "echo \"$QREXEC_REMOTE_DOMAIN $1 $QREXEC_REQUESTED_TARGET_TYPE\"; cat; exit 4\n");
  UniqueFd source = ListenUnix(dir_ / "qrexec.work");
  auto listener = VchanListen(dir_.path(), 42, 0, 513);
  ASSERT_TRUE(listener);
  Process client =
      Start({"-d", "dom0", "-c", "SOCKET7,work,42", "QUBESRPC test.Echo+arg work name dom0"},
            Stdio::kNull);
  UniqueFd s = AcceptOne(source.get());
  ASSERT_TRUE(s.valid());
  ASSERT_TRUE(ServeDaemonHello(s.get()));
  EXPECT_EQ(Recv(s.get()), (Msg{kServiceConnect, U32(0) + U32(0) + Ident("SOCKET7")}));
  ASSERT_TRUE(SendMessage(s.get(), kServiceConnect, U32(42) + U32(513)));
  auto data = VchanAccept(listener->get(), dir_.path(), 42, 0, 513);
  ASSERT_TRUE(data);
  ASSERT_TRUE(Handshake(data->get(), 4));
  ASSERT_TRUE(SendMessage(data->get(), kStdin, "in"));
  ASSERT_TRUE(SendMessage(data->get(), kStdin, ""));
  EXPECT_EQ(Recv(data->get()), (Msg{kStderr, ""}));
  std::string out;
  Msg msg;
  while ((msg = Recv(data->get())).type == kStdout) out += msg.body;
  EXPECT_EQ(msg, (Msg{kExitCode, U32(4)}));
  EXPECT_EQ(out, "work arg name\nin");
  EXPECT_EQ(client.Wait(), 4);
}

TEST_F(ClientTest, Dom0ToDom0ExecsTheServiceInPlace) {
  WriteScript(dir_ / "rpc/test.Echo",
              "echo \"$QREXEC_REMOTE_DOMAIN $QREXEC_SERVICE_FULL_NAME $1\"; exit 7\n");
  auto result = Run({"-d", "dom0", "DEFAULT:QUBESRPC test.Echo+x dom0"});
  EXPECT_EQ(result.exit_code, 7);
  EXPECT_EQ(result.out, "dom0 test.Echo+x x\n");
}

TEST_F(ClientTest, Dom0ToDom0MissingServiceExits127) {
  EXPECT_EQ(Run({"-d", "@adminvm", "DEFAULT:QUBESRPC test.Missing dom0"}).exit_code, 127);
}

TEST_F(ClientTest, Dom0ToDom0NeedsTheDefaultUser) {
  WriteScript(dir_ / "rpc/test.Echo", "exit 0\n");
  EXPECT_EQ(Run({"-d", "dom0", "root:QUBESRPC test.Echo dom0"}).exit_code, 125);
}

TEST_F(ClientTest, Dom0ToDom0RefusesSocketServices) {
  std::filesystem::create_directories(dir_ / "rpc");
  UniqueFd socket_service = ListenUnix(dir_ / "rpc/test.Sock");
  EXPECT_EQ(Run({"-d", "dom0", "DEFAULT:QUBESRPC test.Sock dom0"}).exit_code, 125);
}

TEST_F(ClientTest, UsageErrors) {
  EXPECT_EQ(Run({"-h"}).exit_code, 0);
  EXPECT_EQ(Run({"user:cmd"}).exit_code, 1);
  EXPECT_EQ(Run({"-d", "vm1"}).exit_code, 1);
  EXPECT_EQ(Run({"-d", "vm1", "-l", "cat", "-e", "user:cmd"}).exit_code, 1);
  EXPECT_EQ(Run({"-d", "vm1", "-c", "SOCKET7,dom0,0", "user:cmd"}).exit_code, 1);
  EXPECT_EQ(Run({"-d", "vm1", "-p", "a", "-p", "b", "user:cmd"}).exit_code, 2);
  EXPECT_EQ(Run({"-d", "vm1", "--use-stdin-socket", "user:cmd"}).exit_code, 2);
  EXPECT_EQ(Run({"-d", "dom0", "-l", "cat", "DEFAULT:QUBESRPC a dom0"}).exit_code, 125);
}

}  // namespace
}  // namespace qrexec::dom0test
