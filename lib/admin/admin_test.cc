#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "admin/client.h"
#include "admin/protocol.h"
#include "admin/server.h"
#include "event/loop.h"

namespace qrexec::admin {
namespace {

using namespace std::chrono_literals;

TEST(AdminProtocol, EncodesARequestAsQubesdExpectsIt) {
  Request request;
  request.method = "admin.vm.CreateDisposable";
  request.dest = "uuid:f3e538bd-4427-4697-bed7-45ef3270df21";
  request.payload = "uuid";
  EXPECT_EQ(EncodeRequest(request),
            std::string("admin.vm.CreateDisposable dom0 name uuid:f3e538bd-4427-4697-bed7-45ef3270df21") +
                std::string(1, '\0') + "uuid");
}

TEST(AdminProtocol, DecodesWhatItEncodes) {
  Request request;
  request.method = "admin.vm.Start";
  request.argument = "arg";
  request.dest_type = DestType::kKeyword;
  request.dest = "adminvm";
  request.payload = std::string("a\0b", 3);
  auto decoded = DecodeRequest(EncodeRequest(request));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->method, "admin.vm.Start");
  EXPECT_EQ(decoded->argument, "arg");
  EXPECT_EQ(decoded->source, "dom0");
  EXPECT_EQ(decoded->dest_type, DestType::kKeyword);
  EXPECT_EQ(decoded->dest, "adminvm");
  EXPECT_EQ(decoded->payload, std::string("a\0b", 3));
}

TEST(AdminProtocol, RefusesMalformedHeaders) {
  for (std::string bad : {std::string("admin.vm.Start dom0 name work"),         // no NUL
                          std::string("admin.vm.Start dom0 name\0", 24),       // 3 fields
                          std::string("admin.vm.Start dom0 name  work\0", 30),  // empty field
                          std::string("admin.vm.Start dom0 other work\0", 31),  // bad type
                          std::string("admin.vm.Start+a+b dom0 name work\0", 34),  // '+' in arg
                          std::string("admin/vm dom0 name work\0", 24),        // bad char
                          std::string("admin.vm.Start dom0 name wo\x01rk\0", 31)}) {
    EXPECT_FALSE(DecodeRequest(bad)) << bad;
  }
  EXPECT_FALSE(DecodeRequest(std::string(kMaxRequestSize + 1, 'a')));
}

TEST(AdminProtocol, AcceptsAnEmptyArgumentAfterThePlus) {
  auto decoded = DecodeRequest(std::string("internal.GetSystemInfo+ dom0 name dom0\0", 39));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->method, "internal.GetSystemInfo");
  EXPECT_EQ(decoded->argument, "");
  EXPECT_EQ(EncodeRequest(*decoded), std::string("internal.GetSystemInfo+ dom0 name dom0\0", 39));
}

TEST(AdminProtocol, RepliesRoundTrip) {
  auto ok = DecodeReply(EncodeReply(Reply::Ok("uuid:1234")));
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->ok);
  EXPECT_EQ(ok->payload, "uuid:1234");
  auto error = DecodeReply(EncodeReply(Reply::Exception("QubesVMNotFoundError", "no such domain")));
  ASSERT_TRUE(error);
  EXPECT_FALSE(error->ok);
  EXPECT_EQ(error->exception_type, "QubesVMNotFoundError");
  EXPECT_EQ(error->message, "no such domain");
  EXPECT_FALSE(DecodeReply("1"));
  EXPECT_FALSE(DecodeReply(std::string("3\0x", 3)));
  // The short form qubesd uses for some errors, without traceback/message.
  auto bare = DecodeReply(std::string("2\0QubesVMNotHaltedError", 24));
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->exception_type, "QubesVMNotHaltedError");
}

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/admin_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/qubesd.sock";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs the loop until `done` is set (or a generous limit passes).
  void RunUntil(const std::atomic<bool>& done) {
    auto limit = sys::Clock::now() + 20s;
    while (!done && sys::Clock::now() < limit) ASSERT_TRUE(loop_.RunOnce(50ms));
    ASSERT_TRUE(done) << "hang";
  }

  std::string dir_;
  std::string path_;
  event::Loop loop_;
};

TEST_F(AdminServerTest, DispatchesToTheHandlerOfTheMethod) {
  Server server(loop_);
  ASSERT_TRUE(server.Listen(path_));
  server.Handle("admin.vm.List", [](const Request& request, Server::Respond respond) {
    respond(Reply::Ok("dest=" + request.dest + " payload=" + request.payload));
  });
  std::atomic<bool> done = false;
  Result<std::string> result;
  std::thread client([&] {
    result = CallOk(path_, "admin.vm.List", "work", "xyz", sys::Deadline::After(10s));
    done = true;
  });
  RunUntil(done);
  client.join();
  ASSERT_TRUE(result) << result.error().ToString();
  EXPECT_EQ(*result, "dest=work payload=xyz");
}

// The host tells which domain's daemon asks by the connecting process.
TEST_F(AdminServerTest, HandlersSeeThePidOfTheConnectingProcess) {
  Server server(loop_);
  ASSERT_TRUE(server.Listen(path_));
  server.Handle("admin.vm.List", [](const Request& request, Server::Respond respond) {
    respond(Reply::Ok(std::to_string(request.peer_pid)));
  });
  std::atomic<bool> done = false;
  Result<std::string> result;
  std::thread client([&] {
    result = CallOk(path_, "admin.vm.List", "work", "", sys::Deadline::After(10s));
    done = true;
  });
  RunUntil(done);
  client.join();
  ASSERT_TRUE(result) << result.error().ToString();
  EXPECT_EQ(*result, std::to_string(::getpid()));
}

TEST_F(AdminServerTest, AnswersUnknownMethodsAndBadRequestsWithAnException) {
  Server server(loop_);
  ASSERT_TRUE(server.Listen(path_));
  std::atomic<bool> done = false;
  Result<Reply> unknown, bad;
  std::thread client([&] {
    Request request;
    request.method = "admin.vm.Remove";
    request.dest = "work";
    unknown = Call(path_, request, sys::Deadline::After(10s));
    auto fd = sys::UnixConnect(path_);
    if (fd) {
      (void)sys::WriteAll(fd->get(), std::string_view("garbage without nul"));
      ::shutdown(fd->get(), SHUT_WR);
      auto text = sys::ReadToEof(fd->get(), 4096, sys::Deadline::After(10s));
      if (text) bad = DecodeReply(*text);
    }
    done = true;
  });
  RunUntil(done);
  client.join();
  ASSERT_TRUE(unknown);
  EXPECT_FALSE(unknown->ok);
  EXPECT_EQ(unknown->exception_type, kPermissionDenied);
  ASSERT_TRUE(bad);
  EXPECT_FALSE(bad->ok);
  EXPECT_EQ(bad->exception_type, kProtocolError);
}

TEST_F(AdminServerTest, ServesManyClientsWhileOneIsSlowAndOneIsDeferred) {
  Server server(loop_);
  ASSERT_TRUE(server.Listen(path_));
  Server::Respond deferred;
  server.Handle("admin.vm.Start", [&](const Request&, Server::Respond respond) {
    deferred = std::move(respond);  // answered later
  });
  server.Handle("admin.vm.List", [](const Request& request, Server::Respond respond) {
    respond(Reply::Ok(request.dest));
  });
  // A slow client: connects and never finishes its request.
  auto slow = sys::UnixConnect(path_);
  ASSERT_TRUE(slow);
  std::atomic<int> answered = 0;
  std::atomic<bool> start_done = false;
  std::vector<std::thread> clients;
  Result<std::string> start_result;
  clients.emplace_back([&] {
    start_result = CallOk(path_, "admin.vm.Start", "work", {}, sys::Deadline::After(10s));
    start_done = true;
  });
  for (int i = 0; i < 20; ++i) {
    clients.emplace_back([&, i] {
      auto reply = CallOk(path_, "admin.vm.List", "vm" + std::to_string(i), {}, sys::Deadline::After(10s));
      if (reply && *reply == "vm" + std::to_string(i)) ++answered;
    });
  }
  // Until the Start request has arrived too: under load its thread may be
  // scheduled after all the others.
  auto limit = sys::Clock::now() + 20s;
  while ((answered < 20 || !deferred) && sys::Clock::now() < limit)
    ASSERT_TRUE(loop_.RunOnce(50ms));
  EXPECT_EQ(answered, 20);
  EXPECT_FALSE(start_done);
  ASSERT_TRUE(deferred);
  deferred(Reply::Ok());
  RunUntil(start_done);
  for (auto& thread : clients) thread.join();
  EXPECT_TRUE(start_result);
}

TEST_F(AdminServerTest, DropsAClientThatDoesNotFinishInTime) {
  Server::Options options;
  options.read_timeout = 100ms;
  Server server(loop_, options);
  ASSERT_TRUE(server.Listen(path_));
  auto slow = sys::UnixConnect(path_);
  ASSERT_TRUE(slow);
  auto limit = sys::Clock::now() + 10s;
  while (server.connection_count() == 0 && sys::Clock::now() < limit) ASSERT_TRUE(loop_.RunOnce(20ms));
  EXPECT_EQ(server.connection_count(), 1u);
  while (server.connection_count() == 1 && sys::Clock::now() < limit) ASSERT_TRUE(loop_.RunOnce(20ms));
  EXPECT_EQ(server.connection_count(), 0u);
  auto rest = sys::ReadToEof(slow->get(), 100, sys::Deadline::After(5s));
  ASSERT_TRUE(rest);
  EXPECT_EQ(*rest, "");
}

TEST_F(AdminServerTest, ADeferredAnswerAfterTheClientLeftIsHarmless) {
  Server server(loop_);
  ASSERT_TRUE(server.Listen(path_));
  Server::Respond deferred;
  server.Handle("admin.vm.Start", [&](const Request&, Server::Respond respond) { deferred = respond; });
  {
    auto fd = sys::UnixConnect(path_);
    ASSERT_TRUE(fd);
    ASSERT_TRUE(sys::WriteAll(fd->get(), EncodeRequest(Request{"admin.vm.Start", "", "dom0", DestType::kName, "w", ""})));
    ::shutdown(fd->get(), SHUT_WR);
    auto limit = sys::Clock::now() + 10s;
    while (!deferred && sys::Clock::now() < limit) ASSERT_TRUE(loop_.RunOnce(20ms));
    ASSERT_TRUE(deferred);
  }
  auto limit = sys::Clock::now() + 10s;
  while (server.connection_count() != 0 && sys::Clock::now() < limit) ASSERT_TRUE(loop_.RunOnce(20ms));
  deferred(Reply::Ok());
  EXPECT_EQ(server.connection_count(), 0u);
}

}  // namespace
}  // namespace qrexec::admin
