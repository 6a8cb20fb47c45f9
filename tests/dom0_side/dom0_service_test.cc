// Black-box tests of qrexec-client as the dom0 end of a call from a VM
// (`-d dom0 -c IDENT,SOURCE,DOMID CMD`): the test plays the source domain's
// qrexec-daemon (its socket, MSG_SERVICE_CONNECT) and the calling VM (the
// data vchan server). What each test checks is the order of the messages on
// the data vchan and the exit status, the way Qubes' qrexec-client behaves.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "dom0_fixture.h"

namespace qrexec::dom0test {
namespace {

constexpr int kSourceDomid = 42;
constexpr int kDataPort = 513;

class Dom0ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_ / "rpc");
    std::filesystem::create_directories(dir_ / "rpc-config");
  }

  // Starts qrexec-client for `command`, answers its MSG_SERVICE_CONNECT with
  // our data port, accepts the data vchan and exchanges the hellos. Returns
  // the data vchan (invalid after a gtest failure).
  UniqueFd Connect(const std::string& command) {
    UniqueFd daemon = ListenUnix(dir_ / "qrexec.work");
    auto listener = VchanListen(dir_.path(), kSourceDomid, 0, kDataPort);
    EXPECT_TRUE(listener);
    if (!listener) return UniqueFd();
    SpawnOptions options;
    options.argv = {BinPath("qrexec-client"), "--socket-dir=" + dir_.path(),
                    "-d",                     "dom0",
                    "-c",                     "SOCKET9,work," + std::to_string(kSourceDomid),
                    command};
    options.env = {{"VCHAN_SOCKET_DIR", dir_.path()},
                   {"VCHAN_DOMAIN", "0"},
                   {"QREXEC_SERVICE_PATH", dir_ / "rpc"},
                   {"QUBES_RPC_CONFIG_PATH", dir_ / "rpc-config"},
                   {"SHELL", "/bin/sh"}};
    options.unset_env = {"QREXEC_BROKER_SOCKET"};
    options.stdin_mode = Stdio::kNull;
    options.stdout_mode = Stdio::kNull;
    auto process = Process::Spawn(options);
    EXPECT_TRUE(process);
    if (!process) return UniqueFd();
    client_.emplace(std::move(*process));

    UniqueFd conn = AcceptOne(daemon.get());
    EXPECT_TRUE(conn.valid());
    if (!conn.valid() || !ServeDaemonHello(conn.get())) return UniqueFd();
    EXPECT_EQ(Recv(conn.get()), (Msg{kServiceConnect, U32(0) + U32(0) + Ident("SOCKET9")}));
    EXPECT_TRUE(SendMessage(conn.get(), kServiceConnect, U32(kSourceDomid) + U32(kDataPort)));
    auto data = VchanAccept(listener->get(), dir_.path(), kSourceDomid, 0, kDataPort);
    EXPECT_TRUE(data);
    if (!data) return UniqueFd();
    EXPECT_TRUE(Handshake(data->get(), 4));
    return std::move(*data);
  }

  // Every STDOUT byte up to its EOF; the next message must be `last`.
  std::string StdoutUntilEof(int fd) {
    std::string out;
    for (;;) {
      Msg msg = Recv(fd);
      EXPECT_EQ(msg.type, kStdout) << msg;
      if (msg.type != kStdout || msg.body.empty()) return out;
      out += msg.body;
    }
  }

  // A call whose service cannot start: the vchan carries exactly STDERR EOF,
  // STDOUT EOF, EXIT_CODE(code), and qrexec-client exits with `code`.
  void ExpectFailedCall(const std::string& command, uint32_t code) {
    UniqueFd data = Connect(command);
    ASSERT_TRUE(data.valid());
    EXPECT_EQ(Recv(data.get()), (Msg{kStderr, ""}));
    EXPECT_EQ(Recv(data.get()), (Msg{kStdout, ""}));
    EXPECT_EQ(Recv(data.get()), (Msg{kExitCode, U32(code)}));
    EXPECT_EQ(client_->Wait(), static_cast<int>(code));
  }

  void WriteConfig(std::string_view text) {
    WriteFile(dir_ / "rpc-config/test.Svc+arg", text);
  }

  TempDir dir_;
  std::optional<Process> client_;
};

// The dom0 end never forwards its service's stderr, so it announces the
// STDERR EOF first, before any output of the service.
TEST_F(Dom0ServiceTest, StderrEofComesFirstThenOutputThenCode) {
  WriteScript(dir_ / "rpc/test.Svc", "read line; echo \"got $line from $QREXEC_REMOTE_DOMAIN\"\n");
  UniqueFd data = Connect("QUBESRPC test.Svc+arg work name dom0");
  ASSERT_TRUE(data.valid());
  EXPECT_EQ(Recv(data.get()), (Msg{kStderr, ""}));
  ASSERT_TRUE(SendMessage(data.get(), kStdin, "x\n"));
  ASSERT_TRUE(SendMessage(data.get(), kStdin, ""));
  EXPECT_EQ(StdoutUntilEof(data.get()), "got x from work\n");
  EXPECT_EQ(Recv(data.get()), (Msg{kExitCode, U32(0)}));
  EXPECT_EQ(client_->Wait(), 0);
}

TEST_F(Dom0ServiceTest, MissingServiceIsReportedAfterTheStderrEof) {
  ExpectFailedCall("QUBESRPC test.Svc+arg work name dom0", 127);
}

// Three or five tokens after QUBESRPC: the command is malformed (125).
TEST_F(Dom0ServiceTest, MalformedRpcCommandsFailWith125) {
  WriteScript(dir_ / "rpc/test.Svc", "echo should not run\n");
  ExpectFailedCall("QUBESRPC test.Svc+arg work name", 125);
}

TEST_F(Dom0ServiceTest, FiveTokenRpcCommandFailsWith125) {
  WriteScript(dir_ / "rpc/test.Svc", "echo should not run\n");
  ExpectFailedCall("QUBESRPC test.Svc+arg work name a b", 125);
}

// A command that is not QUBESRPC is a dom0 user's shell command. (It never
// reads its input, and the call may end before any STDIN could be sent.)
TEST_F(Dom0ServiceTest, PlainCommandRunsThroughTheShell) {
  UniqueFd data = Connect("echo one two; echo three");
  ASSERT_TRUE(data.valid());
  EXPECT_EQ(Recv(data.get()), (Msg{kStderr, ""}));
  EXPECT_EQ(StdoutUntilEof(data.get()), "one two\nthree\n");
  EXPECT_EQ(Recv(data.get()), (Msg{kExitCode, U32(0)}));
  EXPECT_EQ(client_->Wait(), 0);
}

}  // namespace
}  // namespace qrexec::dom0test
