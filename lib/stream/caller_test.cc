// The caller role of the stream engine, against a raw peer.
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

// --- caller ---

TEST(Caller, SendsStdinThenEofAndReturnsTheRemoteExitCode) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io));
  int peer = run.peer.get();
  ExchangeHellos(peer);
  ASSERT_TRUE(sys::WriteAll(io.in_w.get(), "abc"));
  io.in_w.reset();
  std::string received;
  for (;;) {
    auto msg = Recv(peer);
    ASSERT_TRUE(msg);
    ASSERT_EQ(msg->type, kStdin);
    if (msg->data.empty()) break;
    received += msg->data;
  }
  EXPECT_EQ(received, "abc");
  Send(peer, kStdout, "out");
  Send(peer, kStderr, "");
  Send(peer, kStderr, "err");
  Send(peer, kStdout, "");
  SendExit(peer, 7);
  auto result = Get(run.result);
  ASSERT_TRUE(result) << result.error().ToString();
  EXPECT_EQ(*result, 7);
  EXPECT_EQ(ReadAll(io.out_r.get()), "out");
  io.err_w.reset();
  EXPECT_EQ(ReadAll(io.err_r.get()), "err");
}

TEST(Caller, ChunksAre4096ForVersion2) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io));
  int peer = run.peer.get();
  std::string input(10000, 'x');
  ASSERT_TRUE(sys::WriteAll(io.in_w.get(), input));
  io.in_w.reset();
  ExpectHello(peer, 4);
  SendHello(peer, 2);
  size_t total = 0;
  size_t largest = 0;
  for (;;) {
    auto msg = Recv(peer);
    ASSERT_TRUE(msg);
    if (msg->data.empty()) break;
    total += msg->data.size();
    largest = std::max(largest, msg->data.size());
  }
  EXPECT_EQ(total, input.size());
  EXPECT_EQ(largest, 4096u);
  SendExit(peer, 0);
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
}

TEST(Caller, ChunksUpTo65536ForVersion3AndOwnVersionIsConfigurable) {
  LocalIo io;
  auto config = MakeCaller(io);
  config.own_version = 3;
  auto run = StartCallerThread(std::move(config));
  int peer = run.peer.get();
  ExpectHello(peer, 3);
  SendHello(peer, 4);
  std::thread writer([&] {
    std::string input(300000, 'y');
    EXPECT_TRUE(sys::WriteAll(io.in_w.get(), input));
    io.in_w.reset();
  });
  size_t total = 0;
  size_t largest = 0;
  for (;;) {
    auto msg = Recv(peer);
    ASSERT_TRUE(msg);
    if (msg->data.empty()) break;
    total += msg->data.size();
    largest = std::max(largest, msg->data.size());
  }
  writer.join();
  EXPECT_EQ(total, 300000u);
  EXPECT_GT(largest, 4096u);
  EXPECT_LE(largest, 65536u);
  SendExit(peer, 0);
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
}

TEST(Caller, PrefixDataGoesFirst) {
  LocalIo io;
  auto config = MakeCaller(io);
  config.prefix_data = "prefix:";
  ASSERT_TRUE(sys::WriteAll(io.in_w.get(), "stdin"));
  io.in_w.reset();
  auto run = StartCallerThread(std::move(config));
  int peer = run.peer.get();
  ExchangeHellos(peer);
  std::vector<std::string> chunks;
  for (;;) {
    auto msg = Recv(peer);
    ASSERT_TRUE(msg);
    if (msg->data.empty()) break;
    chunks.push_back(msg->data);
  }
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_EQ(chunks[0], "prefix:");
  EXPECT_EQ(chunks[1], "stdin");
  SendExit(peer, 0);
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
}

TEST(Caller, WithoutStdinSendsEofRightAfterThePrefix) {
  LocalIo io;
  auto config = MakeCaller(io, /*with_stdin=*/false);
  config.prefix_data = "p";
  auto run = StartCallerThread(std::move(config));
  int peer = run.peer.get();
  ExchangeHellos(peer);
  auto first = Recv(peer);
  auto second = Recv(peer);
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->data, "p");
  EXPECT_EQ(second->type, kStdin);
  EXPECT_EQ(second->data, "");
  SendExit(peer, 3);
  EXPECT_EQ(Get(run.result).value_or(-1), 3);
}

TEST(Caller, VchanClosedBeforeTheExitCodeGives255) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io));
  int peer = run.peer.get();
  ExchangeHellos(peer);
  Send(peer, kStdout, "partial");
  run.peer.reset();
  auto result = Get(run.result);
  ASSERT_TRUE(result);
  EXPECT_EQ(*result, kExitVchanClosedEarly);
  EXPECT_EQ(ReadAll(io.out_r.get()), "partial");
}

TEST(Caller, VchanClosedDuringTheHelloGives255) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io));
  run.peer.reset();
  EXPECT_EQ(Get(run.result).value_or(-1), 255);
}

TEST(Caller, MessageLongerThanTheChunkLimitIsFatal) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io));
  int peer = run.peer.get();
  ExpectHello(peer, 4);
  SendHello(peer, 2);
  Send(peer, kStdout, std::string(4097, 'z'));
  auto result = Get(run.result);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().kind, ErrorKind::kMalformed);
}

TEST(Caller, UnknownMessageTypeIsFatal) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io));
  int peer = run.peer.get();
  ExchangeHellos(peer);
  Send(peer, 0x201, "x");
  auto result = Get(run.result);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().kind, ErrorKind::kMalformed);
}

TEST(Caller, BadHelloIsFatal) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io));
  SendHello(run.peer.get(), 1);
  auto result = Get(run.result);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().kind, ErrorKind::kMalformed);
}

TEST(Caller, ExitCodeShorterThanFourBytesGives255) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io));
  int peer = run.peer.get();
  ExchangeHellos(peer);
  Send(peer, kExit, "\x01\x02");
  EXPECT_EQ(Get(run.result).value_or(-1), 255);
}

TEST(Caller, ExitCodeWhileStdinIsOpenSendsEofAndFlushesOutput) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io));  // io.in_w stays open
  int peer = run.peer.get();
  ExchangeHellos(peer);
  for (int i = 0; i < 4; ++i) Send(peer, kStdout, std::string(50000, 'o'));  // > a pipe
  SendExit(peer, 42);
  std::string out = ReadAll(io.out_r.get());
  EXPECT_EQ(out.size(), 200000u);
  auto eof = Recv(peer);
  ASSERT_TRUE(eof);
  EXPECT_EQ(eof->type, kStdin);
  EXPECT_EQ(eof->data, "");
  EXPECT_EQ(Get(run.result).value_or(-1), 42);
}

TEST(Caller, FiltersStdoutAndStderrSeparately) {
  for (bool filter_out : {false, true}) {
    LocalIo io;
    auto config = MakeCaller(io, false);
    config.filter_stdout = filter_out;
    config.filter_stderr = !filter_out;
    auto run = StartCallerThread(std::move(config));
    int peer = run.peer.get();
    ExpectHello(peer, 4);
    SendHello(peer, 4);
    std::string evil = "a\x1b[31mb\tc\n\x7f";
    Send(peer, kStdout, evil);
    Send(peer, kStderr, evil);
    SendExit(peer, 0);
    ASSERT_EQ(Get(run.result).value_or(-1), 0);
    io.err_w.reset();
    std::string filtered = "a_[31mb\tc\n_";
    EXPECT_EQ(ReadAll(io.out_r.get()), filter_out ? filtered : evil);
    EXPECT_EQ(ReadAll(io.err_r.get()), filter_out ? evil : filtered);
  }
}

TEST(Caller, StdinFromThePeerIsWrittenToStdout) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io, false));
  int peer = run.peer.get();
  ExchangeHellos(peer);
  Send(peer, kStdin, "odd");
  SendExit(peer, 0);
  ASSERT_EQ(Get(run.result).value_or(-1), 0);
  EXPECT_EQ(ReadAll(io.out_r.get()), "odd");
}

TEST(Caller, StdoutEofClosesLocalOutputWhileStdinKeepsFlowing) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io));
  int peer = run.peer.get();
  ExchangeHellos(peer);
  Send(peer, kStdout, "bye");
  Send(peer, kStdout, "");
  // The local reader sees EOF although the call goes on.
  EXPECT_EQ(ReadAll(io.out_r.get()), "bye");
  ASSERT_TRUE(sys::WriteAll(io.in_w.get(), "more"));
  auto msg = Recv(peer);
  ASSERT_TRUE(msg);
  EXPECT_EQ(msg->data, "more");
  io.in_w.reset();
  auto eof = Recv(peer);
  ASSERT_TRUE(eof);
  EXPECT_EQ(eof->data, "");
  SendExit(peer, 0);
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
}

TEST(Caller, SingleSocketModeUsesOneSocketBothWays) {
  auto local = sys::SocketPair();
  ASSERT_TRUE(local);
  CallerConfig config;
  config.in = std::move(local->first);
  config.single_socket = true;
  config.err_fd = -1;
  auto run = StartCallerThread(std::move(config));
  int peer = run.peer.get();
  int user = local->second.get();
  ExpectHello(peer, 4);
  SendHello(peer, 4);
  ASSERT_TRUE(sys::WriteAll(user, "question"));
  ::shutdown(user, SHUT_WR);
  auto q = Recv(peer);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->data, "question");
  auto eof = Recv(peer);
  ASSERT_TRUE(eof);
  EXPECT_EQ(eof->data, "");
  Send(peer, kStdout, "answer");
  Send(peer, kStdout, "");
  EXPECT_EQ(ReadAll(user), "answer");
  SendExit(peer, 0);
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
}

TEST(Caller, StderrMayShareTheStdoutSocketAndIsNeverShutDown) {
  auto local = sys::SocketPair();
  ASSERT_TRUE(local);
  CallerConfig config;
  int shared = local->first.get();
  config.out = std::move(local->first);
  config.err_fd = shared;
  config.in = UniqueFd();
  auto run = StartCallerThread(std::move(config));
  int peer = run.peer.get();
  ExchangeHellos(peer);
  Send(peer, kStderr, "E");
  SendExit(peer, 0);
  ASSERT_EQ(Get(run.result).value_or(-1), 0);
  EXPECT_EQ(ReadAll(local->second.get()), "E");
}

TEST(Caller, DataAfterStdoutEofAndASecondEofAreDropped) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io, false));
  int peer = run.peer.get();
  ExchangeHellos(peer);
  Send(peer, kStdout, "kept");
  Send(peer, kStdout, "");
  Send(peer, kStdout, "late");
  Send(peer, kStdout, "");
  SendExit(peer, 0);
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
  EXPECT_EQ(ReadAll(io.out_r.get()), "kept");
}

TEST(Caller, PeerClosingInTheMiddleOfAMessageGives255) {
  for (size_t cut : {3u, 8u, 10u}) {
    LocalIo io;
    auto run = StartCallerThread(MakeCaller(io, false));
    int peer = run.peer.get();
    ExpectHello(peer, 4);
    SendHello(peer, 4);
    std::string msg(8, '\0');
    proto::StoreU32(reinterpret_cast<std::byte*>(msg.data()), kExit);
    proto::StoreU32(reinterpret_cast<std::byte*>(msg.data() + 4), 4);
    msg += U32(0);
    ASSERT_TRUE(sys::WriteAll(peer, std::string_view(msg).substr(0, cut)));
    run.peer.reset();
    EXPECT_EQ(Get(run.result).value_or(-1), 255) << cut;
  }
}

TEST(Caller, RegularFilesWorkAsLocalStdinAndStdout) {
  char in_path[] = "/tmp/qrexec-stream-in-XXXXXX";
  char out_path[] = "/tmp/qrexec-stream-out-XXXXXX";
  UniqueFd in(::mkstemp(in_path));
  UniqueFd out(::mkstemp(out_path));
  ASSERT_TRUE(in.valid() && out.valid());
  ASSERT_TRUE(sys::WriteAll(in.get(), "file input"));
  ::lseek(in.get(), 0, SEEK_SET);
  CallerConfig config;
  config.in = std::move(in);
  config.out = UniqueFd(::open(out_path, O_WRONLY | O_CLOEXEC));
  config.err_fd = -1;
  auto run = StartCallerThread(std::move(config));
  int peer = run.peer.get();
  ExchangeHellos(peer);
  auto data = Recv(peer);
  ASSERT_TRUE(data);
  EXPECT_EQ(data->data, "file input");
  Send(peer, kStdout, "file output");
  SendExit(peer, 0);
  EXPECT_EQ(Get(run.result).value_or(-1), 0);
  UniqueFd check(::open(out_path, O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(ReadAll(check.get()), "file output");
  ::unlink(in_path);
  ::unlink(out_path);
}

TEST(Caller, LocalProgramExitCodeIsUsedWhenTheRemoteOneIsZero) {
  for (int remote : {0, 5}) {
    // The local program reads the remote's stdout and writes our stdin.
    Child program = Spawn({"sh", "-c", "cat >/dev/null; echo hi; exit 3"});
    CallerConfig config;
    config.in = std::move(program.out);
    config.out = std::move(program.in);
    config.err_fd = -1;
    config.local_program_pid = program.pid;
    auto run = StartCallerThread(std::move(config));
    int peer = run.peer.get();
    ExpectHello(peer, 4);
    SendHello(peer, 4);
    Send(peer, kStdout, "data for the program");
    Send(peer, kStdout, "");
    auto hi = Recv(peer);
    ASSERT_TRUE(hi);
    EXPECT_EQ(hi->data, "hi\n");
    auto eof = Recv(peer);
    ASSERT_TRUE(eof);
    EXPECT_EQ(eof->data, "");
    SendExit(peer, remote);
    EXPECT_EQ(Get(run.result).value_or(-1), remote != 0 ? remote : 3);
  }
}

TEST(Caller, ClosedLocalStdoutGivesEpipeNotSigpipeAndTheCallStillEnds) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io, false));
  io.out_r.reset();  // nobody will ever read our stdout
  int peer = run.peer.get();
  ExchangeHellos(peer);
  for (int i = 0; i < 4; ++i) Send(peer, kStdout, std::string(65536, 'p'));
  SendExit(peer, 6);
  EXPECT_EQ(Get(run.result).value_or(-1), 6);
}

}  // namespace
}  // namespace qrexec::stream
