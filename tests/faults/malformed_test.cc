// Random malformed messages (seeded; the seed is printed, QREXEC_FAULT_SEED
// repeats a run):
//  * 10,000 to a daemon's client socket (qrexec.<name>, §2.9): each
//    connection is closed, the daemon keeps serving every domain;
//  * 10,000 control messages from a fake agent (§2.6): refusable ones get
//    MSG_SERVICE_REFUSED, a fatal one makes that domain's daemon log the
//    reason and exit 1 (as the reference daemon does) while the other
//    domains' daemons keep serving.
#include <sys/socket.h>

#include <future>
#include <random>
#include <thread>

#include "base/sys.h"
#include "fault_util.h"

namespace qrexec::faults {
namespace {

using Malformed = FaultTest;
using harness::U32;

constexpr uint32_t kExecCmdline = 0x200, kJustExec = 0x201, kServiceConnect = 0x202,
                   kServiceRefused = 0x203, kTriggerV2 = 0x210, kTerminated = 0x211,
                   kTrigger3 = 0x212, kTrigger4 = 0x213, kHello = 0x300;

bool SendNoSignal(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      (void)sys::WaitWritable(fd, sys::Deadline::After(milliseconds(2000)));
      continue;
    }
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string Message(uint32_t type, std::string_view body) {
  return U32(type) + U32(static_cast<uint32_t>(body.size())) + std::string(body);
}

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

std::string Hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < 96; ++i) {
    out += digits[static_cast<uint8_t>(bytes[i]) >> 4];
    out += digits[static_cast<uint8_t>(bytes[i]) & 15];
  }
  return out + (bytes.size() > 96 ? "..." : "");
}

// One malformed client conversation: never a complete, valid request
// (exec requests get a body that is not NUL-terminated, so nothing runs).
std::string RandomClientInput(std::mt19937_64& rng) {
  auto pick = [&](uint64_t n) { return rng() % n; };
  switch (pick(5)) {
    case 0:  // noise
      return RandomBytes(rng, pick(64));
    case 1:  // a hello with any version, then noise
      return Message(kHello, U32(static_cast<uint32_t>(rng()))) + RandomBytes(rng, pick(32));
    case 2:  // a bad hello
      return U32(kHello) + U32(static_cast<uint32_t>(pick(16))) + RandomBytes(rng, pick(16));
    default: {
      static constexpr uint32_t kTypes[] = {kExecCmdline, kJustExec, kServiceConnect, kServiceRefused,
                                            kTrigger4,    kHello,    0x190,           0};
      uint32_t type = pick(8) == 0 ? static_cast<uint32_t>(rng()) : kTypes[pick(std::size(kTypes))];
      size_t body_size = pick(4) == 0 ? pick(9) : pick(200);
      std::string body = RandomBytes(rng, body_size);
      if ((type == kExecCmdline || type == kJustExec) && !body.empty() && body.back() == '\0') body.back() = 'x';
      uint32_t len = static_cast<uint32_t>(body.size());
      switch (pick(6)) {
        case 0: len = static_cast<uint32_t>(rng()); break;    // any length
        case 1: len = 65536 + static_cast<uint32_t>(pick(1000)); break;  // too long
        case 2: len = static_cast<uint32_t>(body.size() + 1 + pick(100)); break;  // truncated
        default: break;
      }
      return Message(kHello, U32(3)) + U32(type) + U32(len) + body;
    }
  }
}

TEST_F(Malformed, TenThousandRandomClientMessagesAreEachClosedAndTheDaemonKeepsServing) {
  const uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  pid_t daemon = qubes_->DaemonPid("vault");
  for (int i = 0; i < 10000; ++i) {
    auto fd = sys::UnixConnect(qubes_->DaemonSocket("vault"));
    ASSERT_TRUE(fd) << "connection " << i << " (seed " << seed << "): " << fd.error().ToString();
    std::string input = RandomClientInput(rng);
    (void)SendNoSignal(fd->get(), input);
    ::shutdown(fd->get(), SHUT_WR);
    ASSERT_TRUE(harness::WaitForEof(fd->get(), milliseconds(5000)))
        << "connection " << i << " (seed " << seed << ") stays open after " << Hex(input);
    if (i % 2500 == 0) {
      auto echo = Echo("work", "vault", "between");
      ASSERT_EQ(echo.exit_code, 0) << "after " << i << " connections (seed " << seed << "): " << echo.err;
    }
  }
  EXPECT_EQ(qubes_->DaemonPid("vault"), daemon);
  EXPECT_FALSE(Dead(daemon));
  ExpectCallsWork("after 10000 malformed client messages");
  ExpectIdleAndNoZombies("after 10000 malformed client messages");
}

// A control message the daemon refuses without giving up the channel:
// MSG_TRIGGER_SERVICE4 with random fields (sometimes a valid id and a valid,
// unknown service so it reaches the policy and is denied), or a
// MSG_CONNECTION_TERMINATED for a port (in range) that was never allocated. Returns
// whether a MSG_SERVICE_REFUSED must follow.
bool RandomRefusable(std::mt19937_64& rng, std::string& out) {
  if (rng() % 8 == 0) {
    // Any domain, a port in 513..768 (outside is fatal, §2.6).
    out = Message(kTerminated, U32(static_cast<uint32_t>(rng())) + U32(513 + static_cast<uint32_t>(rng() % 256)));
    return false;
  }
  std::string fixed = RandomBytes(rng, 160);
  std::string service = RandomBytes(rng, 1 + rng() % 80);
  if (rng() % 4 == 0) {
    fixed.replace(128, 32, harness::Fixed("SOCKET" + std::to_string(rng() % 1000), 32));
    fixed.replace(64, 64, harness::Fixed("vault", 64));
    service = "fault.Random" + std::to_string(rng() % 100000);
    service += '\0';
  }
  out = Message(kTrigger4, fixed + service);
  return true;
}

// A control message that is invalid for any daemon.
std::string RandomFatal(std::mt19937_64& rng) {
  switch (rng() % 6) {
    case 5: {  // a port out of 513..768
      uint32_t port = static_cast<uint32_t>(rng());
      while (port >= 513 && port <= 768) port = static_cast<uint32_t>(rng());
      return Message(kTerminated, U32(static_cast<uint32_t>(rng())) + U32(port));
    }
    case 0: {  // an unknown type
      uint32_t type = static_cast<uint32_t>(rng());
      while (type == kTriggerV2 || type == kTerminated || type == kTrigger3 || type == kTrigger4)
        type = static_cast<uint32_t>(rng());
      return Message(type, RandomBytes(rng, rng() % 64));
    }
    case 1: return Message(kTrigger4, RandomBytes(rng, rng() % 161));  // too short
    case 2: return Message(kTerminated, RandomBytes(rng, rng() % 8));   // bad length
    case 3: return Message(kHello, U32(4));                              // hello again
    default: return Message(kExecCmdline, RandomBytes(rng, 8 + rng() % 64));  // wrong direction
  }
}

TEST_F(Malformed, RandomControlMessagesFromAFakeAgentAreRefusedOrEndOnlyThatDomainsDaemon) {
  const uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  constexpr int kSessions = 20, kPerSession = 500;
  ASSERT_TRUE(qubes_->KillAgent("mal").has_value());
  ASSERT_TRUE(WaitUntil([&] { return !harness::PathExists(qubes_->DaemonSocket("mal")); }, milliseconds(5000)));
  const std::string dir = qubes_->VchanDir();
  for (int session = 0; session < kSessions; ++session) {
    SCOPED_TRACE("session " + std::to_string(session) + ", seed " + std::to_string(seed));
    auto listener = harness::VchanListen(dir, 4, 0, 512);
    ASSERT_TRUE(listener) << listener.error().ToString();
    // The fake agent accepts and shakes hands on a helper thread; restarts
    // spawn on this thread (children die with the thread that forked them,
    // PR_SET_PDEATHSIG).
    auto accepted = std::async(std::launch::async, [&]() -> Result<UniqueFd> {
      auto fd = harness::VchanAccept(listener->get(), dir, 4, 0, 512, milliseconds(10000));
      if (!fd) return fd;
      if (auto version = harness::Handshake(fd->get(), 4); !version) return tl::unexpected(version.error());
      return fd;
    });
    if (session > 0) {  // the previous fatal message ended the daemon
      ASSERT_TRUE(qubes_->RestartDaemon("mal")) << qubes_->error();
    }
    auto agent = accepted.get();
    ASSERT_TRUE(agent) << agent.error().ToString();
    pid_t daemon = qubes_->DaemonPid("mal");

    int expect_refused = 0;
    std::string batch;
    for (int i = 0; i + 1 < kPerSession; ++i) {
      std::string message;
      if (RandomRefusable(rng, message)) ++expect_refused;
      batch += message;
    }
    ASSERT_TRUE(SendNoSignal(agent->get(), batch));
    for (int got = 0; got < expect_refused; ++got) {
      auto reply = harness::RecvMessage(agent->get(), milliseconds(10000));
      ASSERT_TRUE(reply) << "refusal " << got << " of " << expect_refused << ": " << reply.error().ToString();
      ASSERT_EQ(reply->type, kServiceRefused);
      ASSERT_EQ(reply->body.size(), 32u);
    }
    EXPECT_FALSE(Dead(daemon)) << "refusable messages must not end the daemon";

    std::string fatal = RandomFatal(rng);
    ASSERT_TRUE(SendNoSignal(agent->get(), fatal));
    EXPECT_TRUE(WaitUntil([&] { return Dead(daemon); }, milliseconds(5000)))
        << "the daemon ignored " << Hex(fatal);
    EXPECT_EQ(qubes_->KillDaemon("mal").value_or(-1), 1) << Hex(fatal);
    EXPECT_TRUE(harness::WaitForEof(agent->get(), milliseconds(5000)));
    if (session % 5 == 4) {
      auto echo = Echo("work", "vault", "still");
      EXPECT_EQ(echo.exit_code, 0) << echo.err;
      EXPECT_EQ(echo.out, "still");
    }
    if (HasFailure()) break;
  }
  std::string log = Log("daemon.mal");
  EXPECT_NE(log.find("invalid message from the agent"), std::string::npos) << log.substr(0, 2000);
  // The other domains never noticed; a real agent and daemon for mal work again.
  ExpectCallsWork("after the fake agent");
  ExpectIdleAndNoZombies("after the fake agent");
  ASSERT_TRUE(qubes_->RestartAgent("mal"));
  ASSERT_TRUE(qubes_->RestartDaemon("mal")) << qubes_->error();
  auto echo = Echo("work", "mal", "back");
  EXPECT_EQ(echo.exit_code, 0) << echo.err;
  EXPECT_EQ(echo.out, "back");
}

}  // namespace
}  // namespace qrexec::faults
