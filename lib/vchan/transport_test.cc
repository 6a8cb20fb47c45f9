// Both backends of the vchan seam, with real sockets in a temporary
// directory; the broker side is a tiny fake broker playing the host.
#include "vchan/transport.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

#include "base/check.h"
#include "vchan/broker_wire.h"

namespace qrexec::vchan {
namespace {

using namespace std::chrono_literals;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "vchan-test-XXXXXX").string();
    QREXEC_CHECK(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Writes `text` on one end and expects it on the other.
void ExpectConnected(int from, int to, const std::string& text) {
  ASSERT_TRUE(sys::WriteAll(from, text));
  std::string got(text.size(), '\0');
  ASSERT_TRUE(sys::ReadExact(to, std::as_writable_bytes(std::span(got)), sys::Deadline::After(5s)));
  EXPECT_EQ(got, text);
}

TEST(SocketTransport, AServerOfferedFirstIsJoinedByTheClient) {
  TempDir dir;
  auto server = MakeSocketTransport(dir.path(), 0);
  auto client = MakeSocketTransport(dir.path(), 5);
  auto pending = server->Offer(5, 512);
  ASSERT_TRUE(pending.has_value()) << pending.error().ToString();
  std::string path = dir.path() + "/vchan.0.5.512.sock";
  EXPECT_TRUE(Exists(path));
  auto joined = client->Connect(0, 512, sys::Deadline::After(5s));
  ASSERT_TRUE(joined.has_value()) << joined.error().ToString();
  ASSERT_TRUE(sys::WaitReadable((*pending)->fd(), sys::Deadline::After(5s)));
  auto served = (*pending)->Finish(sys::Deadline::After(5s));
  ASSERT_TRUE(served.has_value()) << served.error().ToString();
  EXPECT_FALSE(Exists(path)) << "the socket file is unlinked after the accept";
  ExpectConnected(joined->get(), served->get(), "to server");
  ExpectConnected(served->get(), joined->get(), "to client");
}

TEST(SocketTransport, AClientThatComesFirstWaitsForTheServer) {
  TempDir dir;
  auto server = MakeSocketTransport(dir.path(), 7);
  auto client = MakeSocketTransport(dir.path(), 3);
  auto joined = std::async(std::launch::async,
                           [&] { return client->Connect(7, 600, sys::Deadline::After(10s)); });
  std::this_thread::sleep_for(50ms);
  auto served = server->Serve(3, 600, sys::Deadline::After(10s));
  ASSERT_TRUE(served.has_value()) << served.error().ToString();
  auto client_fd = joined.get();
  ASSERT_TRUE(client_fd.has_value()) << client_fd.error().ToString();
  ExpectConnected(client_fd->get(), served->get(), "x");
  EXPECT_FALSE(Exists(dir.path() + "/vchan.7.3.600.sock"));
}

TEST(SocketTransport, AClientRetriesPastAStaleSocketFile) {
  TempDir dir;
  std::string path = dir.path() + "/vchan.2.1.513.sock";
  {
    auto stale = sys::UnixListen(path);
    ASSERT_TRUE(stale);
  }  // closed: ECONNREFUSED
  auto client = MakeSocketTransport(dir.path(), 1);
  auto joined = std::async(std::launch::async,
                           [&] { return client->Connect(2, 513, sys::Deadline::After(10s)); });
  std::this_thread::sleep_for(50ms);
  auto served = MakeSocketTransport(dir.path(), 2)->Serve(1, 513, sys::Deadline::After(10s));
  ASSERT_TRUE(served.has_value()) << served.error().ToString();
  ASSERT_TRUE(joined.get().has_value());
}

TEST(SocketTransport, ConnectGivesUpAtTheDeadline) {
  TempDir dir;
  auto client = MakeSocketTransport(dir.path(), 3);
  auto start = std::chrono::steady_clock::now();
  auto joined = client->Connect(4, 513, sys::Deadline::After(100ms));
  ASSERT_FALSE(joined);
  EXPECT_EQ(joined.error().kind, ErrorKind::kTimedOut);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(SocketTransport, FinishGivesUpAtTheDeadlineAndTheOfferCanBeWithdrawn) {
  TempDir dir;
  auto server = MakeSocketTransport(dir.path(), 0);
  auto pending = server->Offer(9, 514);
  ASSERT_TRUE(pending.has_value());
  auto served = (*pending)->Finish(sys::Deadline::After(50ms));
  ASSERT_FALSE(served);
  EXPECT_EQ(served.error().kind, ErrorKind::kTimedOut);
  std::string path = dir.path() + "/vchan.0.9.514.sock";
  EXPECT_TRUE(Exists(path));
  pending->reset();
  EXPECT_FALSE(Exists(path)) << "destroying the offer unlinks its file";
}

TEST(SocketTransport, ChannelsToTheOwnDomainAreRefused) {
  TempDir dir;
  auto transport = MakeSocketTransport(dir.path(), 4);
  auto offer = transport->Offer(4, 513);
  ASSERT_FALSE(offer);
  EXPECT_EQ(offer.error().kind, ErrorKind::kRefused);
  auto joined = transport->Connect(4, 513, sys::Deadline::After(100ms));
  ASSERT_FALSE(joined);
  EXPECT_EQ(joined.error().kind, ErrorKind::kRefused);
}

TEST(SocketTransport, ASecondOfferOfTheSameLiveChannelFails) {
  TempDir dir;
  auto server = MakeSocketTransport(dir.path(), 0);
  auto first = server->Offer(2, 513);
  ASSERT_TRUE(first.has_value());
  auto second = server->Offer(2, 513);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().kind, ErrorKind::kOverloaded);
  // A different port or peer is another channel.
  EXPECT_TRUE(server->Offer(2, 514).has_value());
  EXPECT_TRUE(server->Offer(3, 513).has_value());
}

TEST(SocketTransport, AnOfferReplacesAStaleFile) {
  TempDir dir;
  std::string path = dir.path() + "/vchan.0.2.513.sock";
  {
    auto stale = sys::UnixListen(path);
    ASSERT_TRUE(stale);
  }
  auto server = MakeSocketTransport(dir.path(), 0);
  EXPECT_TRUE(server->Offer(2, 513).has_value());
}

// ------------------------------------------------------------------ broker

// A fake host: accepts request connections on `path`, records each request,
// and answers per a callback.
class FakeBroker {
 public:
  explicit FakeBroker(const std::string& path) {
    auto listener = sys::UnixListen(path);
    QREXEC_CHECK(listener.has_value());
    listener_ = std::move(*listener);
  }

  // Accepts one request and returns it with its connection.
  std::pair<Result<BrokerRequest>, UniqueFd> AcceptRequest() {
    auto conn = sys::Accept(listener_.get());
    QREXEC_CHECK(conn.has_value());
    std::array<std::byte, kBrokerRequestSize> bytes{};
    auto st = sys::ReadExact(conn->get(), bytes, sys::Deadline::After(5s));
    if (!st) return {tl::unexpected(st.error()), std::move(*conn)};
    return {DecodeBrokerRequest(bytes), std::move(*conn)};
  }

 private:
  UniqueFd listener_;
};

TEST(BrokerWire, RequestsAreSixteenLittleEndianBytes) {
  auto bytes = EncodeBrokerRequest({BrokerOp::kConnect, 7, 513});
  const unsigned char expected[] = {0x31, 0x52, 0x42, 0x51, 2,    0,    0, 0,
                                    7,    0,    0,    0,    0x01, 0x02, 0, 0};
  EXPECT_EQ(std::memcmp(bytes.data(), expected, 16), 0);
  auto back = DecodeBrokerRequest(bytes);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, (BrokerRequest{BrokerOp::kConnect, 7, 513}));
  bytes[0] = std::byte{0};
  EXPECT_FALSE(DecodeBrokerRequest(bytes));
  bytes = EncodeBrokerRequest({BrokerOp::kOffer, 1, 512});
  bytes[4] = std::byte{3};
  EXPECT_FALSE(DecodeBrokerRequest(bytes));
}

TEST(BrokerTransport, PairsAnOfferAndAConnectThroughTheHost) {
  TempDir dir;
  std::string path = dir.path() + "/broker.sock";
  FakeBroker broker(path);
  auto server_side = MakeBrokerTransport(path, 3);
  auto client_side = MakeBrokerTransport(path, 0);

  auto pending = server_side->Offer(0, 512);
  ASSERT_TRUE(pending.has_value()) << pending.error().ToString();
  auto [offer, offer_conn] = broker.AcceptRequest();
  ASSERT_TRUE(offer.has_value());
  EXPECT_EQ(*offer, (BrokerRequest{BrokerOp::kOffer, 0, 512}));

  auto joined = std::async(std::launch::async,
                           [&] { return client_side->Connect(3, 512, sys::Deadline::After(10s)); });
  auto [connect, connect_conn] = broker.AcceptRequest();
  ASSERT_TRUE(connect.has_value());
  EXPECT_EQ(*connect, (BrokerRequest{BrokerOp::kConnect, 3, 512}));

  auto pair = sys::SocketPair();
  ASSERT_TRUE(pair.has_value());
  ASSERT_TRUE(sys::SendWithFd(offer_conn.get(), EncodeBrokerStatus(0), pair->first.get()));
  ASSERT_TRUE(sys::SendWithFd(connect_conn.get(), EncodeBrokerStatus(0), pair->second.get()));
  pair->first.reset();
  pair->second.reset();

  ASSERT_TRUE(sys::WaitReadable((*pending)->fd(), sys::Deadline::After(5s)));
  auto served = (*pending)->Finish(sys::Deadline::After(5s));
  ASSERT_TRUE(served.has_value()) << served.error().ToString();
  auto client_fd = joined.get();
  ASSERT_TRUE(client_fd.has_value()) << client_fd.error().ToString();
  ExpectConnected(served->get(), client_fd->get(), "over the broker");
}

TEST(BrokerTransport, AnErrnoStatusBecomesAnError) {
  TempDir dir;
  std::string path = dir.path() + "/broker.sock";
  FakeBroker broker(path);
  auto transport = MakeBrokerTransport(path, 2);
  auto joined = std::async(std::launch::async,
                           [&] { return transport->Connect(5, 513, sys::Deadline::After(10s)); });
  auto [request, conn] = broker.AcceptRequest();
  ASSERT_TRUE(request.has_value());
  ASSERT_TRUE(sys::WriteAll(conn.get(), EncodeBrokerStatus(ENOENT)));
  auto result = joined.get();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(result.error().sys_errno, ENOENT);
}

TEST(BrokerTransport, ABrokerThatClosesOrSendsNoDescriptorIsAnError) {
  TempDir dir;
  std::string path = dir.path() + "/broker.sock";
  FakeBroker broker(path);
  auto transport = MakeBrokerTransport(path, 2);
  {
    auto joined = std::async(std::launch::async,
                             [&] { return transport->Connect(5, 513, sys::Deadline::After(10s)); });
    auto [request, conn] = broker.AcceptRequest();
    conn.reset();
    auto result = joined.get();
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().kind, ErrorKind::kDisconnected);
  }
  {
    auto joined = std::async(std::launch::async,
                             [&] { return transport->Connect(5, 513, sys::Deadline::After(10s)); });
    auto [request, conn] = broker.AcceptRequest();
    ASSERT_TRUE(sys::WriteAll(conn.get(), EncodeBrokerStatus(0)));
    auto result = joined.get();
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().kind, ErrorKind::kMalformed);
  }
}

TEST(BrokerTransport, ConnectGivesUpAtTheDeadline) {
  TempDir dir;
  std::string path = dir.path() + "/broker.sock";
  FakeBroker broker(path);
  auto transport = MakeBrokerTransport(path, 2);
  auto result = transport->Connect(5, 513, sys::Deadline::After(50ms));
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().kind, ErrorKind::kTimedOut);
}

TEST(BrokerTransport, ChannelsToTheOwnDomainAreRefusedLocally) {
  TempDir dir;
  auto transport = MakeBrokerTransport(dir.path() + "/absent.sock", 2);
  auto offer = transport->Offer(2, 513);
  ASSERT_FALSE(offer);
  EXPECT_EQ(offer.error().kind, ErrorKind::kRefused);
}

// ------------------------------------------------------------------ environment

class EnvGuard {
 public:
  EnvGuard(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~EnvGuard() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(MakeTransportFromEnv, UsesTheSocketBackendWithTheDomainFromTheEnvironment) {
  TempDir dir;
  EnvGuard broker("QREXEC_BROKER_SOCKET", nullptr);
  EnvGuard socket_dir("VCHAN_SOCKET_DIR", dir.path().c_str());
  EnvGuard domain("VCHAN_DOMAIN", "12");
  auto transport = MakeTransportFromEnv();
  ASSERT_TRUE(transport.has_value());
  EXPECT_EQ((*transport)->own_domain(), 12);
  auto pending = (*transport)->Offer(0, 512);
  ASSERT_TRUE(pending.has_value());
  EXPECT_TRUE(Exists(dir.path() + "/vchan.12.0.512.sock"));
}

TEST(MakeTransportFromEnv, UsesTheBrokerWhenItsSocketIsSet) {
  TempDir dir;
  std::string path = dir.path() + "/broker.sock";
  FakeBroker fake(path);
  EnvGuard broker("QREXEC_BROKER_SOCKET", path.c_str());
  EnvGuard domain("VCHAN_DOMAIN", "3");
  auto transport = MakeTransportFromEnv();
  ASSERT_TRUE(transport.has_value());
  auto pending = (*transport)->Offer(0, 512);
  ASSERT_TRUE(pending.has_value());
  auto [request, conn] = fake.AcceptRequest();
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->op, BrokerOp::kOffer);
}

TEST(MakeTransportFromEnv, RejectsAnInvalidDomain) {
  EnvGuard domain("VCHAN_DOMAIN", "12x");
  EXPECT_FALSE(MakeTransportFromEnv());
  EnvGuard negative("VCHAN_DOMAIN", "-1");
  EXPECT_FALSE(MakeTransportFromEnv());
}

}  // namespace
}  // namespace qrexec::vchan
