// qrexec-agent running services for dom0 (qrexec-protocol.md §2.7, §2.11,
// §4): the test plays dom0 and the caller side of the data channel. Modeled
// on Qubes' TestAgentExecQubesRpc.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "agent_fixture.h"
#include "base/sys.h"

namespace qrexec::harness::agent_side {
namespace {

class AgentExec : public ::testing::Test {
 protected:
  void SetUp() override {
    agent_.emplace(dir_);
    agent_->ConnectDom0();
  }
  void Service(const std::string& name, const std::string& body) {
    WriteScript(dir_ / ("rpc/" + name), body);
  }
  void Config(const std::string& name, const std::string& text) {
    WriteFile(dir_ / ("config/" + name), text);
  }

  TempDir dir_;
  std::optional<AgentUnderTest> agent_;
};

TEST_F(AgentExec, ServiceGetsStdinAndReportsStdoutStderrAndExitCodeInOrder) {
  Service("test.Echo", "cat; echo err >&2; exit 3\n");
  auto output = RunCall(*agent_, dir_, RpcCommand("test.Echo+"), "hello world");
  EXPECT_EQ(output.out, "hello world");
  EXPECT_EQ(output.err, "err\n");
  ASSERT_EQ(output.exit_code, 3);
  // The exit code comes last, after both EOFs.
  ASSERT_GE(output.types.size(), 3u);
  EXPECT_EQ(output.types.back(), kDataExitCode);
  int stdout_eofs = 0, stderr_eofs = 0;
  for (size_t i = 0; i + 1 < output.types.size(); ++i) {
    if (output.lengths[i] == 0 && output.types[i] == kDataStdout) ++stdout_eofs;
    if (output.lengths[i] == 0 && output.types[i] == kDataStderr) ++stderr_eofs;
  }
  EXPECT_EQ(stdout_eofs, 1);
  EXPECT_EQ(stderr_eofs, 1);
  ExpectTerminated(agent_->control(), 0, 513);
}

// Like Qubes, the handler joins the data vchan before it starts the service,
// so a call whose caller went away never runs its service.
TEST_F(AgentExec, ServiceRunsOnlyOnceTheCallerJoinedTheDataVchan) {
  std::string marker = dir_ / "service-ran";
  Service("test.Marker", "touch '" + marker + "'\n");
  ASSERT_TRUE(SendMessage(agent_->control(), kExecCmdline, ExecParamsBody(0, 600, RpcCommand("test.Marker+"))));
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_FALSE(std::filesystem::exists(marker)) << "the service ran before the data vchan existed";
  auto listener = VchanListen(dir_.path(), 0, agent_->domain(), 600);
  ASSERT_TRUE(listener) << listener.error().ToString();
  auto vchan = VchanAccept(listener->get(), dir_.path(), 0, agent_->domain(), 600);
  ASSERT_TRUE(vchan) << vchan.error().ToString();
  ASSERT_TRUE(Handshake(vchan->get(), 4));
  SendStdin(vchan->get(), "");
  auto output = CollectServiceOutput(vchan->get());
  EXPECT_EQ(output.exit_code, 0);
  EXPECT_TRUE(std::filesystem::exists(marker));
  ExpectTerminated(agent_->control(), 0, 600);
}

// dom0's daemon allocates data ports; the agent uses whatever port dom0
// names, even one outside the 513..768 range our daemon hands out.
TEST_F(AgentExec, ServiceRunsOnAnyDataPortDom0Names) {
  Service("test.Echo", "cat\n");
  for (int port : {1024, 70000}) {
    auto output = RunCall(*agent_, dir_, RpcCommand("test.Echo+"), "on a high port", port);
    EXPECT_EQ(output.out, "on a high port") << port;
    EXPECT_EQ(output.exit_code, 0) << port;
    ExpectTerminated(agent_->control(), 0, static_cast<uint32_t>(port));
  }
}

TEST_F(AgentExec, MissingServiceReportsEofsAndExitCode127) {
  auto output = RunCall(*agent_, dir_, RpcCommand("test.Missing+"));
  EXPECT_EQ(output.exit_code, 127);
  EXPECT_EQ(output.out, "");
  ASSERT_EQ(output.types.size(), 3u);
  EXPECT_EQ(output.types[0], kDataStdout);
  EXPECT_EQ(output.types[1], kDataStderr);
  EXPECT_EQ(output.types[2], kDataExitCode);
  ExpectTerminated(agent_->control(), 0, 513);
}

// Qubes' callers send their STDIN right after the hello, without waiting for
// the service to start. When it cannot start (here execve fails with
// ENOEXEC), the agent reports it, ends its direction at once (EOF after
// EXIT_CODE), and keeps reading until the caller's input ends: a late write
// must not fail with EPIPE.
TEST_F(AgentExec, ServiceThatCannotStartLetsTheCallerFinishItsInput) {
  WriteFile(dir_ / "rpc/test.Junk", std::string("\0", 1), 0755);
  UniqueFd vchan = StartCall(*agent_, dir_, RpcCommand("test.Junk+"));
  ASSERT_TRUE(vchan.valid());
  auto output = CollectServiceOutput(vchan.get());
  EXPECT_EQ(output.exit_code, 125);
  ASSERT_FALSE(output.types.empty());
  EXPECT_EQ(output.types.front(), kDataStdout);
  EXPECT_TRUE(WaitForEof(vchan.get()));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_TRUE(SendStdin(vchan.get(), "late input"));
  vchan.reset();
  ExpectTerminated(agent_->control(), 0, 513);
}

TEST_F(AgentExec, ExitCodesAndSignalsArePassedOn) {
  Service("test.Exit", "exit \"$1\"\n");
  Service("test.Kill", "kill -9 $$\n");
  EXPECT_EQ(RunCall(*agent_, dir_, RpcCommand("test.Exit+0"), "", 513).exit_code, 0);
  ExpectTerminated(agent_->control(), 0, 513);
  EXPECT_EQ(RunCall(*agent_, dir_, RpcCommand("test.Exit+42"), "", 514).exit_code, 42);
  ExpectTerminated(agent_->control(), 0, 514);
  EXPECT_EQ(RunCall(*agent_, dir_, RpcCommand("test.Kill+"), "", 515).exit_code, 128 + 9);
  ExpectTerminated(agent_->control(), 0, 515);
}

TEST_F(AgentExec, ServiceSeesArgumentAndQrexecVariables) {
  Service("test.Env",
          "echo \"argv=$# $1\"\n"
          "echo \"full=$QREXEC_SERVICE_FULL_NAME\"\n"
          "echo \"arg=$QREXEC_SERVICE_ARGUMENT\"\n"
          "echo \"remote=$QREXEC_REMOTE_DOMAIN\"\n"
          "echo \"type=${QREXEC_REQUESTED_TARGET_TYPE-unset}\"\n"
          "test -n \"$QREXEC_AGENT_PID\" && echo pid-set\n");
  auto output = RunCall(*agent_, dir_, RpcCommand("test.Env+the-arg", "work"));
  EXPECT_EQ(output.out,
            "argv=1 the-arg\nfull=test.Env+the-arg\narg=the-arg\nremote=work\ntype=\npid-set\n");
  EXPECT_EQ(output.exit_code, 0);
}

TEST_F(AgentExec, ServiceWithoutArgumentGetsNoArgvAndSpecificFileWins) {
  Service("test.Arg", "echo \"generic $#\"\n");
  Service("test.Arg+special", "echo \"specific $#\"\n");
  EXPECT_EQ(RunCall(*agent_, dir_, RpcCommand("test.Arg"), "", 513).out, "generic 0\n");
  ExpectTerminated(agent_->control(), 0, 513);
  EXPECT_EQ(RunCall(*agent_, dir_, RpcCommand("test.Arg+special"), "", 514).out, "specific 1\n");
  ExpectTerminated(agent_->control(), 0, 514);
  EXPECT_EQ(RunCall(*agent_, dir_, RpcCommand("test.Arg+other"), "", 515).out, "generic 1\n");
}

TEST_F(AgentExec, ServiceCanSwitchToItsStdinSocketWithSigusr1) {
  Service("test.Single", "kill -USR1 \"$QREXEC_AGENT_PID\"\necho via-socket >&0\n");
  // (stdin stays open: its EOF would close the socket before the switch)
  UniqueFd vchan = StartCall(*agent_, dir_, RpcCommand("test.Single+"));
  auto output = CollectServiceOutput(vchan.get());
  EXPECT_EQ(output.out, "via-socket\n");
  EXPECT_EQ(output.exit_code, 0);
}

TEST_F(AgentExec, InvalidCommandIsReportedAsProblem125) {
  auto output = RunCall(*agent_, dir_, CurrentUser() + ":QUBESRPC  bad");
  EXPECT_EQ(output.exit_code, 125);
  ExpectTerminated(agent_->control(), 0, 513);
}

TEST_F(AgentExec, LegacyCommandRunsThroughTheShell) {
  auto output = RunCall(*agent_, dir_, CurrentUser() + ":echo legacy; exit 7");
  EXPECT_EQ(output.out, "legacy\n");
  EXPECT_EQ(output.exit_code, 7);
}

TEST_F(AgentExec, WaitForSessionRunsTheWaiterFirst) {
  Service("qubes.WaitForSession", "read user; echo \"$user $QREXEC_REMOTE_DOMAIN\" > \"$0.ran\"\n");
  Service("test.Gui", "cat \"$(dirname \"$0\")/qubes.WaitForSession.ran\"\n");
  Config("test.Gui", "wait-for-session = 1\n");
  auto output = RunCall(*agent_, dir_, RpcCommand("test.Gui+", "work"));
  EXPECT_EQ(output.out, CurrentUser() + " work\n");
  EXPECT_EQ(output.exit_code, 0);
}

TEST_F(AgentExec, CallsQueuedForTheSessionShareOneWaiter) {
  Service("qubes.WaitForSession",
          "echo once >> \"$0.count\"\n"
          "while [ ! -e \"$0.go\" ]; do sleep 0.02; done\n");
  Service("test.Gui", "echo gui\n");
  Config("test.Gui", "wait-for-session = true\n");
  std::vector<UniqueFd> listeners;
  for (int port : {513, 514}) {
    auto listener = VchanListen(dir_.path(), 0, kVmDomain, port);
    ASSERT_TRUE(listener);
    listeners.push_back(std::move(*listener));
    ASSERT_TRUE(
        SendMessage(agent_->control(), kExecCmdline,
                    ExecParamsBody(0, static_cast<uint32_t>(port), RpcCommand("test.Gui+"))));
  }
  for (int i = 0; i < 500 && !PathExists(dir_ / "rpc/qubes.WaitForSession.count"); ++i)
    std::this_thread::sleep_for(milliseconds(10));
  WriteFile(dir_ / "rpc/qubes.WaitForSession.go", "");
  for (int i = 0; i < 2; ++i) {
    int port = 513 + i;
    auto vchan = VchanAccept(listeners[i].get(), dir_.path(), 0, kVmDomain, port);
    ASSERT_TRUE(vchan);
    ASSERT_TRUE(Handshake(vchan->get(), 4));
    // The service exits without reading stdin, so the agent may end the call
    // before our EOF arrives (qrexec-protocol §2.7): the write may fail.
    (void)SendStdin(vchan->get(), "");
    auto output = CollectServiceOutput(vchan->get());
    EXPECT_EQ(output.out, "gui\n");
    EXPECT_EQ(output.exit_code, 0);
  }
  EXPECT_EQ(ReadFile(dir_ / "rpc/qubes.WaitForSession.count"), "once\n");
}

TEST_F(AgentExec, NoguiCommandsDoNotWaitForSession) {
  Service("qubes.WaitForSession", "touch \"$0.ran\"\n");
  Service("test.Gui", "test -e \"$(dirname \"$0\")/qubes.WaitForSession.ran\"; echo $?\n");
  Config("test.Gui", "wait-for-session = true\n");
  auto output = RunCall(*agent_, dir_, CurrentUser() + ":nogui:QUBESRPC test.Gui+ work");
  EXPECT_EQ(output.out, "1\n");
}

TEST_F(AgentExec, ForceUserThatCannotBeUsedFailsWith125) {
  Service("test.Root", "echo ran\n");
  Config("test.Root", "force-user = 'no-such-user-qrx'\n");
  auto output = RunCall(*agent_, dir_, RpcCommand("test.Root+"));
  EXPECT_EQ(output.exit_code, 125);
  EXPECT_EQ(output.out, "");
}

TEST_F(AgentExec, AsRootTheServiceRunsAsTheUserDom0Names) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: switches to user nobody";
  if (::getpwnam("nobody") == nullptr) GTEST_SKIP() << "no user nobody";
  Service("test.Who", "id -un\n");
  ::chmod(dir_.path().c_str(), 0755);
  ::chmod((dir_ / "rpc").c_str(), 0755);
  auto output = RunCall(*agent_, dir_, "nobody:QUBESRPC test.Who+ src");
  EXPECT_EQ(output.out, "nobody\n");
  EXPECT_EQ(output.exit_code, 0);
}

TEST_F(AgentExec, ForceUserOverridesTheUserDom0Names) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: switches to user nobody";
  if (::getpwnam("nobody") == nullptr) GTEST_SKIP() << "no user nobody";
  Service("test.Who", "id -un\n");
  Config("test.Who", "force-user = 'nobody'\n");
  ::chmod(dir_.path().c_str(), 0755);
  ::chmod((dir_ / "rpc").c_str(), 0755);
  auto output = RunCall(*agent_, dir_, RpcCommand("test.Who+"));
  EXPECT_EQ(output.out, "nobody\n");
}

TEST_F(AgentExec, BrokenRpcConfigFailsWith125) {
  Service("test.Bad", "echo ran\n");
  Config("test.Bad", "wait-for-session = \"yes\"\n");
  EXPECT_EQ(RunCall(*agent_, dir_, RpcCommand("test.Bad+")).exit_code, 125);
}

// A Unix socket service: the test serves it from a thread.
class SocketService {
 public:
  explicit SocketService(const std::string& path) {
    auto listener = sys::UnixListen(path);
    if (!listener) throw std::runtime_error("listen");
    listener_ = std::move(*listener);
  }
  // Accepts one connection, reads `header_size` bytes (the descriptor) and
  // then until EOF unless `read_to_eof` is false, then writes `reply`.
  void Serve(size_t header_size, const std::string& reply, bool read_to_eof = true) {
    thread_ = std::thread([=, this] {
      auto conn = sys::Accept(listener_.get());
      if (!conn) return;
      auto header = RecvExact(conn->get(), header_size);
      if (header) header_ = *header;
      if (read_to_eof) {
        auto rest = sys::ReadToEof(conn->get(), 1 << 20);
        if (rest) data_ = *rest;
      }
      (void)sys::WriteAll(conn->get(), reply);
    });
  }
  ~SocketService() {
    if (thread_.joinable()) thread_.join();
  }
  const std::string& header() {
    if (thread_.joinable()) thread_.join();
    return header_;
  }
  const std::string& data() {
    if (thread_.joinable()) thread_.join();
    return data_;
  }

 private:
  UniqueFd listener_;
  std::thread thread_;
  std::string header_, data_;
};

TEST_F(AgentExec, SocketServiceGetsDescriptorAndReportsEmptyStderrFirstAndExitZero) {
  std::filesystem::create_directories(dir_ / "rpc");
  SocketService service(dir_ / "rpc/test.Sock");
  std::string descriptor = std::string("test.Sock+arg work") + '\0';
  service.Serve(descriptor.size(), "reply");
  auto output = RunCall(*agent_, dir_, RpcCommand("test.Sock+arg", "work"), "payload");
  EXPECT_EQ(service.header(), descriptor);
  EXPECT_EQ(service.data(), "payload");
  EXPECT_EQ(output.out, "reply");
  EXPECT_EQ(output.exit_code, 0);
  ASSERT_FALSE(output.types.empty());
  EXPECT_EQ(output.types[0], kDataStderr);
  EXPECT_EQ(output.lengths[0], 0u);
}

TEST_F(AgentExec, SkipServiceDescriptorSendsOnlyData) {
  std::filesystem::create_directories(dir_ / "rpc");
  SocketService service(dir_ / "rpc/test.Sock");
  Config("test.Sock", "skip-service-descriptor = true\n");
  service.Serve(4, "ok");
  auto output = RunCall(*agent_, dir_, RpcCommand("test.Sock+", "work"), "data");
  EXPECT_EQ(service.header(), "data");
  EXPECT_EQ(output.out, "ok");
  EXPECT_EQ(output.exit_code, 0);
}

TEST_F(AgentExec, ExitOnServiceEofEndsTheCallWithoutCallerEof) {
  std::filesystem::create_directories(dir_ / "rpc");
  SocketService service(dir_ / "rpc/test.Sock");
  Config("test.Sock", "exit-on-service-eof = true\n");
  std::string descriptor = std::string("test.Sock+ work") + '\0';
  // The service answers only after the caller's "x" arrived: otherwise the
  // call may end (by design) before the test's write, which would then fail.
  service.Serve(descriptor.size() + 1, "bye", /*read_to_eof=*/false);
  UniqueFd vchan = StartCall(*agent_, dir_, RpcCommand("test.Sock+", "work"));
  EXPECT_TRUE(SendStdin(vchan.get(), "x", /*eof=*/false));
  auto output = CollectServiceOutput(vchan.get());
  EXPECT_EQ(output.out, "bye");
  EXPECT_EQ(output.exit_code, 0);
}

TEST_F(AgentExec, ExitOnClientEofEndsTheCallWhileTheServiceStaysOpen) {
  std::filesystem::create_directories(dir_ / "rpc");
  auto listener = sys::UnixListen(dir_ / "rpc/test.Sock");
  ASSERT_TRUE(listener);
  Config("test.Sock", "exit-on-client-eof = true\nskip-service-descriptor = true\n");
  auto release = sys::Pipe();
  ASSERT_TRUE(release);
  std::string received;
  std::thread service([&] {
    auto conn = sys::Accept(listener->get());
    if (!conn) return;
    auto data = sys::ReadToEof(conn->get(), 1 << 20);  // the caller's EOF is passed on
    if (data) received = *data;
    (void)sys::WaitReadable(release->first.get(), sys::Deadline::After(kDefaultTimeout));
  });
  auto output = RunCall(*agent_, dir_, RpcCommand("test.Sock+", "work"), "last words");
  release->second.reset();
  service.join();
  EXPECT_EQ(received, "last words");
  EXPECT_EQ(output.exit_code, 0);
  EXPECT_FALSE(output.closed_without_exit);
}

TEST_F(AgentExec, TcpServiceConnectsToTheSymlinkTarget) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  socklen_t len = sizeof addr;
  ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  std::filesystem::create_directories(dir_ / "rpc");
  std::filesystem::create_symlink("/dev/tcp/127.0.0.1", dir_ / "rpc/test.Tcp");
  Config("test.Tcp", "skip-service-descriptor = true\n");
  std::string received;
  std::thread server([&] {
    auto conn = sys::Accept(listener.get());
    if (!conn) return;
    auto data = sys::ReadToEof(conn->get(), 1 << 20);
    if (data) received = *data;
    (void)sys::WriteAll(conn->get(), "tcp-reply");
  });
  auto output = RunCall(*agent_, dir_,
                        RpcCommand("test.Tcp+" + std::to_string(ntohs(addr.sin_port))), "tcp-data");
  server.join();
  EXPECT_EQ(received, "tcp-data");
  EXPECT_EQ(output.out, "tcp-reply");
  EXPECT_EQ(output.exit_code, 0);
}

TEST_F(AgentExec, JustExecStartsTheProcessAndReportsZeroAtOnce) {
  Service("test.Touch", "echo started > \"$0.ran\"; sleep 30\n");
  UniqueFd vchan = StartCall(*agent_, dir_, RpcCommand("test.Touch+"), kJustExec);
  auto output = CollectServiceOutput(vchan.get());
  EXPECT_EQ(output.exit_code, 0);
  EXPECT_EQ(output.out, "");
  for (int i = 0; i < 500 && !PathExists(dir_ / "rpc/test.Touch.ran"); ++i)
    std::this_thread::sleep_for(milliseconds(10));
  EXPECT_TRUE(PathExists(dir_ / "rpc/test.Touch.ran"));
  ExpectTerminated(agent_->control(), 0, 513);
}

TEST_F(AgentExec, JustExecOfASocketServiceConnectsItAndReportsZero) {
  std::filesystem::create_directories(dir_ / "rpc");
  SocketService service(dir_ / "rpc/test.Sock");
  std::string descriptor = std::string("test.Sock+ work") + '\0';
  service.Serve(descriptor.size(), "");
  UniqueFd vchan = StartCall(*agent_, dir_, RpcCommand("test.Sock+", "work"), kJustExec);
  EXPECT_EQ(CollectServiceOutput(vchan.get()).exit_code, 0);
  EXPECT_EQ(service.header(), descriptor);
  EXPECT_EQ(service.data(), "");
}

TEST_F(AgentExec, JustExecOfMissingServiceReports127) {
  UniqueFd vchan = StartCall(*agent_, dir_, RpcCommand("test.Missing+"), kJustExec);
  EXPECT_EQ(CollectServiceOutput(vchan.get()).exit_code, 127);
}

TEST_F(AgentExec, LargeStreamsAreByteExactInBothDirections) {
  Service("test.Cat", "exec cat\n");
  std::string input(4 << 20, '\0');
  for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<char>((i * 7 + i / 4096) & 0xff);
  UniqueFd vchan = StartCall(*agent_, dir_, RpcCommand("test.Cat+"));
  std::thread writer([&] { SendStdin(vchan.get(), input); });
  auto output = CollectServiceOutput(vchan.get());
  writer.join();
  EXPECT_EQ(output.exit_code, 0);
  EXPECT_TRUE(output.out == input) << "output differs, size " << output.out.size();
  for (size_t i = 0; i < output.types.size(); ++i) EXPECT_LE(output.lengths[i], 65536u);
}

TEST_F(AgentExec, ProtocolTwoCallerGetsChunksOfAtMost4KiB) {
  Service("test.Cat", "exec cat\n");
  std::string input(100000, 'x');
  UniqueFd vchan = StartCall(*agent_, dir_, RpcCommand("test.Cat+"), kExecCmdline, 513, 2);
  for (size_t offset = 0; offset < input.size(); offset += 4096) {
    ASSERT_TRUE(SendMessage(vchan.get(), kDataStdin, input.substr(offset, 4096)));
  }
  ASSERT_TRUE(SendMessage(vchan.get(), kDataStdin, ""));
  auto output = CollectServiceOutput(vchan.get());
  EXPECT_EQ(output.out, input);
  for (size_t length : output.lengths) EXPECT_LE(length, 4096u);
}

TEST_F(AgentExec, ParallelCallsEachGetTheirOwnPort) {
  Service("test.Echo", "cat\n");
  std::vector<UniqueFd> calls;
  for (int port = 513; port < 523; ++port)
    calls.push_back(StartCall(*agent_, dir_, RpcCommand("test.Echo+"), kExecCmdline, port));
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_TRUE(SendStdin(calls[i].get(), "call " + std::to_string(i)));
  }
  for (size_t i = 0; i < calls.size(); ++i) {
    auto output = CollectServiceOutput(calls[i].get());
    EXPECT_EQ(output.out, "call " + std::to_string(i));
    EXPECT_EQ(output.exit_code, 0);
  }
}

}  // namespace
}  // namespace qrexec::harness::agent_side
