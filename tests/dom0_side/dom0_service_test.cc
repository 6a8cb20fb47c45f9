// Black-box tests of qrexec-client as the dom0 end of a call from a VM
// (`-d dom0 -c IDENT,SOURCE,DOMID CMD`): the test plays the source domain's
// qrexec-daemon (its socket, MSG_SERVICE_CONNECT) and the calling VM (the
// data vchan server). What each test checks is the order of the messages on
// the data vchan and the exit status, the way Qubes' qrexec-client behaves.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "dom0_fixture.h"

namespace qrexec::dom0test {
namespace {

constexpr int kSourceDomid = 42;
constexpr int kDataPort = 513;

// Plays the socket service's side: writes all of `data` (blocking socket).
bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

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
  std::string StdoutUntilEof(int fd) { return StreamUntilEof(fd, kStdout); }

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

// --- socket services: the end of the service's socket ends the call ---

class Dom0SocketServiceTest : public Dom0ServiceTest {
 protected:
  static constexpr std::string_view kCommand = "QUBESRPC test.Sock+arg work name dom0";

  // Starts the call and accepts the service connection; checks the
  // descriptor header and the STDERR EOF that comes first.
  void StartCall() {
    service_listen_ = ListenUnix(dir_ / "rpc/test.Sock+arg");
    data_ = Connect(std::string(kCommand));
    ASSERT_TRUE(data_.valid());
    service_ = AcceptOne(service_listen_.get());
    ASSERT_TRUE(service_.valid());
    std::string header = std::string(kCommand.substr(9)) + '\0';
    EXPECT_EQ(RecvExact(service_.get(), header.size()).value_or(""), header);
    EXPECT_EQ(Recv(data_.get()), (Msg{kStderr, ""}));
  }

  UniqueFd service_listen_;
  UniqueFd data_;
  UniqueFd service_;
};

// The service answers and closes its socket; the caller never sent any
// input, nor its EOF: the call still ends.
TEST_F(Dom0SocketServiceTest, ServiceClosingItsSocketEndsTheCall) {
  StartCall();
  ASSERT_TRUE(SendAll(service_.get(), "answer"));
  service_.reset();
  EXPECT_EQ(StdoutUntilEof(data_.get()), "answer");
  EXPECT_EQ(Recv(data_.get()), (Msg{kExitCode, U32(0)}));
  EXPECT_EQ(client_->Wait(), 0);
}

// SHUT_RD first (no more input wanted), output, then SHUT_WR: the socket is
// shut in both directions and the call ends without the caller's EOF.
TEST_F(Dom0SocketServiceTest, ShutdownOfReadingThenWritingEndsTheCall) {
  StartCall();
  ASSERT_TRUE(SendMessage(data_.get(), kStdin, "in\n"));
  EXPECT_EQ(RecvExact(service_.get(), 3).value_or(""), "in\n");
  ASSERT_EQ(::shutdown(service_.get(), SHUT_RD), 0);
  ASSERT_TRUE(SendAll(service_.get(), "out\n"));
  EXPECT_EQ(Recv(data_.get()), (Msg{kStdout, "out\n"}));
  ASSERT_EQ(::shutdown(service_.get(), SHUT_WR), 0);
  EXPECT_EQ(Recv(data_.get()), (Msg{kStdout, ""}));
  EXPECT_EQ(Recv(data_.get()), (Msg{kExitCode, U32(0)}));
  EXPECT_EQ(client_->Wait(), 0);
}

// SHUT_WR first: the stdout EOF goes out at once and input still flows;
// the later SHUT_RD ends the call.
TEST_F(Dom0SocketServiceTest, ShutdownOfWritingThenReadingEndsTheCall) {
  StartCall();
  ASSERT_TRUE(SendAll(service_.get(), "out\n"));
  EXPECT_EQ(Recv(data_.get()), (Msg{kStdout, "out\n"}));
  ASSERT_EQ(::shutdown(service_.get(), SHUT_WR), 0);
  EXPECT_EQ(Recv(data_.get()), (Msg{kStdout, ""}));
  ASSERT_TRUE(SendMessage(data_.get(), kStdin, "late\n"));
  EXPECT_EQ(RecvExact(service_.get(), 5).value_or(""), "late\n");
  ASSERT_EQ(::shutdown(service_.get(), SHUT_RD), 0);
  EXPECT_EQ(Recv(data_.get()), (Msg{kExitCode, U32(0)}));
  EXPECT_EQ(client_->Wait(), 0);
}

// --- executable services and their stdin ---

// The service closes its stdin and goes on; input sent after that is
// dropped and the call ends normally with the service's exit code.
TEST_F(Dom0ServiceTest, InputAfterTheServiceClosedItsStdinIsDropped) {
  UniqueFd data = Connect("read line; exec <&-; echo closed; sleep 0.3; exit 3");
  ASSERT_TRUE(data.valid());
  EXPECT_EQ(Recv(data.get()), (Msg{kStderr, ""}));
  ASSERT_TRUE(SendMessage(data.get(), kStdin, "first\n"));
  EXPECT_EQ(Recv(data.get()), (Msg{kStdout, "closed\n"}));
  ASSERT_TRUE(SendMessage(data.get(), kStdin, "second\n"));
  ASSERT_TRUE(SendMessage(data.get(), kStdin, ""));
  EXPECT_EQ(Recv(data.get()), (Msg{kStdout, ""}));
  EXPECT_EQ(Recv(data.get(), milliseconds(5000)), (Msg{kExitCode, U32(3)}));
  EXPECT_EQ(client_->Wait(), 3);
}

// Input that arrives while the service does not read yet is held (more
// than a pipe takes) and reaches it in full, in order, once it reads.
TEST_F(Dom0ServiceTest, InputIsBufferedUntilTheServiceReads) {
  std::string fifo = dir_ / "go";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  UniqueFd data = Connect("read go <" + fifo + "; cat");
  ASSERT_TRUE(data.valid());
  EXPECT_EQ(Recv(data.get()), (Msg{kStderr, ""}));
  std::string input;
  for (size_t i = 0; i < 256 * 1024; ++i) input += static_cast<char>('a' + i % 26);
  for (size_t at = 0; at < input.size(); at += 32 * 1024) {
    ASSERT_TRUE(SendMessage(data.get(), kStdin, std::string_view(input).substr(at, 32 * 1024)));
  }
  ASSERT_TRUE(SendMessage(data.get(), kStdin, ""));
  {
    std::ofstream go(fifo);  // blocks until the service opens its end
    go << "go\n";
  }
  std::string out = StdoutUntilEof(data.get());
  EXPECT_EQ(out.size(), input.size());
  EXPECT_TRUE(out == input) << "output differs from the input";
  EXPECT_EQ(Recv(data.get()), (Msg{kExitCode, U32(0)}));
  EXPECT_EQ(client_->Wait(), 0);
}

// --- rpc-config: a config Qubes refuses fails the call with 125 ---

class Dom0BadConfigTest : public Dom0ServiceTest,
                          public ::testing::WithParamInterface<const char*> {};

TEST_P(Dom0BadConfigTest, FailsTheCallWith125) {
  WriteScript(dir_ / "rpc/test.Svc", "echo should not run\n");
  WriteConfig(GetParam());
  ExpectFailedCall("QUBESRPC test.Svc+arg work name work", 125);
}

INSTANTIATE_TEST_SUITE_P(QubesRejects, Dom0BadConfigTest,
                         ::testing::Values("wait-for-session = 00\n", "wait-for-session = 01\n",
                                           "wait-for-session = \n",
                                           "wait-for-session = \"a\"\n",
                                           "wait-for-session\n", "wait-for-session = 2\n",
                                           "future-key = -1\n"));

// A config that cannot be read (here a link into a non-directory) is not
// taken as missing.
TEST_F(Dom0ServiceTest, UnreadableConfigFailsTheCallWith125) {
  WriteScript(dir_ / "rpc/test.Svc", "echo should not run\n");
  std::filesystem::create_symlink("/dev/null/nothing", dir_ / "rpc-config/test.Svc+arg");
  ExpectFailedCall("QUBESRPC test.Svc+arg work name work", 125);
}

// Unknown keys are ignored, also with an integer value.
TEST_F(Dom0ServiceTest, UnknownConfigKeysAreIgnored) {
  WriteScript(dir_ / "rpc/test.Svc", "echo ran\n");
  WriteConfig("future-limit = 10\nfuture-name = 'x'\nfuture-flag = true\n");
  UniqueFd data = Connect("QUBESRPC test.Svc+arg work name work");
  ASSERT_TRUE(data.valid());
  EXPECT_EQ(Recv(data.get()), (Msg{kStderr, ""}));
  EXPECT_EQ(StdoutUntilEof(data.get()), "ran\n");
  EXPECT_EQ(Recv(data.get()), (Msg{kExitCode, U32(0)}));
  EXPECT_EQ(client_->Wait(), 0);
}

}  // namespace
}  // namespace qrexec::dom0test
