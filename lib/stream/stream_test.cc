// Engine tests over real socketpairs, pipes and child processes. A "peer" is
// the test speaking raw data-channel messages on the other end of the vchan.
#include "stream/stream.h"

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

namespace qrexec::stream {
namespace {

using namespace std::chrono_literals;

constexpr uint32_t kStdin = 0x190;
constexpr uint32_t kStdout = 0x191;
constexpr uint32_t kStderr = 0x192;
constexpr uint32_t kExit = 0x193;
constexpr uint32_t kHello = 0x300;

sys::Deadline Soon() { return sys::Deadline::After(60s); }

struct Msg {
  uint32_t type = 0;
  std::string data;
};

void Send(int fd, uint32_t type, std::string_view payload) {
  std::string out(8, '\0');
  proto::StoreU32(reinterpret_cast<std::byte*>(out.data()), type);
  proto::StoreU32(reinterpret_cast<std::byte*>(out.data() + 4),
                  static_cast<uint32_t>(payload.size()));
  out.append(payload);
  ASSERT_TRUE(sys::WriteAll(fd, out, Soon()));
}

std::string U32(uint32_t v) {
  std::string s(4, '\0');
  proto::StoreU32(reinterpret_cast<std::byte*>(s.data()), v);
  return s;
}

void SendHello(int fd, uint32_t version) { Send(fd, kHello, U32(version)); }
void SendExit(int fd, int code) { Send(fd, kExit, U32(static_cast<uint32_t>(code))); }

std::optional<Msg> Recv(int fd) {
  std::byte header[8];
  if (!sys::ReadExact(fd, header, Soon())) return std::nullopt;
  Msg msg;
  msg.type = proto::LoadU32(header);
  msg.data.resize(proto::LoadU32(header + 4));
  if (!sys::ReadExact(fd, std::as_writable_bytes(std::span(msg.data)), Soon())) {
    return std::nullopt;
  }
  return msg;
}

// Reads the peer's hello and checks it.
void ExpectHello(int fd, uint32_t version) {
  auto hello = Recv(fd);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->type, kHello);
  EXPECT_EQ(hello->data, U32(version));
}

// Everything up to and including the exit code (or EOF).
std::vector<Msg> RecvUntilExit(int fd) {
  std::vector<Msg> all;
  while (auto msg = Recv(fd)) {
    all.push_back(*msg);
    if (msg->type == kExit) break;
  }
  return all;
}

std::string ReadAll(int fd) {
  auto text = sys::ReadToEof(fd, 512u << 20, Soon());
  EXPECT_TRUE(text);
  return text ? *text : std::string();
}

// A child process with pipes for stdin, stdout and stderr.
struct Child {
  pid_t pid = -1;
  UniqueFd in;   // write end
  UniqueFd out;  // read end
  UniqueFd err;  // read end
};

Child Spawn(std::vector<std::string> args, bool with_stderr = true) {
  auto in = sys::Pipe();
  auto out = sys::Pipe();
  auto err = sys::Pipe();
  QREXEC_CHECK(in && out && err);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  QREXEC_CHECK(pid >= 0);
  if (pid == 0) {
    ::dup2(in->first.get(), 0);
    ::dup2(out->second.get(), 1);
    if (with_stderr) ::dup2(err->second.get(), 2);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execvp(argv[0], argv.data());
    _exit(127);
  }
  return Child{pid, std::move(in->second), std::move(out->first), std::move(err->first)};
}

// A caller engine on its own thread; the test plays the service peer.
struct CallerRun {
  UniqueFd peer;
  std::future<Result<int>> result;
};

CallerRun StartCallerThread(CallerConfig config) {
  auto pair = sys::SocketPair();
  QREXEC_CHECK(pair.has_value());
  config.vchan = std::move(pair->first);
  CallerRun run;
  run.peer = std::move(pair->second);
  run.result = std::async(std::launch::async,
                          [c = std::move(config)]() mutable { return RunCaller(std::move(c)); });
  return run;
}

struct ServiceRun {
  UniqueFd peer;
  std::future<Result<int>> result;
};

ServiceRun StartServiceThread(ServiceConfig config) {
  auto pair = sys::SocketPair();
  QREXEC_CHECK(pair.has_value());
  config.vchan = std::move(pair->first);
  ServiceRun run;
  run.peer = std::move(pair->second);
  run.result = std::async(std::launch::async,
                          [c = std::move(config)]() mutable { return RunService(std::move(c)); });
  return run;
}

Result<int> Get(std::future<Result<int>>& f) {
  if (f.wait_for(60s) != std::future_status::ready) {
    ADD_FAILURE() << "engine hangs";
    std::abort();
  }
  return f.get();
}

// Local stdio of a caller: pipes whose other ends the test holds.
struct LocalIo {
  UniqueFd in_w;   // test writes the caller's stdin here
  UniqueFd out_r;  // test reads the caller's stdout here
  UniqueFd err_r;  // test reads the caller's stderr here
  UniqueFd err_w;  // borrowed by the caller as err_fd; test closes it after
};

CallerConfig MakeCaller(LocalIo& io, bool with_stdin = true) {
  CallerConfig config;
  if (with_stdin) {
    auto in = sys::Pipe();
    QREXEC_CHECK(in.has_value());
    config.in = std::move(in->first);
    io.in_w = std::move(in->second);
  }
  auto out = sys::Pipe();
  auto err = sys::Pipe();
  QREXEC_CHECK(out && err);
  config.out = std::move(out->second);
  io.out_r = std::move(out->first);
  io.err_r = std::move(err->first);
  io.err_w = std::move(err->second);
  config.err_fd = io.err_w.get();
  return config;
}

// --- caller ---

TEST(Caller, SendsStdinThenEofAndReturnsTheRemoteExitCode) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io));
  int peer = run.peer.get();
  ExpectHello(peer, 4);
  SendHello(peer, 4);
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
  ExpectHello(peer, 4);
  SendHello(peer, 4);
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
  ExpectHello(peer, 4);
  SendHello(peer, 4);
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
  ExpectHello(peer, 4);
  SendHello(peer, 4);
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
  ExpectHello(peer, 4);
  SendHello(peer, 4);
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
  ExpectHello(peer, 4);
  SendHello(peer, 4);
  Send(peer, kExit, "\x01\x02");
  EXPECT_EQ(Get(run.result).value_or(-1), 255);
}

TEST(Caller, ExitCodeWhileStdinIsOpenSendsEofAndFlushesOutput) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io));  // io.in_w stays open
  int peer = run.peer.get();
  ExpectHello(peer, 4);
  SendHello(peer, 4);
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
  ExpectHello(peer, 4);
  SendHello(peer, 4);
  Send(peer, kStdin, "odd");
  SendExit(peer, 0);
  ASSERT_EQ(Get(run.result).value_or(-1), 0);
  EXPECT_EQ(ReadAll(io.out_r.get()), "odd");
}

TEST(Caller, StdoutEofClosesLocalOutputWhileStdinKeepsFlowing) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io));
  int peer = run.peer.get();
  ExpectHello(peer, 4);
  SendHello(peer, 4);
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
  ExpectHello(peer, 4);
  SendHello(peer, 4);
  Send(peer, kStderr, "E");
  SendExit(peer, 0);
  ASSERT_EQ(Get(run.result).value_or(-1), 0);
  EXPECT_EQ(ReadAll(local->second.get()), "E");
}

TEST(Caller, DataAfterStdoutEofAndASecondEofAreDropped) {
  LocalIo io;
  auto run = StartCallerThread(MakeCaller(io, false));
  int peer = run.peer.get();
  ExpectHello(peer, 4);
  SendHello(peer, 4);
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
  ExpectHello(peer, 4);
  SendHello(peer, 4);
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
  ExpectHello(peer, 4);
  SendHello(peer, 4);
  for (int i = 0; i < 4; ++i) Send(peer, kStdout, std::string(65536, 'p'));
  SendExit(peer, 6);
  EXPECT_EQ(Get(run.result).value_or(-1), 6);
}

// --- service ---

ServiceConfig ServiceFor(Child& child) {
  ServiceConfig config;
  config.child_stdin = std::move(child.in);
  config.child_stdout = std::move(child.out);
  config.child_stderr = std::move(child.err);
  config.child_pid = child.pid;
  return config;
}

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

// --- both roles together ---

// A deterministic pseudo-random byte pattern.
std::string Pattern(size_t size, uint32_t seed) {
  std::string out(size, '\0');
  uint32_t x = seed;
  for (size_t i = 0; i < size; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<char>(x >> 24);
  }
  return out;
}

TEST(EndToEnd, SixtyFourMebibytesByteExactBothWaysThroughCat) {
  constexpr size_t kSize = 64u << 20;
  const std::string input = Pattern(kSize, 12345);
  auto vchan = sys::SocketPair();
  ASSERT_TRUE(vchan);
  Child cat = Spawn({"cat"});
  ServiceConfig service = ServiceFor(cat);
  service.vchan = std::move(vchan->second);
  auto service_result =
      std::async(std::launch::async, [&] { return RunService(std::move(service)); });
  LocalIo io;
  CallerConfig caller = MakeCaller(io);
  caller.vchan = std::move(vchan->first);
  auto caller_result = std::async(std::launch::async, [&] { return RunCaller(std::move(caller)); });
  std::thread writer([&] {
    EXPECT_TRUE(sys::WriteAll(io.in_w.get(), input, Soon()));
    io.in_w.reset();
  });
  std::string output = ReadAll(io.out_r.get());
  writer.join();
  ASSERT_EQ(output.size(), input.size());
  EXPECT_TRUE(output == input);
  EXPECT_EQ(Get(caller_result).value_or(-1), 0);
  EXPECT_EQ(Get(service_result).value_or(-1), 0);
}

// --- back-pressure (engine on the test thread, buffered-byte counter) ---

// Runs the loop until nothing happens for a few rounds (the stream stalled).
void RunUntilIdle(event::Loop& loop) {
  int idle = 0;
  for (int round = 0; round < 100000 && idle < 5; ++round) {
    auto ran = loop.RunOnce(20ms);
    ASSERT_TRUE(ran);
    idle = *ran == 0 ? idle + 1 : 0;
  }
  ASSERT_EQ(idle, 5) << "never stalled";
}

TEST(BackPressure, ServiceStopsReadingTheChildWhenThePeerDoesNotRead) {
  event::Loop loop;
  auto vchan = sys::SocketPair();
  ASSERT_TRUE(vchan);
  int peer = vchan->second.get();
  Child child = Spawn({"cat", "/dev/zero"});  // endless output
  pid_t pid = child.pid;
  ServiceConfig config = ServiceFor(child);
  config.vchan = std::move(vchan->first);
  config.buffer_limit = 256 * 1024;
  bool done = false;
  auto stream = Stream::StartService(loop, std::move(config), [&](Result<int>) { done = true; });
  ASSERT_TRUE(stream);
  SendHello(peer, 4);
  RunUntilIdle(loop);
  EXPECT_FALSE(done);
  // limit + one chunk + header of output, plus the small control messages.
  EXPECT_LE((*stream)->peak_buffered_bytes(), 256u * 1024 + 65536 + 64);
  EXPECT_GE((*stream)->buffered_bytes(), 256u * 1024);
  stream->reset();
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

TEST(BackPressure, CallerStopsReadingTheVchanWhenStdoutIsNotRead) {
  event::Loop loop;
  auto vchan = sys::SocketPair(true);
  ASSERT_TRUE(vchan);
  int peer = vchan->second.get();
  LocalIo io;
  CallerConfig config = MakeCaller(io);
  config.vchan = std::move(vchan->first);
  config.buffer_limit = 128 * 1024;
  auto stream = Stream::StartCaller(loop, std::move(config), [](Result<int>) {});
  ASSERT_TRUE(stream);
  SendHello(peer, 4);
  // The peer pushes STDOUT until its socket is full; nobody reads io.out_r.
  std::string msg(8, '\0');
  proto::StoreU32(reinterpret_cast<std::byte*>(msg.data()), kStdout);
  proto::StoreU32(reinterpret_cast<std::byte*>(msg.data() + 4), 65536);
  msg.append(65536, 's');
  size_t pending = 0;  // bytes of `msg` already written
  size_t sent_total = 0;
  int idle = 0;
  for (int round = 0; round < 100000 && idle < 5; ++round) {
    bool progressed = false;
    for (;;) {
      ssize_t n = ::send(peer, msg.data() + pending, msg.size() - pending, MSG_NOSIGNAL);
      if (n <= 0) break;
      progressed = true;
      sent_total += static_cast<size_t>(n);
      pending = (pending + static_cast<size_t>(n)) % msg.size();
    }
    auto ran = loop.RunOnce(20ms);
    ASSERT_TRUE(ran);
    idle = (*ran == 0 && !progressed) ? idle + 1 : 0;
  }
  ASSERT_EQ(idle, 5) << "never stalled";
  size_t peak = (*stream)->peak_buffered_bytes();
  // sink limit + one chunk, plus the receive window (two messages).
  EXPECT_LE(peak, 128u * 1024 + 65536 + 2 * (65536 + 8) + 64);
  EXPECT_GT(sent_total, peak) << "the rest sits in the kernel, not in our buffers";
  stream->reset();
}

TEST(StreamObject, DestroyingAStreamEarlyCancelsItWithoutACallback) {
  event::Loop loop;
  auto vchan = sys::SocketPair();
  ASSERT_TRUE(vchan);
  int peer = vchan->second.get();
  LocalIo io;
  CallerConfig config = MakeCaller(io);
  config.vchan = std::move(vchan->first);
  int calls = 0;
  auto stream = Stream::StartCaller(loop, std::move(config), [&](Result<int>) { ++calls; });
  ASSERT_TRUE(stream);
  EXPECT_EQ((*stream)->role(), Role::kCaller);
  SendHello(peer, 3);
  while ((*stream)->negotiated_version() == 0) ASSERT_TRUE(loop.RunOnce(1000ms));
  EXPECT_EQ((*stream)->negotiated_version(), 3u);
  SendExit(peer, 1);
  stream->reset();  // before the loop saw the exit code
  ASSERT_TRUE(loop.RunOnce(50ms));
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(loop.registration_count(), 0u);
  // Its fds were closed: the peer sees EOF after our hello.
  ExpectHello(peer, 4);
  EXPECT_FALSE(Recv(peer).has_value());
  EXPECT_EQ(ReadAll(io.out_r.get()), "");
}

TEST(StreamObject, DoneCallbackRunsOnceFromTheLoopAndMayDestroyTheStream) {
  event::Loop loop;
  auto vchan = sys::SocketPair();
  ASSERT_TRUE(vchan);
  int peer = vchan->second.get();
  CallerConfig config;
  config.vchan = std::move(vchan->first);
  config.err_fd = -1;
  std::unique_ptr<Stream> stream;
  std::optional<Result<int>> outcome;
  int calls = 0;
  auto started = Stream::StartCaller(loop, std::move(config), [&](Result<int> r) {
    ++calls;
    outcome = std::move(r);
    stream.reset();
  });
  ASSERT_TRUE(started);
  stream = std::move(*started);
  SendHello(peer, 4);
  SendExit(peer, 12);
  for (int i = 0; i < 1000 && !outcome; ++i) ASSERT_TRUE(loop.RunOnce(100ms));
  ASSERT_TRUE(outcome && *outcome);
  EXPECT_EQ(**outcome, 12);
  EXPECT_EQ(stream, nullptr);
  ASSERT_TRUE(loop.RunOnce(10ms));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(loop.registration_count(), 0u);
}

TEST(SingleSocketSwitch, ServiceReadsItsStdinSocketAfterTheSwitch) {
  event::Loop loop;
  auto vchan = sys::SocketPair();
  auto stdin_sock = sys::SocketPair();
  auto stdout_pipe = sys::Pipe();
  ASSERT_TRUE(vchan && stdin_sock && stdout_pipe);
  int peer = vchan->second.get();
  ServiceConfig config;
  config.vchan = std::move(vchan->first);
  config.child_stdin = std::move(stdin_sock->first);
  config.child_stdout = std::move(stdout_pipe->first);
  config.switch_on_sigusr1 = true;
  std::optional<Result<int>> outcome;
  auto stream = Stream::StartService(loop, std::move(config),
                                     [&](Result<int> r) { outcome = std::move(r); });
  ASSERT_TRUE(stream);
  SendHello(peer, 4);
  ExpectHello(peer, 4);
  auto first = Recv(peer);  // no separate stderr
  ASSERT_TRUE(first);
  EXPECT_EQ(first->type, kStderr);
  ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);
  // The old stdout pipe is no longer read; the stdin socket carries output.
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(loop.RunOnce(5ms));
  (void)sys::WriteAll(stdout_pipe->second.get(), "lost");
  ASSERT_TRUE(sys::WriteAll(stdin_sock->second.get(), "via socket"));
  ::shutdown(stdin_sock->second.get(), SHUT_WR);
  Send(peer, kStdin, "to service");
  Send(peer, kStdin, "");
  std::string out;
  bool exit_seen = false;
  std::thread reader([&] {
    for (auto& m : RecvUntilExit(peer)) {
      if (m.type == kStdout) out += m.data;
      if (m.type == kExit) exit_seen = true;
    }
  });
  for (int i = 0; i < 2000 && !outcome; ++i) ASSERT_TRUE(loop.RunOnce(10ms));
  reader.join();
  ASSERT_TRUE(outcome && *outcome);
  EXPECT_EQ(**outcome, 0);
  EXPECT_TRUE(exit_seen);
  EXPECT_EQ(out, "via socket");
  EXPECT_EQ(ReadAll(stdin_sock->second.get()), "to service");
  stream->reset();
}

TEST(SingleSocketSwitch, CallerReadsItsOutputSocketAfterTheSwitchAndRefusesWithoutOne) {
  event::Loop loop;
  auto vchan = sys::SocketPair();
  auto program_stdin = sys::SocketPair();
  auto program_stdout = sys::Pipe();
  ASSERT_TRUE(vchan && program_stdin && program_stdout);
  int peer = vchan->second.get();
  CallerConfig config;
  config.vchan = std::move(vchan->first);
  config.in = std::move(program_stdout->first);
  config.out = std::move(program_stdin->first);
  config.err_fd = -1;
  std::optional<Result<int>> outcome;
  auto stream = Stream::StartCaller(loop, std::move(config),
                                    [&](Result<int> r) { outcome = std::move(r); });
  ASSERT_TRUE(stream);
  SendHello(peer, 4);
  ExpectHello(peer, 4);
  ASSERT_TRUE((*stream)->SwitchToSingleSocket());
  ASSERT_TRUE((*stream)->SwitchToSingleSocket());  // idempotent
  ASSERT_TRUE(sys::WriteAll(program_stdin->second.get(), "from program"));
  ::shutdown(program_stdin->second.get(), SHUT_WR);
  std::vector<Msg> got;
  while (got.empty() || !got.back().data.empty()) {
    ASSERT_TRUE(loop.RunOnce(10ms));
    char probe;
    if (::recv(peer, &probe, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
      auto m = Recv(peer);
      ASSERT_TRUE(m);
      got.push_back(*m);
    }
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].data, "from program");
  SendExit(peer, 0);
  for (int i = 0; i < 1000 && !outcome; ++i) ASSERT_TRUE(loop.RunOnce(10ms));
  ASSERT_TRUE(outcome && *outcome);
  stream->reset();

  // A pipe as output cannot carry input.
  LocalIo io;
  auto vchan2 = sys::SocketPair();
  ASSERT_TRUE(vchan2);
  CallerConfig pipes = MakeCaller(io);
  pipes.vchan = std::move(vchan2->first);
  auto stream2 = Stream::StartCaller(loop, std::move(pipes), [](Result<int>) {});
  ASSERT_TRUE(stream2);
  EXPECT_FALSE((*stream2)->SwitchToSingleSocket());
}

TEST(Helpers, WaitStatusMapping) {
  EXPECT_EQ(WaitStatusToExitCode(3 << 8), 3);       // exited 3
  EXPECT_EQ(WaitStatusToExitCode(SIGKILL), 137);    // killed by SIGKILL
  EXPECT_EQ(CombineWithLocalProgram(0, 4), 4);
  EXPECT_EQ(CombineWithLocalProgram(2, 4), 2);
}

}  // namespace
}  // namespace qrexec::stream
