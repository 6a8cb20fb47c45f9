#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "host/broker.h"

namespace qrexec::host {
namespace {

using namespace std::chrono_literals;

class BrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/broker_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Sock(const std::string& name) { return dir_ + "/" + name + ".sock"; }

  void AddDomains(Broker& broker) {
    ASSERT_TRUE(broker.AddDomain(0, "dom0", Sock("dom0")));
    ASSERT_TRUE(broker.AddDomain(1, "work", Sock("work")));
    ASSERT_TRUE(broker.AddDomain(2, "vault", Sock("vault")));
    ASSERT_TRUE(broker.AddDomain(3, "other", Sock("other")));
  }

  // Starts a blocking request in a thread.
  std::future<Result<UniqueFd>> Request(const std::string& name, BrokerOp op, uint32_t remote, uint32_t port,
                                        std::chrono::milliseconds timeout = 10s) {
    return std::async(std::launch::async, [=, path = Sock(name)] {
      return BrokerRequestChannel(path, BrokerRequest{op, remote, port}, sys::Deadline::After(timeout));
    });
  }

  // Runs the loop until the future is ready.
  template <class T>
  T Wait(std::future<T>& future) {
    auto limit = sys::Clock::now() + 20s;
    while (future.wait_for(0s) != std::future_status::ready && sys::Clock::now() < limit)
      EXPECT_TRUE(loop_.RunOnce(10ms));
    return future.get();
  }

  void Spin(std::chrono::milliseconds how_long) {
    auto until = sys::Clock::now() + how_long;
    while (sys::Clock::now() < until) ASSERT_TRUE(loop_.RunOnce(5ms));
  }

  static void ExpectConnected(UniqueFd& a, UniqueFd& b) {
    ASSERT_TRUE(sys::WriteAll(a.get(), std::string_view("ping")));
    std::array<std::byte, 4> buf{};
    ASSERT_TRUE(sys::ReadExact(b.get(), buf, sys::Deadline::After(5s)));
    EXPECT_EQ(std::memcmp(buf.data(), "ping", 4), 0);
  }

  std::string dir_;
  event::Loop loop_;
};

TEST(BrokerRequestCodec, DecodesItsOwnEncoding) {
  auto bytes = EncodeBrokerRequest(BrokerRequest{BrokerOp::kConnect, 7, 513});
  const unsigned char expected[16] = {0x31, 0x52, 0x42, 0x51, 2, 0, 0, 0, 7, 0, 0, 0, 0x01, 0x02, 0, 0};
  EXPECT_EQ(std::memcmp(bytes.data(), expected, 16), 0);
  auto decoded = DecodeBrokerRequest(bytes);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->op, BrokerOp::kConnect);
  EXPECT_EQ(decoded->remote_domain, 7u);
  EXPECT_EQ(decoded->port, 513u);
}

TEST(BrokerRequestCodec, RefusesBadMagicOpAndSize) {
  auto bytes = EncodeBrokerRequest(BrokerRequest{BrokerOp::kOffer, 1, 512});
  EXPECT_FALSE(DecodeBrokerRequest(std::span(bytes).first(15)));
  auto bad_magic = bytes;
  bad_magic[0] = std::byte{0};
  EXPECT_FALSE(DecodeBrokerRequest(bad_magic));
  auto bad_op = bytes;
  bad_op[4] = std::byte{3};
  EXPECT_FALSE(DecodeBrokerRequest(bad_op));
}

TEST_F(BrokerTest, TwoDomainsAskingThroughTheirOwnSocketsGetConnectedFds) {
  Broker broker(loop_);
  AddDomains(broker);
  auto server = Request("work", BrokerOp::kOffer, 2, 513);
  Spin(50ms);
  auto client = Request("vault", BrokerOp::kConnect, 1, 513);
  auto server_fd = Wait(server);
  auto client_fd = Wait(client);
  ASSERT_TRUE(server_fd) << server_fd.error().ToString();
  ASSERT_TRUE(client_fd) << client_fd.error().ToString();
  ExpectConnected(*server_fd, *client_fd);
  ExpectConnected(*client_fd, *server_fd);
  EXPECT_EQ(broker.paired_count(), 1u);
  EXPECT_EQ(broker.pending_count(1), 0u);
  EXPECT_EQ(broker.pending_count(2), 0u);
}

TEST_F(BrokerTest, AConnectWaitsForTheMatchingOfferAndDom0UsesTheControlPort) {
  Broker broker(loop_);
  AddDomains(broker);
  // The daemon (dom0) joins work's control channel before the agent offers it.
  auto daemon = Request("dom0", BrokerOp::kConnect, 1, 512);
  Spin(50ms);
  // Waiting for work, so counted against work (see the charging test below).
  EXPECT_EQ(broker.pending_count(1), 1u);
  EXPECT_EQ(broker.pending_count(0), 0u);
  auto agent = Request("work", BrokerOp::kOffer, 0, 512);
  auto daemon_fd = Wait(daemon);
  auto agent_fd = Wait(agent);
  ASSERT_TRUE(daemon_fd && agent_fd);
  ExpectConnected(*agent_fd, *daemon_fd);
}

TEST_F(BrokerTest, ADomainCannotGetAChannelAnotherPairNamed) {
  Broker broker(loop_);
  AddDomains(broker);
  // work offers to vault; "other" tries to join, claiming to be vault in
  // every way it can: it names work as remote on the same port.
  auto server = Request("work", BrokerOp::kOffer, 2, 600);
  Spin(50ms);
  auto intruder = Request("other", BrokerOp::kConnect, 1, 600, 300ms);
  auto intruder_fd = Wait(intruder);
  ASSERT_FALSE(intruder_fd);
  EXPECT_EQ(intruder_fd.error().kind, ErrorKind::kTimedOut);
  // The real peer still gets the channel.
  auto client = Request("vault", BrokerOp::kConnect, 1, 600);
  auto server_fd = Wait(server);
  auto client_fd = Wait(client);
  ASSERT_TRUE(server_fd && client_fd);
  ExpectConnected(*server_fd, *client_fd);
}

TEST_F(BrokerTest, AForgedRequestNamingAnotherSourceChangesNothing) {
  Broker broker(loop_);
  AddDomains(broker);
  // "other" offers a channel "as if" it were work: all it can say is the
  // remote and port; the broker files it under "other". vault connecting to
  // work does not meet it.
  auto forged = Request("other", BrokerOp::kOffer, 2, 700, 500ms);
  Spin(50ms);
  auto victim = Request("vault", BrokerOp::kConnect, 1, 700, 500ms);
  EXPECT_FALSE(Wait(victim));
  EXPECT_FALSE(Wait(forged));
  EXPECT_EQ(broker.paired_count(), 0u);
  // Naming its own domain as the remote is refused at once.
  auto self = Request("other", BrokerOp::kOffer, 3, 513);
  auto self_fd = Wait(self);
  ASSERT_FALSE(self_fd);
  EXPECT_EQ(self_fd.error().sys_errno, EINVAL);
}

TEST_F(BrokerTest, RefusesBadPortsUnknownDomainsAndDuplicateOffers) {
  Broker broker(loop_);
  AddDomains(broker);
  auto control_between_domains = Request("work", BrokerOp::kOffer, 2, 512);
  EXPECT_EQ(Wait(control_between_domains).error().sys_errno, EINVAL);
  auto low = Request("work", BrokerOp::kOffer, 2, 511);
  EXPECT_EQ(Wait(low).error().sys_errno, EINVAL);
  auto high = Request("work", BrokerOp::kOffer, 2, 769);
  EXPECT_EQ(Wait(high).error().sys_errno, EINVAL);
  auto unknown = Request("work", BrokerOp::kOffer, 42, 513);
  EXPECT_EQ(Wait(unknown).error().sys_errno, ENOENT);
  auto first = Request("work", BrokerOp::kOffer, 2, 514, 300ms);
  Spin(50ms);
  auto second = Request("work", BrokerOp::kOffer, 2, 514);
  EXPECT_EQ(Wait(second).error().sys_errno, EADDRINUSE);
  EXPECT_FALSE(Wait(first));
}

TEST_F(BrokerTest, AMalformedRequestEndsOnlyThatConnection) {
  Broker broker(loop_);
  AddDomains(broker);
  auto server = Request("work", BrokerOp::kOffer, 2, 520);
  auto bad = sys::UnixConnect(Sock("vault"));
  ASSERT_TRUE(bad);
  ASSERT_TRUE(sys::WriteAll(bad->get(), std::string_view("not a broker req")));
  auto closed = std::async(std::launch::async, [&] { return sys::ReadToEof(bad->get(), 64, sys::Deadline::After(10s)); });
  auto rest = Wait(closed);
  ASSERT_TRUE(rest);
  EXPECT_EQ(*rest, "");
  auto client = Request("vault", BrokerOp::kConnect, 1, 520);
  auto server_fd = Wait(server);
  auto client_fd = Wait(client);
  ASSERT_TRUE(server_fd && client_fd);
  ExpectConnected(*server_fd, *client_fd);
}

TEST_F(BrokerTest, ARequestWhoseConnectionClosesIsDropped) {
  Broker broker(loop_);
  AddDomains(broker);
  {
    auto fd = sys::UnixConnect(Sock("work"));
    ASSERT_TRUE(fd);
    ASSERT_TRUE(sys::WriteAll(fd->get(), EncodeBrokerRequest(BrokerRequest{BrokerOp::kOffer, 2, 530})));
    Spin(50ms);
    EXPECT_EQ(broker.pending_count(1), 1u);
  }
  Spin(50ms);
  EXPECT_EQ(broker.pending_count(1), 0u);
  // The offer is gone: a new one is not a duplicate.
  auto server = Request("work", BrokerOp::kOffer, 2, 530);
  auto client = Request("vault", BrokerOp::kConnect, 1, 530);
  ASSERT_TRUE(Wait(server));
  ASSERT_TRUE(Wait(client));
}

TEST_F(BrokerTest, LimitsPendingRequestsPerDomain) {
  Broker::Options options;
  options.max_pending_per_domain = 4;
  Broker broker(loop_, options);
  AddDomains(broker);
  std::vector<UniqueFd> held;
  for (uint32_t port = 513; port < 517; ++port) {
    auto fd = sys::UnixConnect(Sock("work"));
    ASSERT_TRUE(fd);
    ASSERT_TRUE(sys::WriteAll(fd->get(), EncodeBrokerRequest(BrokerRequest{BrokerOp::kOffer, 2, port})));
    held.push_back(std::move(*fd));
  }
  Spin(50ms);
  EXPECT_EQ(broker.pending_count(1), 4u);
  auto over = Request("work", BrokerOp::kOffer, 2, 600);
  EXPECT_EQ(Wait(over).error().sys_errno, EAGAIN);
  // Other domains are not affected, and work can still complete a pair
  // (that request never waits).
  auto server = Request("vault", BrokerOp::kOffer, 1, 513);
  Spin(50ms);
  auto client = Request("work", BrokerOp::kConnect, 2, 513);
  ASSERT_TRUE(Wait(client));
  ASSERT_TRUE(Wait(server));
  // Once work's requests are gone it may wait again.
  held.clear();
  Spin(50ms);
  EXPECT_EQ(broker.pending_count(1), 0u);
  auto again = Request("work", BrokerOp::kOffer, 2, 600);
  Spin(50ms);
  EXPECT_EQ(broker.pending_count(1), 1u);
  auto join = Request("vault", BrokerOp::kConnect, 1, 600);
  ASSERT_TRUE(Wait(again));
  ASSERT_TRUE(Wait(join));
}

TEST_F(BrokerTest, ARequestNobodyMatchesExpiresWithETIMEDOUT) {
  Broker::Options options;
  options.pending_timeout = 300ms;
  Broker broker(loop_, options);
  AddDomains(broker);
  auto started = sys::Clock::now();
  auto lonely = Request("work", BrokerOp::kOffer, 2, 550);
  auto result = Wait(lonely);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().sys_errno, ETIMEDOUT);
  EXPECT_GE(sys::Clock::now() - started, 300ms);
  EXPECT_EQ(broker.pending_count(1), 0u);
  // The expired offer is gone: the same channel can be set up again.
  auto server = Request("work", BrokerOp::kOffer, 2, 550);
  auto client = Request("vault", BrokerOp::kConnect, 1, 550);
  ASSERT_TRUE(Wait(server));
  ASSERT_TRUE(Wait(client));
}

TEST_F(BrokerTest, RequestsThatPairInTimeDoNotExpireAndLateOnesDo) {
  Broker::Options options;
  options.pending_timeout = 400ms;
  Broker broker(loop_, options);
  AddDomains(broker);
  auto early = Request("work", BrokerOp::kOffer, 2, 551);
  Spin(200ms);
  auto late = Request("work", BrokerOp::kOffer, 2, 552);
  auto join = Request("vault", BrokerOp::kConnect, 1, 551);
  ASSERT_TRUE(Wait(early));
  ASSERT_TRUE(Wait(join));
  // `late` was made 200 ms after the first one: it is due 200 ms later.
  Spin(250ms);
  EXPECT_EQ(broker.pending_count(1), 1u);
  auto late_result = Wait(late);
  ASSERT_FALSE(late_result);
  EXPECT_EQ(late_result.error().sys_errno, ETIMEDOUT);
}

// A domain that never answers must not use up dom0's share: the dom0 side of
// channels with that domain is counted against it.
TEST_F(BrokerTest, Dom0RequestsWaitingForADomainCountAgainstThatDomain) {
  Broker::Options options;
  options.max_pending_per_domain = 4;
  Broker broker(loop_, options);
  AddDomains(broker);
  std::vector<std::future<Result<UniqueFd>>> for_work;
  for (uint32_t port = 513; port < 517; ++port) for_work.push_back(Request("dom0", BrokerOp::kConnect, 1, port));
  Spin(100ms);
  EXPECT_EQ(broker.pending_count(1), 4u);
  EXPECT_EQ(broker.pending_count(0), 0u);
  // More for work: refused, work is full...
  auto over = Request("dom0", BrokerOp::kConnect, 1, 517);
  EXPECT_EQ(Wait(over).error().sys_errno, EAGAIN);
  // ...and so is work's own next request.
  auto own = Request("work", BrokerOp::kOffer, 2, 600);
  EXPECT_EQ(Wait(own).error().sys_errno, EAGAIN);
  // dom0 still serves vault.
  auto daemon = Request("dom0", BrokerOp::kConnect, 2, 512);
  auto agent = Request("vault", BrokerOp::kOffer, 0, 512);
  ASSERT_TRUE(Wait(daemon));
  ASSERT_TRUE(Wait(agent));
  // work, at its limit, can still answer what waits for it.
  auto offer = Request("work", BrokerOp::kOffer, 0, 513);
  ASSERT_TRUE(Wait(offer));
  ASSERT_TRUE(Wait(for_work[0]));
  EXPECT_EQ(broker.pending_count(1), 3u);
}

TEST_F(BrokerTest, RemovingADomainEndsItsRequestsAndThoseWaitingForIt) {
  Broker broker(loop_);
  AddDomains(broker);
  auto waiting = Request("work", BrokerOp::kOffer, 2, 540);
  auto own = Request("vault", BrokerOp::kOffer, 1, 541);
  Spin(50ms);
  broker.RemoveDomain(2);
  auto waiting_result = Wait(waiting);
  ASSERT_FALSE(waiting_result);
  EXPECT_EQ(waiting_result.error().sys_errno, ENOENT);
  EXPECT_FALSE(Wait(own));
  EXPECT_FALSE(std::filesystem::exists(Sock("vault")));
  auto after = Request("work", BrokerOp::kOffer, 2, 542);
  EXPECT_EQ(Wait(after).error().sys_errno, ENOENT);
}

}  // namespace
}  // namespace qrexec::host
