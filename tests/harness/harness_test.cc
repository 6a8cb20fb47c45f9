#include "harness.h"

#include <thread>

#include <gtest/gtest.h>

namespace qrexec::harness {
namespace {

TEST(Harness, RunsAProgramAndCapturesItsOutputAndExitCode) {
  auto result = RunProgram({.argv = {"/bin/sh", "-c", "cat; echo err >&2; exit 3"}}, "hello");
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.out, "hello");
  EXPECT_EQ(result.err, "err\n");
}

TEST(Harness, ReportsSignalsAs128PlusSignal) {
  auto result = RunProgram({.argv = {"/bin/sh", "-c", "kill -TERM $$"}});
  EXPECT_EQ(result.exit_code, 128 + 15);
}

TEST(Harness, FakeVchanPeersExchangeMessages) {
  TempDir dir;
  auto listener = VchanListen(dir.path(), 42, 0, 512);
  ASSERT_TRUE(listener);
  std::thread client([&] {
    auto fd = VchanConnect(dir.path(), 42, 0, 512);
    ASSERT_TRUE(fd);
    auto version = Handshake(fd->get(), 3);
    ASSERT_TRUE(version);
    EXPECT_EQ(*version, 4u);
  });
  auto server = VchanAccept(listener->get(), dir.path(), 42, 0, 512);
  ASSERT_TRUE(server);
  auto version = Handshake(server->get(), 4);
  ASSERT_TRUE(version);
  EXPECT_EQ(*version, 3u);
  client.join();
  EXPECT_FALSE(PathExists(VchanPath(dir.path(), 42, 0, 512)));
}

TEST(Harness, PacksLittleEndianBodies) {
  EXPECT_EQ(U32(0x213), std::string("\x13\x02\0\0", 4));
  EXPECT_EQ(ReadU32(U32(0xdeadbeef)), 0xdeadbeefu);
  EXPECT_EQ(Trigger4Body("", "vault", "SOCKET", "a.b").size(), 160u + 4u);
}

}  // namespace
}  // namespace qrexec::harness
