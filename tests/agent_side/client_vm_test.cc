// qrexec-client-vm (qrexec-protocol.md §1.5, §2.10; the seed man page): the
// test plays the local agent (trigger socket) and the remote service side of
// the data vchan. Modeled on Qubes' TestClientVm.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <thread>

#include "agent_fixture.h"
#include "base/sys.h"

namespace qrexec::harness::agent_side {
namespace {

constexpr int kRemoteDomain = 43;

// What the fake agent + remote service do for one call.
struct RemoteScript {
  bool refuse = false;
  int port = 513;
  std::string stdout_data;
  std::string stderr_data;
  bool close_early = false;  // close the vchan without an exit code
  // With close_early: first wait for this many bytes of stdin.
  size_t close_after_stdin = 0;
  // Send the STDOUT EOF right after stdout_data, before reading any stdin.
  bool stdout_eof_first = false;
  // Created once the first stdin data has arrived (a local program may wait
  // for it before it exits).
  std::string touch_on_stdin;
  int exit_code = 0;
  milliseconds connect_timeout = kDefaultTimeout;
};

struct RemoteSeen {
  std::string trigger;  // header + body of the request
  std::string stdin_data;
  bool stdin_eof = false;
  bool agent_socket_closed = false;
};

class ClientVm : public ::testing::Test {
 protected:
  void SetUp() override {
    auto listener = sys::UnixListen(dir_ / "agent.sock");
    ASSERT_TRUE(listener);
    agent_listener_ = std::move(*listener);
  }

  SpawnOptions Options(std::vector<std::string> args) {
    SpawnOptions options;
    options.argv = {BinPath("qrexec-client-vm"), "--agent-socket=" + (dir_ / "agent.sock")};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.env = VmEnvironment(dir_);
    options.unset_env = {"QREXEC_BROKER_SOCKET", "PASS_LOCAL_STDERR"};
    return options;
  }

  // Plays the agent and the remote side on a thread.
  void Serve(RemoteScript script) {
    remote_ = std::thread([this, script] { PlayRemote(script); });
  }
  RemoteSeen& Seen() {
    if (remote_.joinable()) remote_.join();
    return seen_;
  }
  void TearDown() override {
    if (remote_.joinable()) remote_.join();
  }

  void PlayRemote(const RemoteScript& script) {
    if (!sys::WaitReadable(agent_listener_.get(), sys::Deadline::After(kDefaultTimeout))) return;
    auto conn = sys::Accept(agent_listener_.get());
    if (!conn) return;
    auto request = RecvMessage(conn->get());
    if (!request) return;
    seen_.trigger =
        U32(request->type) + U32(static_cast<uint32_t>(request->body.size())) + request->body;
    if (script.refuse) return;  // closing the socket refuses
    (void)SendRaw(conn->get(), U32(kRemoteDomain) + U32(static_cast<uint32_t>(script.port)));
    auto vchan =
        VchanConnect(dir_.path(), kVmDomain, kRemoteDomain, script.port, script.connect_timeout);
    if (!vchan || !Handshake(vchan->get(), 4)) return;
    PlayService(vchan->get(), script);
    vchan->reset();
    seen_.agent_socket_closed = WaitForEof(conn->get());
  }

  void PlayService(int vchan, const RemoteScript& script) {
    for (size_t i = 0; i < script.stdout_data.size(); i += 65536)
      (void)SendMessage(vchan, kDataStdout, script.stdout_data.substr(i, 65536));
    while (script.close_early && seen_.stdin_data.size() < script.close_after_stdin) {
      auto message = RecvMessage(vchan);
      if (!message || message->type != kDataStdin || message->body.empty()) break;
      seen_.stdin_data += message->body;
    }
    if (script.close_early) return;
    if (script.stdout_eof_first) (void)SendMessage(vchan, kDataStdout, "");
    for (;;) {
      auto message = RecvMessage(vchan);
      if (!message || message->type != kDataStdin) break;
      if (message->body.empty()) {
        seen_.stdin_eof = true;
        break;
      }
      seen_.stdin_data += message->body;
      if (!script.touch_on_stdin.empty()) WriteFile(script.touch_on_stdin, "");
    }
    if (!script.stdout_eof_first) (void)SendMessage(vchan, kDataStdout, "");
    if (!script.stderr_data.empty()) (void)SendMessage(vchan, kDataStderr, script.stderr_data);
    (void)SendMessage(vchan, kDataStderr, "");
    (void)SendMessage(vchan, kDataExitCode, U32(static_cast<uint32_t>(script.exit_code)));
  }

  TempDir dir_;
  UniqueFd agent_listener_;
  std::thread remote_;
  RemoteSeen seen_;
};

TEST_F(ClientVm, RefusedCallExits126WithMessage) {
  Serve({.refuse = true});
  auto result = RunProgram(Options({"target", "test.Service"}));
  EXPECT_EQ(result.exit_code, 126);
  EXPECT_NE(result.err.find("Request refused"), std::string::npos) << result.err;
}

TEST_F(ClientVm, RequestIsTriggerService4WithConvertedTarget) {
  Serve({.refuse = true});
  RunProgram(Options({"$dispvm:$x", "test.Service+arg"}));
  const std::string& trigger = Seen().trigger;
  std::string service = std::string("test.Service+arg") + '\0';
  ASSERT_EQ(trigger.size(), 8 + 160 + service.size());
  EXPECT_EQ(ReadU32(trigger, 0), kTriggerService4);
  EXPECT_EQ(ReadU32(trigger, 4), 160 + service.size());
  EXPECT_EQ(trigger.substr(8, 64), Fixed("", 64));
  EXPECT_EQ(trigger.substr(8 + 64, 64), Fixed("@dispvm:@x", 64));
  EXPECT_EQ(trigger.substr(8 + 128, 32), Fixed("SOCKET", 32));
  EXPECT_EQ(trigger.substr(8 + 160), service);
}

TEST_F(ClientVm, SourceQubeAndEmptyTargetAreSent) {
  Serve({.refuse = true});
  RunProgram(Options({"--source-qube=remote-src", "", "test.Service"}));
  const std::string& trigger = Seen().trigger;
  ASSERT_GE(trigger.size(), 8u + 160u);
  EXPECT_EQ(trigger.substr(8, 64), Fixed("remote-src", 64));
  EXPECT_EQ(trigger.substr(8 + 64, 64), Fixed("", 64));
}

TEST_F(ClientVm, CallRelaysStdioAndReturnsTheRemoteExitCode) {
  Serve({.stdout_data = "from remote", .stderr_data = "remote err", .exit_code = 5});
  auto result = RunProgram(Options({"target", "test.Service"}), "to remote");
  EXPECT_EQ(result.exit_code, 5);
  EXPECT_EQ(result.out, "from remote");
  EXPECT_NE(result.err.find("remote err"), std::string::npos);
  EXPECT_EQ(Seen().stdin_data, "to remote");
  EXPECT_TRUE(Seen().stdin_eof);
  EXPECT_TRUE(Seen().agent_socket_closed);
}

TEST_F(ClientVm, PrefixDataIsSentBeforeStdin) {
  Serve({});
  auto result = RunProgram(
      Options({"--buffer-size=4096", "-p", "prefix:", "target", "test.Service"}), "stdin");
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(Seen().stdin_data, "prefix:stdin");
}

TEST_F(ClientVm, VchanClosedBeforeExitCodeGives255) {
  Serve({.stdout_data = "partial", .close_early = true});
  auto result = RunProgram(Options({"target", "test.Service"}));
  EXPECT_EQ(result.exit_code, 255);
  EXPECT_EQ(result.out, "partial");
}

TEST_F(ClientVm, UnreachableAgentExitsOne) {
  agent_listener_.reset();
  ::unlink((dir_ / "agent.sock").c_str());
  auto result = RunProgram(Options({"target", "test.Service"}));
  EXPECT_EQ(result.exit_code, 1);
}

TEST_F(ClientVm, UsageErrorsExitTwoAndHelpExitsZero) {
  EXPECT_EQ(RunProgram(Options({"only-target"})).exit_code, 2);
  EXPECT_EQ(RunProgram(Options({"-p", "a", "-p", "b", "t", "s"})).exit_code, 2);
  EXPECT_EQ(RunProgram(Options({"-s", "a", "-s", "b", "t", "s"})).exit_code, 2);
  EXPECT_EQ(RunProgram(Options({"--use-stdin-socket", "t", "s", "/bin/true"})).exit_code, 2);
  EXPECT_EQ(RunProgram(Options({"--bogus", "t", "s"})).exit_code, 2);
  EXPECT_EQ(RunProgram(Options({"-h"})).exit_code, 0);
}

TEST_F(ClientVm, UseStdinSocketNeedsASocket) {
  auto result = RunProgram(Options({"--use-stdin-socket", "t", "s"}), "x");
  EXPECT_EQ(result.exit_code, 2);
}

TEST_F(ClientVm, UseStdinSocketCarriesBothDirections) {
  Serve({.stdout_data = "answer", .exit_code = 0});
  auto pair = sys::SocketPair();
  ASSERT_TRUE(pair);
  auto options = Options({"--use-stdin-socket", "target", "test.Service"});
  options.stdin_fd = pair->second.get();
  options.stdout_mode = Stdio::kNull;
  auto process = Process::Spawn(options);
  ASSERT_TRUE(process);
  pair->second.reset();
  ASSERT_TRUE(sys::WriteAll(pair->first.get(), "question"));
  ::shutdown(pair->first.get(), SHUT_WR);
  auto answer = sys::ReadToEof(pair->first.get(), 1 << 20, sys::Deadline::After(kDefaultTimeout));
  ASSERT_TRUE(answer);
  EXPECT_EQ(*answer, "answer");
  EXPECT_EQ(process->Wait(), 0);
  EXPECT_EQ(Seen().stdin_data, "question");
}

TEST_F(ClientVm, EscapeFilterOptionsReplaceControlBytes) {
  std::string raw = "ok\x1b[31mred\x07\n";
  Serve({.stdout_data = raw, .stderr_data = "e\x1b", .exit_code = 0});
  auto filtered = RunProgram(Options({"-t", "-T", "target", "test.Service"}));
  EXPECT_EQ(filtered.out, "ok_[31mred\x07\n");
  EXPECT_NE(filtered.err.find("e_"), std::string::npos);
  Seen();
  seen_ = {};
  Serve({.stdout_data = raw, .exit_code = 0});
  auto unfiltered =
      RunProgram(Options({"--no-filter-escape-chars-stdout", "target", "test.Service"}));
  EXPECT_EQ(unfiltered.out, raw);
}

TEST_F(ClientVm, LocalProgramIsConnectedToTheService) {
  WriteScript(dir_ / "local.sh",
              "read line\n"
              "echo \"local got: $line\"\n"
              "echo \"argv0=$(basename \"$0\") arg=$1\" >&2\n"
              "test -n \"$SAVED_FD_0\" && test -n \"$SAVED_FD_1\" && echo saved-fds >&2\n"
              "test -z \"$SAVED_FD_2\" && echo no-fd2 >&2\n"
              "test -n \"$QREXEC_AGENT_PID\" && echo agent-pid >&2\n"
              "echo to-our-stdout >&$SAVED_FD_1\n"
              "exit 4\n");
  Serve({.stdout_data = "hello\n", .exit_code = 0});
  auto result = RunProgram(Options({"target", "test.Service", dir_ / "local.sh", "x"}));
  EXPECT_EQ(Seen().stdin_data, "local got: hello\n");
  EXPECT_EQ(result.exit_code, 4);  // remote 0: the local program's status
  EXPECT_EQ(result.out, "to-our-stdout\n");
  EXPECT_NE(result.err.find("arg=x"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("saved-fds"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("no-fd2"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("agent-pid"), std::string::npos) << result.err;
}

TEST_F(ClientVm, LocalProgramCanSwitchToItsStdinSocketWithSigusr1) {
  WriteScript(dir_ / "local.sh", "kill -USR1 \"$QREXEC_AGENT_PID\"\necho single >&0\n");
  Serve({});
  auto result = RunProgram(Options({"target", "test.Service", dir_ / "local.sh"}));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(Seen().stdin_data, "single\n");
}

// The program's input ends (remote STDOUT EOF: its stdin socket is shut
// down for writing) before it asks for the switch; it can still answer
// through that socket, and its exit then ends our stdin.
TEST_F(ClientVm, LocalProgramCanSwitchAfterItsInputEnded) {
  std::string flag = dir_ / "answer-seen";
  WriteScript(dir_ / "local.sh",
              "read -r question\n"
              "cat >/dev/null\n"  // until the input has ended
              "kill -USR1 \"$QREXEC_AGENT_PID\"\n"
              "echo \"answer to $question\" >&0\n"
              // stay until the remote has the answer: exiting at once could
              // end our output before the switch is handled
              "while [ ! -e '" + flag + "' ]; do sleep 0.02; done\n");
  Serve({.stdout_data = "question\n", .stdout_eof_first = true, .touch_on_stdin = flag,
         .exit_code = 6});
  auto result = RunProgram(Options({"target", "test.Service", dir_ / "local.sh"}));
  EXPECT_EQ(result.exit_code, 6) << result.err;
  EXPECT_EQ(Seen().stdin_data, "answer to question\n");
  EXPECT_TRUE(Seen().stdin_eof);
}

// The remote end goes away mid-call, once cat has echoed what it got and
// waits for more: cat gets EOF on its stdin, exits, and the call ends with
// 255.
TEST_F(ClientVm, VchanClosedEarlyEndsTheLocalProgramsInputAndGives255) {
  Serve({.stdout_data = "unfinished\n", .close_early = true, .close_after_stdin = 11});
  auto result = RunProgram(Options({"target", "test.Service", "/bin/cat"}));
  EXPECT_EQ(result.exit_code, 255) << result.err;
  EXPECT_EQ(Seen().stdin_data, "unfinished\n");
}

TEST_F(ClientVm, NonZeroRemoteExitCodeWinsOverTheLocalProgram) {
  WriteScript(dir_ / "local.sh", "exit 4\n");
  Serve({.exit_code = 9});
  auto result = RunProgram(Options({"target", "test.Service", dir_ / "local.sh"}));
  EXPECT_EQ(result.exit_code, 9);
}

TEST_F(ClientVm, PassLocalStderrAddsSavedFd2) {
  WriteScript(dir_ / "local.sh", "test -n \"$SAVED_FD_2\" && echo fd2 >&$SAVED_FD_2; exit 0\n");
  Serve({});
  auto options = Options({"target", "test.Service", dir_ / "local.sh"});
  options.env["PASS_LOCAL_STDERR"] = "1";
  auto result = RunProgram(options);
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.err.find("fd2"), std::string::npos) << result.err;
}

// As in Qubes, the call is not abandoned: the service sees an empty stdin
// and the failed program's status (255) becomes ours.
TEST_F(ClientVm, LocalProgramThatCannotRunExits255AfterTheCall) {
  Serve({});
  auto result = RunProgram(Options({"target", "test.Service", dir_ / "missing"}));
  EXPECT_EQ(result.exit_code, 255) << result.err;
  EXPECT_TRUE(Seen().stdin_eof);
  EXPECT_EQ(Seen().stdin_data, "");
}

TEST_F(ClientVm, HelpGoesToStdoutWithStatusZero) {
  auto result = RunProgram(Options({"--help"}));
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.out.find("usage:"), std::string::npos) << result.out;
}

TEST_F(ClientVm, BufferSizeIsReadAsAnyCBaseNumber) {
  for (const char* size : {"0", "0x1000", "010", "65536"}) {
    Serve({});
    auto result = RunProgram(
        Options({std::string("--buffer-size=") + size, "target", "test.Service"}), "in");
    EXPECT_EQ(result.exit_code, 0) << size << ": " << result.err;
    EXPECT_EQ(Seen().stdin_data, "in") << size;
    seen_ = {};
  }
}

TEST_F(ClientVm, BadBufferSizeExitsOne) {
  for (const char* size : {"x", "-1", " 1", "1k", "0x", "4294967296", ""}) {
    auto result = RunProgram(Options({std::string("--buffer-size=") + size, "t", "s"}));
    EXPECT_EQ(result.exit_code, 1) << "'" << size << "'";
  }
}

TEST_F(ClientVm, UseStdinSocketTwiceExitsTwo) {
  auto pair = sys::SocketPair();
  ASSERT_TRUE(pair);
  auto options = Options({"--use-stdin-socket", "--use-stdin-socket", "t", "s"});
  options.stdin_fd = pair->second.get();
  EXPECT_EQ(RunProgram(options).exit_code, 2);
}

// Names up to 65000 bytes with the NUL are relayed (limits.h); a longer one
// is refused as Qubes' agent refuses it.
TEST_F(ClientVm, ServiceNameOver65000BytesIsRefusedWith126) {
  auto result = RunProgram(Options({"target", std::string(65000, 's')}));
  EXPECT_EQ(result.exit_code, 126);
  EXPECT_NE(result.err.find("Request refused"), std::string::npos) << result.err;
}

TEST_F(ClientVm, ServiceNameOf64999BytesIsSent) {
  Serve({.refuse = true});
  std::string service(64999, 's');
  EXPECT_EQ(RunProgram(Options({"target", service})).exit_code, 126);
  EXPECT_EQ(Seen().trigger.substr(8 + 160), service + '\0');
}

}  // namespace
}  // namespace qrexec::harness::agent_side
