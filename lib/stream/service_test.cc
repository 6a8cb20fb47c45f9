// The service role of the stream engine, against a raw peer and real children.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/check.h"
#include "base/sys.h"
#include "stream_test_util.h"

namespace qrexec::stream {
namespace {

using namespace std::chrono_literals;
using namespace test_util;

// --- service ---

TEST(Service, RunsCatAndSendsExitCodeLast) {
  Child child = Spawn({"cat"});
  auto run = StartServiceThread(ServiceFor(child));
  int peer = run.peer.get();
  SendHello(peer, 4);
  ExpectHello(peer, 4);
  Send(peer, kStdin, "echo me");
  Send(peer, kStdin, "");
  auto msgs = RecvUntilExit(peer);
  ASSERT_FALSE(msgs.empty());
  EXPECT_EQ(msgs.back().type, kExit);
  EXPECT_EQ(msgs.back().data, U32(0));
  std::string out;
  int stdout_eofs = 0;
  int stderr_eofs = 0;
  for (auto& m : msgs) {
    if (m.type == kStdout) m.data.empty() ? ++stdout_eofs : (out += m.data, 0);
    if (m.type == kStderr && m.data.empty()) ++stderr_eofs;
  }
  EXPECT_EQ(out, "echo me");
  EXPECT_EQ(stdout_eofs, 1);
  EXPECT_EQ(stderr_eofs, 1);
  auto result = Get(run.result);
  ASSERT_TRUE(result) << result.error().ToString();
  EXPECT_EQ(*result, 0);
}

TEST(Service, ReportsExitStatusAnd128PlusSignal) {
  struct Case {
    const char* script;
    int code;
  };
  for (Case c : {Case{"echo oops >&2; exit 9", 9}, Case{"kill -TERM $$", 128 + SIGTERM}}) {
    Child child = Spawn({"sh", "-c", c.script});
    auto run = StartServiceThread(ServiceFor(child));
    int peer = run.peer.get();
    SendHello(peer, 4);
    auto msgs = RecvUntilExit(peer);
    ASSERT_FALSE(msgs.empty());
    EXPECT_EQ(msgs.back().type, kExit);
    EXPECT_EQ(msgs.back().data, U32(static_cast<uint32_t>(c.code)));
    EXPECT_EQ(Get(run.result).value_or(-1), c.code);
  }
}

TEST(Service, ChildExitCountsAsStdinClosedEvenWithoutEof) {
  Child child = Spawn({"true"});
  auto run = StartServiceThread(ServiceFor(child));
  int peer = run.peer.get();
  SendHello(peer, 4);
  auto msgs = RecvUntilExit(peer);  // no STDIN EOF sent by the peer
  ASSERT_FALSE(msgs.empty());
  EXPECT_EQ(msgs.back().type, kExit);
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
}

TEST(Service, SocketServiceAnnouncesNoStderrAtOnceAndReportsZero) {
  auto sock = sys::SocketPair();
  ASSERT_TRUE(sock);
  ServiceConfig config;
  config.child_stdin = std::move(sock->first);
  config.socket_service = true;
  auto run = StartServiceThread(std::move(config));
  int peer = run.peer.get();
  int service = sock->second.get();
  ExpectHello(peer, 4);
  auto first = Recv(peer);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->type, kStderr);
  EXPECT_EQ(first->data, "");
  SendHello(peer, 4);
  Send(peer, kStdin, "request");
  Send(peer, kStdin, "");
  EXPECT_EQ(ReadAll(service), "request");  // EOF = shutdown(SHUT_WR)
  ASSERT_TRUE(sys::WriteAll(service, "reply"));
  sock->second.reset();
  auto msgs = RecvUntilExit(peer);
  ASSERT_GE(msgs.size(), 3u);
  EXPECT_EQ(msgs[0].data, "reply");
  EXPECT_EQ(msgs[msgs.size() - 2].type, kStdout);
  EXPECT_EQ(msgs[msgs.size() - 2].data, "");
  EXPECT_EQ(msgs.back().type, kExit);
  EXPECT_EQ(msgs.back().data, U32(0));
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
}

TEST(Service, ExitOnServiceEofEndsTheCallWithoutWaitingForStdinEof) {
  auto sock = sys::SocketPair();
  ASSERT_TRUE(sock);
  ServiceConfig config;
  config.child_stdin = std::move(sock->first);
  config.socket_service = true;
  config.exit_on_service_eof = true;
  auto run = StartServiceThread(std::move(config));
  int peer = run.peer.get();
  SendHello(peer, 4);
  ASSERT_TRUE(sys::WriteAll(sock->second.get(), "done"));
  ::shutdown(sock->second.get(), SHUT_WR);
  auto msgs = RecvUntilExit(peer);
  ASSERT_FALSE(msgs.empty());
  EXPECT_EQ(msgs.back().type, kExit);
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
}

TEST(Service, ExitOnClientEofEndsTheCallWhileTheServiceStaysOpen) {
  auto sock = sys::SocketPair();
  ASSERT_TRUE(sock);
  ServiceConfig config;
  config.child_stdin = std::move(sock->first);
  config.socket_service = true;
  config.exit_on_client_eof = true;
  auto run = StartServiceThread(std::move(config));
  int peer = run.peer.get();
  SendHello(peer, 4);
  Send(peer, kStdin, "last words");
  Send(peer, kStdin, "");
  auto msgs = RecvUntilExit(peer);
  ASSERT_GE(msgs.size(), 3u);
  EXPECT_EQ(msgs[msgs.size() - 2].type, kStdout);
  EXPECT_EQ(msgs[msgs.size() - 2].data, "");
  EXPECT_EQ(msgs.back().type, kExit);
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
  // The pending stdin was still delivered before the shutdown.
  EXPECT_EQ(ReadAll(sock->second.get()), "last words");
}

TEST(Service, WrongDirectionMessages) {
  Child child = Spawn({"cat"});
  auto run = StartServiceThread(ServiceFor(child));
  int peer = run.peer.get();
  SendHello(peer, 4);
  Send(peer, kStdout, "as-stdin ");  // treated as stdin data
  Send(peer, kStderr, "ignored");
  SendExit(peer, 99);  // ignored
  Send(peer, kStdin, "real");
  Send(peer, kStdin, "");
  std::string out;
  for (auto& m : RecvUntilExit(peer)) {
    if (m.type == kStdout) out += m.data;
  }
  EXPECT_EQ(out, "as-stdin real");
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
}

TEST(Service, UnknownTypeAndOversizedChunkAreFatal) {
  for (bool oversized : {false, true}) {
    Child child = Spawn({"cat"});
    pid_t pid = child.pid;
    auto run = StartServiceThread(ServiceFor(child));
    int peer = run.peer.get();
    SendHello(peer, 3);
    if (oversized) {
      Send(peer, kStdin, std::string(65537, 'a'));
    } else {
      Send(peer, 0x1234, "");
    }
    auto result = Get(run.result);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().kind, ErrorKind::kMalformed);
    ::waitpid(pid, nullptr, 0);  // cat sees EOF: the stream closed its stdin
  }
}

TEST(Service, VchanClosingBeforeTheExitCodeIsDisconnected) {
  Child child = Spawn({"cat"});
  pid_t pid = child.pid;
  auto run = StartServiceThread(ServiceFor(child));
  SendHello(run.peer.get(), 4);
  run.peer.reset();
  auto result = Get(run.result);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().kind, ErrorKind::kDisconnected);
  ::waitpid(pid, nullptr, 0);
}

TEST(Service, SpawnFailureSendsEofsThenTheCode) {
  auto pair = sys::SocketPair();
  ASSERT_TRUE(pair);
  int peer = pair->second.get();
  SendHello(peer, 4);
  ASSERT_TRUE(SendSpawnFailure(pair->first.get(), kExitServiceNotFound));
  ExpectHello(peer, 4);
  auto out = Recv(peer);
  auto err = Recv(peer);
  auto code = Recv(peer);
  ASSERT_TRUE(out && err && code);
  EXPECT_EQ(out->type, kStdout);
  EXPECT_EQ(out->data, "");
  EXPECT_EQ(err->type, kStderr);
  EXPECT_EQ(err->data, "");
  EXPECT_EQ(code->type, kExit);
  EXPECT_EQ(code->data, U32(127));
}

TEST(Service, Dom0SpawnFailureSendsStderrEofFirst) {
  auto pair = sys::SocketPair();
  ASSERT_TRUE(pair);
  int peer = pair->second.get();
  SendHello(peer, 4);
  ASSERT_TRUE(SendSpawnFailure(pair->first.get(), kExitServiceNotFound, proto::kProtocolVersion,
                               std::nullopt, sys::Deadline::Never(),
                               FailureStreams::kStderrFirst));
  ExpectHello(peer, 4);
  auto err = Recv(peer);
  auto out = Recv(peer);
  auto code = Recv(peer);
  ASSERT_TRUE(err && out && code);
  EXPECT_EQ(err->type, kStderr);
  EXPECT_EQ(err->data, "");
  EXPECT_EQ(out->type, kStdout);
  EXPECT_EQ(out->data, "");
  EXPECT_EQ(code->type, kExit);
  EXPECT_EQ(code->data, U32(127));
}

TEST(Service, HandshakeFirstThenStreamWithoutASecondHello) {
  auto pair = sys::SocketPair();
  ASSERT_TRUE(pair);
  int peer = pair->second.get();
  SendHello(peer, 2);
  auto version = Handshake(pair->first.get());
  ASSERT_TRUE(version);
  EXPECT_EQ(*version, 2u);
  ExpectHello(peer, 4);
  Child child = Spawn({"cat"});
  ServiceConfig config = ServiceFor(child);
  config.vchan = std::move(pair->first);
  config.negotiated_version = *version;
  auto result = std::async(std::launch::async, [&] { return RunService(std::move(config)); });
  Send(peer, kStdin, std::string(4096, 'q'));
  Send(peer, kStdin, std::string(904, 'q'));
  Send(peer, kStdin, "");
  size_t total = 0;
  for (auto& m : RecvUntilExit(peer)) {
    ASSERT_NE(m.type, kHello);
    ASSERT_LE(m.data.size(), 4096u);
    if (m.type == kStdout) total += m.data.size();
  }
  EXPECT_EQ(total, 5000u);
  auto outcome = Get(result);
  ASSERT_TRUE(outcome) << outcome.error().ToString();
  EXPECT_EQ(*outcome, 0);
}

TEST(Service, ChildClosingItsStdinEarlyDropsFurtherInputWithoutDying) {
  Child child = Spawn({"sh", "-c", "exec 0<&-; sleep 0.2; echo done"});
  auto run = StartServiceThread(ServiceFor(child));
  int peer = run.peer.get();
  SendHello(peer, 4);
  for (int i = 0; i < 8; ++i) Send(peer, kStdin, std::string(65536, 'i'));
  std::string out;
  for (auto& m : RecvUntilExit(peer)) {
    if (m.type == kStdout) out += m.data;
  }
  EXPECT_EQ(out, "done\n");
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
}

TEST(Service, HalfCloseStdoutEarlyWhileStdinKeepsFlowing) {
  // Closes stdout at once, then counts its whole stdin onto stderr.
  Child child = Spawn({"sh", "-c", "exec 1>&-; wc -c >&2"});
  auto run = StartServiceThread(ServiceFor(child));
  int peer = run.peer.get();
  SendHello(peer, 4);
  ExpectHello(peer, 4);
  auto stdout_eof = Recv(peer);
  ASSERT_TRUE(stdout_eof);
  EXPECT_EQ(stdout_eof->type, kStdout);
  EXPECT_EQ(stdout_eof->data, "");
  std::string block(65536, 'b');
  for (int i = 0; i < 16; ++i) Send(peer, kStdin, block);
  Send(peer, kStdin, "");
  std::string err;
  for (auto& m : RecvUntilExit(peer)) {
    if (m.type == kStderr) err += m.data;
  }
  EXPECT_EQ(err.substr(0, err.find_first_not_of("0123456789 ")), std::string("1048576"))
      << err;
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
}

TEST(Service, HalfCloseStdinEarlyWhileStdoutKeepsFlowing) {
  Child child = Spawn({"sh", "-c", "cat >/dev/null; head -c 3000000 /dev/zero"});
  auto run = StartServiceThread(ServiceFor(child));
  int peer = run.peer.get();
  SendHello(peer, 4);
  Send(peer, kStdin, "");
  size_t total = 0;
  for (auto& m : RecvUntilExit(peer)) {
    if (m.type == kStdout) total += m.data.size();
  }
  EXPECT_EQ(total, 3000000u);
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
}

// --- the syslog copy of the service's stderr (§4.6) ---

// Collects what the service sent as stderr data (EOF excluded).
std::string StderrOf(const std::vector<Msg>& msgs) {
  std::string err;
  for (const auto& m : msgs)
    if (m.type == kStderr) err += m.data;
  return err;
}

TEST(ServiceStderrCopy, GoesToTheCallerAndToTheCopyFd) {
  auto log = sys::Pipe();
  ASSERT_TRUE(log);
  int opened = 0;
  Child child = Spawn({"sh", "-c", "echo to-the-log >&2; echo out"});
  ServiceConfig config = ServiceFor(child);
  config.open_stderr_copy = [&] {
    ++opened;
    return std::move(log->second);
  };
  auto run = StartServiceThread(std::move(config));
  int peer = run.peer.get();
  SendHello(peer, 4);
  auto msgs = RecvUntilExit(peer);
  EXPECT_EQ(StderrOf(msgs), "to-the-log\n");
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
  EXPECT_EQ(opened, 1);
  EXPECT_EQ(ReadAll(log->first.get()), "to-the-log\n");  // EOF: the stream closed its end
}

TEST(ServiceStderrCopy, AQuietServiceNeverOpensIt) {
  int opened = 0;
  Child child = Spawn({"sh", "-c", "echo only-stdout"});
  ServiceConfig config = ServiceFor(child);
  config.open_stderr_copy = [&] {
    ++opened;
    return UniqueFd();
  };
  auto run = StartServiceThread(std::move(config));
  SendHello(run.peer.get(), 4);
  auto msgs = RecvUntilExit(run.peer.get());
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
  EXPECT_EQ(opened, 0);
}

// A logger that does not read must not hold up the call: the copy drops
// what does not fit, and the caller still gets every byte.
TEST(ServiceStderrCopy, ALoggerThatDoesNotReadLosesBytesNotTheCall) {
  auto log = sys::Pipe();
  ASSERT_TRUE(log);
  Child child = Spawn({"sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' e >&2"});
  ServiceConfig config = ServiceFor(child);
  config.open_stderr_copy = [&] { return std::move(log->second); };
  auto run = StartServiceThread(std::move(config));
  SendHello(run.peer.get(), 4);
  auto msgs = RecvUntilExit(run.peer.get());
  EXPECT_EQ(StderrOf(msgs), std::string(1000000, 'e'));
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
}

// A logger that died (EPIPE) is dropped; the call goes on.
TEST(ServiceStderrCopy, ADeadLoggerIsDropped) {
  auto log = sys::Pipe();
  ASSERT_TRUE(log);
  log->first.reset();  // nobody will ever read
  Child child = Spawn({"sh", "-c", "echo a >&2; sleep 0.1; echo b >&2"});
  ServiceConfig config = ServiceFor(child);
  config.open_stderr_copy = [&] { return std::move(log->second); };
  auto run = StartServiceThread(std::move(config));
  SendHello(run.peer.get(), 4);
  auto msgs = RecvUntilExit(run.peer.get());
  EXPECT_EQ(StderrOf(msgs), "a\nb\n");
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
}

}  // namespace
}  // namespace qrexec::stream
